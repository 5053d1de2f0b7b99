using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The register-tiled <see cref="WeightFormat.VecDotTile"/> overrides equal VecDot for every (row, activation) pair, bit for bit.</summary>
public unsafe class VecDotTileTests
{
    private readonly ITestOutputHelper _out;

    public VecDotTileTests(ITestOutputHelper output) => _out = output;

    // f16 / bf16 rows of random values (SelfTest makes quantized blocks)
    private static byte[] Make(GgmlType t, int count, SelfTest.Fill fill, Random rng)
    {
        if (t == GgmlType.F32)
        {
            var f = new byte[count * 4];
            for (int i = 0; i < count; i++) BitConverter.TryWriteBytes(f.AsSpan(i * 4), (float)(rng.NextDouble() * 8 - 4));
            return f;
        }
        if (t is not (GgmlType.F16 or GgmlType.BF16)) return SelfTest.MakeBlocks(t, count, fill, rng);
        var bytes = new byte[count * 2];
        for (int i = 0; i < count; i++)
        {
            float v = (float)(rng.NextDouble() * 8 - 4);
            ushort bits = t == GgmlType.F16 ? BitConverter.HalfToUInt16Bits((Half)v) : (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), bits);
        }
        return bytes;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.F32)]
    public void Tile_EqualsVecDot(GgmlType type)
    {

        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var rng = new Random((int)type);
        int block = GgmlTypes.Info(type).BlockSize;
        int checkedPairs = 0;
        // (f32, f16 and bf16 have blocks of one value: rows across their 1024-value chunks)
        foreach (int blocks in block == 1 ? new[] { 1, 31, 1024, 1500, 2500 } : new[] { 1, 2, 3, 5, 8 })
        foreach (int nActs in new[] { 1, 2, 3, 4, 5, 9, 16 })
        foreach (var fill in new[] { SelfTest.Fill.Random, SelfTest.Fill.AllMin, SelfTest.Fill.HugeScale })
        {
            int n = blocks * block, nRows = 5;
            long rowBytes = GgmlTypes.Info(type).RowBytes(n);
            long actBytes = GgmlTypes.Info(fmt.VecDotType).RowBytes(n);
            long actStride = actBytes + 64; // a gap: the stride is honoured, not assumed
            byte[] w = Make(type, n * nRows, fill, rng);
            byte[] acts = new byte[actStride * nActs];
            for (int k = 0; k < nActs; k++)
                Make(fmt.VecDotType, n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 3;
            var y = new float[yStride * nActs];
            fixed (byte* pw = w)
            fixed (byte* pa = acts)
            fixed (float* py = y)
            {
                fmt.VecDotTile(n, pw, rowBytes, nRows, pa, actStride, nActs, py, yStride);
                for (int r = 0; r < nRows; r++)
                for (int k = 0; k < nActs; k++)
                {
                    float expect = fmt.VecDot(n, pw + r * rowBytes, pa + k * actStride);
                    Assert.True(SelfTest.SameFloat(expect, y[k * yStride + r]),
                        $"{type} {fill} n={n} acts={nActs} row {r} act {k}: tile {y[k * yStride + r]:R} vs VecDot {expect:R}");
                    checkedPairs++;
                }
                // Entries between rows (the stride gap) are untouched.
                for (int k = 0; k < nActs; k++)
                for (long g = nRows; g < yStride; g++) Assert.Equal(0f, y[k * yStride + g]);
            }
        }
        _out.WriteLine($"{type}: {checkedPairs} (row, activation) pairs bit-identical to VecDot ({CpuFeatures.KernelPath})");
    }

    /// <summary><see cref="WeightFormat.VecDotRows"/> (the decode product, which some formats override, e.g. Q8_0 widening the activation once) equals one VecDot per row.</summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    public void Rows_EqualVecDot(GgmlType type)
    {
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var rng = new Random(100 + (int)type);
        int block = GgmlTypes.Info(type).BlockSize;
        int checkedRows = 0;
        foreach (int blocks in new[] { 1, 2, 3, 8, 64 })
        foreach (int nRows in new[] { 1, 2, 7, 16 })
        foreach (var fill in new[] { SelfTest.Fill.Random, SelfTest.Fill.AllMin, SelfTest.Fill.HugeScale })
        {
            int n = blocks * block;
            long rowBytes = GgmlTypes.Info(type).RowBytes(n);
            byte[] w = Make(type, n * nRows, fill, rng);
            byte[] act = SelfTest.MakeBlocks(fmt.VecDotType, n, fill, rng);
            var y = new float[nRows + 1];
            fixed (byte* pw = w)
            fixed (byte* pa = act)
            fixed (float* py = y)
            {
                fmt.VecDotRows(n, pw, rowBytes, nRows, pa, py);
                for (int r = 0; r < nRows; r++)
                {
                    float expect = fmt.VecDot(n, pw + r * rowBytes, pa);
                    Assert.True(SelfTest.SameFloat(expect, y[r]), $"{type} {fill} n={n} rows={nRows} row {r}: rows {y[r]:R} vs VecDot {expect:R}");
                    checkedRows++;
                }
                Assert.Equal(0f, y[nRows]);
            }
        }
        _out.WriteLine($"{type}: {checkedRows} rows bit-identical to VecDot ({CpuFeatures.KernelPath})");
    }
}
