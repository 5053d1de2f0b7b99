namespace EdgeLlm.Quant;

internal static unsafe partial class Q3_K
{
    /// <summary>
    /// f32 to Q3_K without an importance matrix (ggml-quants.c quantize_row_q3_K_ref): each
    /// sub-block of 16 gets a signed scale from <see cref="KQuant.MakeQ3Quants"/> (nmax 4, with
    /// the x²-weighted refinement); the scales are quantized to 6 bits against the one of
    /// largest magnitude (iscale = −32/that scale), and the values are re-quantized with the
    /// rounded scales.
    /// </summary>
    internal static void QuantizeRowReference(float* x, BlockQ3_K* y, long n)
    {
        KQuant.CheckLength(n, "Q3_K");
        long nb = n / KQuant.QK_K;
        sbyte* L = stackalloc sbyte[KQuant.QK_K];
        float* scales = stackalloc float[KQuant.QK_K / 16];

        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            float maxScale = 0;
            float amax = 0;
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                scales[j] = KQuant.MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j, true);
                float scale = MathF.Abs(scales[j]);
                if (scale > amax)
                {
                    amax = scale;
                    maxScale = scales[j];
                }
            }

            byte* packed = y[i].Scales;
            for (int j = 0; j < 12; ++j) packed[j] = 0;
            if (maxScale != 0)
            {
                float iscale = -32f / maxScale;
                for (int j = 0; j < KQuant.QK_K / 16; ++j)
                {
                    // ggml keeps this in an int8_t: the truncation matters only for absurd values.
                    int l = (sbyte)KQuant.NearestInt(iscale * scales[j]);
                    l = Math.Max(-32, Math.Min(31, l)) + 32;
                    if (j < 8) packed[j] = (byte)(l & 0xF);
                    else packed[j - 8] |= (byte)((l & 0xF) << 4);
                    l >>= 4;
                    packed[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
                }
                y[i].D = KQuant.Fp32ToFp16(1 / iscale);
            }
            else
            {
                y[i].D = KQuant.Fp32ToFp16(0f);
            }

            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                int sc = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
                sc = (sc | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
                float d = KQuant.Fp16ToFp32(y[i].D) * sc;
                if (d == 0) continue;
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = KQuant.NearestInt(x[16 * j + ii] / d);
                    l = Math.Max(-4, Math.Min(3, l));
                    L[16 * j + ii] = (sbyte)(l + 4);
                }
            }

            // High bit of the first 32 values into bit 0 of hmask[0..31], the next 32 into bit 1, ...
            byte* hmask = y[i].HMask;
            for (int j = 0; j < KQuant.QK_K / 8; ++j) hmask[j] = 0;
            int m = 0;
            byte hm = 1;
            for (int j = 0; j < KQuant.QK_K; ++j)
            {
                if (L[j] > 3)
                {
                    hmask[m] |= hm;
                    L[j] -= 4;
                }
                if (++m == KQuant.QK_K / 8)
                {
                    m = 0;
                    hm <<= 1;
                }
            }
            for (int j = 0; j < KQuant.QK_K; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                    y[i].Qs[j / 4 + l] = (byte)((byte)L[j + l] | ((byte)L[j + l + 32] << 2) | ((byte)L[j + l + 64] << 4) | ((byte)L[j + l + 96] << 6));
            }
        }
    }
}
