using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q6_K layout (<see cref="Q6_Kx8"/>, Q8_K activations): the shared layout tests, and
/// three of its own: the AVX-512 tile against the AVX2 tile over more shapes and with Q8_K rows whose
/// block sums are not the sums of their values (the int32 sums wrap alike), activations of −128
/// against q = 0 and 63 (no int16 sum saturates), and the AVX-512 tile's self-test check.
/// </summary>
public unsafe class Q6_Kx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q6_K;
    protected override GgmlType Act => GgmlType.Q8_K;
    protected override string Layout => "q6_Kx8";
    protected override string ModelName => "syn-llama-q6_k";
    protected override bool IsSupported => Q6_Kx8.IsSupported;
    protected override bool IsAvx512Supported => Q6_Kx8.IsAvx512Supported;
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q6_Kx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q6_Kx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q6_Kx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q6_Kx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q6_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        if (avx512) Q6_Kx8.DotTileAvx512(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else Q6_Kx8.DotTileAvx2(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }
    protected override float PlainReference(int n, byte* row, byte* act) => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)row, (BlockQ8_K*)act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q6_K.DequantizeRowReference((BlockQ6_K*)row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ6_Kx8(seed);

    /// <summary>Scales −4..4 (the exact sum stays below 2^24); extreme: every value 63 (+31) or 0 (−32), block by block.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        for (int j = 0; j < 16; j++) block[192 + j] = (byte)(sbyte)((b + j) % 9 - 4);
        if (extreme) block[..192].Fill(b % 2 == 0 ? (byte)0xFF : (byte)0x00);
    }

    /// <summary>Value v of row lane r as Q6_K's reference dequantizes it: d · scale · (q − 32), left to right in f32.</summary>
    protected override float PackedValue(byte* o, int r, int v) =>
        QuantMath.Fp16ToFp32(((ushort*)(o + Q6_Kx8.OffD))[r]) * Q6_Kx8.Scale(o, r, v / 16) * (Q6_Kx8.Quant(o, r, v) - 32);

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
    public void Avx512Tile_EqualsAvx2Tile_AlsoWithScrambledBsums(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q6_Kx8.IsAvx512Supported)
        {
            Out.WriteLine($"SKIPPED: the AVX-512 tile needs AVX2, FMA, AVX-512F and AVX-512BW (this CPU: {CpuFeatures.KernelPath})");
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
        Out.WriteLine($"{fill}: {calls} tile calls, {compared} (row, activation) results: AVX-512 tile == AVX2 tile bit for bit");
    }

    /// <summary>
    /// With d = 1 and activation scale 1 every term is a small integer, so the packed kernels must
    /// give the exact result (a wrong lane, scale, nibble or high-bit pair cannot hide in a tolerance);
    /// the extreme activation −128 against q = 0 and 63 checks that no int16 sum saturates.
    /// </summary>
    [Fact]
    public void Kernels_ExactOnIntegerScales_WithActivationsOfMinus128()
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

    /// <summary>The self test's check of the AVX-512 tile passes, and is listed where the CPU has it.</summary>
    [Fact]
    public void SelfTest_CheckQ6_Kx8Avx512_Passes()
    {
        var check = Assert.Single(SelfTest.Checks(), c => c.Name == "repacked q6_Kx8 avx-512 tile");
        Assert.Equal(Q6_Kx8.IsAvx512Supported, check.Supported);
        if (!Q6_Kx8.IsAvx512Supported)
        {
            Out.WriteLine($"SKIPPED: the AVX-512 tile needs AVX-512F and AVX-512BW (this CPU: {CpuFeatures.KernelPath})");
            return;
        }
        Assert.Null(SelfTest.CheckQ6_Kx8Avx512(seed: 1234));
    }

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
    protected override double Magnitude(int n, byte* w, byte* act)
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
