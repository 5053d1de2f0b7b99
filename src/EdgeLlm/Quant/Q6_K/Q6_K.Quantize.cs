namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_K
{
    /// <summary>
    /// f32 to Q6_K without an importance matrix (ggml-quants.c quantize_row_q6_K_ref): each
    /// sub-block of 16 gets a signed scale from <see cref="KQuant.MakeQxQuants"/> (x²-weighted
    /// search, nmax 32); the scales are quantized to int8 against the one of largest magnitude
    /// (iscale = −128/that scale), and the values are re-quantized with the rounded scales.
    /// </summary>
    internal static void QuantizeRowReference(float* x, BlockQ6_K* y, long n)
    {
        KQuant.CheckLength(n, "Q6_K");
        long nb = n / KQuant.QK_K;
        sbyte* L = stackalloc sbyte[KQuant.QK_K];
        float* scales = stackalloc float[KQuant.QK_K / 16];

        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            float maxScale = 0;
            float maxAbsScale = 0;
            for (int ib = 0; ib < KQuant.QK_K / 16; ++ib)
            {
                float scale = KQuant.MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1, null);
                scales[ib] = scale;
                float absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }

            if (maxAbsScale < KQuant.GROUP_MAX_EPS)
            {
                new Span<byte>(&y[i], BlockQ6_K.Size).Clear();
                continue;
            }

            float iscale = -128f / maxScale;
            y[i].D = KQuant.Fp32ToFp16(1 / iscale);
            for (int ib = 0; ib < KQuant.QK_K / 16; ++ib)
                y[i].Scales[ib] = (sbyte)Math.Min(127, KQuant.NearestInt(iscale * scales[ib]));

            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                float d = KQuant.Fp16ToFp32(y[i].D) * y[i].Scales[j];
                if (d == 0) continue;
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = KQuant.NearestInt(x[16 * j + ii] / d);
                    l = Math.Max(-32, Math.Min(31, l));
                    L[16 * j + ii] = (sbyte)(l + 32);
                }
            }

            byte* ql = y[i].Ql;
            byte* qh = y[i].Qh;
            for (int j = 0; j < KQuant.QK_K; j += 128, ql += 64, qh += 32)
            {
                for (int l = 0; l < 32; ++l)
                {
                    int q1 = L[j + l] & 0xF;
                    int q2 = L[j + l + 32] & 0xF;
                    int q3 = L[j + l + 64] & 0xF;
                    int q4 = L[j + l + 96] & 0xF;
                    ql[l] = (byte)(q1 | (q3 << 4));
                    ql[l + 32] = (byte)(q2 | (q4 << 4));
                    qh[l] = (byte)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                }
            }
        }
    }
}
