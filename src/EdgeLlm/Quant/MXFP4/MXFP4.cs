using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>MXFP4 weights, paired with Q8_0 activations (ggml-cpu type_traits: vec_dot_type Q8_0).</summary>
internal sealed unsafe class MXFP4Format : WeightFormat
{
    public override GgmlType Type => GgmlType.MXFP4;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => MXFP4.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => MXFP4.DotMXFP4Q8_0(n, weights, activations);
}

/// <summary>
/// MXFP4 kernels: quantizer, dequantizer and the dot product with Q8_0 activations. The format is
/// IQ4_NL's shape (a 16-entry table indexed by nibbles) with a power-of-two scale byte instead of an
/// fp16 one, so the kernels are IQ4_NL's table lookup (<c>pshufb</c>, NEON <c>tbl</c>) with
/// <see cref="ScaleHalf"/> in place of the fp16 conversion. Every path forms the reference's per-block
/// integer sums and adds the per-block float terms in its order, so all equal it bit for bit.
/// </summary>
internal static unsafe class MXFP4
{
    private const int QK = BlockMXFP4.BlockSize;

    /// <summary>The E2M1 values doubled (ggml-common.h <c>kvalues_mxfp4</c>): codes 0..7 positive, 8..15 their negatives.</summary>
    public static ReadOnlySpan<sbyte> KValues => [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    private static readonly Vector128<sbyte> s_kvalues = Vector128.Create(KValues);

    /// <summary>
    /// Half the block scale 2^(e − 127), exactly (ggml's <c>GGML_E8M0_TO_FP32_HALF</c>): 2^(e − 128) as f32 bits,
    /// subnormal for e &lt; 2. Halved because <see cref="KValues"/> holds the E2M1 values doubled.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ScaleHalf(byte e) =>
        BitConverter.UInt32BitsToSingle(e < 2 ? 0x00200000u << e : (uint)(e - 1) << 23);

    /// <summary>
    /// f32 → MXFP4 as ggml's <c>quantize_row_mxfp4_ref</c>: e = floor(log2(max |x|)) − 2 + 127 (0 for an
    /// all-zero block), then each value to the nearest table entry times <see cref="ScaleHalf"/>(e) (first of equals).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var y = (BlockMXFP4*)dst;
        for (long ib = 0; ib < n / QK; ib++)
        {
            float* xb = x + ib * QK;
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            // (uint8_t) of a float in C: the exponent is 0..255 for every finite amax above 2^-125
            byte e = amax > 0f ? (byte)(int)(MathF.Floor(MathF.Log2(amax)) - 2 + 127) : (byte)0;
            float d = ScaleHalf(e);
            y[ib].E = e;
            for (int j = 0; j < QK / 2; j++)
                y[ib].Qs[j] = (byte)(BestIndex(xb[j], d) | BestIndex(xb[j + QK / 2], d) << 4);
        }
    }

    /// <summary>ggml's best_index_mxfp4: the table entry nearest to <paramref name="x"/>/<paramref name="d"/> (the first of equals).</summary>
    private static int BestIndex(float x, float d)
    {
        var kv = KValues;
        int best = 0;
        float bestErr = MathF.Abs(kv[0] * d - x);
        for (int i = 1; i < 16; i++)
        {
            float err = MathF.Abs(kv[i] * d - x);
            if (err < bestErr)
            {
                best = i;
                bestErr = err;
            }
        }
        return best;
    }

    /// <summary>MXFP4 → f32 (dequantize_row_mxfp4): x = <see cref="ScaleHalf"/>(e) · kvalues[q].</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)src;
        var kv = KValues;
        for (long i = 0; i < n / QK; i++)
        {
            float d = ScaleHalf(x[i].E);
            for (int j = 0; j < QK / 2; j++)
            {
                dst[i * QK + j] = d * kv[x[i].Qs[j] & 0x0F];
                dst[i * QK + j + QK / 2] = d * kv[x[i].Qs[j] >> 4];
            }
        }
    }

    /// <summary>Dot product with a Q8_0 activation row on the fastest path this CPU has (AVX2 &gt; Vector128 &gt; scalar).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotMXFP4Q8_0(int n, byte* x, byte* y) =>
        Avx2.IsSupported ? DotMXFP4Q8_0Avx2(n, x, y)
        : Vector128.IsHardwareAccelerated ? DotMXFP4Q8_0Vector128(n, x, y)
        : DotMXFP4Q8_0Reference(n, x, y);

    /// <summary>Scalar oracle (ggml_vec_dot_mxfp4_q8_0 generic): (e8m0_half(e)·dy)·(sumi1 + sumi2) per block, summed in float.</summary>
    public static float DotMXFP4Q8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)vx;
        var y = (BlockQ8_0*)vy;
        var kv = KValues;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                sumi1 += y[ib].Qs[j] * kv[x[ib].Qs[j] & 0x0F];
                sumi2 += y[ib].Qs[j + QK / 2] * kv[x[ib].Qs[j] >> 4];
            }
            sumf += Term(sumi1 + sumi2, x + ib, y + ib);
        }
        return sumf;
    }

    /// <summary>AVX2: the table lookup is one <c>pshufb</c> per half, the integer dot IQ4_NL's.</summary>
    public static float DotMXFP4Q8_0Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)vx;
        var y = (BlockQ8_0*)vy;
        var table = s_kvalues;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            sumf += Term(QuantMath.DotI8Avx2(Ssse3.Shuffle(table, lo.AsSByte()), Ssse3.Shuffle(table, hi.AsSByte()), y0, y1), x + ib, y + ib);
        }
        return sumf;
    }

    /// <summary>Portable Vector128 (NEON <c>tbl</c> for the lookup).</summary>
    public static float DotMXFP4Q8_0Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)vx;
        var y = (BlockQ8_0*)vy;
        var table = s_kvalues;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            sumf += Term(QuantMath.DotI8Vector128(Vector128.Shuffle(table, lo.AsSByte()), Vector128.Shuffle(table, hi.AsSByte()), y0, y1), x + ib, y + ib);
        }
        return sumf;
    }

    /// <summary>The reference's per-block float term: (e8m0_half(e) · dy) · sumi.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Term(int sumi, BlockMXFP4* x, BlockQ8_0* y) => ScaleHalf(x->E) * QuantMath.Fp16ToFp32(y->D) * sumi;
}
