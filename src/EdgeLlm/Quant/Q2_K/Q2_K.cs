using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q2_K weights (<see cref="BlockQ2_K"/>), dotted with Q8_K activations.</summary>
internal sealed unsafe class Q2_KFormat : WeightFormat
{
    public override GgmlType Type => GgmlType.Q2_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;

    public override void DequantizeRow(byte* src, float* dst, long n) => Q2_K.DequantizeRowReference((BlockQ2_K*)src, dst, n);

    public override float VecDot(int n, byte* weights, byte* activations) =>
        Avx2.IsSupported
            ? Q2_K.DotQ2_KQ8_KAvx2(n, (BlockQ2_K*)weights, (BlockQ8_K*)activations)
            : Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)weights, (BlockQ8_K*)activations);
}

/// <summary>Q2_K kernels: reference (scalar oracle), AVX2 and the f32 quantizer.</summary>
internal static unsafe partial class Q2_K
{
    /// <summary>Registers the format and its quantizer (called from <see cref="QuantFormats"/>).</summary>
    public static void Register()
    {
        WeightFormat.Register(new Q2_KFormat());
        RowQuantizer.Register(GgmlType.Q2_K, (src, dst, n) => QuantizeRowReference(src, (BlockQ2_K*)dst, n));
    }
}
