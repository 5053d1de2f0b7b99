using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q3_K weights (<see cref="BlockQ3_K"/>), dotted with Q8_K activations.</summary>
internal sealed unsafe class Q3_KFormat : WeightFormat
{
    public override GgmlType Type => GgmlType.Q3_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;

    public override void DequantizeRow(byte* src, float* dst, long n) => Q3_K.DequantizeRowReference((BlockQ3_K*)src, dst, n);

    public override float VecDot(int n, byte* weights, byte* activations) =>
        Q3_K.DotQ3_KQ8_K(n, (BlockQ3_K*)weights, (BlockQ8_K*)activations);

    /// <summary>
    /// The matrix-vector product on the 128-bit path: one <see cref="KQuant128"/> tile call over the
    /// rows (its per-call set-up paid once per chunk, not per row); per row the arithmetic is
    /// VecDot's, bit for bit. Elsewhere one VecDot per row.
    /// </summary>
    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y)
    {
        if (!Avx2.IsSupported && KQuant128.IsSupported) KQuant128.DotTile<Q3_K128>(n, weights, rowBytes, nRows, activations, 0, 1, y, 0);
        else base.VecDotRows(n, weights, rowBytes, nRows, activations, y);
    }

    /// <summary>Without AVX2 (NEON) each super-block unpacked once per four activation rows (<see cref="KQuant128"/>); elsewhere one VecDot per pair (x64 repacks Q2_K/Q3_K into their x8 layouts).</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (!Avx2.IsSupported && KQuant128.IsSupported) KQuant128.DotTile<Q3_K128>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q3_K kernels: reference (scalar oracle), AVX2 and the f32 quantizer.</summary>
internal static unsafe partial class Q3_K
{
    /// <summary>
    /// Dot product with a Q8_K row on the fastest path this CPU has: AVX-512BW &gt; AVX2 &gt;
    /// 128-bit (NEON, <see cref="KQuant128"/>) &gt; scalar (IsSupported checks are JIT/AOT constants). All equal the reference bit for bit
    /// except NEON with DotProd: llama.cpp's NEON float order, within float-order tolerance.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static float DotQ3_KQ8_K(int n, BlockQ3_K* x, BlockQ8_K* y) =>
        Avx512BW.IsSupported ? DotQ3_KQ8_KAvx512(n, x, y)
        : Avx2.IsSupported ? DotQ3_KQ8_KAvx2(n, x, y)
        : KQuant128.IsSupported ? KQuant128.Dot<Q3_K128>(n, (byte*)x, (byte*)y)
        : DotQ3_KQ8_KReference(n, x, y);

    /// <summary>Registers the format and its quantizer (called from <see cref="QuantFormats"/>).</summary>
    public static void Register()
    {
        WeightFormat.Register(new Q3_KFormat());
        RowQuantizer.Register(GgmlType.Q3_K, (src, dst, n) => QuantizeRowReference(src, (BlockQ3_K*)dst, n));
    }

    /// <summary>
    /// Unpacks the 16 six-bit scales (still offset by 32) the way ggml does, four at a time
    /// through 32-bit words: words 0..1 take the low nibbles of bytes 0..7 and words 2..3 their
    /// high nibbles, each ORed with two high bits from word 2 of the packed bytes.
    /// </summary>
    internal static void UnpackScales(byte* packed, sbyte* scales)
    {
        const uint kmask1 = 0x03030303;
        const uint kmask2 = 0x0f0f0f0f;
        uint a0 = *(uint*)packed, a1 = *(uint*)(packed + 4), tmp = *(uint*)(packed + 8);
        uint* aux = (uint*)scales;
        aux[0] = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
        aux[2] = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    }
}
