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
/// The repacked IQ4_NL layout (<see cref="IQ4_NLx8"/>): the packing round-trips, the AVX2 decode rows equal the scalar statement and the prompt tiles equal the
/// rows bit for bit, all agree with the plain IQ4_NL dot within float rounding, and the IQ4_NL model
/// runs repacked as close to llama.cpp as the plain layout.
/// </summary>
public unsafe class IQ4_NLx8Tests
{
    private readonly ITestOutputHelper _out;

    public IQ4_NLx8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 21; // two whole groups and a plain tail of five rows

    [Theory]
    [InlineData(32)]
    [InlineData(96)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        byte[] plain = SelfTest.MakeBlocks(GgmlType.IQ4_NL, n * Rows, SelfTest.Fill.Random, new Random(n));
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.IQ4_NL).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(IQ4_NLx8.Pack(p, q, Rows, n));
            IQ4_NLx8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    [Fact]
    public void Pack_RefusesNonFiniteScales()
    {
        byte[] plain = SelfTest.MakeBlocks(GgmlType.IQ4_NL, 64 * 8, SelfTest.Fill.Random, new Random(3));
        plain[18 * 5] = 0x00;
        plain[18 * 5 + 1] = 0xFC; // -inf, row 2 block 1
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
            Assert.False(IQ4_NLx8.Pack(p, q, 8, 64));
    }

