using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_K
{
    /// <summary>
    /// AVX-512 dot product (the AVX2 unpacking, then 512-bit lanes; requires Avx512BW) with the reference's lanes: nibbles are split 32 bytes at a time
    /// (low nibbles = values 64c..64c+31, high = 64c+32..64c+63), each 32-value scale is given
    /// to both of its 16-value halves, and <see cref="KQuantLanes.DotLanesAvx512"/> forms the int32
    /// lanes; the float tail is the reference's, so the result is identical.
    /// </summary>
    internal static float DotQ4_KQ8_KAvx512(int n, BlockQ4_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<float> sums = Vector256<float>.Zero;
        float sumf = 0;
        for (int i = 0; i < nb; ++i)
        {
            for (int c = 0; c < 4; ++c)
            {
                Vector256<byte> q = Avx.LoadVector256(x[i].Qs + 32 * c);
                Avx.Store((byte*)a + 64 * c, Avx2.And(q, low));
                Avx.Store((byte*)a + 64 * c + 32, Avx2.And(Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte(), low));
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
