using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_0x8
{
    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on) against
    /// four activation rows, as <see cref="Q4_Kx8"/>'s AVX-512 tile: group g in the low 256 bits of each zmm
    /// and g + 1 in the high, the values built once per 16 rows and met by four broadcasts. Per
    /// (row, activation) the integer sums are exact and the float steps are <see cref="Group4"/>'s, lane
    /// for lane, so results equal the AVX2 kernels bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, int* corr, float* y, long yStride)
    {
        var ones = Vector512.Create((short)1);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            var h = Q4_Kx8.Load2(o + OffH, oh + OffH);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Half2x4(o + OffQ, oh + OffQ, h, 0, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Half2x4(o + OffQ, oh + OffQ, h, 2, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            acc0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx512F.ConvertToVector512Single(s0 - Vector512.Create(corr[ib])), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx512F.ConvertToVector512Single(s1 - Vector512.Create(corr[nb + ib])), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx512F.ConvertToVector512Single(s2 - Vector512.Create(corr[2 * nb + ib])), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx512F.ConvertToVector512Single(s3 - Vector512.Create(corr[3 * nb + ib])), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>The values of quant vector k of two groups (low or high nibbles with their fifth bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Values2(byte* q, byte* qNext, Vector512<byte> h, int k, bool high)
    {
        var m = Vector512.Create((byte)0x0F);
        var v = Q4_Kx8.Load2(q + 32 * k, qNext + 32 * k);
        var nib = high ? Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return nib | Q5_Kx8.FifthBit(h, high ? 4 + k : k);
    }

    /// <summary>Quant vectors k and k + 1 of two groups against four activation rows, widened into each row's int32 sums (as <see cref="Half4"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Half2x4(byte* q, byte* qNext, Vector512<byte> h, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector512<short> ones,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        Vector512<short> p0 = default, p1 = default, p2 = default, p3 = default;
        Mac2x4(Values2(q, qNext, h, k, false), 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values2(q, qNext, h, k, true), 16 + 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values2(q, qNext, h, k + 1, false), 4 * k + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values2(q, qNext, h, k + 1, true), 20 + 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        s0 += Avx512BW.MultiplyAddAdjacent(p0, ones);
        s1 += Avx512BW.MultiplyAddAdjacent(p1, ones);
        s2 += Avx512BW.MultiplyAddAdjacent(p2, ones);
        s3 += Avx512BW.MultiplyAddAdjacent(p3, ones);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Mac2x4(Vector512<byte> w, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector512<short> p0, ref Vector512<short> p1, ref Vector512<short> p2, ref Vector512<short> p3)
    {
        p0 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(int*)(x0 + at)).AsSByte());
        p1 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(int*)(x1 + at)).AsSByte());
        p2 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(int*)(x2 + at)).AsSByte());
        p3 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(int*)(x3 + at)).AsSByte());
    }
}
