using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;
using static EdgeLlm.Tests.Quant.KQuantTestData;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The K-quant order of the NEON dot-product kernels (<see cref="AdvSimdDpKLanes"/>): the
/// reference's integers, summed per super-block, and llama.cpp's NEON float tail. Its scalar
/// statement (<see cref="KQuant128.DotTotalOrderReference{TK}"/>) is held here within float-order
/// tolerance of ggml's reference (exactly where every term is an integer; Q2_K bit for bit), the
/// tile's total-order path equals it bit for bit on x64 (<see cref="Vector128TotalKLanes"/>,
/// through <see cref="Tile128Tests"/>), and on NEON the selftest under qemu holds the sdot tile
/// to it bit for bit (tests/deployment/run.sh).
/// </summary>
public unsafe class KQuantTotalOrderTests(ITestOutputHelper output)
{
    /// <summary>As <see cref="KQuantFmaTests"/>: two f32 orders of the same products.</summary>
    private const double FloatOrderTolerance = 1e-5;

    public static TheoryData<GgmlType, Pattern> Cases()
    {
        var data = new TheoryData<GgmlType, Pattern>();
        foreach (var t in WeightTypes)
            foreach (var p in Enum.GetValues<Pattern>())
                data.Add(t, p);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TotalOrder_MatchesReferenceWithinFloatOrder(GgmlType type, Pattern pattern)
    {
        // Q2_K's reference tail already works on the total: the same float steps, bit for bit.
        var (worst, checks) = AssertWithinFloatOrder(type, pattern, Seed((int)type, (int)pattern, 43), [1, 2, 3, 5, 8, 16],
            (n, w, a) => TotalOrder(type, n, w, a), (n, w, a) => Reference(type, n, w, a), FloatOrderTolerance, exact: type == GgmlType.Q2_K);
        output.WriteLine($"{type} {pattern}: {checks} finite cases, worst |total order - reference| / magnitude = {worst:E2} (limit {FloatOrderTolerance:E0})");
    }

    /// <summary>
    /// d = dmin = 1 and activation scale 1: every product and sum is a small integer, so the
    /// order cannot matter and a wrong value, scale or min cannot hide inside the tolerance.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void TotalOrder_ExactOnIntegerScales(GgmlType type)
    {
        var rng = new Random((int)type * 37);
        foreach (int blocks in new[] { 1, 2, 3, 6 })
        {
            int n = blocks * 256;
            byte[] w = MakeBlocks(type, blocks, Pattern.Random, rng);
            int bs = BlockSize(type);
            for (int b = 0; b < blocks; b++)
                foreach (int off in HalfOffsets(type))
                    MemoryMarshal.Write(w.AsSpan(b * bs + off), BitConverter.HalfToUInt16Bits((Half)1));
            byte[] a = SmallQ8K(blocks, rng);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float r = Reference(type, n, pw, pa);
                Assert.True(Math.Abs(r) < 1 << 24);
                Assert.Equal(r, TotalOrder(type, n, pw, pa));
            }
        }
    }

    /// <summary>The vector scale/min unpacking of Q4_K and Q5_K equals ggml's per-scale statement on random and all-ones bytes.</summary>
    [Fact]
    public void ScalesAndMinsK4_EqualsGetScaleMinK4()
    {
        var rng = new Random(5);
        byte* packed = stackalloc byte[12];
        int* scales = stackalloc int[16];
        int* mins = stackalloc int[16];
        for (int trial = 0; trial < 2000; trial++)
        {
            var span = new Span<byte>(packed, 12);
            if (trial == 0) span.Fill(0xFF);
            else if (trial == 1) span.Clear();
            else rng.NextBytes(span);
            KQuant128.ScalesAndMinsK4(packed, scales, mins);
            for (int j = 0; j < 8; j++)
            {
                KQuant.GetScaleMinK4(j, packed, out byte sc, out byte m);
                Assert.Equal(sc, scales[2 * j]);
                Assert.Equal(sc, scales[2 * j + 1]);
                Assert.Equal(m, mins[j]);
            }
        }
    }

    /// <summary>The dispatch: x64 without AVX2 keeps the bit-exact lanes; the NEON choice is checked by the selftest under qemu.</summary>
    [Fact]
    public void SelfTest_ListsTheDotProductTilesForEveryKQuant()
    {
        var dp = SelfTest.Tiles128().Where(k => k.Isa == "AdvSimdDp" && k.Act == GgmlType.Q8_K).Select(k => k.Weight).ToHashSet();
        Assert.Equal(WeightTypes.ToHashSet(), dp);
        Assert.Contains(SelfTest.Checks(), c => c.Name == "K-quant VecDot dispatch");
    }

    private static float Reference(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q2_K => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)w, (BlockQ8_K*)a),
        GgmlType.Q3_K => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)w, (BlockQ8_K*)a),
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static float TotalOrder(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q2_K => KQuant128.DotTotalOrderReference<Q2_K128>(n, w, a),
        GgmlType.Q3_K => KQuant128.DotTotalOrderReference<Q3_K128>(n, w, a),
        GgmlType.Q4_K => KQuant128.DotTotalOrderReference<Q4_K128>(n, w, a),
        GgmlType.Q5_K => KQuant128.DotTotalOrderReference<Q5_K128>(n, w, a),
        GgmlType.Q6_K => KQuant128.DotTotalOrderReference<Q6_K128>(n, w, a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
