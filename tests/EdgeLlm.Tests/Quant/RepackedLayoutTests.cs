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
/// The tests every eight-row layout shares (<see cref="Q5_0x8"/>, <see cref="Q5_1x8"/>,
/// <see cref="IQ4_NLx8"/> over 32-value blocks with Q8_0/Q8_1 activations, <see cref="Q3_Kx8"/> over
/// 256-value super-blocks with Q8_K; one derived class each): the packing round-trips,
/// a non-finite scale is refused, the AVX2 decode rows equal the scalar statement and the prompt
/// tiles equal the rows bit for bit, all agree with the plain dot within float rounding, integer
/// scales give the exact sum (an "extreme" fill that overflows a kernel summing too many products in
/// int16), and the shared model runs repacked as close to llama.cpp as the plain layout.
/// </summary>
public abstract unsafe class RepackedLayoutTests
{
    protected readonly ITestOutputHelper Out;

    protected RepackedLayoutTests(ITestOutputHelper output) => Out = output;

    protected const int Rows = 21; // two whole groups and a plain tail of five rows

    /// <summary>The weight type, its activation type (Q8_0 or Q8_1) and the layout's name.</summary>
    protected abstract GgmlType Weight { get; }
    protected abstract GgmlType Act { get; }
    protected abstract string Layout { get; }

    /// <summary>The shared model in the weight type (../shared/models, with golden logits).</summary>
    protected abstract string ModelName { get; }

