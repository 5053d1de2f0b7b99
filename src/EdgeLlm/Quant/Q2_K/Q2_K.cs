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
        Q2_K.DotQ2_KQ8_K(n, (BlockQ2_K*)weights, (BlockQ8_K*)activations);

    /// <summary>
    /// The matrix-vector product on the 128-bit path: one <see cref="KQuant128"/> tile call over the
    /// rows (its per-call set-up paid once per chunk, not per row); per row the arithmetic is
    /// VecDot's, bit for bit. Elsewhere one VecDot per row.
    /// </summary>
    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y)
    {
        if (!Avx2.IsSupported && KQuant128.IsSupported) KQuant128.DotTile<Q2_K128>(n, weights, rowBytes, nRows, activations, 0, 1, y, 0);
        else base.VecDotRows(n, weights, rowBytes, nRows, activations, y);
    }

    /// <summary>Without AVX2 (NEON) each super-block unpacked once per four activation rows (<see cref="KQuant128"/>); elsewhere one VecDot per pair (x64 repacks Q2_K/Q3_K into their x8 layouts).</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (!Avx2.IsSupported && KQuant128.IsSupported) KQuant128.DotTile<Q2_K128>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q2_K kernels: reference (scalar oracle), AVX2 and the f32 quantizer.</summary>
internal static unsafe partial class Q2_K
{
    /// <summary>
    /// Dot product with a Q8_K row on the fastest path this CPU has: AVX-512BW &gt; AVX2 &gt;
    /// 128-bit (NEON, <see cref="KQuant128"/>) &gt; scalar (IsSupported checks are JIT/AOT constants). All equal the reference bit for bit.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static float DotQ2_KQ8_K(int n, BlockQ2_K* x, BlockQ8_K* y) =>
        Avx512BW.IsSupported ? DotQ2_KQ8_KAvx512(n, x, y)
        : Avx2.IsSupported ? DotQ2_KQ8_KAvx2(n, x, y)
        : KQuant128.IsSupported ? KQuant128.Dot<Q2_K128>(n, (byte*)x, (byte*)y)
        : DotQ2_KQ8_KReference(n, x, y);

    /// <summary>Registers the format and its quantizer (called from <see cref="QuantFormats"/>).</summary>
    public static void Register()
    {
        WeightFormat.Register(new Q2_KFormat());
        RowQuantizer.Register(GgmlType.Q2_K, (src, dst, n) => QuantizeRowReference(src, (BlockQ2_K*)dst, n));
    }
}
