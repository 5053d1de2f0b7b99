using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The repacked Q4_1 layout (<see cref="Q4_1x8"/>, Q8_1 activations): the shared layout tests.</summary>
public unsafe class Q4_1x8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q4_1;
    protected override GgmlType Act => GgmlType.Q8_1;
    protected override string Layout => "q4_1x8";
    protected override string ModelName => "syn-llama-q4_1";
    protected override bool IsSupported => Q4_1x8.IsSupported;
    protected override bool IsAvx512Supported => Q4_1x8.IsAvx512Supported;
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        Q4_1x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q4_1x8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q4_1x8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q4_1x8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q4_1x8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q4_1x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override float PlainReference(int n, byte* row, byte* act) => Q4_1.DotQ4_1Q8_1Reference(n, row, act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q4_1.DequantizeRowReference(row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ4_1x8(seed);

    /// <summary>Minimums −1, 0, 1 (integers); extreme: every value 15, eight products per int16 pair sum (30480 against ±127).</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        BitConverter.TryWriteBytes(block[2..], BitConverter.HalfToUInt16Bits((Half)(b % 3 - 1)));
        if (extreme) block[4..].Fill(0xFF);
    }

    /// <summary>Σ (|d·q| + |m|)·|dy·a|: the scale and minimum terms apart, as both float orders add them.</summary>
    protected override double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ4_1*)w;
        var y = (BlockQ8_1*)act;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var b = x + i / 32;
            int j = i % 32;
            int q = j < 16 ? b->Qs[j] & 0xF : b->Qs[j - 16] >> 4;
            double d = QuantMath.Fp16ToFp32(b->D), m = QuantMath.Fp16ToFp32(b->M);
            sum += (Math.Abs(d * q) + Math.Abs(m)) * Math.Abs((double)QuantMath.Fp16ToFp32(y[i / 32].D) * y[i / 32].Qs[i % 32]);
        }
        return sum;
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high) = NibbleLane(v);
        int b = o[Q4_1x8.OffQ + 32 * k + 4 * r + l];
        float d = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_1x8.OffD))[r]), m = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_1x8.OffM))[r]);
        return (high ? b >> 4 : b & 0xF) * d + m;
    }
}
