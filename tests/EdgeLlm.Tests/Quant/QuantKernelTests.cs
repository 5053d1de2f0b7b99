using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>Every SIMD dot product equals its scalar reference; quantizers and activation rounding behave as ggml's.</summary>
public unsafe class QuantKernelTests
{
    /// <summary>
    /// Fast paths sum the same integers and multiply the same floats in the same order as the
    /// reference, so results agree to the last bit in practice; this bound (relative to the sum
    /// of block magnitudes) only allows for a different float evaluation order.
    /// </summary>
    private const float DotTolerance = 1e-5f;

    private readonly ITestOutputHelper _out;

    public QuantKernelTests(ITestOutputHelper output) => _out = output;

    public delegate float DotFn(int n, byte* x, byte* y);

    /// <summary>One weight format: its kernels and where its f16 fields sit.</summary>
    public sealed record Kernel(GgmlType Type, GgmlType Act, DotFn Reference, DotFn Avx2Path, DotFn Vector128Path, int[] WeightHalfOffsets);

    private static readonly Dictionary<string, Kernel> s_kernels = new()
    {
        ["Q4_0"] = new(GgmlType.Q4_0, GgmlType.Q8_0, Q4_0.DotQ4_0Q8_0Reference, Q4_0.DotQ4_0Q8_0Avx2, Q4_0.DotQ4_0Q8_0Vector128, [0]),
        ["Q4_1"] = new(GgmlType.Q4_1, GgmlType.Q8_1, Q4_1.DotQ4_1Q8_1Reference, Q4_1.DotQ4_1Q8_1Avx2, Q4_1.DotQ4_1Q8_1Vector128, [0, 2]),
        ["Q5_0"] = new(GgmlType.Q5_0, GgmlType.Q8_0, Q5_0.DotQ5_0Q8_0Reference, Q5_0.DotQ5_0Q8_0Avx2, Q5_0.DotQ5_0Q8_0Vector128, [0]),
        ["Q5_1"] = new(GgmlType.Q5_1, GgmlType.Q8_1, Q5_1.DotQ5_1Q8_1Reference, Q5_1.DotQ5_1Q8_1Avx2, Q5_1.DotQ5_1Q8_1Vector128, [0, 2]),
        ["Q8_0"] = new(GgmlType.Q8_0, GgmlType.Q8_0, Q8_0.DotQ8_0Q8_0Reference, Q8_0.DotQ8_0Q8_0Avx2, Q8_0.DotQ8_0Q8_0Vector128, [0]),
        ["IQ4_NL"] = new(GgmlType.IQ4_NL, GgmlType.Q8_0, IQ4_NL.DotIQ4_NLQ8_0Reference, IQ4_NL.DotIQ4_NLQ8_0Avx2, IQ4_NL.DotIQ4_NLQ8_0Vector128, [0]),
    };

    private static readonly int[] s_blockCounts = [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33];

    public static IEnumerable<object[]> Cases()
    {
        foreach (var name in s_kernels.Keys)
            foreach (var isa in new[] { "Avx2", "Vector128" })
                foreach (var fill in Enum.GetNames<Fill>())
                    yield return [name, isa, fill];
    }

