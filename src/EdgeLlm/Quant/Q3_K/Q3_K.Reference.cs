namespace EdgeLlm.Quant;

internal static unsafe partial class Q3_K
{
    /// <summary>Blocks to f32 (ggml-quants.c dequantize_row_q3_K).</summary>
    internal static void DequantizeRowReference(BlockQ3_K* x, float* y, long n)
    {
        KQuant.CheckLength(n, "Q3_K");
        long nb = n / KQuant.QK_K;
        sbyte* scales = stackalloc sbyte[16];
        for (long i = 0; i < nb; i++)
        {
            float dAll = KQuant.Fp16ToFp32(x[i].D);
            byte* q = x[i].Qs;
            byte* hm = x[i].HMask;
            byte m = 1;
            UnpackScales(x[i].Scales, scales);
            int idx = 0;
            for (int half = 0; half < 2; ++half, q += 32)
            {
                for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                {
                    for (int k = 0; k < 2; ++k)
                    {
                        float dl = dAll * (scales[idx++] - 32);
                        for (int l = 16 * k; l < 16 * k + 16; ++l)
                            *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
                    }
                }
            }
        }
    }

    /// <summary>Expands one block's quants to signed bytes in value order (−4..3), as the generic kernel's aux8.</summary>
    private static void ExpandReference(BlockQ3_K* b, sbyte* a)
    {
        byte* q3 = b->Qs;
        byte* hm = b->HMask;
        byte m = 1;
        for (int j = 0; j < KQuant.QK_K; j += 128, q3 += 32)
        {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1, a += 32)
            {
                for (int l = 0; l < 32; ++l) a[l] = (sbyte)(((q3[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
            }
        }
    }

    /// <summary>
    /// Dot product in ggml's generic order (ggml_vec_dot_q3_K_q8_K_generic): eight int32 lanes
    /// (position mod 8) of Σ (scale − 32)·q3·q8 per block, then <c>sums[l] += d·aux32[l]</c>
    /// in float, and the eight lanes added in order at the end.
    /// </summary>
    internal static float DotQ3_KQ8_KReference(int n, BlockQ3_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q3_K");
        int nb = n / KQuant.QK_K;
        sbyte* aux8 = stackalloc sbyte[KQuant.QK_K];
        sbyte* scales = stackalloc sbyte[16];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; ++l) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            ExpandReference(&x[i], aux8);
            UnpackScales(x[i].Scales, scales);
            for (int l = 0; l < 8; ++l) aux32[l] = 0;
            sbyte* q8 = y[i].Qs;
            sbyte* a = aux8;
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                int s = scales[j] - 32;
                for (int half = 0; half < 2; ++half, q8 += 8, a += 8)
                {
                    for (int l = 0; l < 8; ++l) aux32[l] += s * (short)(q8[l] * a[l]);
                }
            }
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
        }
        for (int l = 0; l < 8; ++l) sumf += sums[l];
        return sumf;
    }
}
