using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The repacked Q5_0 layout (<see cref="Q5_0x8"/>, the fifth bits regrouped at packing): the shared layout tests.</summary>
public unsafe class Q5_0x8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q5_0;
    protected override GgmlType Act => GgmlType.Q8_0;
    protected override string Layout => "q5_0x8";
    protected override string ModelName => "syn-llama-q5_0";
    protected override bool IsSupported => Q5_0x8.IsSupported;
    protected override bool IsAvx512Supported => Q5_0x8.IsAvx512Supported;
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q5_0x8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q5_0x8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_0x8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_0x8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q5_0x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        Q5_0x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override float PlainReference(int n, byte* row, byte* act) => Q5_0.DotQ5_0Q8_0Reference(n, row, act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q5_0.DequantizeRowReference(row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ5_0x8(seed);

    /// <summary>Extreme: every value 31 (all fifth bits and nibbles set); eight such products per int16 pair sum would overflow.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        if (extreme) block[2..].Fill(0xFF);
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high) = NibbleLane(v);
        return (Q5_0x8.Value(o + Q5_0x8.OffQ, o + Q5_0x8.OffH, r, k, l, high) - 16) * QuantMath.Fp16ToFp32(((ushort*)(o + Q5_0x8.OffD))[r]);
    }
}
