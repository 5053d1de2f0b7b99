using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;
using static EdgeLlm.Tests.Quant.KQuantTestData;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The vector-accumulating AVX2+FMA K-quant kernels (Q4_K, Q5_K, Q6_K · Q8_K): they sum the
/// reference's integers but add the per-block float terms in another order (one FMA per block
/// into eight lanes, one horizontal sum per row), so they equal the scalar reference within
/// <see cref="FloatOrderTolerance"/> of the terms' magnitude, and exactly where every term
/// and partial sum is an integer below 2^24. Register tiles equal VecDot bit for bit
/// (<see cref="VecDotTileTests"/>).
/// </summary>
public unsafe class KQuantFmaTests(ITestOutputHelper output)
{
    /// <summary>
    /// |fast − reference| ≤ this × Σ_i |weight term_i · activation_i| (Q4_K/Q5_K count the scale
    /// and min parts separately): two f32 summation orders of the same products.
    /// </summary>
    private const double FloatOrderTolerance = 1e-5;

    private static readonly GgmlType[] s_types = [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    public static TheoryData<GgmlType, KQuantTestData.Pattern> Cases()
    {
        var data = new TheoryData<GgmlType, KQuantTestData.Pattern>();
        foreach (var t in s_types)
            foreach (var p in Enum.GetValues<KQuantTestData.Pattern>())
                data.Add(t, p);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Avx2FmaDot_MatchesReferenceWithinFloatOrder(GgmlType type, KQuantTestData.Pattern pattern)
    {
        if (!KQuantFma.UseAvx2Fma) { output.WriteLine("SKIPPED: this CPU lacks AVX2+FMA"); return; }
        var (worst, checks) = AssertWithinFloatOrder(type, pattern, Seed((int)type, (int)pattern, 41), [1, 2, 3, 4, 5, 7, 8, 9, 16],
            (n, w, a) => Fast(type, n, w, a), (n, w, a) => Reference(type, n, w, a), FloatOrderTolerance);
        output.WriteLine($"{type} {pattern}: {checks} finite cases, worst |fast - reference| / magnitude = {worst:E2} (limit {FloatOrderTolerance:E0})");
    }

    /// <summary>
    /// With d = dmin = 1 and activation scale 1, every product is a small integer, so any
    /// summation order gives the exact result: the fast kernels must equal it exactly (a wrong
    /// lane, scale, min or bit layout cannot hide inside the tolerance here).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void Avx2FmaDot_ExactOnIntegerScales(GgmlType type)
    {
        if (!KQuantFma.UseAvx2Fma) { output.WriteLine("SKIPPED: this CPU lacks AVX2+FMA"); return; }
        var rng = new Random((int)type * 31);
        foreach (int blocks in new[] { 1, 2, 3, 6 })
        {
            int n = blocks * 256;
            byte[] w = MakeBlocks(type, blocks, KQuantTestData.Pattern.Random, rng);
            int bs = BlockSize(type);
            for (int b = 0; b < blocks; b++)
                foreach (int off in HalfOffsets(type))
                    MemoryMarshal.Write(w.AsSpan(b * bs + off), BitConverter.HalfToUInt16Bits((Half)1));
            byte[] a = SmallQ8K(blocks, rng);
            var deq = new float[n];
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            fixed (float* pd = deq)
            {
                WeightFormat.TryGet(type, out var fmt);
                fmt.DequantizeRow(pw, pd, n);
                long exact = 0;
                for (int i = 0; i < n; i++) exact += (long)deq[i] * ((sbyte*)(pa + (i / 256) * 292 + 4))[i % 256];
                Assert.True(Math.Abs(exact) < 1 << 24);
                Assert.Equal((float)exact, Reference(type, n, pw, pa));
                Assert.Equal((float)exact, Fast(type, n, pw, pa));
            }
        }
    }

    [Fact]
    public void Dispatch_UsesTheFmaKernelsWhereSupported()
    {
        var rng = new Random(3);
        foreach (var type in s_types)
        {
            byte[] w = MakeBlocks(type, 4, KQuantTestData.Pattern.Random, rng);
            byte[] a = MakeQ8KBlocks(4, rng);
            WeightFormat.TryGet(type, out var fmt);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                // Without AVX2+FMA every remaining path equals the reference bit for bit.
                float expected = KQuantFma.UseAvx2Fma ? Fast(type, 1024, pw, pa) : Reference(type, 1024, pw, pa);
                Assert.Equal(expected, fmt.VecDot(1024, pw, pa));
            }
        }
    }

    /// <summary>
    /// Microbenchmark: ns per 256-value super-block for each Q4_K/Q5_K/Q6_K path on one row
    /// of 4096 values (16 blocks, cache-resident), and the register tile per (row, activation)
    /// pair. Figures only (the machine is shared); asserts just that each path ran.
    /// </summary>
    [Fact]
    public void Microbenchmark_PrintsNsPerBlock()
    {
        const int Blocks = 16, N = Blocks * 256, Rows = 16, Acts = 16;
        var rng = new Random(9);
        foreach (var type in s_types)
        {
            byte[] w = MakeBlocks(type, Blocks * Rows, KQuantTestData.Pattern.Random, rng);
            byte[] a = MakeQ8KBlocks(Blocks * Acts, rng);
            long rowBytes = Blocks * BlockSize(type);
            var y = new float[Rows * Acts];
            WeightFormat.TryGet(type, out var fmt);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            fixed (float* py = y)
            {
                var line = new List<string>();
                byte* pw0 = pw, pa0 = pa;
                line.Add($"reference {Time(() => Reference(type, N, pw0, pa0), Blocks):F1}");
                if (Avx2.IsSupported) line.Add($"avx2(exact) {Time(() => ExactAvx2(type, N, pw0, pa0), Blocks):F1}");
                if (Avx512BW.IsSupported) line.Add($"avx512(exact) {Time(() => ExactAvx512(type, N, pw0, pa0), Blocks):F1}");
                if (KQuantFma.UseAvx2Fma) line.Add($"avx2+fma {Time(() => Fast(type, N, pw0, pa0), Blocks):F1}");
                float* py0 = py;
                double tile = Time(() => { fmt.VecDotTile(N, pw0, rowBytes, Rows, pa0, Blocks * 292, Acts, py0, Rows); return py0[0]; }, Blocks * Rows * Acts);
                line.Add($"tile {Rows}x{Acts} {tile:F1}");
                output.WriteLine($"{type} ns/block: {string.Join(", ", line)}");
            }
        }
    }

    private static float s_sink;

    private static double Time(Func<float> f, int blocksPerCall)
    {
        float sink = 0;
        // Warm-up long enough for tiered compilation to install the optimized code (tier 0
        // runs these intrinsics kernels several times slower).
        for (int round = 0; round < 3; round++)
        {
            var warm = Stopwatch.StartNew();
            while (warm.ElapsedMilliseconds < 60) sink += f();
            Thread.Sleep(100);
        }
        // The machine is shared: take the best of many short batches (a batch a scheduler
        // preempts is simply not the minimum).
        double best = double.MaxValue;
        for (int rep = 0; rep < 400; rep++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int k = 0; k < 8; k++) sink += f();
            double ns = Stopwatch.GetElapsedTime(t0).TotalNanoseconds;
            best = Math.Min(best, ns / (8.0 * blocksPerCall));
        }
        s_sink = sink; // keeps the calls observable
        return best;
    }

    private static float Reference(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static float Fast(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KAvx2Fma(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KAvx2Fma(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KAvx2Fma(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static float ExactAvx2(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KAvx2(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KAvx2(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KAvx2(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static float ExactAvx512(GgmlType t, int n, byte* w, byte* a) => t switch
    {
        GgmlType.Q4_K => Q4_K.DotQ4_KQ8_KAvx512(n, (BlockQ4_K*)w, (BlockQ8_K*)a),
        GgmlType.Q5_K => Q5_K.DotQ5_KQ8_KAvx512(n, (BlockQ5_K*)w, (BlockQ8_K*)a),
        GgmlType.Q6_K => Q6_K.DotQ6_KQ8_KAvx512(n, (BlockQ6_K*)w, (BlockQ8_K*)a),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
