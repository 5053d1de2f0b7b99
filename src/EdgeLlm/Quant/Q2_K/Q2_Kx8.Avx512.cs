using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q2_Kx8
{
    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels it falls back to.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>The prompt tile, with the AVX-512 pairs of groups where the CPU has them (see <see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long, bool)"/>).</summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512: true);

    /// <summary><see cref="UnpackScales"/> for two groups (<paramref name="o"/> low, <paramref name="oh"/> high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackScales2(byte* o, byte* oh, Vector512<short>* sc, Vector512<short>* mn)
    {
        Spread2(Q4_Kx8.Load2(o + OffV, oh + OffV), sc, mn);
        Spread2(Q4_Kx8.Load2(o + OffV + 32, oh + OffV + 32), sc + 4, mn + 2);
        Spread2(Q4_Kx8.Load2(o + OffV + 64, oh + OffV + 64), sc + 8, mn + 4);
        Spread2(Q4_Kx8.Load2(o + OffV + 96, oh + OffV + 96), sc + 12, mn + 6);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Spread2(Vector512<byte> v, Vector512<short>* sc, Vector512<short>* mn)
    {
        var m4 = Vector512.Create((byte)0x0F);
        var s = v & m4;
        var m = Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m4;
        sc[0] = Avx512BW.Shuffle(s, Q4_Kx8.s_scale0x2).AsInt16();
        sc[1] = Avx512BW.Shuffle(s, Q4_Kx8.s_scale1x2).AsInt16();
        sc[2] = Avx512BW.Shuffle(s, Q4_Kx8.s_scale2x2).AsInt16();
        sc[3] = Avx512BW.Shuffle(s, Q4_Kx8.s_scale3x2).AsInt16();
        mn[0] = Avx512BW.Shuffle(m, Q4_Kx8.s_min01x2).AsInt16();
        mn[1] = Avx512BW.Shuffle(m, Q4_Kx8.s_min23x2).AsInt16();
    }

    /// <summary><see cref="MinSums(Vector256{short}*, BlockQ8_K*)"/> for two groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MinSums2(Vector512<short>* mn, BlockQ8_K* yb)
    {
        int* bs = (int*)yb->Bsums;
        var p0 = Avx512BW.MultiplyAddAdjacent(mn[0], Vector512.Create(bs[0]).AsInt16()) + Avx512BW.MultiplyAddAdjacent(mn[1], Vector512.Create(bs[1]).AsInt16());
        var p1 = Avx512BW.MultiplyAddAdjacent(mn[2], Vector512.Create(bs[2]).AsInt16()) + Avx512BW.MultiplyAddAdjacent(mn[3], Vector512.Create(bs[3]).AsInt16());
        var p2 = Avx512BW.MultiplyAddAdjacent(mn[4], Vector512.Create(bs[4]).AsInt16()) + Avx512BW.MultiplyAddAdjacent(mn[5], Vector512.Create(bs[5]).AsInt16());
        var p3 = Avx512BW.MultiplyAddAdjacent(mn[6], Vector512.Create(bs[6]).AsInt16()) + Avx512BW.MultiplyAddAdjacent(mn[7], Vector512.Create(bs[7]).AsInt16());
        return (p0 + p1) + (p2 + p3);
    }

    /// <summary><see cref="Values(Vector256{byte}, int)"/> for two groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Values(Vector512<byte> q, int s)
    {
        var v = s switch
        {
            0 => q.AsUInt16(),
            1 => Avx512BW.ShiftRightLogical(q.AsUInt16(), 2),
            2 => Avx512BW.ShiftRightLogical(q.AsUInt16(), 4),
            _ => Avx512BW.ShiftRightLogical(q.AsUInt16(), 6),
        };
        return v.AsByte() & Vector512.Create((byte)3);
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on)
    /// against four activation rows: sixteen results per activation row to <paramref name="y"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        Vector512<short>* sc = stackalloc Vector512<short>[16];
        Vector512<short>* mn = stackalloc Vector512<short>[8];
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector512<float> accm0 = default, accm1 = default, accm2 = default, accm3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            UnpackScales2(o, oh, sc, mn);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Step2x4(o, oh, 0, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 1, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 2, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 3, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 4, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 5, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 6, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 7, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 8, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 9, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 10, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 11, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 12, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 13, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 14, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 15, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            var mx = Q4_Kx8.Widen2(o + OffDMin, oh + OffDMin);
            Finish2(dx, mx, s0, mn, a0 + ib, ref acc0, ref accm0);
            Finish2(dx, mx, s1, mn, a1 + ib, ref acc1, ref accm1);
            Finish2(dx, mx, s2, mn, a2 + ib, ref acc2, ref accm2);
            Finish2(dx, mx, s3, mn, a3 + ib, ref acc3, ref accm3);
        }
        (acc0 - accm0).Store(y);
        (acc1 - accm1).Store(y + yStride);
        (acc2 - accm2).Store(y + 2 * yStride);
        (acc3 - accm3).Store(y + 3 * yStride);
    }

    /// <summary>One super-block's float steps for one activation row (<see cref="Group1"/>'s order, on zmm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish2(Vector512<float> dx, Vector512<float> mx, Vector512<int> sumi, Vector512<short>* mn, BlockQ8_K* yb,
        ref Vector512<float> acc, ref Vector512<float> accm)
    {
        var yd = Vector512.Create(yb->D);
        acc = Avx512F.FusedMultiplyAdd(dx * yd, Avx512F.ConvertToVector512Single(sumi), acc);
        accm = Avx512F.FusedMultiplyAdd(mx * yd, Avx512F.ConvertToVector512Single(MinSums2(mn, yb)), accm);
    }

    /// <summary>Sub-block t of two groups against four activation rows, scaled into each row's int32 sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step2x4(byte* o, byte* oh, int t, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector512<short>* sc,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        var q = Q4_Kx8.Load2(o + OffQ + 32 * t, oh + OffQ + 32 * t);
        int at = 16 * t;
        Vector512<short> p0 = default, p1 = default, p2 = default, p3 = default;
        Q3_Kx8.Mac2x4(Values(q, 0), at, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Q3_Kx8.Mac2x4(Values(q, 1), at + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Q3_Kx8.Mac2x4(Values(q, 2), at + 8, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Q3_Kx8.Mac2x4(Values(q, 3), at + 12, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        var scale = sc[t];
        s0 += Avx512BW.MultiplyAddAdjacent(p0, scale);
        s1 += Avx512BW.MultiplyAddAdjacent(p1, scale);
        s2 += Avx512BW.MultiplyAddAdjacent(p2, scale);
        s3 += Avx512BW.MultiplyAddAdjacent(p3, scale);
    }
}
