using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q3_K layout (<see cref="Q3_Kx8"/>, Q8_K activations): the shared layout tests, on
/// 256-value super-blocks, and the −4 offset taken through the activation's block sums.
/// </summary>
public unsafe class Q3_Kx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q3_K;
    protected override GgmlType Act => GgmlType.Q8_K;
    protected override string Layout => "q3_Kx8";
    protected override string ModelName => "syn-llama-q3_k_m";
    protected override bool IsSupported => Q3_Kx8.IsSupported;
    protected override bool IsAvx512Supported => Q3_Kx8.IsAvx512Supported;
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        Q3_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q3_Kx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q3_Kx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q3_Kx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q3_Kx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q3_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override float PlainReference(int n, byte* row, byte* act) => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)row, (BlockQ8_K*)act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q3_K.DequantizeRowReference((BlockQ3_K*)row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ3_Kx8(seed);

    /// <summary>Extreme: every value 3 (all low bits and high bits set), the unsigned value 7 the kernels multiply.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        if (extreme) block[..96].Fill(0xFF);
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        float d = QuantMath.Fp16ToFp32(((ushort*)(o + Q3_Kx8.OffD))[r]);
        int scale = Q4_Kx8.SixBit(o + Q3_Kx8.OffS, o + Q3_Kx8.OffH, r, v / 16) - 32;
        return d * scale * ((Q3_Kx8.Low2(o, r, v) | Q3_Kx8.HighBit(o, r, v) << 2) - 4); // Q3_K.DequantizeRowReference: dl = d·scale, dl·q
    }
}
