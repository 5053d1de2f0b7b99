using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_K
{
    /// <summary>
    /// AVX-512 dot product (the AVX2 unpacking, then 512-bit lanes; requires Avx512BW) with the reference's lanes: as Q4_K's, with 16 added where bit
    /// 2c (low nibbles of chunk c) or 2c+1 (high nibbles) of qh[l] is set.
    /// </summary>
    internal static float DotQ5_KQ8_KAvx512(int n, BlockQ5_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<byte> sixteen = Vector256.Create((byte)16);
        Vector256<float> sums = Vector256<float>.Zero;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            Vector256<byte> qh = Avx.LoadVector256(x[i].Qh);
            for (int c = 0; c < 4; ++c)
            {
                Vector256<byte> q = Avx.LoadVector256(x[i].Qs + 32 * c);
                Vector256<byte> b1 = Vector256.Create((byte)(1 << (2 * c)));
                Vector256<byte> b2 = Vector256.Create((byte)(2 << (2 * c)));
                Vector256<byte> h1 = Avx2.And(Avx2.CompareEqual(Avx2.And(qh, b1), b1), sixteen);
                Vector256<byte> h2 = Avx2.And(Avx2.CompareEqual(Avx2.And(qh, b2), b2), sixteen);
                Avx.Store((byte*)a + 64 * c, Avx2.Add(Avx2.And(q, low), h1));
                Avx.Store((byte*)a + 64 * c + 32, Avx2.Add(Avx2.And(Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte(), low), h2));
            }
            int sumi = 0;
            for (int j = 0; j < 8; ++j)
            {
                KQuant.GetScaleMinK4(j, x[i].Scales, out byte sc, out byte m);
                scales[2 * j] = scales[2 * j + 1] = sc;
                sumi += (y[i].Bsums[2 * j] + y[i].Bsums[2 * j + 1]) * m;
            }
            Vector256<int> aux32 = KQuantLanes.DotLanesAvx512(a, y[i].Qs, scales);
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            sums = KQuant.AccumulateLanes(sums, d, aux32);
            float dmin = KQuant.Fp16ToFp32(x[i].DMin) * y[i].D;
            sumf -= dmin * sumi;
        }
        return KQuant.SumLanesInOrder(sumf, sums);
    }
}
