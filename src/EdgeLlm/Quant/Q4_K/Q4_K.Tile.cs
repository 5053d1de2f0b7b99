using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_K
{
    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for Q4_K: each super-block of a weight row is
    /// unpacked (nibbles, scales, the mins' integer sum per activation) once and then met by up
    /// to eight activation rows. Each (row, activation) keeps the reference's own lane sums and
    /// float order, so outputs equal <see cref="DotQ4_KQ8_KAvx512"/> / <see cref="DotQ4_KQ8_KAvx2"/>
    /// bit for bit. Requires Avx2; the lanes use AVX-512BW when present.
    /// </summary>
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* yOut, long yStride)
    {
        KQuant.CheckLength(n, "Q4_K");
        const int MaxActs = 8;
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        byte* mins = stackalloc byte[8];
        Vector256<float>* sums = stackalloc Vector256<float>[MaxActs];
        float* sumf = stackalloc float[MaxActs];
        Vector256<byte> low = Vector256.Create((byte)0xF);
        for (int a0 = 0; a0 < nActs; a0 += MaxActs)
        {
            int na = Math.Min(MaxActs, nActs - a0);
            for (int r = 0; r < nRows; r++)
            {
                var x = (BlockQ4_K*)(weights + r * rowBytes);
                for (int k = 0; k < na; k++) { sums[k] = Vector256<float>.Zero; sumf[k] = 0; }
                for (int i = 0; i < nb; ++i)
                {
                    for (int c = 0; c < 4; ++c)
                    {
                        Vector256<byte> q = Avx.LoadVector256(x[i].Qs + 32 * c);
                        Avx.Store((byte*)a + 64 * c, Avx2.And(q, low));
                        Avx.Store((byte*)a + 64 * c + 32, Avx2.And(Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte(), low));
                    }
                    for (int j = 0; j < 8; ++j)
                    {
                        KQuant.GetScaleMinK4(j, x[i].Scales, out byte sc, out byte m);
                        scales[2 * j] = scales[2 * j + 1] = sc;
                        mins[j] = m;
                    }
                    float xd = KQuant.Fp16ToFp32(x[i].D), xdmin = KQuant.Fp16ToFp32(x[i].DMin);
                    for (int k = 0; k < na; k++)
                    {
                        var y = (BlockQ8_K*)(activations + (a0 + k) * actStride) + i;
                        int sumi = 0;
                        for (int j = 0; j < 8; ++j) sumi += (y->Bsums[2 * j] + y->Bsums[2 * j + 1]) * mins[j];
                        Vector256<int> aux32 = Avx512BW.IsSupported
                            ? KQuantLanes.DotLanesAvx512(a, y->Qs, scales)
                            : KQuant.DotLanesAvx2(a, y->Qs, scales);
                        float d = xd * y->D;
                        sums[k] = KQuant.AccumulateLanes(sums[k], d, aux32);
                        float dmin = xdmin * y->D;
                        sumf[k] -= dmin * sumi;
                    }
                }
                for (int k = 0; k < na; k++) yOut[(a0 + k) * yStride + r] = KQuant.SumLanesInOrder(sumf[k], sums[k]);
            }
        }
    }
}