    public enum Fill { Random, ZeroScale, HugeScale, TinyScale, AllMax, AllMin }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastDot_EqualsReference(string format, string isa, string fill)
    {
        if (isa == "Avx2" && !Avx2.IsSupported) return; // ISA not available on this machine
        if (isa == "Vector128" && !Vector128.IsHardwareAccelerated) return;
        var k = s_kernels[format];
        var fast = isa == "Avx2" ? k.Avx2Path : k.Vector128Path;
        var rng = new Random(format.GetHashCode(StringComparison.Ordinal) ^ (int)Enum.Parse<Fill>(fill));
        foreach (int blocks in s_blockCounts)
        {
            int n = blocks * 32;
            var w = MakeWeights(k, blocks, Enum.Parse<Fill>(fill), rng);
            var a = MakeActivations(k.Act, blocks, Enum.Parse<Fill>(fill), rng);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float r = k.Reference(n, pw, pa);
                float f = fast(n, pw, pa);
                // Bound: tolerance times Σ|w|·max|a| (dequantized magnitudes).
                var tmpW = new float[n];
                WeightFormat.TryGet(k.Type, out var fmt);
                fixed (float* tw = tmpW) fmt.DequantizeRow(pw, tw, n);
                int ab = GgmlTypes.Info(k.Act).TypeSize;
                float maxA = 0;
                for (int b = 0; b < blocks; b++) maxA = MathF.Max(maxA, MathF.Abs((float)BitConverter.ToHalf(a, b * ab)) * 128);
                float magnitude = tmpW.Sum(MathF.Abs) * maxA;
                Assert.False(float.IsNaN(r), $"{format} reference NaN");
                Assert.True(MathF.Abs(f - r) <= DotTolerance * magnitude || f == r,
                    $"{format} {isa} {fill} blocks={blocks}: fast {f} vs reference {r}");
                if (fill is "Random" or "AllMax" or "AllMin") Assert.Equal(r, f); // same integer sums, same float order
            }
        }
    }

    /// <summary>
    /// The vector-accumulating AVX2+FMA kernels (llama.cpp's float order, the decode path) sum
    /// the same integers but add the per-block products in another order, so they equal the
    /// reference within <see cref="DotTolerance"/> of the magnitude, and exactly on unit scales.
    /// </summary>
    [Theory]
    [InlineData("Q4_0")]
    [InlineData("Q8_0")]
    public void Avx2FmaDot_MatchesReference(string format)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) { _out.WriteLine("AVX2+FMA not supported here: nothing to check"); return; }
        var k = s_kernels[format];
        DotFn fma = format == "Q4_0" ? Q4_0.DotQ4_0Q8_0Avx2Fma : Q8_0.DotQ8_0Q8_0Avx2Fma;
        int checks = 0;
        foreach (var fill in Enum.GetValues<Fill>())
        {
            var rng = new Random(17 + (int)fill);
            foreach (int blocks in s_blockCounts)
            {
                int n = blocks * 32;
                var w = MakeWeights(k, blocks, fill, rng);
                var a = MakeActivations(k.Act, blocks, fill, rng);
                fixed (byte* pw = w)
                fixed (byte* pa = a)
                {
                    float r = k.Reference(n, pw, pa);
                    float f = fma(n, pw, pa);
                    var tmpW = new float[n];
                    WeightFormat.TryGet(k.Type, out var fmt);
                    fixed (float* tw = tmpW) fmt.DequantizeRow(pw, tw, n);
                    int ab = GgmlTypes.Info(k.Act).TypeSize;
                    float maxA = 0;
                    for (int b = 0; b < blocks; b++) maxA = MathF.Max(maxA, MathF.Abs((float)BitConverter.ToHalf(a, b * ab)) * 128);
                    float magnitude = tmpW.Sum(MathF.Abs) * maxA;
                    Assert.True(MathF.Abs(f - r) <= DotTolerance * magnitude || f == r, $"{format} AVX2+FMA {fill} blocks={blocks}: {f} vs reference {r}");
                    checks++;
                }
            }
        }
        // Unit scales: every product is an exact integer, so the order cannot matter.
        var rng2 = new Random(5);
        const int Blocks = 9;
        var w2 = MakeWeights(k, Blocks, Fill.Random, rng2);
        var a2 = MakeActivations(k.Act, Blocks, Fill.Random, rng2);
        int wb = GgmlTypes.Info(k.Type).TypeSize, ab2 = GgmlTypes.Info(k.Act).TypeSize;
        for (int b = 0; b < Blocks; b++) { SetHalf(w2, b * wb, (Half)1); SetHalf(a2, b * ab2, (Half)1); }
        fixed (byte* pw = w2)
        fixed (byte* pa = a2)
            Assert.Equal(k.Reference(Blocks * 32, pw, pa), fma(Blocks * 32, pw, pa));
        _out.WriteLine($"{format} AVX2+FMA: {checks} cases within {DotTolerance} of the magnitude, unit scales exact");
    }

    [Theory]
    [InlineData("Q4_0")]
    [InlineData("Q4_1")]
    [InlineData("Q5_0")]
    [InlineData("Q5_1")]
    [InlineData("Q8_0")]
    [InlineData("IQ4_NL")]
    public void UnitScales_GiveExactIntegerSums(string format)
    {
        // With d = 1 (and m = 0) on both sides, each path returns its integer sum exactly.
        var k = s_kernels[format];
        var rng = new Random(7);
        const int Blocks = 9;
        var w = MakeWeights(k, Blocks, Fill.Random, rng);
        var a = MakeActivations(k.Act, Blocks, Fill.Random, rng);
        int wb = GgmlTypes.Info(k.Type).TypeSize, ab = GgmlTypes.Info(k.Act).TypeSize;
        for (int b = 0; b < Blocks; b++)
        {
            SetHalf(w, b * wb, (Half)1);
            if (k.WeightHalfOffsets.Length > 1) SetHalf(w, b * wb + 2, (Half)0);
            SetHalf(a, b * ab, (Half)1);
        }
        fixed (byte* pw = w)
        fixed (byte* pa = a)
        {
            // Integer oracle: dequantized weights (exact small integers here) times the int8 activations.
            var deq = new float[Blocks * 32];
            WeightFormat.TryGet(k.Type, out var fmt);
            fixed (float* pd = deq) fmt.DequantizeRow(pw, pd, deq.Length);
            long expected = 0;
            int qOffset = k.Act == GgmlType.Q8_1 ? 4 : 2;
            for (int i = 0; i < deq.Length; i++) expected += (long)deq[i] * (sbyte)a[i / 32 * ab + qOffset + i % 32];
            Assert.Equal(expected, (long)k.Reference(deq.Length, pw, pa));
            if (Avx2.IsSupported) Assert.Equal(expected, (long)k.Avx2Path(deq.Length, pw, pa));
            if (Vector128.IsHardwareAccelerated) Assert.Equal(expected, (long)k.Vector128Path(deq.Length, pw, pa));
        }
    }

    private static byte[] MakeWeights(Kernel k, int blocks, Fill fill, Random rng)
    {
        int bs = GgmlTypes.Info(k.Type).TypeSize;
        var w = new byte[blocks * bs];
        rng.NextBytes(w);
        for (int b = 0; b < blocks; b++)
        {
            int o = b * bs;
            int qStart = k.Type switch { GgmlType.Q4_1 => 4, GgmlType.Q5_1 => 4, _ => 2 };
            if (fill == Fill.AllMax) for (int i = qStart; i < bs; i++) w[o + i] = k.Type == GgmlType.Q8_0 ? (byte)127 : (byte)0xFF;
            if (fill == Fill.AllMin) for (int i = qStart; i < bs; i++) w[o + i] = k.Type == GgmlType.Q8_0 ? (byte)0x80 : (byte)0x00;
            foreach (int h in k.WeightHalfOffsets)
            {
                Half v = fill switch
                {
                    Fill.ZeroScale => (Half)0,
                    Fill.HugeScale => (Half)(rng.Next(2) == 0 ? 65504f : -65504f),
                    Fill.TinyScale => BitConverter.UInt16BitsToHalf(1), // smallest subnormal
                    _ => (Half)((rng.NextSingle() * 2 - 1) * 0.05f),
                };
                SetHalf(w, o + h, v);
            }
        }
        return w;
    }

    private static byte[] MakeActivations(GgmlType act, int blocks, Fill fill, Random rng)
    {
        int bs = GgmlTypes.Info(act).TypeSize;
        var a = new byte[blocks * bs];
        rng.NextBytes(a);
        int qStart = act == GgmlType.Q8_1 ? 4 : 2;
        for (int b = 0; b < blocks; b++)
        {
            int o = b * bs;
            if (fill == Fill.AllMax) for (int i = qStart; i < bs; i++) a[o + i] = 127;
            if (fill == Fill.AllMin) for (int i = qStart; i < bs; i++) a[o + i] = 0x81; // -127: the activation quantizer's minimum
            Half d = fill switch
            {
                Fill.ZeroScale => (Half)0,
                Fill.HugeScale => act == GgmlType.Q8_1 ? (Half)1f : (Half)1000f, // keep s = d·Σq finite in f16
                Fill.TinyScale => BitConverter.UInt16BitsToHalf(1),
                _ => (Half)(rng.NextSingle() * 0.02f),
            };
            SetHalf(a, o, d);
            if (act == GgmlType.Q8_1)
            {
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += (sbyte)a[o + 4 + i];
                SetHalf(a, o + 2, (Half)((float)d * sum));
            }
        }
        return a;
    }

    private static void SetHalf(byte[] buf, int offset, Half v) =>
        BitConverter.TryWriteBytes(buf.AsSpan(offset, 2), BitConverter.HalfToUInt16Bits(v));

    [Fact]
    public void Q8_0Activations_RoundTiesToEven_WithMultiplier127OverMax()
    {
        var x = new float[32];
        x[0] = 127f; // max|x| = 127 -> multiplier exactly 1
        x[1] = 2.5f; x[2] = 3.5f; x[3] = -2.5f; x[4] = 0.5f; x[5] = -126.5f; x[6] = 1.49f;
        var q = new byte[34];
        fixed (float* px = x) fixed (byte* pq = q) ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, px, pq, 32);
        Assert.Equal((Half)1f, BitConverter.ToHalf(q, 0));
        Assert.Equal(new sbyte[] { 127, 2, 4, -2, 0, -126, 1 }, q.Skip(2).Take(7).Select(b => (sbyte)b).ToArray());
    }

    [Fact]
    public void Q8_1Activations_StoreScaledSum()
    {
        var rng = new Random(3);
        var x = new float[64];
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 4 - 2;
        var q = new byte[72];
        fixed (float* px = x) fixed (byte* pq = q) ActivationQuantizer.QuantizeRow(GgmlType.Q8_1, px, pq, 64);
        for (int b = 0; b < 2; b++)
        {
            float d = (float)BitConverter.ToHalf(q, b * 36);
            float max = x.Skip(b * 32).Take(32).Max(MathF.Abs);
            Assert.Equal((Half)(max / 127f), BitConverter.ToHalf(q, b * 36));
            int sum = 0;
            for (int i = 0; i < 32; i++) sum += (sbyte)q[b * 36 + 4 + i];
            Assert.Equal((Half)((max / 127f) * sum), BitConverter.ToHalf(q, b * 36 + 2));
            Assert.True(d > 0);
        }
    }

    [Fact]
    public void ActivationQuantizer_RejectsPartialBlocks()
    {
        var x = new float[40];
        var q = new byte[80];
        Assert.Throws<ArgumentException>(() => { fixed (float* px = x) fixed (byte* pq = q) ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, px, pq, 40); });
    }

    [Fact]
    public void Q4_0Quantizer_FollowsGgmlRounding()
    {
        // x = j - 16: the value of largest magnitude is -16, so d = -16/-8 = 2 and q = (int8)(x/2 + 8.5).
        var x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j - 16;
        var b = new byte[18];
        fixed (float* px = x) fixed (byte* pb = b) Q4_0.QuantizeRowReference(px, pb, 32);
        Assert.Equal((Half)2f, BitConverter.ToHalf(b, 0));
        Assert.Equal(0, b[2] & 0x0F);          // x0 = -16 -> -8 + 8.5 = 0.5 -> 0
        Assert.Equal(1, b[3] & 0x0F);          // x1 = -15 -> 1.0 -> 1
        Assert.Equal(15, b[2 + 15] >> 4);      // x31 = 15 -> 16 -> capped at 15
        Assert.Equal(8, b[2 + 0] >> 4);        // x16 = 0 -> 8.5 -> 8
    }

    [Theory]
    [InlineData("Q4_0", 0.12)]
    [InlineData("Q4_1", 0.10)]
    [InlineData("Q5_0", 0.06)]
    [InlineData("Q5_1", 0.05)]
    [InlineData("Q8_0", 0.006)]
    [InlineData("IQ4_NL", 0.10)]
    public void QuantizeThenDequantize_StaysWithinFormatError(string format, double maxRelRms)
    {
        var k = s_kernels[format];
        var rng = new Random(11);
        const int N = 32 * 64;
        var x = new float[N];
        for (int i = 0; i < N; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + i % 7);
        x[5] = 0; // a zero block must not produce NaN: make block 2 all zero
        for (int i = 64; i < 96; i++) x[i] = 0;
        var q = new byte[GgmlTypes.Info(k.Type).RowBytes(N)];
        var y = new float[N];
        Assert.True(RowQuantizer.TryGet(k.Type, out var quant));
        WeightFormat.TryGet(k.Type, out var fmt);
        fixed (float* px = x) fixed (byte* pq = q) fixed (float* py = y)
        {
            quant(px, pq, N);
            fmt.DequantizeRow(pq, py, N);
        }
        double err = 0, norm = 0;
        for (int i = 0; i < N; i++) { err += (x[i] - y[i]) * (double)(x[i] - y[i]); norm += x[i] * (double)x[i]; }
        double rel = Math.Sqrt(err / norm);
        _out.WriteLine($"{format}: relative RMS error {rel:F5}");
        for (int i = 64; i < 96; i++) Assert.Equal(0f, y[i]);
        Assert.True(rel < maxRelRms, $"{format}: relative RMS error {rel} >= {maxRelRms}");
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.IQ4_NL)]
    public void VecDot_WithQuantizedActivations_ApproximatesFloatDot(GgmlType type)
    {
        // End to end through the public seam: weights quantized, activations quantized to the
        // format's VecDotType, dot compared with the dequantized weights times the f32 activations.
        const int N = 32 * 48;
        var rng = new Random(5);
        var w = new float[N];
        var x = new float[N];
        for (int i = 0; i < N; i++) { w[i] = rng.NextSingle() * 2 - 1 + 0.3f; x[i] = rng.NextSingle() * 2 - 1 + 0.2f; }
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        Assert.True(RowQuantizer.TryGet(type, out var quant));
        var qw = new byte[GgmlTypes.Info(type).RowBytes(N)];
        var qx = new byte[ActivationQuantizer.RowBytes(fmt.VecDotType, N)];
        var dw = new float[N];
        float got;
        fixed (float* pw = w) fixed (float* px = x) fixed (byte* pqw = qw) fixed (byte* pqx = qx) fixed (float* pdw = dw)
        {
            quant(pw, pqw, N);
            fmt.DequantizeRow(pqw, pdw, N);
            ActivationQuantizer.QuantizeRow(fmt.VecDotType, px, pqx, N);
            got = fmt.VecDot(N, pqw, pqx);
        }
        double expected = 0, magnitude = 0;
        for (int i = 0; i < N; i++) { expected += dw[i] * (double)x[i]; magnitude += Math.Abs(dw[i] * (double)x[i]); }
        _out.WriteLine($"{type}: vec dot {got} vs float {expected:F4} (relative to magnitude {Math.Abs(got - expected) / magnitude:E2})");
        Assert.True(Math.Abs(got - expected) <= 0.01 * magnitude, $"{type}: {got} vs {expected}");
    }
}
