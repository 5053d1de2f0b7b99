using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;
using static EdgeLlm.Tests.Quant.KQuantTestData;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// K-quant kernels: block sizes, the AVX2 paths against the scalar references (bit for bit:
/// the fast paths keep the references' integer lanes and float order), Q8_K quantization
/// semantics, and the integer dot product against f32 arithmetic on dequantized values.
/// </summary>
public unsafe class KQuantKernelTests(ITestOutputHelper output)
{
    /// <summary>
    /// VecDot vs Σ dequant(w)·x: Q8_K rounds each x to within half a step (d/2, d = amax/127 of
    /// its block), so |error| ≤ Σ|w|·d/2; this factor covers the f32 rounding on top.
    /// </summary>
    private const double Q8RoundingBoundSlack = 1.01;

    /// <summary>Relative f32 summation allowance (of Σ|w·x|) added to that bound.</summary>
    private const double FloatSumTolerance = 1e-5;

    public static TheoryData<GgmlType, KQuantTestData.Pattern, int> FastPathCases()
    {
        var data = new TheoryData<GgmlType, KQuantTestData.Pattern, int>();
        foreach (var t in WeightTypes)
            foreach (var p in Enum.GetValues<KQuantTestData.Pattern>())
                foreach (int n in new[] { 256, 512, 768, 4096 })
                    data.Add(t, p, n);
        return data;
    }

    [Fact]
    public void BlockStructs_HaveGgmlSizes()
    {
        Assert.Equal(84, sizeof(BlockQ2_K));
        Assert.Equal(110, sizeof(BlockQ3_K));
        Assert.Equal(144, sizeof(BlockQ4_K));
        Assert.Equal(176, sizeof(BlockQ5_K));
        Assert.Equal(210, sizeof(BlockQ6_K));
        Assert.Equal(292, sizeof(BlockQ8_K));
        Assert.Equal(BlockQ2_K.Size, GgmlTypes.Info(GgmlType.Q2_K).TypeSize);
        Assert.Equal(BlockQ3_K.Size, GgmlTypes.Info(GgmlType.Q3_K).TypeSize);
        Assert.Equal(BlockQ4_K.Size, GgmlTypes.Info(GgmlType.Q4_K).TypeSize);
        Assert.Equal(BlockQ5_K.Size, GgmlTypes.Info(GgmlType.Q5_K).TypeSize);
        Assert.Equal(BlockQ6_K.Size, GgmlTypes.Info(GgmlType.Q6_K).TypeSize);
        Assert.Equal(BlockQ8_K.Size, GgmlTypes.Info(GgmlType.Q8_K).TypeSize);
    }

    [Fact]
    public void Registry_HasEveryKQuantWithQ8KActivations()
    {
        foreach (var t in WeightTypes)
        {
            Assert.True(WeightFormat.TryGet(t, out var fmt), $"{t} not registered");
            Assert.Equal(t, fmt.Type);
            Assert.Equal(GgmlType.Q8_K, fmt.VecDotType);
            Assert.True(RowQuantizer.TryGet(t, out _), $"{t} has no quantizer");
        }
        var x = new float[256];
        var dst = new byte[292];
        fixed (float* px = x)
        fixed (byte* pd = dst)
            ActivationQuantizer.QuantizeRow(GgmlType.Q8_K, px, pd, 256);
    }

    [Fact]
    public void BadRowLength_ThrowsNamingTheFormat()
    {
        WeightFormat.TryGet(GgmlType.Q4_K, out var fmt);
        var buf = new byte[1024];
        var f = new float[1024];
        fixed (byte* p = buf)
        fixed (float* pf = f)
        {
            byte* pp = p;
            float* ppf = pf;
            var ex = Assert.Throws<ArgumentException>(() => fmt.DequantizeRow(pp, ppf, 100));
            Assert.Contains("Q4_K", ex.Message);
            Assert.Throws<ArgumentException>(() => ActivationQuantizer.QuantizeRow(GgmlType.Q8_K, ppf, pp, 300));
        }
    }

