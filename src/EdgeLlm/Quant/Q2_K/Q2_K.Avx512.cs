using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q2_K
{
    /// <summary>
    /// AVX-512 dot product (the AVX2 unpacking, then 512-bit lanes; requires Avx512BW): the 2-bit quants are spread to one byte each, then
    /// <see cref="KQuantLanes.DotLanesAvx512"/> forms the scaled integer sums. isum and summs are the
    /// same integers as in the reference and the float tail is the reference's, so the result
    /// is identical.
    /// <code>
    /// qs byte l of half h: [v(l+96) | v(l+64) | v(l+32) | v(l)]  (2 bits each, high to low)
    /// (qs &gt;&gt; 2s) &amp; 3 over the 32 bytes = values 128h + 32s .. 128h + 32s + 31, in order
    /// </code>
    /// </summary>
    internal static float DotQ2_KQ8_KAvx512(int n, BlockQ2_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q2_K");
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        Vector256<byte> three = Vector256.Create((byte)3);
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            byte* sc = x[i].Scales;
            for (int h = 0; h < 2; ++h)
            {
                Vector256<byte> q = Avx.LoadVector256(x[i].Qs + 32 * h);
                for (int s = 0; s < 4; ++s)
                {
                    Avx.Store((byte*)a + 128 * h + 32 * s, Avx2.And(q, three));
                    // Shift as 16-bit lanes; the mask drops bits that crossed from the neighbour byte.
                    q = Avx2.ShiftRightLogical(q.AsUInt16(), 2).AsByte();
                }
            }
            int summs = 0;
            for (int j = 0; j < 16; ++j)
            {
                scales[j] = sc[j] & 0xF;
                summs += y[i].Bsums[j] * (sc[j] >> 4);
            }
            Vector256<int> lanes = KQuantLanes.DotLanesAvx512(a, y[i].Qs, scales);
            int isum = Vector256.Sum(lanes);
            float dall = y[i].D * KQuant.Fp16ToFp32(x[i].D);
            float dmin = y[i].D * KQuant.Fp16ToFp32(x[i].DMin);
            sumf += dall * isum - dmin * summs;
        }
        return sumf;
    }
}
