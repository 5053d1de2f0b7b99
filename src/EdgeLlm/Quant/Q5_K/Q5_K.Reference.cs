namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_K
{
    /// <summary>Blocks to f32 (ggml-quants.c dequantize_row_q5_K).</summary>
    internal static void DequantizeRowReference(BlockQ5_K* x, float* y, long n)
    {
        KQuant.CheckLength(n, "Q5_K");
        long nb = n / KQuant.QK_K;
        for (long i = 0; i < nb; i++)
        {
            byte* ql = x[i].Qs;
            byte* qh = x[i].Qh;
            float d = KQuant.Fp16ToFp32(x[i].D);
            float min = KQuant.Fp16ToFp32(x[i].DMin);
            byte u1 = 1, u2 = 2;
            for (int j = 0; j < KQuant.QK_K / 32; j += 2, ql += 32, u1 <<= 2, u2 <<= 2)
            {
                KQuant.GetScaleMinK4(j, x[i].Scales, out byte sc, out byte m);
                float d1 = d * sc, m1 = min * m;
                KQuant.GetScaleMinK4(j + 1, x[i].Scales, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
            }
        }
    }

    /// <summary>
    /// Dot product in ggml's generic order (ggml_vec_dot_q5_K_q8_K_generic); the same shape as
    /// Q4_K's with the fifth bit added to each quant.
    /// </summary>
    internal static float DotQ5_KQ8_KReference(int n, BlockQ5_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / KQuant.QK_K;
        sbyte* aux8 = stackalloc sbyte[KQuant.QK_K];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; ++l) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            byte* q4 = x[i].Qs;
            byte* hm = x[i].Qh;
            sbyte* a = aux8;
            byte m = 1;
            for (int j = 0; j < KQuant.QK_K / 64; ++j, q4 += 32)
            {
                for (int l = 0; l < 32; ++l) a[l] = (sbyte)((q4[l] & 0xF) + ((hm[l] & m) != 0 ? 16 : 0));
                a += 32; m <<= 1;
                for (int l = 0; l < 32; ++l) a[l] = (sbyte)((q4[l] >> 4) + ((hm[l] & m) != 0 ? 16 : 0));
                a += 32; m <<= 1;
            }
            int sumi = 0;
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                KQuant.GetScaleMinK4(j / 2, x[i].Scales, out _, out byte mn);
                sumi += y[i].Bsums[j] * mn;
            }
            for (int l = 0; l < 8; ++l) aux32[l] = 0;
            sbyte* q8 = y[i].Qs;
            a = aux8;
            for (int j = 0; j < KQuant.QK_K / 32; ++j)
            {
                KQuant.GetScaleMinK4(j, x[i].Scales, out byte scale, out _);
                for (int k = 0; k < 4; ++k, q8 += 8, a += 8)
                {
                    for (int l = 0; l < 8; ++l) aux32[l] += scale * (short)(q8[l] * a[l]);
                }
            }
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
            float dmin = KQuant.Fp16ToFp32(x[i].DMin) * y[i].D;
            sumf -= dmin * sumi;
        }
        for (int l = 0; l < 8; ++l) sumf += sums[l];
        return sumf;
    }
}
