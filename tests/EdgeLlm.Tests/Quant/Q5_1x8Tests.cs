using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The repacked Q5_1 layout (<see cref="Q5_1x8"/>, Q8_1 activations): the shared layout tests.</summary>
public unsafe class Q5_1x8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q5_1;
    protected override GgmlType Act => GgmlType.Q8_1;
    protected override string Layout => "q5_1x8";
    protected override string ModelName => "syn-llama-q5_1";
    protected override bool IsSupported => Q5_1x8.IsSupported;
    protected override bool IsAvx512Supported => Q5_1x8.IsAvx512Supported;
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        Q5_1x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q5_1x8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q5_1x8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_1x8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q5_1x8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q5_1x8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override float PlainReference(int n, byte* row, byte* act) => Q5_1.DotQ5_1Q8_1Reference(n, row, act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q5_1.DequantizeRowReference(row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ5_1x8(seed);

    /// <summary>Minimums −1, 0, 1 (integers); extreme: every value 31.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        BitConverter.TryWriteBytes(block[2..], BitConverter.HalfToUInt16Bits((Half)(b % 3 - 1)));
        if (extreme) block[4..].Fill(0xFF);
    }

    /// <summary>Σ (|d·q| + |m|)·|dy·a|: the scale and minimum terms apart, as both float orders add them.</summary>
    protected override double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ5_1*)w;
        var y = (BlockQ8_1*)act;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var b = x + i / 32;
            int j = i % 32;
            uint qh = *(uint*)b->Qh;
            int q = (j < 16 ? b->Qs[j] & 0xF : b->Qs[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
            double d = QuantMath.Fp16ToFp32(b->D), m = QuantMath.Fp16ToFp32(b->M);
            sum += (Math.Abs(d * q) + Math.Abs(m)) * Math.Abs((double)QuantMath.Fp16ToFp32(y[i / 32].D) * y[i / 32].Qs[i % 32]);
        }
        return sum;
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high) = NibbleLane(v);
        float d = QuantMath.Fp16ToFp32(((ushort*)(o + Q5_1x8.OffD))[r]), m = QuantMath.Fp16ToFp32(((ushort*)(o + Q5_1x8.OffM))[r]);
        return Q5_0x8.Value(o + Q5_1x8.OffQ, o + Q5_1x8.OffH, r, k, l, high) * d + m;
    }
}
