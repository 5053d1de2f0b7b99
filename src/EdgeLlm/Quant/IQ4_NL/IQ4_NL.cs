using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>IQ4_NL weights, paired with Q8_0 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class IQ4_NLFormat : WeightFormat
{
    public override GgmlType Type => GgmlType.IQ4_NL;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => IQ4_NL.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => IQ4_NL.DotIQ4_NLQ8_0(n, weights, activations);

    /// <summary>Register-tiled on AVX-512BW (<see cref="IQ4_NL.DotTileAvx512"/>), without AVX2 (NEON) by <see cref="LegacyTile"/>; elsewhere one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Avx512BW.IsSupported) IQ4_NL.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<IQ4_NLTileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>IQ4_NL kernels: quantizer (scale search), dequantizer and the dot product with Q8_0 activations.</summary>
internal static unsafe partial class IQ4_NL
{
    private const int QK = BlockIQ4_NL.BlockSize;

    /// <summary>The non-linear 4-bit grid (ggml-common.h <c>kvalues_iq4nl</c>).</summary>
    public static ReadOnlySpan<sbyte> KValues => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    private static readonly Vector128<sbyte> s_kvalues = Vector128.Create(KValues);

    /// <summary>Blocks whose largest |x| is below this quantize to all-zero scale (ggml GROUP_MAX_EPS).</summary>
    private const float GroupMaxEps = 1e-15f;

    /// <summary>Number of scale candidates tried either side of the first guess (quantize_iq4_nl passes ntry = 7).</summary>
    private const int NTry = 7;

    /// <summary>
    /// f32 -> IQ4_NL as ggml's <c>quantize_iq4_nl</c> without an importance matrix
    /// (<c>quantize_row_iq4_nl_impl</c> with super-block = block = 32, weights x², ntry 7):
    /// start from d = -max/kvalues[0], refine d by weighted least squares, try the 15 scales
    /// (itry + kvalues[0])/max, keep the one that maximises (Σwqx)²/Σwq², then re-pick each
    /// index against the f16-unrounded best scale.
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        var y = (BlockIQ4_NL*)dst;
        var values = KValues;
        Span<float> weight = stackalloc float[QK];
        Span<byte> l = stackalloc byte[QK];
        for (long ib = 0; ib < n / QK; ib++)
        {
            float* xb = x + ib * QK;
            for (int j = 0; j < QK; j++) weight[j] = xb[j] * xb[j];
            float amax = 0, max = 0;
            for (int j = 0; j < QK; j++)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            float scale;
            if (amax < GroupMaxEps)
            {
                scale = 0;
            }
            else
            {
                float d = -max / values[0];
                float id = 1 / d;
                float sumqx = 0, sumq2 = 0;
                for (int j = 0; j < QK; j++)
                {
                    float al = id * xb[j];
                    int li = BestIndex(values, al);
                    float q = values[li];
                    float w = weight[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                d = sumqx / sumq2;
                float best = d * sumqx;
                for (int itry = -NTry; itry <= NTry; itry++)
                {
                    id = (itry + values[0]) / max;
                    sumqx = sumq2 = 0;
                    for (int j = 0; j < QK; j++)
                    {
                        float al = id * xb[j];
                        int li = BestIndex(values, al);
                        float q = values[li];
                        float w = weight[j];
                        sumqx += w * q * xb[j];
                        sumq2 += w * q * q;
                    }
                    if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                    {
                        d = sumqx / sumq2;
                        best = d * sumqx;
                    }
                }
                scale = d;
            }
            y[ib].D = QuantMath.Fp32ToFp16(scale);
            float inv = scale != 0 ? 1 / scale : 0;
            for (int j = 0; j < QK; j++) l[j] = (byte)BestIndex(values, inv * xb[j]);
            for (int j = 0; j < QK / 2; j++) y[ib].Qs[j] = (byte)(l[j] | l[j + QK / 2] << 4);
        }
    }

    /// <summary>Nearest grid index to <paramref name="x"/> (ggml best_index_int8: bisection, ties to the upper index).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BestIndex(ReadOnlySpan<sbyte> val, float x)
    {
        int n = val.Length;
        if (x <= val[0]) return 0;
        if (x >= val[n - 1]) return n - 1;
        int ml = 0, mu = n - 1;
        while (mu - ml > 1)
        {
            int mav = (ml + mu) / 2;
            if (x < val[mav]) mu = mav; else ml = mav;
        }
        return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
    }

    /// <summary>IQ4_NL -> f32 (dequantize_row_iq4_nl): x = d·kvalues[q].</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        var x = (BlockIQ4_NL*)src;
        var kv = KValues;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            for (int j = 0; j < QK / 2; j++)
            {
                dst[i * QK + j] = d * kv[x[i].Qs[j] & 0x0F];
                dst[i * QK + j + QK / 2] = d * kv[x[i].Qs[j] >> 4];
            }
        }
    }


    /// <summary>Scalar oracle (ggml_vec_dot_iq4_nl_q8_0 generic): dx·dy·(sumi1 + sumi2) per block, summed in float.</summary>
    public static float DotIQ4_NLQ8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        var x = (BlockIQ4_NL*)vx;
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
            sumf += QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D) * (sumi1 + sumi2);
        }
        return sumf;
    }

    /// <summary>AVX2 path: the table lookup is one pshufb per half, the integer dot <see cref="Avx2BlockDot"/> (<see cref="LegacyTile.DotRow"/>).</summary>
    public static float DotIQ4_NLQ8_0Avx2(int n, byte* vx, byte* vy) => LegacyTile.DotRow<IQ4_NLTileWeights, Avx2BlockDot>(n, vx, vy);

    /// <summary>Portable Vector128 path (Vector128.Shuffle with 4-bit indices is a table lookup; <see cref="LegacyTile.DotRow"/>).</summary>
    public static float DotIQ4_NLQ8_0Vector128(int n, byte* vx, byte* vy) => LegacyTile.DotRow<IQ4_NLTileWeights, Vector128BlockDot>(n, vx, vy);
}
