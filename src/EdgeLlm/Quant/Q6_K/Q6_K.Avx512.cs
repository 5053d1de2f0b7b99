using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_K
{
    /// <summary>
    /// AVX-512 dot product (the AVX2 unpacking, then 512-bit lanes; requires Avx512BW) with the reference's lanes: per 128-value half, 32 bytes of ql at 0
    /// and 32 give four nibble vectors (values +0, +32, +64, +96) and qh shifted by 0/2/4/6
    /// their high bits; then <see cref="KQuantLanes.DotLanesAvx512"/> and the reference's float
    /// tail, so the result is identical.
    /// </summary>
    internal static float DotQ6_KQ8_KAvx512(int n, BlockQ6_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<byte> three = Vector256.Create((byte)3);
        Vector256<byte> offset = Vector256.Create((byte)32);
        Vector256<float> sums = Vector256<float>.Zero;
        for (int i = 0; i < nb; ++i)
        {
            for (int h = 0; h < 2; ++h)
            {
                Vector256<byte> l0 = Avx.LoadVector256(x[i].Ql + 64 * h);
                Vector256<byte> l1 = Avx.LoadVector256(x[i].Ql + 64 * h + 32);
                Vector256<byte> hb = Avx.LoadVector256(x[i].Qh + 32 * h);
                Vector256<byte> nib0 = Avx2.And(l0, low);
                Vector256<byte> nib1 = Avx2.And(l1, low);
                Vector256<byte> nib2 = Avx2.And(Avx2.ShiftRightLogical(l0.AsUInt16(), 4).AsByte(), low);
                Vector256<byte> nib3 = Avx2.And(Avx2.ShiftRightLogical(l1.AsUInt16(), 4).AsByte(), low);
                byte* dst = (byte*)a + 128 * h;
                Avx.Store(dst, Combine(nib0, hb, three, offset));
                Avx.Store(dst + 32, Combine(nib1, Avx2.ShiftRightLogical(hb.AsUInt16(), 2).AsByte(), three, offset));
                Avx.Store(dst + 64, Combine(nib2, Avx2.ShiftRightLogical(hb.AsUInt16(), 4).AsByte(), three, offset));
                Avx.Store(dst + 96, Combine(nib3, Avx2.ShiftRightLogical(hb.AsUInt16(), 6).AsByte(), three, offset));
            }
            for (int j = 0; j < 16; ++j) scales[j] = x[i].Scales[j];
            Vector256<int> aux32 = KQuantLanes.DotLanesAvx512(a, y[i].Qs, scales);
            float d = KQuant.Fp16ToFp32(x[i].D) * y[i].D;
            sums = KQuant.AccumulateLanes(sums, d, aux32);
        }
        return KQuant.SumLanesInOrder(0f, sums);
    }
}
