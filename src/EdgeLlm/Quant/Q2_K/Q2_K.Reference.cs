namespace EdgeLlm.Quant;

internal static unsafe partial class Q2_K
{
    /// <summary>Blocks to f32 (ggml-quants.c dequantize_row_q2_K).</summary>
    internal static void DequantizeRowReference(BlockQ2_K* x, float* y, long n)
    {
        KQuant.CheckLength(n, "Q2_K");
        long nb = n / KQuant.QK_K;
        for (long i = 0; i < nb; i++)
        {
            float d = KQuant.Fp16ToFp32(x[i].D);
            float min = KQuant.Fp16ToFp32(x[i].DMin);
            byte* q = x[i].Qs;
            byte* sc = x[i].Scales;
            int idx = 0;
            for (int half = 0; half < 2; ++half, q += 32)
            {
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int k = 0; k < 2; ++k)
                    {
                        byte s = sc[idx++];
                        float dl = d * (s & 0xF);
                        float ml = min * (s >> 4);
                        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * k + l] >> shift) & 3) - ml;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Dot product in ggml's generic order (ggml_vec_dot_q2_K_q8_K_generic): per block an
    /// integer Σ scale·Σ q2·q8 and an integer Σ bsum·min, then
    /// <c>sumf += (q8.d·d)·isum − (q8.d·dmin)·summs</c>.
    /// </summary>
    internal static float DotQ2_KQ8_KReference(int n, BlockQ2_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q2_K");
        int nb = n / KQuant.QK_K;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            byte* q2 = x[i].Qs;
            sbyte* q8 = y[i].Qs;
            byte* sc = x[i].Scales;

            int summs = 0;
            for (int j = 0; j < 16; ++j) summs += y[i].Bsums[j] * (sc[j] >> 4);

            float dall = y[i].D * KQuant.Fp16ToFp32(x[i].D);
            float dmin = y[i].D * KQuant.Fp16ToFp32(x[i].DMin);

            int isum = 0;
            int idx = 0;
            for (int k = 0; k < KQuant.QK_K / 128; ++k, q2 += 32)
            {
                for (int shift = 0; shift < 8; shift += 2, q8 += 32)
                {
                    int d = sc[idx++] & 0xF;
                    int isuml = 0;
                    for (int l = 0; l < 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * isuml;
                    d = sc[idx++] & 0xF;
                    isuml = 0;
                    for (int l = 16; l < 32; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * isuml;
                }
            }
            sumf += dall * isum - dmin * summs;
        }
        return sumf;
    }
}
