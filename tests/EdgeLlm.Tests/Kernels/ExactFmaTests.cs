using System.Runtime.Intrinsics;
using EdgeLlm.Kernels;
using Xunit;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The FMA emulation for x64 without the instruction must give a hardware FMA's bits (the
/// attention's sums are defined as fused chains): checked lane by lane against
/// <see cref="MathF.FusedMultiplyAdd"/> on inputs that reach every rounding case.
/// </summary>
public class ExactFmaTests
{
    public static TheoryData<string> Kinds() => new() { "any bits", "cancellation", "ties", "subnormal", "attention-like" };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Emulated_MatchesTheFusedResult_BitForBit(string kind)
    {
        var rng = new Random(kind.Aggregate(17, (h, ch) => h * 31 + ch) & 0x7fff); // string.GetHashCode differs from run to run
        const int n = 1 << 20;
        int mismatches = 0, ties = 0;
        string first = "";
        for (int i = 0; i < n; i += 4)
        {
            float[] a = new float[4], b = new float[4], c = new float[4];
            for (int l = 0; l < 4; l++) (a[l], b[l], c[l]) = Draw(rng, kind);
            var got = ExactFma.MultiplyAddEmulated(Vector128.Create(a), Vector128.Create(b), Vector128.Create(c));
            for (int l = 0; l < 4; l++)
            {
                float want = MathF.FusedMultiplyAdd(a[l], b[l], c[l]);
                float g = got[l];
                if ((double)a[l] * b[l] + c[l] is var exact && (double)(float)exact != exact) ties += IsTie(exact) ? 1 : 0;
                bool same = float.IsNaN(want) ? float.IsNaN(g) : BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(g);
                if (!same && mismatches++ == 0) first = $"fma({a[l]:R}, {b[l]:R}, {c[l]:R}) = {want:R}, emulated {g:R}";
            }
        }
        Assert.True(mismatches == 0, $"{mismatches} of {n} differ, first: {first}");
        // The eight-lane form is the four-lane one on each half, in lane order.
        var a8 = Vector256.Create(1.5f, -2f, 3e-20f, 7f, float.MaxValue, 0.1f, -0f, 65504f);
        var b8 = Vector256.Create(1f / 3, 0.7f, 2e-20f, -1f / 7, 2f, 0.1f, 5f, 65504f);
        var c8 = Vector256.Create(0.25f, 1f, -1e-45f, 1f, -float.MaxValue, -0.01f, -0f, -1f);
        var got8 = ExactFma.MultiplyAddEmulated(a8, b8, c8);
        for (int l = 0; l < 8; l++)
            Assert.Equal(BitConverter.SingleToInt32Bits(MathF.FusedMultiplyAdd(a8[l], b8[l], c8[l])), BitConverter.SingleToInt32Bits(got8[l]));
        if (kind == "ties") Assert.True(ties > 1000, $"only {ties} sums near a tie: the case is not exercised");
    }

    /// <summary>A double whose float rounding is close to a tie (a cheap sign that the tie cases are drawn).</summary>
    private static bool IsTie(double x)
    {
        float lo = (float)x;
        float other = x > lo ? MathF.BitIncrement(lo) : MathF.BitDecrement(lo);
        double mid = ((double)lo + other) / 2;
        return Math.Abs(x - mid) <= Math.Abs((double)other - lo) * 1e-6;
    }

    private static (float, float, float) Draw(Random rng, string kind)
    {
        switch (kind)
        {
            case "any bits":
                return (Bits(rng), Bits(rng), Bits(rng));
            case "cancellation":
            {
                float a = Normal(rng, 20), b = Normal(rng, 20);
                float p = a * b; // rounded product: c cancels all but its rounding error, plus a few ulps
                float c = -p;
                for (int k = rng.Next(-3, 4); k != 0; k += k > 0 ? -1 : 1) c = k > 0 ? MathF.BitIncrement(c) : MathF.BitDecrement(c);
                return (a, b, c);
            }
            case "ties":
            {
                // Short significands: a·b has at most 26 bits, so sums often sit exactly between two floats.
                float a = rng.Next(1 << 12, 1 << 13) * MathF.ScaleB(1, rng.Next(-20, 20));
                float b = rng.Next(1 << 12, 1 << 13) * MathF.ScaleB(1, rng.Next(-20, 20));
                float c = (rng.Next(2) == 0 ? 1 : -1) * rng.Next(1, 1 << 24) * MathF.ScaleB(1, rng.Next(-40, 40));
                return (a, b, c);
            }
            case "subnormal":
                return (Normal(rng, 30) * 1e-20f, Normal(rng, 30) * 1e-20f, BitConverter.Int32BitsToSingle(rng.Next(0, 0x00800000)) * (rng.Next(2) == 0 ? 1 : -1));
            default: // attention-like: f16-valued queries and keys, a running score
                return ((float)(Half)Normal(rng, 2), (float)(Half)Normal(rng, 2), Normal(rng, 10));
        }
    }

    private static float Bits(Random rng) => BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31));

    private static float Normal(Random rng, int maxExp) => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-maxExp, maxExp)));
}