    protected abstract bool IsSupported { get; }
    protected abstract bool Pack(byte* src, byte* dst, int rows, int n);
    protected abstract void Unpack(byte* src, byte* dst, int rows, int n);
    protected abstract void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y);
    protected abstract void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y);
    protected abstract void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride);
    protected abstract float PlainReference(int n, byte* row, byte* act);
    protected abstract void Dequantize(byte* row, float* dst, int n);
    protected abstract string? SelfTestCheck(int seed);

    /// <summary>
    /// Value <paramref name="v"/> (0 .. block size) of row lane <paramref name="r"/> read from the packed
    /// group block at <paramref name="o"/> through the layout's own accessors (those its scalar statement
    /// uses), dequantized with the plain dequantizer's float expression.
    /// </summary>
    protected abstract float PackedValue(byte* o, int r, int v);

    /// <summary>The low (<paramref name="v"/> &lt; 16) or high nibble's position of a 32-value block's value v in 4-byte lanes: quant vector k, byte l.</summary>
    protected static (int K, int L, bool High) NibbleLane(int v) => ((v & 15) >> 2, v & 3, v >= 16);

    /// <summary>
    /// Integer-scale weights for <see cref="Kernels_ExactOnIntegerScales"/>: block <paramref name="b"/> with
    /// scale 1 (and any minimum an integer), and with <paramref name="extreme"/> the values that load
    /// the int16 sums most against activations of ±127.
    /// </summary>
    protected abstract void IntegerWeightBlock(Span<byte> block, int b, bool extreme);

    /// <summary>Where a weight block's fp16 scale fields sit (d first; then a minimum or dmin if it has one).</summary>
    private int[] Halves => SelfTest.ScaleOffsets(Weight).Halves;

    /// <summary>Values per weight (and activation) block.</summary>
    protected int BlockSize => GgmlTypes.Info(Weight).BlockSize;
    private int BlockBytes => (int)GgmlTypes.Info(Weight).RowBytes(BlockSize);
    private int ActBlockBytes => (int)GgmlTypes.Info(Act).RowBytes(BlockSize);

    /// <summary>Where an activation block's values start: after d (fp16, and s for Q8_1) or after Q8_K's f32 d.</summary>
    private int ActQsOffset => Act == GgmlType.Q8_K ? 4 : ActBlockBytes - 32;

    /// <summary>Activation value i of a row.</summary>
    private sbyte ActValue(byte* act, int i) => (sbyte)act[i / BlockSize * ActBlockBytes + ActQsOffset + i % BlockSize];

    /// <summary>The scale of the activation block holding value i.</summary>
    private float ActScale(byte* act, int i)
    {
        byte* b = act + i / BlockSize * ActBlockBytes;
        return Act == GgmlType.Q8_K ? *(float*)b : QuantMath.Fp16ToFp32(*(ushort*)b);
    }

    /// <summary>
    /// The size of the terms both float orders add, to bound their difference: Σ |w·dy·a| over the
    /// dequantized row (a layout whose blocks carry a minimum overrides it with the scale and minimum terms apart).
    /// </summary>
    protected virtual double Magnitude(int n, byte* w, byte* act)
    {
        var deq = new float[n];
        fixed (float* pd = deq) Dequantize(w, pd, n);
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += Math.Abs((double)deq[i] * ActScale(act, i) * ActValue(act, i));
        return sum;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int blocks)
    {
        int n = blocks * BlockSize;
        byte[] plain = SelfTest.MakeBlocks(Weight, n * Rows, SelfTest.Fill.Random, new Random(n));
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(Weight).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Pack(p, q, Rows, n));
            Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    /// <summary>The packed accessors see what the plain blocks hold: value by value, the packed group dequantizes as the plain rows.</summary>
    [Fact]
    public void PackedValues_DequantizeAsThePlainRows()
    {
        int n = 3 * BlockSize;
        byte[] plain = SelfTest.MakeBlocks(Weight, n * 8, SelfTest.Fill.Random, new Random(11));
        var packed = new byte[plain.Length];
        var deq = new float[n];
        long rowBytes = GgmlTypes.Info(Weight).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (float* pd = deq)
        {
            Assert.True(Pack(p, q, 8, n));
            for (int r = 0; r < 8; r++)
            {
                Dequantize(p + r * rowBytes, pd, n);
                for (int i = 0; i < n; i++)
                {
                    float got = PackedValue(q + i / BlockSize * 8 * BlockBytes, r, i % BlockSize);
                    Assert.True(SelfTest.SameFloat(deq[i], got), $"row {r} value {i}: packed {got:R} vs plain {deq[i]:R}");
                }
            }
        }
    }

    /// <summary>Each fp16 scale field (d, and a minimum or dmin) as −inf or NaN in one block: the layout refuses the matrix (it then stays plain).</summary>
    [Fact]
    public void Pack_RefusesNonFiniteScales()
    {
        int n = 2 * BlockSize;
        foreach (int h in Halves)
        foreach (ushort bad in new ushort[] { 0xFC00, 0x7E00 })
        {
            byte[] plain = SelfTest.MakeBlocks(Weight, n * 8, SelfTest.Fill.Random, new Random(3));
            BitConverter.TryWriteBytes(plain.AsSpan(BlockBytes * 5 + h), bad); // row 2 block 1
            var packed = new byte[plain.Length];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
                Assert.False(Pack(p, q, 8, n), $"field at {h} = 0x{bad:X4}");
        }
    }

    [Theory]
    [InlineData("Random")]
    [InlineData("AllMax")]
    [InlineData("AllMin")]
    [InlineData("HugeScale")]
    [InlineData("TinyScale")]
    [InlineData("NegativeScale")]
    [InlineData("ZeroScale")]
    // Q8_0 activations in the quantizer's range (no -128): tiles that multiply |w| by sign(a, w) take that form.
    [InlineData("Random", true)]
    [InlineData("AllMin", true)]
    [InlineData("AllMax", true)]
    public void Kernels_EqualTheScalarStatement_AndTilesEqualRows(string fillName, bool quantizerRange = false)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            Out.WriteLine($"SKIPPED: the {Layout} kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 23);
        int pairs = 0, tiles = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 7, BlockSize == 32 ? 64 : 9 })
        {
            int n = blocks * BlockSize;
            long rowBytes = GgmlTypes.Info(Weight).RowBytes(n);
            long actBytes = GgmlTypes.Info(Act).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(Weight, n * Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int MaxActs = 9;
            long actStride = actBytes + 30;
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) SelfTest.MakeBlocks(Act, n, fill, rng).CopyTo(acts, k * actStride);
            if (quantizerRange && Act == GgmlType.Q8_0)
                for (int k = 0; k < MaxActs; k++)
                    for (int b = 0; b < blocks; b++)
                        for (int j = 0; j < 32; j++)
                            if (acts[k * actStride + b * 34 + 2 + j] == 0x80) acts[k * actStride + b * 34 + 2 + j] = 0x81;
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
                Assert.True(Pack(p, q, Rows, n));
                for (int k = 0; k < MaxActs; k++)
                {
                    byte* act = a + k * actStride;
                    DotRows(n, q, rowBytes, Rows, act, yr + k * Rows);
                    DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = yr[k * Rows + r];
                        Assert.True(SelfTest.SameFloat(yref[r], got), $"{fill} n={n} row {r} act {k}: rows {got:R} vs scalar {yref[r]:R}");
                        float plainDot = PlainReference(n, p + r * rowBytes, act);
                        if (!float.IsFinite(plainDot)) continue;
                        double scale = Magnitude(n, p + r * rowBytes, act);
                        double err = scale > 0 ? Math.Abs((double)plainDot - got) / scale : Math.Abs(got);
                        Assert.True(err < 1e-5, $"{fill} n={n} row {r} act {k}: packed {got:R} vs plain {plainDot:R}");
                        worst = Math.Max(worst, err);
                        pairs++;
                    }
                    // A call for the second group on (rows 8..20, as a thread's share of a matrix) starts at a group boundary too.
                    DotRows(n, q + 8 * rowBytes, rowBytes, Rows - 8, act, yref);
                    for (int r = 8; r < Rows; r++)
                        Assert.True(SelfTest.SameFloat(yr[k * Rows + r], yref[r - 8]), $"{fill} n={n} row {r} act {k}: a call from row 8 gives {yref[r - 8]:R}, the whole call {yr[k * Rows + r]:R}");
                }
                for (int nActs = 1; nActs <= MaxActs; nActs++)
                {
                    Array.Fill(tile, -7f);
                    DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
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
        Out.WriteLine($"{fill}{(quantizerRange ? " (activations within ±127)" : "")}: {pairs} finite pairs: AVX2 rows == scalar statement bit for bit, {tiles} tile widths == rows bit for bit; worst |packed - plain| / magnitude = {worst:E2}");
    }

    /// <summary>
    /// Integer scales (d = 1 for weights and activations): the exact sum must come out, also in the
    /// int16 worst case (<see cref="IntegerWeightBlock"/> with extreme values against activations of ±127).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kernels_ExactOnIntegerScales(bool extreme)
    {
        var rng = new Random(extreme ? 5 : 6);
        int n = 3 * BlockSize;
        const int nRows = 16, nActs = 4;
        long rowBytes = GgmlTypes.Info(Weight).RowBytes(n);
        long actBytes = GgmlTypes.Info(Act).RowBytes(n);
        byte[] plain = SelfTest.MakeBlocks(Weight, n * nRows, SelfTest.Fill.Random, rng);
        byte[] acts = SelfTest.MakeBlocks(Act, n * nActs, SelfTest.Fill.Random, rng);
        ushort one = BitConverter.HalfToUInt16Bits((Half)1);
        for (int b = 0; b < plain.Length / BlockBytes; b++)
        {
            foreach (int h in Halves) BitConverter.TryWriteBytes(plain.AsSpan(BlockBytes * b + h), one);
            IntegerWeightBlock(plain.AsSpan(BlockBytes * b, BlockBytes), b, extreme);
        }
        for (int b = 0; b < acts.Length / ActBlockBytes; b++)
        {
            if (Act == GgmlType.Q8_K) BitConverter.TryWriteBytes(acts.AsSpan(ActBlockBytes * b), 1f);
            else BitConverter.TryWriteBytes(acts.AsSpan(ActBlockBytes * b), one);
            var qs = acts.AsSpan(ActBlockBytes * b + ActQsOffset, BlockSize);
            if (extreme) qs.Fill((byte)(sbyte)(b % 2 == 0 ? 127 : -127));
            if (Act == GgmlType.Q8_K)
                for (int j = 0; j < BlockSize / 16; j++)
                {
                    int sum = 0;
                    foreach (byte v in qs.Slice(16 * j, 16)) sum += (sbyte)v;
                    BitConverter.TryWriteBytes(acts.AsSpan(ActBlockBytes * b + 4 + BlockSize + 2 * j), (short)sum);
                }
            if (Act == GgmlType.Q8_1)
            {
                int sum = 0;
                foreach (byte v in qs) sum += (sbyte)v;
                BitConverter.TryWriteBytes(acts.AsSpan(ActBlockBytes * b + 2), BitConverter.HalfToUInt16Bits((Half)sum)); // s = d·Σa, exact in fp16 (|Σa| ≤ 4064)
            }
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
            Assert.True(Pack(p, q, nRows, n));
            DotTile(n, q, rowBytes, nRows, a, actBytes, nActs, pt, nRows);
            for (int k = 0; k < nActs; k++)
            {
                byte* act = a + k * actBytes;
                DotRows(n, q, rowBytes, nRows, act, py);
                for (int r = 0; r < nRows; r++)
                {
                    Dequantize(p + r * rowBytes, pd, n);
                    long exact = 0;
                    for (int i = 0; i < n; i++) exact += (long)deq[i] * ActValue(act, i);
                    Assert.True(Math.Abs(exact) < 1 << 24, $"the test's integers must stay exact in f32: {exact}");
                    Assert.Equal((float)exact, py[r]);
                    Assert.Equal((float)exact, pt[k * nRows + r]);
                }
            }
        }
    }

    /// <summary>
    /// The process hands out the layout for the weight type (unless EDGELLM_REPACK or the CPU rule it
    /// out), and its single-row product reads a plain row with the plain kernel (get_rows hands plain rows).
    /// </summary>
    [Fact]
    public void WeightPacking_HandsOutTheLayout()
    {
        var fmt = WeightPacking.PackedFormat(Weight);
        string? setting = Environment.GetEnvironmentVariable("EDGELLM_REPACK");
        bool wanted = setting is null or "1" || setting.Split(',', StringSplitOptions.TrimEntries).Contains(Layout);
        if (!WeightPacking.Enabled || !IsSupported || !wanted)
        {
            Assert.Null(fmt);
            Out.WriteLine($"{Layout} is off in this process (EDGELLM_REPACK or no AVX2+FMA): {Weight} stays plain");
            return;
        }
        Assert.Contains(Layout, WeightPacking.DefaultLayouts);
        Assert.Equal(Layout, fmt!.Layout);
        Assert.Equal(8, fmt.RowGroup);
        Assert.Equal(Weight, fmt.Type);
        Assert.Equal(Act, fmt.VecDotType);
        int n = 2 * BlockSize;
        byte[] w = SelfTest.MakeBlocks(Weight, n, SelfTest.Fill.Random, new Random(1));
        byte[] act = SelfTest.MakeBlocks(Act, n, SelfTest.Fill.Random, new Random(2));
        Assert.True(WeightFormat.TryGet(Weight, out var plainFmt));
        fixed (byte* pw = w)
        fixed (byte* pa = act)
            Assert.Equal(plainFmt.VecDot(n, pw, pa), fmt.VecDot(n, pw, pa));
    }

    /// <summary>
    /// Every repacked matrix of the layout's type in the shared model: the packed decode product of the
    /// whole matrix equals the plain reference dot of each row (read from the mapping) within float
    /// rounding, against a real activation row (f32 quantized as the forward pass does).
    /// </summary>
    [Fact]
    public void Model_EveryRepackedMatrix_AgreesWithThePlainRows()
    {
        using var m = Model.Load(SharedData.Model(ModelName));
        if (WeightPacking.PackedFormat(Weight) is null)
        {
            Out.WriteLine($"{Layout} is off in this process: nothing to compare");
            return;
        }
        var matrices = m.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down }).Append(m.Output)
            .Where(w => w.IsRepacked && w.Type == Weight).Distinct().ToArray();
        Assert.NotEmpty(matrices);
        var rng = new Random(12);
        double worst = 0;
        long rowsChecked = 0;
        foreach (var w in matrices)
        {
            Assert.Equal(Layout, w.Format.Layout);
            var x = new float[w.Cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var act = new byte[ActivationQuantizer.RowBytes(Act, w.Cols)];
            var y = new float[w.Rows];
            fixed (float* px = x)
            fixed (byte* pa = act)
            fixed (float* py = y)
            {
                ActivationQuantizer.QuantizeRow(Act, px, pa, w.Cols);
                w.Format.VecDotRows(w.Cols, w.At(0), w.RowBytes, w.Rows, pa, py);
                for (int r = 0; r < w.Rows; r++)
                {
                    float plainDot = PlainReference(w.Cols, w.Row(r), pa);
                    double magnitude = Magnitude(w.Cols, w.Row(r), pa);
                    double err = Math.Abs((double)plainDot - py[r]);
                    Assert.True(err <= 1e-5 * magnitude, $"{w.Name} row {r}: packed {py[r]:R} vs plain {plainDot:R}");
                    if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                    rowsChecked++;
                }
            }
        }
        Out.WriteLine($"{ModelName}: {matrices.Length} repacked {GgmlTypes.Name(Weight)} matrices, {rowsChecked} rows: worst |packed - plain| / magnitude = {worst:E2}");
    }

    [Fact]
    public void SelfTest_ChecksTheLayout()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == $"repacked {Layout} rows and tiles" && c.Supported == IsSupported);
        if (IsSupported) Assert.Null(SelfTestCheck(seed: 7));
    }

    /// <summary>
    /// llama.cpp's file of the weight type loads with its matrices in the layout (single rows keep the
    /// plain kernel for get_rows); logits as close to llama.cpp's as the plain layout's, and token by
    /// token (decode rows) equal to the batch (prompt tiles).
    /// </summary>
    [Fact]
    public void Model_RunsRepacked_AndAgreesWithThePlainLayout()
    {
        var fmt = WeightPacking.PackedFormat(Weight);
        using var packed = Model.Load(SharedData.Model(ModelName));
        using var plain = Model.Load(SharedData.Model(ModelName), new ModelLoadOptions { RepackWeights = false });
        if (fmt is null)
        {
            Out.WriteLine($"{Layout} is off in this process (EDGELLM_REPACK or no AVX2+FMA): nothing to compare");
            return;
        }
        Assert.Contains(Layout, WeightPacking.DefaultLayouts);
        Assert.Equal(Layout, fmt.Layout);
        Assert.Contains(Layout, packed.RepackedLayouts);
        var golden = GoldenCase.Load(ModelName, "p1");
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
        Out.WriteLine($"{ModelName} p1 ({string.Join(", ", packed.RepackedLayouts)}): repacked vs plain {GoldenCase.Figure(a, b):G4}; vs llama.cpp: repacked {packedVsLlama:G4}, plain {plainVsLlama:G4}; token by token vs batch {stepFigure:G4}");
        Assert.True(packedVsLlama <= 0.10, $"repacked vs llama.cpp: figure {packedVsLlama:G4}");
        Assert.True(packedVsLlama <= 1.5 * plainVsLlama + 0.01, $"repacked {packedVsLlama:G4} vs llama.cpp is far worse than plain {plainVsLlama:G4}");
        Assert.True(stepFigure <= 1e-4, $"token by token vs batch: figure {stepFigure:G4}");
    }
}