    [Theory]
    [InlineData("Random")]
    [InlineData("AllMax")]
    [InlineData("AllMin")]
    [InlineData("HugeScale")]
    [InlineData("TinyScale")]
    [InlineData("NegativeScale")]
    [InlineData("ZeroScale")]
    public void Kernels_EqualTheScalarStatement_AndTilesEqualRows(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!IQ4_NLx8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the IQ4_NLx8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 23);
        int pairs = 0, tiles = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 7, 64 })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.IQ4_NL).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.IQ4_NL, n * Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int MaxActs = 9;
            long actStride = actBytes + 30;
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actStride);
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
                Assert.True(IQ4_NLx8.Pack(p, q, Rows, n));
                for (int k = 0; k < MaxActs; k++)
                {
                    byte* act = a + k * actStride;
                    IQ4_NLx8.DotRows(n, q, rowBytes, Rows, act, yr + k * Rows);
                    IQ4_NLx8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = yr[k * Rows + r];
                        Assert.True(SelfTest.SameFloat(yref[r], got), $"{fill} n={n} row {r} act {k}: rows {got:R} vs scalar {yref[r]:R}");
                        float plainDot = IQ4_NL.DotIQ4_NLQ8_0Reference(n, p + r * rowBytes, act);
                        if (!float.IsFinite(plainDot)) continue;
                        double scale = AbsSum(n, p + r * rowBytes, act);
                        double err = scale > 0 ? Math.Abs((double)plainDot - got) / scale : Math.Abs(got);
                        Assert.True(err < 1e-5, $"{fill} n={n} row {r} act {k}: packed {got:R} vs plain {plainDot:R}");
                        worst = Math.Max(worst, err);
                        pairs++;
                    }
                }
                for (int nActs = 1; nActs <= MaxActs; nActs++)
                {
                    Array.Fill(tile, -7f);
                    IQ4_NLx8.DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
                    for (int k = 0; k < MaxActs; k++)
                    {
                        for (int r = 0; r < yStride; r++)
                        {
                            float t = yt[k * yStride + r];
                            if (k >= nActs || r >= Rows) Assert.Equal(-7f, t);
                            else Assert.True(SelfTest.SameFloat(yr[k * Rows + r], t), $"{fill} n={n} nActs={nActs} row {r} act {k}: tile {t:R} vs rows {yr[k * Rows + r]:R}");
                        }
                    }
                    tiles++;
                }
            }
        }
        _out.WriteLine($"{fill}: {pairs} finite pairs: AVX2 rows == scalar statement bit for bit, {tiles} tile widths == rows bit for bit; worst |packed - plain| / Σ|w·a| = {worst:E2}");
    }

    /// <summary>
    /// The AVX-512 tile (two groups per zmm) equals the AVX2 tile bit for bit: odd and even group
    /// counts, plain tails, 1..11 activation rows (those past the last four go through AVX2).
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMax")]
    [InlineData("NegativeScale")]
    public void Avx512Tile_EqualsAvx2Tile(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!IQ4_NLx8.IsAvx512Supported)
        {
            _out.WriteLine("SKIPPED: the AVX-512 tile needs AVX-512 F and BW");
            return;
        }
        var rng = new Random((int)fill + 31);
        int tiles = 0;
        const int MaxActs = 11;
        foreach (int blocks in new[] { 1, 3, 28 })
        foreach (int nRows in new[] { 8, 16, 21, 24, 32, 45 })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.IQ4_NL).RowBytes(n);
            long actStride = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n) + 6;
            byte[] plain = SelfTest.MakeBlocks(GgmlType.IQ4_NL, n * nRows, fill, rng);
            var packed = new byte[plain.Length];
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 5;
            var t2 = new float[yStride * MaxActs];
            var t5 = new float[yStride * MaxActs];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* y2 = t2)
            fixed (float* y5 = t5)
            {
                Assert.True(IQ4_NLx8.Pack(p, q, nRows, n));
                foreach (int nActs in new[] { 1, 3, 4, 5, 8, 11 })
                {
                    Array.Fill(t2, -7f);
                    Array.Fill(t5, -7f);
                    IQ4_NLx8.DotTile(n, q, rowBytes, nRows, a, actStride, nActs, y2, yStride, avx512: false);
                    IQ4_NLx8.DotTile(n, q, rowBytes, nRows, a, actStride, nActs, y5, yStride, avx512: true);
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
        _out.WriteLine($"{fill}: {tiles} AVX-512 tiles == AVX2 tiles bit for bit");
    }

    /// <summary>
    /// Integer scales (d = 1 for weights and activations): the exact sum must come out, also in the
    /// int16 worst case of every value −127 (grid index 0) against activations of ±127 (two such
    /// pair sums added in int16 would overflow).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kernels_ExactOnIntegerScales(bool extreme)
    {
        var rng = new Random(extreme ? 5 : 6);
        const int n = 96, nRows = 16, nActs = 4;
        long rowBytes = GgmlTypes.Info(GgmlType.IQ4_NL).RowBytes(n);
        long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.IQ4_NL, n * nRows, SelfTest.Fill.Random, rng);
        byte[] acts = SelfTest.MakeBlocks(GgmlType.Q8_0, n * nActs, SelfTest.Fill.Random, rng);
        ushort one = BitConverter.HalfToUInt16Bits((Half)1);
        for (int b = 0; b < plain.Length / 18; b++)
        {
            BitConverter.TryWriteBytes(plain.AsSpan(18 * b), one);
            if (extreme) plain.AsSpan(18 * b + 2, 16).Fill(0x00);
        }
        for (int b = 0; b < acts.Length / 34; b++)
        {
            BitConverter.TryWriteBytes(acts.AsSpan(34 * b), one);
            if (extreme) acts.AsSpan(34 * b + 2, 32).Fill((byte)(sbyte)(b % 2 == 0 ? 127 : -127));
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
            Assert.True(IQ4_NLx8.Pack(p, q, nRows, n));
            IQ4_NLx8.DotTile(n, q, rowBytes, nRows, a, actBytes, nActs, pt, nRows);
            for (int k = 0; k < nActs; k++)
            {
                var act = (BlockQ8_0*)(a + k * actBytes);
                IQ4_NLx8.DotRows(n, q, rowBytes, nRows, (byte*)act, py);
                for (int r = 0; r < nRows; r++)
                {
                    IQ4_NL.DequantizeRowReference(p + r * rowBytes, pd, n);
                    long exact = 0;
                    for (int i = 0; i < n; i++) exact += (long)deq[i] * act[i / 32].Qs[i % 32];
                    Assert.Equal((float)exact, py[r]);
                    Assert.Equal((float)exact, pt[k * nRows + r]);
                }
            }
        }
    }

    [Fact]
    public void SelfTest_ChecksIQ4_NLx8()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked iq4_nlx8 rows and tiles" && c.Supported == IQ4_NLx8.IsSupported);
        if (IQ4_NLx8.IsSupported) Assert.Null(SelfTest.CheckIQ4_NLx8(seed: 7));
    }

    /// <summary>
    /// llama.cpp's IQ4_NL file loads with its IQ4_NL matrices in iq4_nlx8 (single rows keep the plain
    /// single-row kernel for get_rows); logits as close to llama.cpp's as the plain layout's, and token
    /// by token (decode rows) equal to the batch (prompt tiles).
    /// </summary>
    [Fact]
    public void IQ4_NL_Model_RunsRepacked_AndAgreesWithThePlainLayout()
    {
        var fmt = WeightPacking.PackedFormat(GgmlType.IQ4_NL);
        using var packed = Model.Load(SharedData.Model("syn-llama-iq4_nl"));
        using var plain = Model.Load(SharedData.Model("syn-llama-iq4_nl"), new ModelLoadOptions { RepackWeights = false });
        if (fmt is null)
        {
            _out.WriteLine("iq4_nlx8 is off in this process (EDGELLM_REPACK or no AVX2+FMA): nothing to compare");
            return;
        }
        Assert.Contains("iq4_nlx8", WeightPacking.DefaultLayouts);
        Assert.Equal("iq4_nlx8", fmt.Layout);
        Assert.Contains("iq4_nlx8", packed.RepackedLayouts);
        var golden = GoldenCase.Load("syn-llama-iq4_nl", "p1");
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
        _out.WriteLine($"syn-llama-iq4_nl p1 ({string.Join(", ", packed.RepackedLayouts)}): repacked vs plain {GoldenCase.Figure(a, b):G4}; vs llama.cpp: repacked {packedVsLlama:G4}, plain {plainVsLlama:G4}; token by token vs batch {stepFigure:G4}");
        Assert.True(packedVsLlama <= 0.10, $"repacked vs llama.cpp: figure {packedVsLlama:G4}");
        Assert.True(packedVsLlama <= 1.5 * plainVsLlama + 0.01, $"repacked {packedVsLlama:G4} vs llama.cpp is far worse than plain {plainVsLlama:G4}");
        Assert.True(stepFigure <= 1e-4, $"token by token vs batch: figure {stepFigure:G4}");
    }

    /// <summary>Σ |w·a| in double over one IQ4_NL row against a Q8_0 row.</summary>
    private static double AbsSum(int n, byte* w, byte* act)
    {
        var deq = new float[n];
        fixed (float* pd = deq) IQ4_NL.DequantizeRowReference(w, pd, n);
        var y = (BlockQ8_0*)act;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.Abs((double)deq[i] * (float)QuantMath.Fp16ToFp32(y[i / 32].D) * y[i / 32].Qs[i % 32]);
        return sum;
    }
}