    [Theory]
    [MemberData(nameof(FastPathCases))]
    public void VecDotAvx2_EqualsReference(GgmlType type, KQuantTestData.Pattern pattern, int n)
    {
        if (!Avx2.IsSupported) return; // nothing to compare on this CPU
        var rng = new Random(KQuantTestData.Seed((int)type, (int)pattern, n));
        int blocks = n / 256;
        for (int trial = 0; trial < 8; trial++)
        {
            byte[] w = MakeBlocks(type, blocks, pattern, rng);
            byte[] a = MakeQ8KBlocks(blocks, rng, extremes: trial == 7);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float reference = DotReference(type, n, pw, pa);
                float fast = DotAvx2(type, n, pw, pa);
                Assert.True(BitConverter.SingleToInt32Bits(reference) == BitConverter.SingleToInt32Bits(fast),
                    $"{type} {pattern} n={n} trial {trial}: reference {reference:R} avx2 {fast:R}");
            }
        }
    }

    [Theory]
    [InlineData(256)]
    [InlineData(512)]
    [InlineData(4096)]
    public void Q8KQuantizeAvx2_EqualsReference(int n)
    {
        if (!Avx2.IsSupported) return;
        var rng = new Random(n);
        var cases = new List<float[]>();
        for (int trial = 0; trial < 20; trial++)
        {
            var x = new float[n];
            float scale = MathF.Pow(10, rng.Next(-6, 6));
            for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
            cases.Add(x);
        }
        // Ties: the largest magnitude appears with both signs, at several places; exact halves after scaling.
        var ties = new float[n];
        for (int i = 0; i < n; i++) ties[i] = (i % 7 - 3) * 0.5f;
        ties[5] = -127; ties[100] = 127; ties[n - 1] = -127;
        cases.Add(ties);
        cases.Add(new float[n]); // all zero
        foreach (var x in cases)
        {
            var r = new byte[n / 256 * 292];
            var f = new byte[n / 256 * 292];
            fixed (float* px = x)
            fixed (byte* pr = r)
            fixed (byte* pf = f)
            {
                Q8_K.QuantizeRowReference(px, (BlockQ8_K*)pr, n);
                Q8_K.QuantizeRowAvx2(px, (BlockQ8_K*)pf, n);
            }
            Assert.Equal(r, f);
        }
    }

    [Fact]
    public void Q8KQuantize_FollowsGgmlRules()
    {
        // Largest magnitude is negative: iscale = -127/value = +127/3; d = 1/iscale.
        var x = new float[256];
        for (int i = 0; i < 256; i++) x[i] = (i % 5 - 2) * 0.5f; // -1, -0.5, 0, 0.5, 1
        x[17] = -3f;
        x[200] = 3f; // same magnitude later: the first one (negative) sets the sign
        // A value that lands exactly on .5 after scaling rounds to even: iscale·x = -127/-3·x.
        var b = new BlockQ8_K();
        fixed (float* px = x)
            Q8_K.QuantizeRowReference(px, &b, 256);
        float iscale = -127f / -3f;
        Assert.Equal(1 / iscale, b.D);
        Assert.Equal(-127, b.Qs[17]);
        Assert.Equal(127, b.Qs[200]);
        for (int i = 0; i < 256; i++)
        {
            if (i == 17 || i == 200) continue;
            Assert.Equal((int)MathF.Round(iscale * x[i], MidpointRounding.ToEven), b.Qs[i]);
        }
        for (int g = 0; g < 16; g++)
        {
            int s = 0;
            for (int k = 0; k < 16; k++) s += b.Qs[16 * g + k];
            Assert.Equal(s, b.Bsums[g]);
        }

        // Positive maximum: iscale is negative, so the maximum maps to -127 and the opposite
        // extreme would map to +127 (capped at 127).
        x = new float[256];
        x[3] = 2f; x[4] = -2f; x[5] = 1f;
        fixed (float* px = x)
            Q8_K.QuantizeRowReference(px, &b, 256);
        Assert.Equal(-127, b.Qs[3]);
        Assert.Equal(127, b.Qs[4]);
        Assert.Equal(-64, b.Qs[5]); // -63.5 rounds to even
        Assert.True(b.D < 0);

        // Ties to even, the way the 1.5·2^23 trick rounds (not half away from zero).
        Assert.Equal(2, KQuant.NearestInt(2.5f));
        Assert.Equal(4, KQuant.NearestInt(3.5f));
        Assert.Equal(-2, KQuant.NearestInt(-2.5f));
        Assert.Equal(0, KQuant.NearestInt(-0.5f));
    }

    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void VecDot_MatchesF32DotOfDequantizedWithinQ8Rounding(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var rng = new Random((int)type);
        double worstRatio = 0;
        foreach (int n in new[] { 256, 768, 2048 })
        {
            for (int trial = 0; trial < 10; trial++)
            {
                byte[] w = MakeBlocks(type, n / 256, KQuantTestData.Pattern.Random, rng);
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 64 == 0 ? 4f : 1f);
                var deq = new float[n];
                var act = new byte[n / 256 * 292];
                float got;
                fixed (byte* pw = w)
                fixed (float* px = x)
                fixed (float* pd = deq)
                fixed (byte* pa = act)
                {
                    fmt.DequantizeRow(pw, pd, n);
                    ActivationQuantizer.QuantizeRow(GgmlType.Q8_K, px, pa, n);
                    got = fmt.VecDot(n, pw, pa);
                }
                double exact = 0, absSum = 0, bound = 0;
                for (int b = 0; b < n / 256; b++)
                {
                    double amax = 0;
                    for (int i = 256 * b; i < 256 * b + 256; i++) amax = Math.Max(amax, Math.Abs(x[i]));
                    double step = amax / 127;
                    for (int i = 256 * b; i < 256 * b + 256; i++)
                    {
                        exact += (double)deq[i] * x[i];
                        absSum += Math.Abs((double)deq[i] * x[i]);
                        bound += Math.Abs(deq[i]) * step / 2;
                    }
                }
                double tol = bound * Q8RoundingBoundSlack + absSum * FloatSumTolerance;
                double err = Math.Abs(got - exact);
                worstRatio = Math.Max(worstRatio, err / tol);
                Assert.True(err <= tol, $"{type} n={n}: vecdot {got} vs f32 {exact}, |err| {err:E3} > bound {tol:E3}");
            }
        }
        output.WriteLine($"{type}: worst |vecdot - f32 dot| / Q8_K rounding bound = {worstRatio:F3}");
    }

    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void Quantizer_RoundTripsRandomRowsAndZeros(GgmlType type)
    {
        Assert.True(RowQuantizer.TryGet(type, out var quantize));
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var rng = new Random(7 + (int)type);
        const int n = 1024;
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 512; i < 768; i++) x[i] = 0; // an all-zero block
        var q = new byte[GgmlTypes.Info(type).RowBytes(n)];
        var back = new float[n];
        fixed (float* px = x)
        fixed (byte* pq = q)
        fixed (float* pb = back)
        {
            quantize(px, pq, n);
            fmt.DequantizeRow(pq, pb, n);
        }
        for (int i = 512; i < 768; i++) Assert.Equal(0f, back[i]);
        double rel = RmsDiff(x, back) / Rms(x);
        output.WriteLine($"{type}: uniform[-1,1] relative RMS error {rel:F4}");
        Assert.True(rel < MaxUniformRelRms(type), $"{type}: relative RMS error {rel}");
    }

    /// <summary>Loose ceilings for uniform data: a few times the ideal step/√12 of each bit width.</summary>
    private static double MaxUniformRelRms(GgmlType t) => t switch
    {
        GgmlType.Q2_K => 0.30,
        GgmlType.Q3_K => 0.15,
        GgmlType.Q4_K => 0.08,
        GgmlType.Q5_K => 0.04,
        GgmlType.Q6_K => 0.02,
        _ => 0,
    };

    private static float DotReference(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q2_K => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)w, (BlockQ8_K*)a),
        GgmlType.Q3_K => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)w, (BlockQ8_K*)a),
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static float DotAvx2(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q2_K => Q2_K.DotQ2_KQ8_KAvx2(n, (BlockQ2_K*)w, (BlockQ8_K*)a),
        GgmlType.Q3_K => Q3_K.DotQ3_KQ8_KAvx2(n, (BlockQ3_K*)w, (BlockQ8_K*)a),
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KAvx2(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KAvx2(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KAvx2(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
