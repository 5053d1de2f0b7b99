using System.Runtime.InteropServices;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;
using EdgeLlm.Tests.Models;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q4_K layout (<see cref="Q4_Kx8"/>): the packing round-trips, the AVX2 kernels
/// equal the scalar statement of the packed arithmetic bit for bit, decode rows equal prompt tiles
/// bit for bit for every tile width, and all of them agree with the plain Q4_K dot product within
/// float rounding (exactly where every term is a small integer).
/// </summary>
public unsafe class Q4_Kx8Tests
{
    private readonly ITestOutputHelper _out;

    public Q4_Kx8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 21; // two whole groups and a plain tail of five rows

    /// <summary>
    /// |packed − plain reference| ≤ this × Σ_i (|d·scale·q·a| + |dmin·min·a|): two f32 summation
    /// orders of the same terms (the scale and min parts are summed separately in both).
    /// </summary>
    private const double FloatOrderTolerance = 1e-5;

    [Theory]
    [InlineData(256)]
    [InlineData(768)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        var rng = new Random(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, n * Rows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.Q4_K).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Q4_Kx8.Pack(p, q, Rows, n));
            Q4_Kx8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    [Fact]
    public void Pack_KeepsEverySixBitScaleAndMin()
    {
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, 512 * 8, SelfTest.Fill.Random, new Random(5));
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        {
            Assert.True(Q4_Kx8.Pack(p, q, 8, 512));
            for (int r = 0; r < 8; r++)
                for (int ib = 0; ib < 2; ib++)
                {
                    var b = (BlockQ4_K*)(p + r * 2 * BlockQ4_K.Size) + ib;
                    byte* o = q + ib * Q4_Kx8.GroupBlockBytes;
                    for (int j = 0; j < 8; j++)
                    {
                        KQuant.GetScaleMinK4(j, b->Scales, out byte sc, out byte m);
                        Assert.Equal(sc, Q4_Kx8.SixBit(o, r, j));
                        Assert.Equal(m, Q4_Kx8.SixBit(o, r, 8 + j));
                    }
                }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void Pack_RefusesNonFiniteScales(int field)
    {
        int n = 512;
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, n * 8, SelfTest.Fill.Random, new Random(3));
        int at = BlockQ4_K.Size * 5 + field; // block 5 (row 2, block 1): d or dmin
        plain[at] = 0x00;
        plain[at + 1] = 0x7E; // NaN
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
            Assert.False(Q4_Kx8.Pack(p, q, 8, n));
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
        if (!Q4_Kx8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the Q4_Kx8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 11);
        int pairs = 0, tiles = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 8 })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_K).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, n * Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int MaxActs = 9;
            long actStride = actBytes + 36;
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) Q8K(n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = Rows + 3;
            var tile = new float[yStride * MaxActs];
            var rows = new float[Rows * MaxActs];
            var reference = new float[Rows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* yt = tile)
            fixed (float* yr = rows)
            fixed (float* yref = reference)
            {
                Assert.True(Q4_Kx8.Pack(p, q, Rows, n));
                for (int k = 0; k < MaxActs; k++)
                {
                    byte* act = a + k * actStride;
                    Q4_Kx8.DotRows(n, q, rowBytes, Rows, act, yr + k * Rows);
                    Q4_Kx8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = yr[k * Rows + r];
                        Assert.True(SelfTest.SameFloat(yref[r], got), $"{fill} n={n} row {r} act {k}: rows {got:R} vs scalar {yref[r]:R}");
                        float plainDot = Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)(p + r * rowBytes), (BlockQ8_K*)act);
                        if (!float.IsFinite(plainDot)) continue;
                        double magnitude = Magnitude(n, p + r * rowBytes, act);
                        double err = Math.Abs((double)plainDot - got);
                        Assert.True(err <= FloatOrderTolerance * magnitude, $"{fill} n={n} row {r} act {k}: packed {got:R} vs plain {plainDot:R} (magnitude {magnitude:E3})");
                        if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                        pairs++;
                    }
                }
                // Every tile width, from a group boundary: tile == rows bit for bit; the padding stays untouched.
                for (int nActs = 1; nActs <= MaxActs; nActs++)
                {
                    Array.Fill(tile, -7f);
                    Q4_Kx8.DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
                    for (int k = 0; k < MaxActs; k++)
                    {
                        for (int r = 0; r < Rows; r++)
                        {
                            float t = yt[k * yStride + r];
                            if (k >= nActs) Assert.Equal(-7f, t);
                            else Assert.True(SelfTest.SameFloat(yr[k * Rows + r], t), $"{fill} n={n} nActs={nActs} row {r} act {k}: tile {t:R} vs rows {yr[k * Rows + r]:R}");
                        }
                        for (int g = Rows; g < yStride; g++) Assert.Equal(-7f, yt[k * yStride + g]);
                    }
                    tiles++;
                }
                // A call for the second group only (rows 8..20) starts at a group boundary too.
                Q4_Kx8.DotRows(n, q + 8 * rowBytes, rowBytes, Rows - 8, a, yref);
                for (int r = 8; r < Rows; r++) Assert.True(SelfTest.SameFloat(yr[r], yref[r - 8]), $"{fill} n={n} row {r}: offset call differs");
            }
        }
        _out.WriteLine($"{fill}: {pairs} finite (row, activation) pairs: AVX2 rows == scalar statement bit for bit; {tiles} tiles (1..9 activations) == rows bit for bit; worst |packed - plain| / magnitude = {worst:E2} (limit {FloatOrderTolerance:E0})");
    }

    /// <summary>
    /// The AVX-512 prompt tile (two groups per zmm) equals the AVX2 tile bit for bit, called
    /// directly (whatever DotTile dispatches to): odd and even group counts (the odd group goes
    /// through the AVX2 kernel), with and without a plain tail, 1..11 activation rows (the ones past
    /// the last four too), several fills and super-block counts; the padding stays untouched.
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("NegativeScale")]
    public void Avx512Tile_EqualsAvx2Tile(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q4_Kx8.IsAvx512Supported)
        {
            _out.WriteLine($"SKIPPED: the AVX-512 tile needs AVX-512 F and BW (Avx512F {System.Runtime.Intrinsics.X86.Avx512F.IsSupported}, Avx512BW {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported})");
            return;
        }
        var rng = new Random((int)fill + 101);
        int tiles = 0;
        const int MaxActs = 11;
        foreach (int blocks in new[] { 1, 2, 3 })
        foreach (int nRows in new[] { 8, 16, 21, 24, 32, 45 })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_K).RowBytes(n);
            long actStride = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n) + 20;
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, n * nRows, fill, rng);
            var packed = new byte[plain.Length];
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) Q8K(n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 5;
            var t2 = new float[yStride * MaxActs];
            var t5 = new float[yStride * MaxActs];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* y2 = t2)
            fixed (float* y5 = t5)
            {
                Assert.True(Q4_Kx8.Pack(p, q, nRows, n));
                foreach (int nActs in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 11 })
                {
                    Array.Fill(t2, -7f);
                    Array.Fill(t5, -7f);
                    Q4_Kx8.DotTileAvx2(n, q, rowBytes, nRows, a, actStride, nActs, y2, yStride);
                    Q4_Kx8.DotTileAvx512(n, q, rowBytes, nRows, a, actStride, nActs, y5, yStride);
                    for (int i = 0; i < t2.Length; i++)
                    {
                        long k = i / yStride, r = i % yStride;
                        if (k >= nActs || r >= nRows) Assert.Equal(-7f, t5[i]);
                        else Assert.True(SelfTest.SameFloat(t2[i], t5[i]), $"{fill} n={n} rows={nRows} nActs={nActs} row {r} act {k}: avx512 {t5[i]:R} vs avx2 {t2[i]:R}");
                    }
                    tiles++;
                }
            }
        }
        _out.WriteLine($"{fill}: {tiles} AVX-512 tiles (rows 8..45, 1..11 activations, 1..3 super-blocks) == AVX2 tiles bit for bit");
    }

    /// <summary>The self test's check of the AVX-512 tile (what <c>edgellm selftest</c> runs) is listed and passes.</summary>
    [Fact]
    public void SelfTest_CheckQ4_Kx8Avx512_Passes()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q4_Kx8 rows and AVX-512 tiles" && c.Supported == Q4_Kx8.IsAvx512Supported);
        if (!Q4_Kx8.IsAvx512Supported)
        {
            _out.WriteLine("SKIPPED: the AVX-512 tile needs AVX-512 F and BW");
            return;
        }
        Assert.Null(SelfTest.CheckQ4_Kx8Avx512(seed: 1234));
    }

    /// <summary>
    /// With d = dmin = 1 and activation scale 1 every term is a small integer, so the packed kernels
    /// must give the exact result (a wrong lane, scale, min or nibble cannot hide in a tolerance).
    /// </summary>
    [Fact]
    public void Kernels_ExactOnIntegerScales()
    {
        var rng = new Random(77);
        foreach (int blocks in new[] { 1, 3 })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_K, n * 16, SelfTest.Fill.Random, rng);
            for (int b = 0; b < 16 * blocks; b++)
            {
                MemoryMarshal.Write(plain.AsSpan(b * BlockQ4_K.Size), BitConverter.HalfToUInt16Bits((Half)1));
                MemoryMarshal.Write(plain.AsSpan(b * BlockQ4_K.Size + 2), BitConverter.HalfToUInt16Bits((Half)1));
            }
            byte[] act = Q8K(n, SelfTest.Fill.Random, rng);
            for (int b = 0; b < blocks; b++)
            {
                MemoryMarshal.Write(act.AsSpan(b * BlockQ8_K.Size), 1f);
                for (int i = 0; i < 256; i++) act[b * BlockQ8_K.Size + 4 + i] = (byte)(sbyte)rng.Next(-3, 4);
                FixBsums(act, b);
            }
            var packed = new byte[plain.Length];
            var y = new float[16];
            var deq = new float[n];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = act)
            fixed (float* py = y)
            fixed (float* pd = deq)
            {
                Assert.True(Q4_Kx8.Pack(p, q, 16, n));
                Q4_Kx8.DotRows(n, q, rowBytes, 16, a, py);
                for (int r = 0; r < 16; r++)
                {
                    Q4_K.DequantizeRowReference((BlockQ4_K*)(p + r * rowBytes), pd, n);
                    long exact = 0;
                    for (int i = 0; i < n; i++) exact += (long)deq[i] * ((BlockQ8_K*)a)[i / 256].Qs[i % 256];
                    Assert.True(Math.Abs(exact) < 1 << 24);
                    Assert.Equal((float)exact, py[r]);
                }
            }
        }
    }

    [Fact]
    public void WeightPacking_HandsOutTheLayoutForQ4_K()
    {
        var fmt = WeightPacking.PackedFormat(GgmlType.Q4_K);
        string? setting = Environment.GetEnvironmentVariable("EDGELLM_REPACK");
        bool wanted = setting is null or "1" || setting.Split(',', StringSplitOptions.TrimEntries).Contains("q4_Kx8");
        if (!WeightPacking.Enabled || !Q4_Kx8.IsSupported || !wanted)
        {
            Assert.Null(fmt);
            _out.WriteLine("q4_Kx8 is off in this process (EDGELLM_REPACK or no AVX2+FMA): Q4_K stays plain");
            return;
        }
        Assert.Contains("q4_Kx8", WeightPacking.DefaultLayouts);
        Assert.IsType<Q4_Kx8Format>(fmt);
        Assert.Equal(8, fmt!.RowGroup);
        Assert.Equal("q4_Kx8", fmt.Layout);
        Assert.Equal(GgmlType.Q8_K, fmt.VecDotType);
        Assert.NotSame(fmt, WeightPacking.PackedFormat(GgmlType.Q6_K)); // Q6_K has its own layout (q6_Kx8) or none

        // One row goes through the plain kernels (get_rows hands plain rows from the mapping).
        int n = 512;
        byte[] w = SelfTest.MakeBlocks(GgmlType.Q4_K, n, SelfTest.Fill.Random, new Random(1));
        byte[] act = Q8K(n, SelfTest.Fill.Random, new Random(2));
        Assert.True(WeightFormat.TryGet(GgmlType.Q4_K, out var plainFmt));
        fixed (byte* pw = w)
        fixed (byte* pa = act)
            Assert.Equal(plainFmt.VecDot(n, pw, pa), fmt.VecDot(n, pw, pa));
    }

    /// <summary>
    /// A Q4_K_M model (llama.cpp's file) loads with its Q4_K matrices in q4_Kx8; a prompt's logits
    /// are as close to llama.cpp's as the plain layout's (the two differ by the activation rounding a
    /// last-bit change can flip, ~0.02: the matrix-level agreement is the next test), and token by
    /// token (decode rows) equals the batch (prompt tiles).
    /// </summary>
    [Fact]
    public void Q4_K_M_Model_RunsRepacked_AndAgreesWithThePlainLayout()
    {
        var golden = GoldenCase.Load("syn-llama-q4_k_m", "p1");
        using var packed = Model.Load(SharedData.Model("syn-llama-q4_k_m"));
        using var plain = Model.Load(SharedData.Model("syn-llama-q4_k_m"), new ModelLoadOptions { RepackWeights = false });
        Assert.Empty(plain.RepackedLayouts);
        if (WeightPacking.PackedFormat(GgmlType.Q4_K) is null)
        {
            _out.WriteLine("repacking is off in this process: nothing to compare");
            return;
        }
        Assert.Contains("q4_Kx8", packed.RepackedLayouts);
        Assert.True(packed.RepackedBytes > 0);

        using var c1 = new InferenceContext(packed, contextLength: 128);
        float[] a = c1.Eval(golden.PromptIds, allLogits: true);
        using var c2 = new InferenceContext(plain, contextLength: 128);
        float[] b = c2.Eval(golden.PromptIds, allLogits: true);
        double figure = GoldenCase.Figure(a, b);

        using var c3 = new InferenceContext(packed, contextLength: 128);
        int vocab = packed.Config.VocabSize;
        var steps = new float[a.Length];
        for (int i = 0; i < golden.PromptIds.Length; i++) c3.Eval(golden.PromptIds.AsSpan(i, 1)).CopyTo(steps, i * vocab);
        double stepFigure = GoldenCase.Figure(steps, a);
        double packedVsLlama = GoldenCase.Figure(a, golden.Logits), plainVsLlama = GoldenCase.Figure(b, golden.Logits);
        _out.WriteLine($"syn-llama-q4_k_m p1 ({string.Join(", ", packed.RepackedLayouts)}, {packed.RepackedBytes / 1024.0:F0} KiB repacked): repacked vs plain figure {figure:G4}; vs llama.cpp: repacked {packedVsLlama:G4}, plain {plainVsLlama:G4}; token by token vs batch {stepFigure:G4}");
        Assert.True(packedVsLlama <= 0.10, $"repacked vs llama.cpp: figure {packedVsLlama:G4}");
        Assert.True(packedVsLlama <= 1.5 * plainVsLlama + 0.01, $"repacked {packedVsLlama:G4} vs llama.cpp is far worse than plain {plainVsLlama:G4}");
        Assert.True(stepFigure <= 1e-4, $"token by token vs batch: figure {stepFigure:G4}");
    }

    /// <summary>
    /// Every repacked matrix of llama.cpp's Q4_K_M file: the packed decode product of the whole
    /// matrix equals the plain reference dot of each row (read from the mapping) within float
    /// rounding, against a real activation row (f32 quantized to Q8_K as the forward pass does).
    /// </summary>
    [Fact]
    public void Q4_K_M_Model_EveryRepackedMatrix_AgreesWithThePlainRows()
    {
        using var m = Model.Load(SharedData.Model("syn-llama-q4_k_m"));
        if (WeightPacking.PackedFormat(GgmlType.Q4_K) is null)
        {
            _out.WriteLine("repacking is off in this process: nothing to compare");
            return;
        }
        var matrices = m.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down }).Append(m.Output)
            .Where(w => w.IsRepacked && w.Type == GgmlType.Q4_K).ToArray();
        Assert.NotEmpty(matrices);
        var rng = new Random(12);
        double worst = 0;
        long rowsChecked = 0;
        foreach (var w in matrices)
        {
            Assert.Equal("q4_Kx8", w.Format.Layout);
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
                    float plainDot = Q4_K.DotQ4_KQ8_KReference(w.Cols, (BlockQ4_K*)w.Row(r), (BlockQ8_K*)pa);
                    double magnitude = Magnitude(w.Cols, w.Row(r), pa);
                    double err = Math.Abs((double)plainDot - py[r]);
                    Assert.True(err <= FloatOrderTolerance * magnitude, $"{w.Name} row {r}: packed {py[r]:R} vs plain {plainDot:R}");
                    if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                    rowsChecked++;
                }
            }
        }
        _out.WriteLine($"{matrices.Length} repacked Q4_K matrices, {rowsChecked} rows: worst |packed - plain| / magnitude = {worst:E2}");
    }

    /// <summary>Q8_K activation blocks from the self-test fills, with bsums that match qs (as every real Q8_K row has).</summary>
    internal static byte[] Q8K(int n, SelfTest.Fill fill, Random rng)
    {
        byte[] a = SelfTest.MakeBlocks(GgmlType.Q8_K, n, fill, rng);
        for (int b = 0; b < n / 256; b++) FixBsums(a, b);
        return a;
    }

    internal static void FixBsums(byte[] a, int block)
    {
        int o = block * BlockQ8_K.Size;
        for (int g = 0; g < 16; g++)
        {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += (sbyte)a[o + 4 + 16 * g + k];
            MemoryMarshal.Write(a.AsSpan(o + 260 + 2 * g), (short)sum);
        }
    }

    /// <summary>Σ_i (|d·scale·q·a| + |dmin·min·a|) in double over one row.</summary>
    private static double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ4_K*)w;
        var y = (BlockQ8_K*)act;
        double sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            double d = (double)QuantMath.Fp16ToFp32(x[i].D), dmin = QuantMath.Fp16ToFp32(x[i].DMin);
            for (int v = 0; v < 256; v++)
            {
                int j = v / 32;
                KQuant.GetScaleMinK4(j, x[i].Scales, out byte sc, out byte m);
                int c = v / 64, l = v % 32;
                int q = (v % 64) < 32 ? x[i].Qs[32 * c + l] & 0xF : x[i].Qs[32 * c + l] >> 4;
                double a = Math.Abs((double)y[i].D * y[i].Qs[v]);
                sum += (Math.Abs(d * sc * q) + Math.Abs(dmin * m)) * a;
            }
        }
        return sum;
    }
}
