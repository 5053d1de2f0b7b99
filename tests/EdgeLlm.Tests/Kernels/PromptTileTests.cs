using System.Diagnostics;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The prompt-processing register tiles (AVX2+FMA and AVX-512) of Q4_0 and Q8_0 at model-like
/// shapes: every (row, activation) pair equals the decode kernel VecDot bit for bit, whatever
/// the tiling of rows and activations; and their speed, side by side.
/// </summary>
public unsafe class PromptTileTests
{
    private delegate void TileKernel(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride);

    private readonly ITestOutputHelper _out;

    public PromptTileTests(ITestOutputHelper output) => _out = output;

    private static (string Name, TileKernel Kernel)[] Kernels(GgmlType type)
    {
        var list = new List<(string, TileKernel)>();
        if (type == GgmlType.Q4_0)
        {
            if (Q4_0.UseAvx2Fma) list.Add(("avx2-fma", Q4_0.DotTileAvx2Fma));
            if (Q4_0.UseAvx512Tile) list.Add(("avx512-fma", Q4_0.DotTileAvx512Fma));
        }
        else
        {
            if (Q8_0.UseAvx2Fma) list.Add(("avx2-fma", Q8_0.DotTileAvx2Fma));
            if (Q8_0.UseAvx512Tile) list.Add(("avx512-fma", Q8_0.DotTileAvx512Fma));
        }
        return list.ToArray();
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void Tiles_EqualVecDot_AtModelShapes(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var kernels = Kernels(type);
        if (kernels.Length == 0)
        {
            _out.WriteLine($"no tile kernel for this CPU ({CpuFeatures.KernelPath})");
            return;
        }
        var rng = new Random(7);
        int pairs = 0;
        foreach (int blocks in new[] { 63, 64, 176 })
        foreach (int nActs in new[] { 1, 7, 8, 9, 17, 33 })
        foreach (var fill in new[] { SelfTest.Fill.Random, SelfTest.Fill.AllMin, SelfTest.Fill.AllMax })
        {
            int n = blocks * 32, nRows = 7;
            long rowBytes = GgmlTypes.Info(type).RowBytes(n);
            long actStride = GgmlTypes.Info(fmt.VecDotType).RowBytes(n) + 2; // unaligned, odd stride
            byte[] w = SelfTest.MakeBlocks(type, n * nRows, fill, rng);
            byte[] acts = new byte[actStride * nActs];
            for (int k = 0; k < nActs; k++)
                SelfTest.MakeBlocks(fmt.VecDotType, n, k % 3 == 0 ? SelfTest.Fill.AllMin : fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 1;
            fixed (byte* pw = w)
            fixed (byte* pa = acts)
            {
                var expect = new float[nActs, nRows];
                for (int k = 0; k < nActs; k++)
                for (int r = 0; r < nRows; r++)
                    expect[k, r] = fmt.VecDot(n, pw + r * rowBytes, pa + k * actStride);
                foreach (var (name, kernel) in kernels)
                {
                    var y = new float[yStride * nActs];
                    fixed (float* py = y) kernel(n, pw, rowBytes, nRows, pa, actStride, nActs, py, yStride);
                    for (int k = 0; k < nActs; k++)
                    {
                        for (int r = 0; r < nRows; r++)
                        {
                            Assert.True(SelfTest.SameFloat(expect[k, r], y[k * yStride + r]),
                                $"{type} {name} {fill} n={n} acts={nActs} row {r} act {k}: tile {y[k * yStride + r]:R} vs VecDot {expect[k, r]:R}");
                            pairs++;
                        }
                        Assert.Equal(0f, y[k * yStride + nRows]); // the stride gap is untouched
                    }
                }
            }
        }
        _out.WriteLine($"{type}: {pairs} (kernel, row, activation) results bit-identical to VecDot; kernels {string.Join(", ", kernels.Select(k => k.Name))}");
    }

    /// <summary>
    /// The AVX-512 tiles reuse their packed activations when called again with the same bytes;
    /// activations rewritten in place (same address, as a forward pass reuses its scratch) must
    /// be repacked, and a slice of rows must give the rows' results of the whole.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void Tiles_RepackWhenActivationsChangeInPlace(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        const int n = 256, nRows = 6, nActs = 11;
        var rng = new Random(11);
        long rowBytes = GgmlTypes.Info(type).RowBytes(n);
        long actBytes = GgmlTypes.Info(fmt.VecDotType).RowBytes(n);
        byte[] w = SelfTest.MakeBlocks(type, n * nRows, SelfTest.Fill.Random, rng);
        byte[] acts = SelfTest.MakeBlocks(fmt.VecDotType, n * nActs, SelfTest.Fill.Random, rng);
        var y = new float[nRows * nActs];
        fixed (byte* pw = w)
        fixed (byte* pa = acts)
        fixed (float* py = y)
        {
            for (int round = 0; round < 4; round++)
            {
                // rows in two slices, as a forward pass hands them out: the second call hits the cache
                fmt.VecDotTile(n, pw, rowBytes, 4, pa, actBytes, nActs, py, nRows);
                fmt.VecDotTile(n, pw + 4 * rowBytes, rowBytes, nRows - 4, pa, actBytes, nActs, py + 4, nRows);
                for (int k = 0; k < nActs; k++)
                for (int r = 0; r < nRows; r++)
                    Assert.True(SelfTest.SameFloat(fmt.VecDot(n, pw + r * rowBytes, pa + k * actBytes), y[k * nRows + r]), $"round {round} row {r} act {k}");
                // change one quant of one activation in place (round 1) or everything (later rounds)
                if (round == 0) acts[5 * actBytes + actBytes - 1] ^= 0x5A;
                else SelfTest.MakeBlocks(fmt.VecDotType, n * nActs, SelfTest.Fill.Random, rng).CopyTo(acts, 0);
            }
        }
    }

    /// <summary>
    /// Throughput of each tile kernel on one TinyLlama-shaped product (256 rows × 2048 columns ×
    /// 128 activations), runs interleaved so that load from other processes hits all alike;
    /// reports the best of several runs in multiply-adds per second. Only asserts that each ran.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void Tiles_Throughput(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var kernels = Kernels(type);
        const int n = 2048, nRows = 256, nActs = 128;
        var rng = new Random(3);
        long rowBytes = GgmlTypes.Info(type).RowBytes(n);
        long actStride = GgmlTypes.Info(fmt.VecDotType).RowBytes(n);
        byte[] w = SelfTest.MakeBlocks(type, n * nRows, SelfTest.Fill.Random, rng);
        byte[] acts = SelfTest.MakeBlocks(fmt.VecDotType, n * nActs, SelfTest.Fill.Random, rng);
        var y = new float[nRows * nActs];
        var best = new double[kernels.Length];
        Array.Fill(best, double.MaxValue);
        fixed (byte* pw = w)
        fixed (byte* pa = acts)
        fixed (float* py = y)
        {
            for (int rep = 0; rep < 6; rep++)
            for (int k = 0; k < kernels.Length; k++)
            {
                var sw = Stopwatch.StartNew();
                kernels[k].Kernel(n, pw, rowBytes, nRows, pa, actStride, nActs, py, nRows);
                best[k] = Math.Min(best[k], sw.Elapsed.TotalSeconds);
            }
        }
        for (int k = 0; k < kernels.Length; k++)
            _out.WriteLine($"{type} {kernels[k].Name}: {(double)n * nRows * nActs / best[k] / 1e9:F1} GMAC/s (best of 6, {best[k] * 1e3:F2} ms)");
        Assert.All(best, b => Assert.True(b < double.MaxValue));
    }
}

