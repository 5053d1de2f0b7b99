namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_K
{
    /// <summary>Blocks to f32 (ggml-quants.c dequantize_row_q6_K).</summary>
    internal static void DequantizeRowReference(BlockQ6_K* x, float* y, long n)
    {
        KQuant.CheckLength(n, "Q6_K");
        long nb = n / KQuant.QK_K;
        for (long i = 0; i < nb; i++)
        {
            float d = KQuant.Fp16ToFp32(x[i].D);
            byte* ql = x[i].Ql;
            byte* qh = x[i].Qh;
            sbyte* sc = x[i].Scales;
            for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8)
            {
                for (int l = 0; l < 32; ++l)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    // ggml: d * sc * q, evaluated left to right in float.
                    y[l] = d * sc[s] * q1;
                    y[l + 32] = d * sc[s + 2] * q2;
                    y[l + 64] = d * sc[s + 4] * q3;
                    y[l + 96] = d * sc[s + 6] * q4;
                }
            }
        }
    }

    /// <summary>Expands one block's quants to signed bytes in value order (−32..31), as the generic kernel's aux8.</summary>
    private static void ExpandReference(BlockQ6_K* b, sbyte* a)
    {
        byte* q4 = b->Ql;
        byte* qh = b->Qh;
        for (int j = 0; j < KQuant.QK_K; j += 128, a += 128, q4 += 64, qh += 32)
        {
            for (int l = 0; l < 32; ++l)
            {
                a[l] = (sbyte)(((q4[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[l + 32] = (sbyte)(((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[l + 64] = (sbyte)(((q4[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[l + 96] = (sbyte)(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
    }

    /// <summary>
    /// Dot product in ggml's generic order (ggml_vec_dot_q6_K_q8_K_generic): eight int32 lanes
    /// of Σ scale·q6·q8 per block, <c>sums[l] += d·aux32[l]</c>, lanes added last.
    /// </summary>
    internal static float DotQ6_KQ8_KReference(int n, BlockQ6_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / KQuant.QK_K;
        sbyte* aux8 = stackalloc sbyte[KQuant.QK_K];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; ++l) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            ExpandReference(&x[i], aux8);
            for (int l = 0; l < 8; ++l) aux32[l] = 0;
            sbyte* q8 = y[i].Qs;
            sbyte* a = aux8;
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                int scale = x[i].Scales[j];
                for (int half = 0; half < 2; ++half, q8 += 8, a += 8)
                {
                    for (int l = 0; l < 8; ++l) aux32[l] += scale * (short)(q8[l] * a[l]);
                }
            }
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
        }
        for (int l = 0; l < 8; ++l) sumf += sums[l];
        return sumf;
    }
}
