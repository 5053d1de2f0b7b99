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
/// The repacked Q6_K layout (<see cref="Q6_Kx8"/>): the packing round-trips and keeps every quant
/// and scale, the AVX2 kernels equal the scalar statement of the packed arithmetic bit for bit,
/// decode rows equal prompt tiles bit for bit for every tile width, and all of them agree with the
/// plain Q6_K dot product within float rounding (exactly where every term is a small integer);
/// whole models with Q6_K matrices stay as close to llama.cpp's logits as the plain layout.
/// </summary>
public unsafe class Q6_Kx8Tests
{
    private readonly ITestOutputHelper _out;

    public Q6_Kx8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 21; // two whole groups and a plain tail of five rows

    /// <summary>
    /// |packed − plain reference| ≤ this × Σ_i |d·scale·(q − 32)·a|: two f32 summation orders of the
    /// same terms (a few roundings of 2^-24 per super-block; measured worst ~1e-7, printed).
    /// </summary>
    private const double FloatOrderTolerance = 1e-6;

    [Theory]
    [InlineData(256)]
    [InlineData(768)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        var rng = new Random(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * Rows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.Q6_K).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Q6_Kx8.Pack(p, q, Rows, n));
            Q6_Kx8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    /// <summary>Every 6-bit quant and int8 scale of every row is where <see cref="Q6_Kx8.Quant"/> and <see cref="Q6_Kx8.Scale"/> read it.</summary>
    [Fact]
    public void Pack_KeepsEveryQuantAndScale()
    {
        const int n = 512;
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * 8, SelfTest.Fill.Random, new Random(5));
        var packed = new byte[plain.Length];
        var deq = new float[n];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (float* pd = deq)
        {
            Assert.True(Q6_Kx8.Pack(p, q, 8, n));
            for (int r = 0; r < 8; r++)
            {
                Q6_K.DequantizeRowReference((BlockQ6_K*)(p + r * 2 * BlockQ6_K.Size), pd, n);
                for (int ib = 0; ib < 2; ib++)
                {
                    var b = (BlockQ6_K*)(p + r * 2 * BlockQ6_K.Size) + ib;
                    byte* o = q + ib * Q6_Kx8.GroupBlockBytes;
                    Assert.Equal(b->D, ((ushort*)o)[r]);
                    float d = QuantMath.Fp16ToFp32(b->D);
                    for (int j = 0; j < 16; j++) Assert.Equal(b->Scales[j], Q6_Kx8.Scale(o, r, j));
                    for (int v = 0; v < 256; v++)
                    {
                        Assert.Equal(PlainQuant(b, v), Q6_Kx8.Quant(o, r, v));
                        Assert.Equal(deq[256 * ib + v], d * b->Scales[v / 16] * (Q6_Kx8.Quant(o, r, v) - 32));
                    }
                }
            }
        }
    }

    [Fact]
    public void Pack_RefusesNonFiniteScales()
    {
        const int n = 512;
        foreach (ushort bits in new ushort[] { 0x7E00, 0x7C00, 0xFC00 }) // NaN, +inf, -inf
        {
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * 8, SelfTest.Fill.Random, new Random(3));
            int at = BlockQ6_K.Size * 5 + 208; // block 5 (row 2, block 1): d
            MemoryMarshal.Write(plain.AsSpan(at), bits);
            var packed = new byte[plain.Length];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
                Assert.False(Q6_Kx8.Pack(p, q, 8, n));
        }
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
        if (!Q6_Kx8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the Q6_Kx8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 17);
        int pairs = 0, tiles = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 8 })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q6_K).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * Rows, fill, rng);
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
                Assert.True(Q6_Kx8.Pack(p, q, Rows, n));
                for (int k = 0; k < MaxActs; k++)
                {
                    byte* act = a + k * actStride;
                    Q6_Kx8.DotRows(n, q, rowBytes, Rows, act, yr + k * Rows);
                    Q6_Kx8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = yr[k * Rows + r];
                        Assert.True(SelfTest.SameFloat(yref[r], got), $"{fill} n={n} row {r} act {k}: rows {got:R} vs scalar {yref[r]:R}");
                        float plainDot = Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)(p + r * rowBytes), (BlockQ8_K*)act);
                        if (!float.IsFinite(plainDot) || !float.IsFinite(got)) continue;
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
                    Q6_Kx8.DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
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
                Q6_Kx8.DotRows(n, q + 8 * rowBytes, rowBytes, Rows - 8, a, yref);
                for (int r = 8; r < Rows; r++) Assert.True(SelfTest.SameFloat(yr[r], yref[r - 8]), $"{fill} n={n} row {r}: offset call differs");
            }
        }
        _out.WriteLine($"{fill}: {pairs} finite (row, activation) pairs: AVX2 rows == scalar statement bit for bit; {tiles} tiles (1..9 activations) == rows bit for bit; worst |packed - plain| / magnitude = {worst:E2} (limit {FloatOrderTolerance:E0})");
    }

    /// <summary>
    /// The AVX-512 prompt tile (two groups per vector, eight and four activation rows per pass, an
    /// odd group, the plain tail and a last single activation through the AVX2 code) equals the AVX2
    /// tile bit for bit: every fill, odd and even group counts, with and without a plain tail, 1..19
    /// activation rows, Q8_K rows whose bsums are the sums of their qs and (Random fill) rows whose
    /// bsums are not (the int32 sums wrap the same way); the padding of y stays untouched.
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("HugeScale")]
    [InlineData("TinyScale")]
    [InlineData("NegativeScale")]
    [InlineData("ZeroScale")]
    public void Avx512Tile_EqualsAvx2Tile(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q6_Kx8.IsAvx512Supported)
        {
            _out.WriteLine($"SKIPPED: the AVX-512 tile needs AVX2, FMA, AVX-512F and AVX-512BW (this CPU: {CpuFeatures.KernelPath})");
            return;
        }
        var rng = new Random((int)fill + 101);
        const int MaxActs = 19;
        int calls = 0;
        long compared = 0;
        foreach (int blocks in new[] { 1, 2, 3 })
        foreach (int nRows in new[] { 8, 13, 16, 21, 24, 32, 40, 45, 64 })
        foreach (bool consistentBsums in fill == SelfTest.Fill.Random ? new[] { true, false } : new[] { true })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q6_K).RowBytes(n);
            long actStride = GgmlTypes.Info(GgmlType.Q8_K).RowBytes(n) + 20;
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * nRows, fill, rng);
            var packed = new byte[plain.Length];
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++)
                (consistentBsums ? Q8K(n, fill, rng) : ScrambleBsums(SelfTest.MakeBlocks(GgmlType.Q8_K, n, fill, rng), rng)).CopyTo(acts, k * actStride);
            long yStride = nRows + 5;
            var t2 = new float[yStride * MaxActs];
            var t5 = new float[yStride * MaxActs];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* y2 = t2)
            fixed (float* y5 = t5)
            {
                if (!Q6_Kx8.Pack(p, q, nRows, n)) continue; // a non-finite d: the matrix stays plain
                foreach (int nActs in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 16, 17, MaxActs })
                {
                    Array.Fill(t2, -7f);
                    Array.Fill(t5, -7f);
                    Q6_Kx8.DotTileAvx2(n, q, rowBytes, nRows, a, actStride, nActs, y2, yStride);
                    Q6_Kx8.DotTileAvx512(n, q, rowBytes, nRows, a, actStride, nActs, y5, yStride);
                    for (int i = 0; i < t2.Length; i++)
                    {
                        bool written = i / yStride < nActs && i % yStride < nRows;
                        if (!written) Assert.True(t5[i] == -7f, $"{fill} n={n} rows={nRows} nActs={nActs}: AVX-512 wrote padding at {i}");
                        else Assert.True(SelfTest.SameFloat(t2[i], t5[i]), $"{fill} n={n} rows={nRows} nActs={nActs} bsums {(consistentBsums ? "consistent" : "random")} row {i % yStride} act {i / yStride}: AVX-512 {t5[i]:R} vs AVX2 {t2[i]:R}");
                    }
                    compared += (long)nRows * nActs;
                    calls++;
                }
            }
        }
        _out.WriteLine($"{fill}: {calls} tile calls, {compared} (row, activation) results: AVX-512 tile == AVX2 tile bit for bit");
    }

    /// <summary>
    /// With d = 1 and activation scale 1 every term is a small integer, so the packed kernels must
    /// give the exact result (a wrong lane, scale, nibble or high-bit pair cannot hide in a tolerance);
    /// the extreme activation −128 against q = 0 and 63 checks that no int16 sum saturates.
    /// </summary>
    [Fact]
    public void Kernels_ExactOnIntegerScales()
    {
        var rng = new Random(77);
        foreach (int blocks in new[] { 1, 3 })
        foreach (bool extreme in new[] { false, true })
        {
            int n = blocks * 256;
            long rowBytes = GgmlTypes.Info(GgmlType.Q6_K).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q6_K, n * 16, SelfTest.Fill.Random, rng);
            for (int b = 0; b < 16 * blocks; b++)
            {
                MemoryMarshal.Write(plain.AsSpan(b * BlockQ6_K.Size + 208), BitConverter.HalfToUInt16Bits((Half)1));
                for (int j = 0; j < 16; j++) plain[b * BlockQ6_K.Size + 192 + j] = (byte)(sbyte)rng.Next(-4, 5);
                if (extreme && b % 3 != 2)
                    plain.AsSpan(b * BlockQ6_K.Size, 192).Fill(b % 3 == 0 ? (byte)0x00 : (byte)0xFF); // q = 0 (−32) or 63 (+31)
            }
            byte[] act = Q8K(n, SelfTest.Fill.Random, rng);
            for (int b = 0; b < blocks; b++)
            {
                MemoryMarshal.Write(act.AsSpan(b * BlockQ8_K.Size), 1f);
                for (int i = 0; i < 256; i++) act[b * BlockQ8_K.Size + 4 + i] = extreme ? (byte)0x80 : (byte)(sbyte)rng.Next(-3, 4);
                FixBsums(act, b);
            }
            var packed = new byte[plain.Length];
            var y = new float[16];
            var tile = new float[16 * 4];
            var deq = new float[n];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = act)
            fixed (float* py = y)
            fixed (float* pt = tile)
            fixed (float* pd = deq)
            {
                Assert.True(Q6_Kx8.Pack(p, q, 16, n));
                Q6_Kx8.DotRows(n, q, rowBytes, 16, a, py);
                Q6_Kx8.DotTile(n, q, rowBytes, 16, a, 0, 4, pt, 16); // the same activation four times
                for (int r = 0; r < 16; r++)
                {
                    Q6_K.DequantizeRowReference((BlockQ6_K*)(p + r * rowBytes), pd, n);
                    long exact = 0;
                    for (int i = 0; i < n; i++) exact += (long)deq[i] * ((BlockQ8_K*)a)[i / 256].Qs[i % 256];
                    Assert.True(Math.Abs(exact) < 1 << 24);
                    Assert.Equal((float)exact, py[r]);
                    for (int k = 0; k < 4; k++) Assert.Equal((float)exact, pt[16 * k + r]);
                }
            }
        }
    }

    [Fact]
    public void WeightPacking_HandsOutTheLayoutForQ6_K()
    {
        var fmt = WeightPacking.PackedFormat(GgmlType.Q6_K);
        string? setting = Environment.GetEnvironmentVariable("EDGELLM_REPACK");
        bool wanted = setting is null or "1" ? WeightPacking.DefaultLayouts.Contains("q6_Kx8") : setting.Split(',', StringSplitOptions.TrimEntries).Contains("q6_Kx8");
        if (!WeightPacking.Enabled || !Q6_Kx8.IsSupported || !wanted)
        {
            Assert.Null(fmt);
            _out.WriteLine("q6_Kx8 is off in this process (EDGELLM_REPACK, the default list or no AVX2+FMA): Q6_K stays plain");
            return;
        }
        Assert.IsType<Q6_Kx8Format>(fmt);
        Assert.Equal(8, fmt!.RowGroup);
        Assert.Equal("q6_Kx8", fmt.Layout);
        Assert.Equal(GgmlType.Q8_K, fmt.VecDotType);

        // One row goes through the plain kernels (get_rows hands plain rows from the mapping).
        int n = 512;
        byte[] w = SelfTest.MakeBlocks(GgmlType.Q6_K, n, SelfTest.Fill.Random, new Random(1));
        byte[] act = Q8K(n, SelfTest.Fill.Random, new Random(2));
        Assert.True(WeightFormat.TryGet(GgmlType.Q6_K, out var plainFmt));
        fixed (byte* pw = w)
        fixed (byte* pa = act)
            Assert.Equal(plainFmt.VecDot(n, pw, pa), fmt.VecDot(n, pw, pa));
    }

    /// <summary>The self test's check of the layout (what <c>edgellm selftest</c> runs) passes.</summary>
    [Fact]
    public void SelfTest_CheckQ6_Kx8_Passes()
    {
        if (!Q6_Kx8.IsSupported)
        {
            _out.WriteLine("SKIPPED: the Q6_Kx8 kernels need AVX2 and FMA");
            return;
        }
        Assert.Null(SelfTest.CheckQ6_Kx8(seed: 1234));
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q6_Kx8 rows and tiles");
    }

    /// <summary>The self test's check of the AVX-512 tile passes, and is listed where the CPU has it.</summary>
    [Fact]
    public void SelfTest_CheckQ6_Kx8Avx512_Passes()
    {
        var check = Assert.Single(SelfTest.Checks(), c => c.Name == "repacked q6_Kx8 avx-512 tile");
        Assert.Equal(Q6_Kx8.IsAvx512Supported, check.Supported);
        if (!Q6_Kx8.IsAvx512Supported)
        {
            _out.WriteLine($"SKIPPED: the AVX-512 tile needs AVX-512F and AVX-512BW (this CPU: {CpuFeatures.KernelPath})");
            return;
        }
        Assert.Null(SelfTest.CheckQ6_Kx8Avx512(seed: 1234));
    }

    /// <summary>
    /// Q4_K_M and Q6_K models (llama.cpp's files; a Q4_K_M file keeps attn_v, ffn_down of half the
    /// layers and output.weight in Q6_K) loaded with their Q6_K matrices in q6_Kx8: the prompt's
    /// logits are as close to llama.cpp's as the plain layout's, and token by token (decode rows)
    /// equals the batch (prompt tiles).
    /// </summary>
    [Theory]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-llama-q6_k")]
    public void Model_RunsRepacked_AndAgreesWithThePlainLayout(string model)
    {
        var golden = GoldenCase.Load(model, "p1");
        using var packed = Model.Load(SharedData.Model(model));
        using var plain = Model.Load(SharedData.Model(model), new ModelLoadOptions { RepackWeights = false });
        Assert.Empty(plain.RepackedLayouts);
        Assert.Contains(AllMatrices(plain), w => w.Type == GgmlType.Q6_K && w.Rows >= 8);
        if (WeightPacking.PackedFormat(GgmlType.Q6_K) is null)
        {
            _out.WriteLine("q6_Kx8 is off in this process: nothing to compare");
            return;
        }
        Assert.Contains("q6_Kx8", packed.RepackedLayouts);
        var q6 = AllMatrices(packed).Where(w => w.Type == GgmlType.Q6_K && w.Rows >= 8).ToArray();
        Assert.All(q6, w => Assert.Equal("q6_Kx8", w.Format.Layout));

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
        _out.WriteLine($"{model} p1 ({string.Join(", ", packed.RepackedLayouts)}, {packed.RepackedBytes / 1024.0:F0} KiB repacked, {q6.Length} Q6_K matrices in q6_Kx8): repacked vs plain figure {figure:G4}; vs llama.cpp: repacked {packedVsLlama:G4}, plain {plainVsLlama:G4}; token by token vs batch {stepFigure:G4}");
        Assert.True(packedVsLlama <= 0.10, $"repacked vs llama.cpp: figure {packedVsLlama:G4}");
        Assert.True(packedVsLlama <= 1.5 * plainVsLlama + 0.01, $"repacked {packedVsLlama:G4} vs llama.cpp is far worse than plain {plainVsLlama:G4}");
        Assert.True(stepFigure <= 1e-4, $"token by token vs batch: figure {stepFigure:G4}");
    }

    /// <summary>
    /// Every Q6_K matrix of llama.cpp's Q4_K_M and Q6_K files, repacked: the packed decode product of
    /// the whole matrix equals the plain reference dot of each row (read from the mapping) within
    /// float rounding, against a real activation row (f32 quantized to Q8_K as the forward pass does).
    /// </summary>
    [Theory]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-llama-q6_k")]
    public void Model_EveryRepackedMatrix_AgreesWithThePlainRows(string model)
    {
        using var m = Model.Load(SharedData.Model(model));
        if (WeightPacking.PackedFormat(GgmlType.Q6_K) is null)
        {
            _out.WriteLine("q6_Kx8 is off in this process: nothing to compare");
            return;
        }
        var matrices = AllMatrices(m).Where(w => w.IsRepacked && w.Type == GgmlType.Q6_K).ToArray();
        Assert.NotEmpty(matrices);
        var rng = new Random(12);
        double worst = 0;
        long rowsChecked = 0;
        foreach (var w in matrices)
        {
            Assert.Equal("q6_Kx8", w.Format.Layout);
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
                    float plainDot = Q6_K.DotQ6_KQ8_KReference(w.Cols, (BlockQ6_K*)w.Row(r), (BlockQ8_K*)pa);
                    double magnitude = Magnitude(w.Cols, w.Row(r), pa);
                    double err = Math.Abs((double)plainDot - py[r]);
                    Assert.True(err <= FloatOrderTolerance * magnitude, $"{w.Name} row {r}: packed {py[r]:R} vs plain {plainDot:R}");
                    if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                    rowsChecked++;
                }
            }
        }
        _out.WriteLine($"{model}: {matrices.Length} repacked Q6_K matrices, {rowsChecked} rows: worst |packed - plain| / magnitude = {worst:E2}");
    }

    /// <summary>The 6-bit quant of value v of a plain block, as ggml-common.h lays it out (dequantize_row_q6_K).</summary>
    private static int PlainQuant(BlockQ6_K* b, int v)
    {
        int h = v / 128, s = v % 128 / 32, l = v % 32;
        int ql = b->Ql[64 * h + 32 * (s & 1) + l] >> (4 * (s >> 1)) & 0xF;
        int qh = b->Qh[32 * h + l] >> (2 * s) & 3;
        return ql | qh << 4;
    }

    private static WeightMatrix[] AllMatrices(Model m) =>
        m.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down }).Append(m.Output).Where(w => w is not null).Distinct().ToArray();

    /// <summary>Q8_K activation blocks from the self-test fills, with bsums that match qs (as every real Q8_K row has).</summary>
    private static byte[] Q8K(int n, SelfTest.Fill fill, Random rng)
    {
        byte[] a = SelfTest.MakeBlocks(GgmlType.Q8_K, n, fill, rng);
        for (int b = 0; b < n / 256; b++) FixBsums(a, b);
        return a;
    }

    /// <summary>Random bsums (not the sums of qs; SelfTest.MakeBlocks writes the sums), to show that both tiles wrap alike.</summary>
    private static byte[] ScrambleBsums(byte[] a, Random rng)
    {
        for (int b = 0; b < a.Length / BlockQ8_K.Size; b++) rng.NextBytes(a.AsSpan(b * BlockQ8_K.Size + 260, 32));
        return a;
    }

    private static void FixBsums(byte[] a, int block)
    {
        int o = block * BlockQ8_K.Size;
        for (int g = 0; g < 16; g++)
        {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += (sbyte)a[o + 4 + 16 * g + k];
            MemoryMarshal.Write(a.AsSpan(o + 260 + 2 * g), (short)sum);
        }
    }

    /// <summary>Σ_i |d·scale·(q − 32)·a| in double over one row.</summary>
    private static double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ6_K*)w;
        var y = (BlockQ8_K*)act;
        var deq = new float[256];
        double sum = 0;
        fixed (float* pd = deq)
            for (int i = 0; i < n / 256; i++)
            {
                Q6_K.DequantizeRowReference(x + i, pd, 256); // d·scale·(q − 32): exact in f32 (≤ 24 significant bits)
                for (int v = 0; v < 256; v++) sum += Math.Abs((double)pd[v]) * Math.Abs((double)y[i].D * y[i].Qs[v]);
            }
        return sum;
    }
}
