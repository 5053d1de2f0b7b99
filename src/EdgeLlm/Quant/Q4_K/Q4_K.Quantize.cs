namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_K
{
    /// <summary>
    /// f32 to Q4_K without an importance matrix (ggml-quants.c quantize_row_q4_K_ref): each
    /// sub-block of 32 gets a scale and min from <see cref="KQuant.MakeQkx2Quants"/> with
    /// weights rms(x) + |x|; scales and mins are quantized to 6 bits against the largest of
    /// each, and the values are re-quantized with the rounded scales.
    /// </summary>
    internal static void QuantizeRowReference(float* x, BlockQ4_K* y, long n)
    {
        KQuant.CheckLength(n, "Q4_K");
        QuantizeRowQkx2(x, (byte*)y, n, nmax: 15, rmin: -1f, rdelta: 0.1f, nstep: 20, blockBytes: BlockQ4_K.Size, packQuants: &PackQ4);
    }

    private static void PackQ4(byte* block, byte* L)
    {
        byte* q = ((BlockQ4_K*)block)->Qs;
        for (int j = 0; j < KQuant.QK_K; j += 64, q += 32)
        {
            for (int l = 0; l < 32; ++l) q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
        }
    }

    /// <summary>
    /// The quantizer shared by Q4_K and Q5_K (their reference algorithms differ only in nmax,
    /// the search range and how the quants are packed). The block must start with
    /// d, dmin, scales[12], as both do.
    /// </summary>
    internal static void QuantizeRowQkx2(float* x, byte* yBytes, long n, int nmax, float rmin, float rdelta, int nstep,
        int blockBytes, delegate*<byte*, byte*, void> packQuants)
    {
        long nb = n / KQuant.QK_K;
        byte* L = stackalloc byte[KQuant.QK_K];
        byte* Laux = stackalloc byte[32];
        float* weights = stackalloc float[32];
        float* mins = stackalloc float[KQuant.QK_K / 32];
        float* scales = stackalloc float[KQuant.QK_K / 32];

        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            byte* block = yBytes + i * blockBytes;
            ushort* dPtr = (ushort*)block;          // d, dmin
            byte* packed = block + 4;               // scales[12]

            float maxScale = 0; // scales are never negative: the min is taken out first
            float maxMin = 0;
            for (int j = 0; j < KQuant.QK_K / 32; ++j)
            {
                float sumX2 = 0;
                for (int l = 0; l < 32; ++l) sumX2 += x[32 * j + l] * x[32 * j + l];
                float avX = MathF.Sqrt(sumX2 / 32);
                for (int l = 0; l < 32; ++l) weights[l] = avX + MathF.Abs(x[32 * j + l]);
                scales[j] = KQuant.MakeQkx2Quants(32, nmax, x + 32 * j, weights, L + 32 * j, out mins[j], Laux, rmin, rdelta, nstep, false);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }

            float invScale = maxScale > 0 ? 63f / maxScale : 0f;
            float invMin = maxMin > 0 ? 63f / maxMin : 0f;
            for (int j = 0; j < KQuant.K_SCALE_SIZE; ++j) packed[j] = 0;
            for (int j = 0; j < KQuant.QK_K / 32; ++j)
            {
                // ggml stores nearest_int into a uint8_t before clamping: keep that truncation.
                byte ls = (byte)KQuant.NearestInt(invScale * scales[j]);
                byte lm = (byte)KQuant.NearestInt(invMin * mins[j]);
                ls = Math.Min((byte)63, ls);
                lm = Math.Min((byte)63, lm);
                KQuant.PackScaleMinK4(j, packed, ls, lm);
            }
            dPtr[0] = KQuant.Fp32ToFp16(maxScale / 63f);
            dPtr[1] = KQuant.Fp32ToFp16(maxMin / 63f);

            for (int j = 0; j < KQuant.QK_K / 32; ++j)
            {
                KQuant.GetScaleMinK4(j, packed, out byte sc, out byte m);
                float d = KQuant.Fp16ToFp32(dPtr[0]) * sc;
                if (d == 0) continue;
                float dm = KQuant.Fp16ToFp32(dPtr[1]) * m;
                for (int ii = 0; ii < 32; ++ii)
                {
                    int l = KQuant.NearestInt((x[32 * j + ii] + dm) / d);
                    L[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, l));
                }
            }

            packQuants(block, L);
        }
    }
}
