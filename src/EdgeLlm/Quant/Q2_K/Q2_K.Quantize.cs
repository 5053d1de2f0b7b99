namespace EdgeLlm.Quant;

internal static unsafe partial class Q2_K
{
    /// <summary>
    /// f32 to Q2_K without an importance matrix (ggml-quants.c quantize_row_q2_K_ref): each
    /// sub-block of 16 gets a scale and min from <see cref="KQuant.MakeQkx2Quants"/> (weights
    /// |x|, absolute error); these are quantized to 4 bits against the largest of each, and
    /// the values are re-quantized with the rounded scales.
    /// </summary>
    internal static void QuantizeRowReference(float* x, BlockQ2_K* y, long n)
    {
        KQuant.CheckLength(n, "Q2_K");
        long nb = n / KQuant.QK_K;
        byte* L = stackalloc byte[KQuant.QK_K];
        byte* Laux = stackalloc byte[16];
        float* weights = stackalloc float[16];
        float* mins = stackalloc float[KQuant.QK_K / 16];
        float* scales = stackalloc float[KQuant.QK_K / 16];
        const float q4scale = 15f;

        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            float maxScale = 0; // scales are never negative: the min is taken out first
            float maxMin = 0;
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                for (int l = 0; l < 16; ++l) weights[l] = MathF.Abs(x[16 * j + l]);
                scales[j] = KQuant.MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, out mins[j], Laux, -0.5f, 0.1f, 15, true);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }

            if (maxScale > 0)
            {
                float iscale = q4scale / maxScale;
                for (int j = 0; j < KQuant.QK_K / 16; ++j) y[i].Scales[j] = (byte)KQuant.NearestInt(iscale * scales[j]);
                y[i].D = KQuant.Fp32ToFp16(maxScale / q4scale);
            }
            else
            {
                for (int j = 0; j < KQuant.QK_K / 16; ++j) y[i].Scales[j] = 0;
                y[i].D = KQuant.Fp32ToFp16(0f);
            }
            if (maxMin > 0)
            {
                float iscale = q4scale / maxMin;
                for (int j = 0; j < KQuant.QK_K / 16; ++j) y[i].Scales[j] |= (byte)(KQuant.NearestInt(iscale * mins[j]) << 4);
                y[i].DMin = KQuant.Fp32ToFp16(maxMin / q4scale);
            }
            else
            {
                y[i].DMin = KQuant.Fp32ToFp16(0f);
            }

            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                float d = KQuant.Fp16ToFp32(y[i].D) * (y[i].Scales[j] & 0xF);
                if (d == 0) continue;
                float dm = KQuant.Fp16ToFp32(y[i].DMin) * (y[i].Scales[j] >> 4);
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = KQuant.NearestInt((x[16 * j + ii] + dm) / d);
                    L[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }

            for (int j = 0; j < KQuant.QK_K; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                    y[i].Qs[j / 4 + l] = (byte)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            }
        }
    }
}
