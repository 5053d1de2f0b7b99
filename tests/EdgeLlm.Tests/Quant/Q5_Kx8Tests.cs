using System.Runtime.InteropServices;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;
using EdgeLlm.Tests.Models;
using static EdgeLlm.Tests.Quant.Q4_Kx8Tests;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q5_K layout (<see cref="Q5_Kx8"/>): the packing round-trips, the AVX2 kernels equal
/// the scalar statement of the packed arithmetic bit for bit, decode rows equal prompt tiles (AVX2
/// and AVX-512) bit for bit, and all of them agree with the plain Q5_K dot product within float
/// rounding, exactly where every term is a small integer (which catches a lost fifth bit or an int16
/// overflow of the five-bit pair sums).
/// </summary>
public unsafe class Q5_Kx8Tests
{
    private readonly ITestOutputHelper _out;

    public Q5_Kx8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 21; // two whole groups and a plain tail of five rows

    /// <summary>|packed − plain reference| ≤ this × Σ_i (|d·scale·q·a| + |dmin·min·a|): two f32 orders of the same terms.</summary>
    private const double FloatOrderTolerance = 1e-5;

    [Theory]
    [InlineData(256)]
    [InlineData(768)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q5_K, n * Rows, SelfTest.Fill.Random, new Random(n));
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.Q5_K).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Q5_Kx8.Pack(p, q, Rows, n));
            Q5_Kx8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void Pack_RefusesNonFiniteScales(int field)
    {
        int n = 512;
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q5_K, n * 8, SelfTest.Fill.Random, new Random(3));
        int at = BlockQ5_K.Size * 5 + field; // block 5 (row 2, block 1): d or dmin
        plain[at] = 0x00;
        plain[at + 1] = 0x7C; // +inf
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
            Assert.False(Q5_Kx8.Pack(p, q, 8, n));
    }

    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("HugeScale")]
    [InlineData("TinyScale")]
    [InlineData("NegativeScale")]
    [InlineData("ZeroScale")]
    public void Kernels_EqualTheScalarStatement_AndTilesEqualRows(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q5_Kx8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the Q5_Kx8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 17);
        int pairs = 0, tiles = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 8 })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q5_K).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q5_K, n * Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int MaxActs = 9;
            long actStride = actBytes + 36;
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) Q8K(n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = Rows + 3;
            var tile = new float[yStride * MaxActs];
            var tile512 = new float[yStride * MaxActs];
            var rows = new float[Rows * MaxActs];
            var reference = new float[Rows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* yt = tile)
            fixed (float* yt5 = tile512)
            fixed (float* yr = rows)
            fixed (float* yref = reference)
            {
                Assert.True(Q5_Kx8.Pack(p, q, Rows, n));
                for (int k = 0; k < MaxActs; k++)
                {
                    byte* act = a + k * actStride;
                    Q5_Kx8.DotRows(n, q, rowBytes, Rows, act, yr + k * Rows);
                    Q5_Kx8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = yr[k * Rows + r];
                        Assert.True(SelfTest.SameFloat(yref[r], got), $"{fill} n={n} row {r} act {k}: rows {got:R} vs scalar {yref[r]:R}");
                        float plainDot = Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)(p + r * rowBytes), (BlockQ8_K*)act);
                        if (!float.IsFinite(plainDot)) continue;
                        double magnitude = Magnitude(n, p + r * rowBytes, act);
                        double err = Math.Abs((double)plainDot - got);
                        Assert.True(err <= FloatOrderTolerance * magnitude, $"{fill} n={n} row {r} act {k}: packed {got:R} vs plain {plainDot:R} (magnitude {magnitude:E3})");
                        if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                        pairs++;
                    }
                }
                // Every tile width, from a group boundary, both tiles: tile == rows bit for bit; the padding stays untouched.
                for (int nActs = 1; nActs <= MaxActs; nActs++)
                {
                    Array.Fill(tile, -7f);
                    Array.Fill(tile512, -7f);
                    Q5_Kx8.DotTileAvx2(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
                    Q5_Kx8.DotTileAvx512(n, q, rowBytes, Rows, a, actStride, nActs, yt5, yStride);
                    for (int k = 0; k < MaxActs; k++)
                    {
                        for (int r = 0; r < Rows; r++)
                        {
                            float t = yt[k * yStride + r], t5 = yt5[k * yStride + r];
                            if (k >= nActs)
                            {
                                Assert.Equal(-7f, t);
                                Assert.Equal(-7f, t5);
                                continue;
                            }
                            Assert.True(SelfTest.SameFloat(yr[k * Rows + r], t), $"{fill} n={n} nActs={nActs} row {r} act {k}: AVX2 tile {t:R} vs rows {yr[k * Rows + r]:R}");
                            Assert.True(SelfTest.SameFloat(yr[k * Rows + r], t5), $"{fill} n={n} nActs={nActs} row {r} act {k}: AVX-512 tile {t5:R} vs rows {yr[k * Rows + r]:R}");
                        }
                        for (int g = Rows; g < yStride; g++)
                        {
                            Assert.Equal(-7f, yt[k * yStride + g]);
                            Assert.Equal(-7f, yt5[k * yStride + g]);
                        }
                    }
                    tiles++;
                }
            }
        }
        _out.WriteLine($"{fill}: {pairs} finite (row, activation) pairs: AVX2 rows == scalar statement bit for bit; {tiles} tile widths (1..9 activations, AVX2 and AVX-512{(Q5_Kx8.IsAvx512Supported ? "" : " (AVX2 here)")}) == rows bit for bit; worst |packed - plain| / magnitude = {worst:E2} (limit {FloatOrderTolerance:E0})");
    }

    /// <summary>The self test's checks (what <c>edgellm selftest</c> runs) are listed and pass.</summary>
    [Fact]
    public void SelfTest_ChecksQ5_Kx8()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q5_Kx8 rows and tiles" && c.Supported == Q5_Kx8.IsSupported);
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q5_Kx8 rows and AVX-512 tiles" && c.Supported == Q5_Kx8.IsAvx512Supported);
        if (Q5_Kx8.IsSupported) Assert.Null(SelfTest.CheckQ5_Kx8(seed: 99));
        if (Q5_Kx8.IsAvx512Supported) Assert.Null(SelfTest.CheckQ5_Kx8Avx512(seed: 99));
    }

    /// <summary>
    /// With d = dmin = 1 and activation scale 1 every term is an integer, so the packed kernels must give
    /// the exact result. Activations of ±127 against all-31 values are the int16 worst case of a
    /// sub-block's pair sums (a kernel summing eight quant vectors in int16 overflows here).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kernels_ExactOnIntegerScales(bool extreme)
    {
        var rng = new Random(extreme ? 78 : 77);
        foreach (int blocks in new[] { 1, 3 })
        {
            int n = blocks * 256;
            const int nRows = 16, nActs = 4;
            long rowBytes = GgmlTypes.Info(GgmlType.Q5_K).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q5_K, n * nRows, SelfTest.Fill.Random, rng);
            for (int b = 0; b < nRows * blocks; b++)
            {
                var block = plain.AsSpan(b * BlockQ5_K.Size);
                MemoryMarshal.Write(block, BitConverter.HalfToUInt16Bits((Half)1));
                MemoryMarshal.Write(block[2..], BitConverter.HalfToUInt16Bits((Half)1));
                if (extreme)
                {
                    block.Slice(16, 32 + 128).Fill(0xFF); // every value 31
                    block.Slice(4, 8).Fill(1); // scales and mins 0..3 = 1 (KQuant.GetScaleMinK4's encoding) ...
                    block.Slice(12, 4).Fill(0x11); // ... and 4..7 = 1, so that the exact sum stays below 2^24
                }
            }
            var acts = new byte[actBytes * nActs];
            for (int k = 0; k < nActs; k++)
            {
                byte[] act = Q8K(n, SelfTest.Fill.Random, rng);
                for (int b = 0; b < blocks; b++)
                {
                    MemoryMarshal.Write(act.AsSpan(b * BlockQ8_K.Size), 1f);
                    for (int i = 0; i < 256; i++) act[b * BlockQ8_K.Size + 4 + i] = (byte)(sbyte)(extreme ? (k % 2 == 0 ? 127 : -127) : rng.Next(-3, 4));
                    FixBsums(act, b);
                }
                act.CopyTo(acts, k * actBytes);
            }
            var packed = new byte[plain.Length];
            var y = new float[nRows];
            var yt = new float[nRows * nActs];
            var deq = new float[n];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* py = y)
            fixed (float* pt = yt)
            fixed (float* pd = deq)
            {
                Assert.True(Q5_Kx8.Pack(p, q, nRows, n));
                Q5_Kx8.DotTile(n, q, rowBytes, nRows, a, actBytes, nActs, pt, nRows);
                for (int k = 0; k < nActs; k++)
                {
                    var act = (BlockQ8_K*)(a + k * actBytes);
                    Q5_Kx8.DotRows(n, q, rowBytes, nRows, (byte*)act, py);
                    for (int r = 0; r < nRows; r++)
                    {
                        Q5_K.DequantizeRowReference((BlockQ5_K*)(p + r * rowBytes), pd, n);
                        long exact = 0;
                        for (int i = 0; i < n; i++) exact += (long)deq[i] * act[i / 256].Qs[i % 256];
                        Assert.True(Math.Abs(exact) < 1 << 24);
                        Assert.Equal((float)exact, py[r]);
                        Assert.Equal((float)exact, pt[k * nRows + r]);
                    }
                }
            }
        }
    }

    [Fact]
    public void WeightPacking_HandsOutTheLayoutForQ5_K()
    {
        var fmt = WeightPacking.PackedFormat(GgmlType.Q5_K);
        string? setting = Environment.GetEnvironmentVariable("EDGELLM_REPACK");
        bool wanted = setting is null or "1" || setting.Split(',', StringSplitOptions.TrimEntries).Contains("q5_Kx8");
        if (!WeightPacking.Enabled || !Q5_Kx8.IsSupported || !wanted)
        {
            Assert.Null(fmt);
            _out.WriteLine("q5_Kx8 is off in this process (EDGELLM_REPACK or no AVX2+FMA): Q5_K stays plain");
            return;
        }
        Assert.Contains("q5_Kx8", WeightPacking.DefaultLayouts);
        Assert.IsType<Q5_Kx8Format>(fmt);
        Assert.Equal(8, fmt!.RowGroup);
        Assert.Equal("q5_Kx8", fmt.Layout);
        Assert.Equal(GgmlType.Q8_K, fmt.VecDotType);

        // One row goes through the plain kernels (get_rows hands plain rows from the mapping).
        int n = 512;
        byte[] w = SelfTest.MakeBlocks(GgmlType.Q5_K, n, SelfTest.Fill.Random, new Random(1));
        byte[] act = Q8K(n, SelfTest.Fill.Random, new Random(2));
        Assert.True(WeightFormat.TryGet(GgmlType.Q5_K, out var plainFmt));
        fixed (byte* pw = w)
        fixed (byte* pa = act)
            Assert.Equal(plainFmt.VecDot(n, pw, pa), fmt.VecDot(n, pw, pa));
    }

    /// <summary>
    /// llama.cpp's Q5_K_M file loads with its Q5_K matrices in q5_Kx8: a prompt's logits are as close to
    /// llama.cpp's as the plain layout's, token by token (decode rows) equals the batch (prompt
    /// tiles), and every repacked matrix's decode product equals the plain reference rows within float rounding.
    /// </summary>
    [Fact]
    public void Q5_K_M_Model_RunsRepacked_AndAgreesWithThePlainLayout()
    {
        var golden = GoldenCase.Load("syn-llama-q5_k_m", "p1");
        using var packed = Model.Load(SharedData.Model("syn-llama-q5_k_m"));
        using var plain = Model.Load(SharedData.Model("syn-llama-q5_k_m"), new ModelLoadOptions { RepackWeights = false });
        Assert.Empty(plain.RepackedLayouts);
        if (WeightPacking.PackedFormat(GgmlType.Q5_K) is null)
        {
            _out.WriteLine("repacking is off in this process: nothing to compare");
            return;
        }
        Assert.Contains("q5_Kx8", packed.RepackedLayouts);

        using var c1 = new InferenceContext(packed, contextLength: 128);
        float[] a = c1.Eval(golden.PromptIds, allLogits: true);
        using var c2 = new InferenceContext(plain, contextLength: 128);
        float[] b = c2.Eval(golden.PromptIds, allLogits: true);
        using var c3 = new InferenceContext(packed, contextLength: 128);
        int vocab = packed.Config.VocabSize;
        var steps = new float[a.Length];
        for (int i = 0; i < golden.PromptIds.Length; i++) c3.Eval(golden.PromptIds.AsSpan(i, 1)).CopyTo(steps, i * vocab);
        double stepFigure = GoldenCase.Figure(steps, a);
        double packedVsLlama = GoldenCase.Figure(a, golden.Logits), plainVsLlama = GoldenCase.Figure(b, golden.Logits);
        _out.WriteLine($"syn-llama-q5_k_m p1 ({string.Join(", ", packed.RepackedLayouts)}): repacked vs plain figure {GoldenCase.Figure(a, b):G4}; vs llama.cpp: repacked {packedVsLlama:G4}, plain {plainVsLlama:G4}; token by token vs batch {stepFigure:G4}");
        Assert.True(packedVsLlama <= 0.10, $"repacked vs llama.cpp: figure {packedVsLlama:G4}");
        Assert.True(packedVsLlama <= 1.5 * plainVsLlama + 0.01, $"repacked {packedVsLlama:G4} vs llama.cpp is far worse than plain {plainVsLlama:G4}");
        Assert.True(stepFigure <= 1e-4, $"token by token vs batch: figure {stepFigure:G4}");

        var matrices = packed.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down }).Append(packed.Output)
            .Where(w => w.IsRepacked && w.Type == GgmlType.Q5_K).ToArray();
        Assert.NotEmpty(matrices);
        var rng = new Random(12);
        double worst = 0;
        foreach (var w in matrices)
        {
            Assert.Equal("q5_Kx8", w.Format.Layout);
            var x = new float[w.Cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var act = new byte[ActivationQuantizer.RowBytes(GgmlType.Q8_K, w.Cols)];
            var y = new float[w.Rows];
            fixed (float* px = x)
            fixed (byte* pa = act)
            fixed (float* py = y)
            {
                ActivationQuantizer.QuantizeRow(GgmlType.Q8_K, px, pa, w.Cols);
                w.Format.VecDotRows(w.Cols, w.At(0), w.RowBytes, w.Rows, pa, py);
                for (int r = 0; r < w.Rows; r++)
                {
                    float plainDot = Q5_K.DotQ5_KQ8_KReference(w.Cols, (BlockQ5_K*)w.Row(r), (BlockQ8_K*)pa);
                    double magnitude = Magnitude(w.Cols, w.Row(r), pa);
                    double err = Math.Abs((double)plainDot - py[r]);
                    Assert.True(err <= FloatOrderTolerance * magnitude, $"{w.Name} row {r}: packed {py[r]:R} vs plain {plainDot:R}");
                    if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                }
            }
        }
        _out.WriteLine($"{matrices.Length} repacked Q5_K matrices: worst |packed - plain| / magnitude = {worst:E2}");
    }

    /// <summary>Σ_i (|d·scale·q·a| + |dmin·min·a|) in double over one Q5_K row (q the five-bit value).</summary>
    private static double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ5_K*)w;
        var y = (BlockQ8_K*)act;
        double sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            double d = QuantMath.Fp16ToFp32(x[i].D), dmin = QuantMath.Fp16ToFp32(x[i].DMin);
            for (int v = 0; v < 256; v++)
            {
                int j = v / 32;
                KQuant.GetScaleMinK4(j, x[i].Scales, out byte sc, out byte m);
                int c = v / 64, l = v % 32;
                int q = ((v % 64) < 32 ? x[i].Qs[32 * c + l] & 0xF : x[i].Qs[32 * c + l] >> 4) | (((x[i].Qh[l] >> j) & 1) << 4);
                double a = Math.Abs((double)y[i].D * y[i].Qs[v]);
                sum += (Math.Abs(d * sc * q) + Math.Abs(dmin * m)) * a;
            }
        }
        return sum;
    }
}
