namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_K
{
    /// <summary>
    /// f32 to Q5_K without an importance matrix (ggml-quants.c quantize_row_q5_K_ref): Q4_K's
    /// algorithm with nmax 31 and the search range −0.5 + 0.1·(0..15).
    /// </summary>
    internal static void QuantizeRowReference(float* x, BlockQ5_K* y, long n)
    {
        KQuant.CheckLength(n, "Q5_K");
        Q4_K.QuantizeRowQkx2(x, (byte*)y, n, nmax: 31, rmin: -0.5f, rdelta: 0.1f, nstep: 15, blockBytes: BlockQ5_K.Size, packQuants: &PackQ5);
    }

    private static void PackQ5(byte* block, byte* L)
    {
        byte* qh = ((BlockQ5_K*)block)->Qh;
        byte* ql = ((BlockQ5_K*)block)->Qs;
        for (int j = 0; j < KQuant.QK_K / 8; ++j) qh[j] = 0;
        byte m1 = 1, m2 = 2;
        for (int n = 0; n < KQuant.QK_K; n += 64, m1 <<= 2, m2 <<= 2, ql += 32)
        {
            for (int j = 0; j < 32; ++j)
            {
                int l1 = L[n + j];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                int l2 = L[n + j + 32];
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (byte)(l1 | (l2 << 4));
            }
        }
    }
}
