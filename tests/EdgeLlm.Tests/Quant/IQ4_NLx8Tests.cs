using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The repacked IQ4_NL layout (<see cref="IQ4_NLx8"/>): the shared layout tests.</summary>
public unsafe class IQ4_NLx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.IQ4_NL;
    protected override GgmlType Act => GgmlType.Q8_0;
    protected override string Layout => "iq4_nlx8";
    protected override string ModelName => "syn-llama-iq4_nl";
    protected override bool IsSupported => IQ4_NLx8.IsSupported;
    protected override bool IsAvx512Supported => IQ4_NLx8.IsAvx512Supported;
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => IQ4_NLx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => IQ4_NLx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => IQ4_NLx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => IQ4_NLx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        IQ4_NLx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        IQ4_NLx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override float PlainReference(int n, byte* row, byte* act) => IQ4_NL.DotIQ4_NLQ8_0Reference(n, row, act);
    protected override void Dequantize(byte* row, float* dst, int n) => IQ4_NL.DequantizeRowReference(row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckIQ4_NLx8(seed);

    /// <summary>Extreme: every value −127 (grid index 0); two such pair sums added in int16 would overflow.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        if (extreme) block[2..].Fill(0x00);
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high) = NibbleLane(v);
        int b = o[IQ4_NLx8.OffQ + 32 * k + 4 * r + l];
        return QuantMath.Fp16ToFp32(((ushort*)(o + IQ4_NLx8.OffD))[r]) * IQ4_NL.KValues[high ? b >> 4 : b & 0xF];
    }
}
