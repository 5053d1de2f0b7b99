using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The repacked Q2_K layout (<see cref="Q2_Kx8"/>, Q8_K activations): the shared layout tests on 256-value super-blocks.</summary>
public unsafe class Q2_Kx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q2_K;
    protected override GgmlType Act => GgmlType.Q8_K;
    protected override string Layout => "q2_Kx8";
    protected override string ModelName => "syn-llama-q2_k";
    protected override bool IsSupported => Q2_Kx8.IsSupported;
    protected override bool IsAvx512Supported => Q2_Kx8.IsAvx512Supported;
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        Q2_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512);
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q2_Kx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q2_Kx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q2_Kx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q2_Kx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q2_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override float PlainReference(int n, byte* row, byte* act) => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)row, (BlockQ8_K*)act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q2_K.DequantizeRowReference((BlockQ2_K*)row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ2_Kx8(seed);

    /// <summary>dmin −1, 0 or 1 (integers); extreme: every value 3, every scale and min 15.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme)
    {
        BitConverter.TryWriteBytes(block[(BlockQ2_K.Size - 2)..], BitConverter.HalfToUInt16Bits((Half)(b % 3 - 1)));
        if (extreme) block[..80].Fill(0xFF);
    }

    /// <summary>Σ (|d·scale·q| + |dmin·min|)·|dy·a|: the scale and min terms apart, as both float orders add them.</summary>
    protected override double Magnitude(int n, byte* w, byte* act)
    {
        var x = (BlockQ2_K*)w;
        var y = (BlockQ8_K*)act;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var b = x + i / 256;
            int v = i % 256;
            int q = (b->Qs[32 * (v >> 7) + (v & 31)] >> (2 * ((v >> 5) & 3))) & 3;
            int sc = b->Scales[v / 16];
            double d = QuantMath.Fp16ToFp32(b->D), dmin = QuantMath.Fp16ToFp32(b->DMin);
            sum += (Math.Abs(d * (sc & 0xF) * q) + Math.Abs(dmin * (sc >> 4))) * Math.Abs((double)y[i / 256].D * y[i / 256].Qs[v]);
        }
        return sum;
    }

    protected override float PackedValue(byte* o, int r, int v)
    {
        float d = QuantMath.Fp16ToFp32(((ushort*)(o + Q2_Kx8.OffD))[r]), dmin = QuantMath.Fp16ToFp32(((ushort*)(o + Q2_Kx8.OffDMin))[r]);
        int sc = Q2_Kx8.ScaleByte(o, r, v / 16);
        return d * (sc & 0xF) * Q3_Kx8.Low2(o, r, v) - dmin * (sc >> 4); // Q2_K.DequantizeRowReference: dl·q − ml
    }
}
