using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q3_K
{
    /// <summary>
    /// AVX-512 dot product (the AVX2 unpacking, then 512-bit lanes; requires Avx512BW) with the reference's lanes: the quants are expanded 32 at a time
    /// (low 2 bits from qs, minus 4 where the hmask bit is clear), then
    /// <see cref="KQuantLanes.DotLanesAvx512"/> forms the eight int32 lanes and the float tail is the
    /// reference's, so the result is identical.
    /// <code>
    /// value 128h + 32s + l (l &lt; 32): (qs[32h + l] &gt;&gt; 2s) &amp; 3, high bit = hmask[l] bit (4h + s)
    /// </code>
    /// </summary>
    internal static float DotQ3_KQ8_KAvx512(int n, BlockQ3_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q3_K");
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        sbyte* packedScales = stackalloc sbyte[16];
        int* scales = stackalloc int[16];
        Vector256<byte> three = Vector256.Create((byte)3);
        Vector256<byte> four = Vector256.Create((byte)4);
        Vector256<float> sums = Vector256<float>.Zero;
        for (int i = 0; i < nb; ++i)
        {
            Vector256<byte> hm = Avx.LoadVector256(x[i].HMask);
            for (int h = 0; h < 2; ++h)
            {
                Vector256<byte> q = Avx.LoadVector256(x[i].Qs + 32 * h);
                for (int s = 0; s < 4; ++s)
                {
                    Vector256<byte> lo = Avx2.And(q, three);
                    q = Avx2.ShiftRightLogical(q.AsUInt16(), 2).AsByte(); // next 2 bits; the mask above drops bits from the neighbour byte
                    Vector256<byte> bit = Vector256.Create((byte)(1 << (4 * h + s)));
                    // 4 where the high bit is clear, 0 where it is set.
                    Vector256<byte> off = Avx2.AndNot(Avx2.CompareEqual(Avx2.And(hm, bit), bit), four);
                    Avx.Store((byte*)a + 128 * h + 32 * s, Avx2.Subtract(lo, off));
                }
            }
            UnpackScales(x[i].Scales, packedScales);
            for (int j = 0; j < 16; ++j) scales[j] = packedScales[j] - 32;
            Vector256<int> aux32 = KQuantLanes.DotLanesAvx512(a, y[i].Qs, scales);
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            sums = KQuant.AccumulateLanes(sums, d, aux32);
        }
        return KQuant.SumLanesInOrder(0f, sums);
    }
}