/// <summary>
/// Throughput of the repacked layouts' prompt tiles next to the plain tile of the same type, on a
/// TinyLlama-shaped product (256 rows × 2048 columns × 128 activations), runs interleaved; reports
/// multiply-adds per second. Only asserts that the two agree to the layouts' tolerance.
/// </summary>
public unsafe class PackedTileThroughputTests
{
    private readonly ITestOutputHelper _out;

    public PackedTileThroughputTests(ITestOutputHelper output) => _out = output;

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q8_0)]
    public void PackedTiles_Throughput(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var plain));
        WeightFormat? packed = type switch
        {
            GgmlType.Q4_0 when Q4_0x8.IsSupported => new Q4_0x8Format(),
            GgmlType.Q4_K when Q4_Kx8.IsSupported => new Q4_Kx8Format(),
            GgmlType.Q6_K when Q6_Kx8.IsSupported => new Q6_Kx8Format(),
            GgmlType.Q8_0 when Q8_0x8.IsSupported => new Q8_0x8Format(),
            _ => null,
        };
        if (packed is null)
        {
            _out.WriteLine($"no repacked layout for {type} on this CPU ({CpuFeatures.KernelPath})");
            return;
        }
        const int n = 2048, nRows = 256, nActs = 128;
        var rng = new Random(5);
        long rowBytes = GgmlTypes.Info(type).RowBytes(n);
        long actStride = GgmlTypes.Info(plain.VecDotType).RowBytes(n);
        byte[] w = SelfTest.MakeBlocks(type, n * nRows, SelfTest.Fill.Random, rng);
        byte[] wp = new byte[w.Length];
        if (type == GgmlType.Q8_0)
            for (int i = 0; i < w.Length; i++)
                if (i % 34 >= 2 && w[i] == 0x80) w[i] = 0x81; // q8_0x8 holds quants in [-127, 127], as ggml's quantizer writes them
        // Activations quantized from floats, so that Q8_K's block sums agree with its quants (the K layouts read them).
        byte[] acts = new byte[actStride * nActs];
        var x = new float[n];
        fixed (byte* pa = acts)
        fixed (float* px = x)
            for (int a = 0; a < nActs; a++)
            {
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                ActivationQuantizer.QuantizeRow(plain.VecDotType, px, pa + a * actStride, n);
            }
        var y0 = new float[nRows * nActs];
        var y1 = new float[nRows * nActs];
        // Q6_K on AVX-512: the layout's AVX2 and AVX-512 tiles timed side by side too (the dispatching tile is one of them).
        bool q6Both = type == GgmlType.Q6_K && Q6_Kx8.IsAvx512Supported;
        var y2 = new float[nRows * nActs];
        var y3 = new float[nRows * nActs];
        double b0 = double.MaxValue, b1 = double.MaxValue, b2 = double.MaxValue, b3 = double.MaxValue, bAvx2 = double.MaxValue;
        fixed (byte* pw = w)
        fixed (byte* pp = wp)
        fixed (byte* pa = acts)
        fixed (float* py0 = y0)
        fixed (float* py1 = y1)
        fixed (float* py2 = y2)
        fixed (float* py3 = y3)
        {
            bool ok = type switch
            {
                GgmlType.Q4_0 => Q4_0x8.Pack(pw, pp, nRows, n),
                GgmlType.Q4_K => Q4_Kx8.Pack(pw, pp, nRows, n),
                GgmlType.Q8_0 => Q8_0x8.Pack(pw, pp, nRows, n),
                _ => Q6_Kx8.Pack(pw, pp, nRows, n),
            };
            Assert.True(ok);
            for (int rep = 0; rep < 6; rep++)
            {
                var sw = Stopwatch.StartNew();
                plain.VecDotTile(n, pw, rowBytes, nRows, pa, actStride, nActs, py0, nRows);
                b0 = Math.Min(b0, sw.Elapsed.TotalSeconds);
                sw.Restart();
                packed.VecDotTile(n, pp, rowBytes, nRows, pa, actStride, nActs, py1, nRows);
                b1 = Math.Min(b1, sw.Elapsed.TotalSeconds);
                if (type == GgmlType.Q4_0)
                {
                    sw.Restart();
                    Q4_0x8.DotTile(n, pp, rowBytes, nRows, pa, actStride, nActs, py1, nRows, avx512: false);
                    bAvx2 = Math.Min(bAvx2, sw.Elapsed.TotalSeconds);
                }
                if (!q6Both) continue;
                sw.Restart();
                Q6_Kx8.DotTileAvx2(n, pp, rowBytes, nRows, pa, actStride, nActs, py2, nRows);
                b2 = Math.Min(b2, sw.Elapsed.TotalSeconds);
                sw.Restart();
                Q6_Kx8.DotTileAvx512(n, pp, rowBytes, nRows, pa, actStride, nActs, py3, nRows);
                b3 = Math.Min(b3, sw.Elapsed.TotalSeconds);
            }
        }
        double macs = (double)n * nRows * nActs;
        _out.WriteLine($"{type} plain tile: {macs / b0 / 1e9:F1} GMAC/s; {packed.Layout} tile: {macs / b1 / 1e9:F1} GMAC/s (best of 6, {CpuFeatures.KernelPath})");
        if (bAvx2 < double.MaxValue) _out.WriteLine($"{type} {packed.Layout} tile with AVX2 only: {macs / bAvx2 / 1e9:F1} GMAC/s");
        if (q6Both)
        {
            _out.WriteLine($"{type} {packed.Layout} AVX2 tile: {macs / b2 / 1e9:F1} GMAC/s; AVX-512 tile: {macs / b3 / 1e9:F1} GMAC/s (best of 6, interleaved)");
            for (int i = 0; i < y2.Length; i++)
                Assert.True(SelfTest.SameFloat(y2[i], y3[i]) && SelfTest.SameFloat(y2[i], y1[i]), $"result {i}: AVX2 {y2[i]:R} AVX-512 {y3[i]:R} dispatch {y1[i]:R}");
        }
        if (type == GgmlType.Q4_K) CompareQ4_KxTiles(n, nRows, nActs, wp, rowBytes, acts, actStride);
        // The layouts sum in another float order than the plain kernels: compare against the largest result.
        float scale = y0.Max(MathF.Abs);
        for (int i = 0; i < y0.Length; i++)
            Assert.True(Math.Abs(y0[i] - y1[i]) <= 1e-5f * scale, $"result {i}: plain {y0[i]} packed {y1[i]} (largest |y| {scale})");
    }

    /// <summary>The q4_Kx8 AVX2 tile and AVX-512 tile, timed interleaved on the same packed matrix: their GMAC/s and bit-for-bit equality.</summary>
    private void CompareQ4_KxTiles(int n, int nRows, int nActs, byte[] wp, long rowBytes, byte[] acts, long actStride)
    {
        if (!Q4_Kx8.IsAvx512Supported)
        {
            _out.WriteLine("q4_Kx8 AVX-512 tile: not on this CPU (needs AVX-512 F and BW)");
            return;
        }
        var y2 = new float[nRows * nActs];
        var y5 = new float[nRows * nActs];
        double b2 = double.MaxValue, b5 = double.MaxValue;
        fixed (byte* pp = wp)
        fixed (byte* pa = acts)
        fixed (float* py2 = y2)
        fixed (float* py5 = y5)
            for (int rep = 0; rep < 20; rep++)
            {
                var sw = Stopwatch.StartNew();
                Q4_Kx8.DotTileAvx2(n, pp, rowBytes, nRows, pa, actStride, nActs, py2, nRows);
                b2 = Math.Min(b2, sw.Elapsed.TotalSeconds);
                sw.Restart();
                Q4_Kx8.DotTileAvx512(n, pp, rowBytes, nRows, pa, actStride, nActs, py5, nRows);
                b5 = Math.Min(b5, sw.Elapsed.TotalSeconds);
            }
        double macs = (double)n * nRows * nActs;
        _out.WriteLine($"q4_Kx8 AVX2 tile: {macs / b2 / 1e9:F1} GMAC/s; q4_Kx8 AVX-512 tile: {macs / b5 / 1e9:F1} GMAC/s ({b2 / b5:F2}x; best of 20, interleaved)");
        for (int i = 0; i < y2.Length; i++)
            Assert.True(SelfTest.SameFloat(y2[i], y5[i]), $"result {i}: avx2 {y2[i]:R} avx512 {y5[i]:R}");
    }
}