/// <summary>The shared tests plus the AVX-512 prompt tile (two groups per zmm) against the AVX2 tile, for layouts that have one.</summary>
public abstract unsafe class RepackedLayoutWithAvx512TileTests : RepackedLayoutTests
{
    protected RepackedLayoutWithAvx512TileTests(ITestOutputHelper output) : base(output) { }

    protected abstract bool IsAvx512Supported { get; }

    /// <summary>The prompt tile with the AVX-512 pairs of groups on or off.</summary>
    protected abstract void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512);

    /// <summary>
    /// The AVX-512 tile equals the AVX2 tile bit for bit: odd and even group counts, plain tails,
    /// 1..11 activation rows (those past the last four go through AVX2).
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMax")]
    [InlineData("NegativeScale")]
    public void Avx512Tile_EqualsAvx2Tile(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!IsAvx512Supported)
        {
            Out.WriteLine("SKIPPED: the AVX-512 tile needs AVX-512 F and BW");
            return;
        }
        var rng = new Random((int)fill + 31);
        int tiles = 0;
        const int MaxActs = 11;
        foreach (int blocks in new[] { 1, 3, BlockSize == 32 ? 28 : 5 })
        foreach (int nRows in new[] { 8, 16, 21, 24, 32, 45 })
        {
            int n = blocks * BlockSize;
            long rowBytes = GgmlTypes.Info(Weight).RowBytes(n);
            long actStride = GgmlTypes.Info(Act).RowBytes(n) + 6;
            byte[] plain = SelfTest.MakeBlocks(Weight, n * nRows, fill, rng);
            var packed = new byte[plain.Length];
            var acts = new byte[actStride * MaxActs];
            for (int k = 0; k < MaxActs; k++) SelfTest.MakeBlocks(Act, n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 5;
            var t2 = new float[yStride * MaxActs];
            var t5 = new float[yStride * MaxActs];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* y2 = t2)
            fixed (float* y5 = t5)
            {
                Assert.True(Pack(p, q, nRows, n));
                foreach (int nActs in new[] { 1, 3, 4, 5, 8, 11 })
                {
                    Array.Fill(t2, -7f);
                    Array.Fill(t5, -7f);
                    DotTile(n, q, rowBytes, nRows, a, actStride, nActs, y2, yStride, avx512: false);
                    DotTile(n, q, rowBytes, nRows, a, actStride, nActs, y5, yStride, avx512: true);
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
        Out.WriteLine($"{fill}: {tiles} AVX-512 tiles == AVX2 tiles bit for bit");
    }
}
