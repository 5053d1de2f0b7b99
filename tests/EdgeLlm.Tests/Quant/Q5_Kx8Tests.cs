using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q5_K layout (<see cref="Q5_Kx8"/>, Q8_K activations): the shared layout tests (the
/// extreme integer case, all values 31 against ±127, overflows a kernel that sums a sub-block's eight
/// quant vectors in int16) and the AVX-512 tile's self-test check.
/// </summary>
public unsafe class Q5_Kx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q5_K;
    protected override GgmlType Act => GgmlType.Q8_K;
    protected override string Layout => "q5_Kx8";
    protected override string ModelName => "syn-llama-q5_k_m";
    protected override bool IsSupported => Q5_Kx8.IsSupported;
    protected override bool IsAvx512Supported => Q5_Kx8.IsAvx512Supported;
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q5_Kx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q5_Kx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_Kx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_Kx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q5_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        if (avx512) Q5_Kx8.DotTileAvx512(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else Q5_Kx8.DotTileAvx2(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }
    protected override float PlainReference(int n, byte* row, byte* act) => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)row, (BlockQ8_K*)act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q5_K.DequantizeRowReference((BlockQ5_K*)row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ5_Kx8(seed);

    /// <summary>Every six-bit scale and min 1 (the exact sum stays below 2^24); extreme: every value 31.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme) => Q4_Kx8Tests.UnitScalesAndMins(block, extreme ? 16 + 32 + 128 : 0);

    protected override double Magnitude(int n, byte* w, byte* act) => Q4_Kx8Tests.KMagnitude(n, w, BlockQ5_K.Size, act, (x, v) =>
    {
        var b = (BlockQ5_K*)x;
        int c = v / 64, l = v % 32;
        return ((v % 64) < 32 ? b->Qs[32 * c + l] & 0xF : b->Qs[32 * c + l] >> 4) | (((b->Qh[l] >> (v / 32)) & 1) << 4);
    });

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high, c) = Q4_Kx8Tests.NibblePlace(v);
        int b = o[Q5_Kx8.OffQ + (8 * c + k) * 32 + 4 * r + l];
        int q = (high ? b >> 4 : b & 0xF) + (((o[Q5_Kx8.OffQh + 32 * k + 4 * r + l] >> (2 * c + (high ? 1 : 0))) & 1) != 0 ? 16 : 0);
        return Q4_Kx8Tests.KValue(o, r, v, q);
    }

    [Fact]
    public void SelfTest_ChecksTheAvx512Tile()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q5_Kx8 rows and AVX-512 tiles" && c.Supported == Q5_Kx8.IsAvx512Supported);
        if (Q5_Kx8.IsAvx512Supported) Assert.Null(SelfTest.CheckQ5_Kx8Avx512(seed: 99));
    }
}
