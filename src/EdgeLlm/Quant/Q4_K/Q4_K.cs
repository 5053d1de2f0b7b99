using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q4_K weights (<see cref="BlockQ4_K"/>), dotted with Q8_K activations.</summary>
internal sealed unsafe class Q4_KFormat : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;

    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_K.DequantizeRowReference((BlockQ4_K*)src, dst, n);

    public override float VecDot(int n, byte* weights, byte* activations) =>
        Q4_K.DotQ4_KQ8_K(n, (BlockQ4_K*)weights, (BlockQ8_K*)activations);

    /// <summary>
    /// The matrix-vector product on the 128-bit path: one <see cref="KQuant128"/> tile call over the
    /// rows (its per-call set-up paid once per chunk, not per row); per row the arithmetic is
    /// VecDot's, bit for bit. Elsewhere (and with NEON DotProd, whose VecDot is the register-only
    /// <see cref="Q4_K.DotQ4_KQ8_KAdvSimdDp"/>) one VecDot per row.
    /// </summary>
    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y)
    {
        if (!Avx2.IsSupported && KQuant128.IsSupported && !Q4_K.UseAdvSimdDp) KQuant128.DotTile<Q4_K128>(n, weights, rowBytes, nRows, activations, 0, 1, y, 0);
        else base.VecDotRows(n, weights, rowBytes, nRows, activations, y);
    }

    /// <summary>
    /// Each super-block unpacked once per row for several activations: <see cref="Q4_K.DotTileAvx2Fma"/>
    /// where the AVX2+FMA kernel is VecDot, else <see cref="Q4_K.DotTile"/> where AVX2 exists, else
    /// <see cref="Q4_K.DotTileAdvSimdDp"/> with NEON DotProd, else <see cref="KQuant128"/>'s tile;
    /// each equals VecDot bit for bit.
    /// </summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (KQuantFma.UseAvx2Fma) Q4_K.DotTileAvx2Fma(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Avx2.IsSupported) Q4_K.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Q4_K.UseAdvSimdDp) Q4_K.DotTileAdvSimdDp(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && KQuant128.IsSupported) KQuant128.DotTile<Q4_K128>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q4_K kernels: reference (scalar oracle), AVX2 and the f32 quantizer.</summary>
internal static unsafe partial class Q4_K
{
    /// <summary>
    /// Dot product with a Q8_K row on the fastest path this CPU has: AVX2+FMA (vector
    /// accumulators, llama.cpp's float order: equal to the reference within float-order
    /// tolerance) &gt; AVX-512BW &gt; AVX2 &gt; NEON DotProd (<see cref="DotQ4_KQ8_KAdvSimdDp"/>) &gt; 128-bit (NEON, <see cref="KQuant128"/>: with DotProd llama.cpp's NEON float order, within
    /// float-order tolerance) &gt; scalar (AVX-512BW, AVX2, NEON without DotProd, portable and scalar equal the reference bit for bit). IsSupported checks are JIT/AOT constants.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static float DotQ4_KQ8_K(int n, BlockQ4_K* x, BlockQ8_K* y) =>
        KQuantFma.UseAvx2Fma ? DotQ4_KQ8_KAvx2Fma(n, x, y)
        : Avx512BW.IsSupported ? DotQ4_KQ8_KAvx512(n, x, y)
        : Avx2.IsSupported ? DotQ4_KQ8_KAvx2(n, x, y)
        : UseAdvSimdDp ? DotQ4_KQ8_KAdvSimdDp(n, x, y)
        : KQuant128.IsSupported ? KQuant128.Dot<Q4_K128>(n, (byte*)x, (byte*)y)
        : DotQ4_KQ8_KReference(n, x, y);

    /// <summary>Registers the format and its quantizer (called from <see cref="QuantFormats"/>).</summary>
    public static void Register()
    {
        WeightFormat.Register(new Q4_KFormat());
        RowQuantizer.Register(GgmlType.Q4_K, (src, dst, n) => QuantizeRowReference(src, (BlockQ4_K*)dst, n));
    }
}
