using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q3_Kx8
{
    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels it falls back to.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// <see cref="ScaleCtrl"/> in all four 128-bit lanes (built here from the method, not from the AVX2
    /// fields: static initialisers of partial-class files run in no defined order).
    /// </summary>
    private static readonly Vector512<byte> s_scale0x2 = Twice(ScaleCtrl(0)), s_scale1x2 = Twice(ScaleCtrl(1)),
        s_scale2x2 = Twice(ScaleCtrl(2)), s_scale3x2 = Twice(ScaleCtrl(3));

    private static Vector512<byte> Twice(Vector256<byte> v) => Vector512.Create(v, v);

    /// <summary>The prompt tile, with the AVX-512 pairs of groups where the CPU has them (see <see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long, bool)"/>).</summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512: true);

    /// <summary><see cref="UnpackScales"/> for two groups (<paramref name="o"/> low, <paramref name="oh"/> high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackScales2(byte* o, byte* oh, Vector512<short>* sc)
    {
        var m4 = Vector512.Create((byte)0x0F);
        var m2 = Vector512.Create((byte)0x30);
        var bias = Vector512.Create((byte)32);
        var s0 = Q4_Kx8.Load2(o + OffS, oh + OffS);
        var s1 = Q4_Kx8.Load2(o + OffS + 32, oh + OffS + 32);
        var h = Q4_Kx8.Load2(o + OffH, oh + OffH);
        var u0 = ((s0 & m4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & m2)) - bias;
        var u1 = ((Avx512BW.ShiftRightLogical(s0.AsUInt16(), 4).AsByte() & m4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & m2)) - bias;
        var u2 = ((s1 & m4) | (h & m2)) - bias;
        var u3 = ((Avx512BW.ShiftRightLogical(s1.AsUInt16(), 4).AsByte() & m4) | (Avx512BW.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & m2)) - bias;
        Spread2(u0, sc);
        Spread2(u1, sc + 4);
        Spread2(u2, sc + 8);
        Spread2(u3, sc + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Spread2(Vector512<byte> u, Vector512<short>* sc)
    {
        sc[0] = Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(u, s_scale0x2).AsInt16(), 8);
        sc[1] = Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(u, s_scale1x2).AsInt16(), 8);
        sc[2] = Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(u, s_scale2x2).AsInt16(), 8);
        sc[3] = Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(u, s_scale3x2).AsInt16(), 8);
    }

    /// <summary><see cref="Values(Vector256{byte}, Vector256{byte}, int, int)"/> for two groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Values(Vector512<byte> q, Vector512<byte> h, int t, int s)
    {
        var low = s switch
        {
            0 => q.AsUInt16(),
            1 => Avx512BW.ShiftRightLogical(q.AsUInt16(), 2),
            2 => Avx512BW.ShiftRightLogical(q.AsUInt16(), 4),
            _ => Avx512BW.ShiftRightLogical(q.AsUInt16(), 6),
        };
        var high = (4 * (t & 1) + s) switch
        {
            0 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2),
            1 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 1),
            2 => h.AsUInt16(),
            3 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 1),
            4 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 2),
            5 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 3),
            6 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 4),
            _ => Avx512BW.ShiftRightLogical(h.AsUInt16(), 5),
        };
        return (low.AsByte() & Vector512.Create((byte)3)) | (high.AsByte() & Vector512.Create((byte)4));
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on)
    /// against four activation rows: sixteen results per activation row to <paramref name="y"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        short* c = stackalloc short[64];
        Vector512<short>* sc = stackalloc Vector512<short>[16];
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            UnpackScales2(o, oh, sc);
            Corrections(a0 + ib, c);
            Corrections(a1 + ib, c + 16);
            Corrections(a2 + ib, c + 32);
            Corrections(a3 + ib, c + 48);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Step2x4(o, oh, 0, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 1, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 2, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 3, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 4, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 5, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 6, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 7, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 8, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 9, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 10, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 11, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 12, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 13, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 14, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step2x4(o, oh, 15, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            acc0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a0[ib].D), Avx512F.ConvertToVector512Single(s0), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a1[ib].D), Avx512F.ConvertToVector512Single(s1), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a2[ib].D), Avx512F.ConvertToVector512Single(s2), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a3[ib].D), Avx512F.ConvertToVector512Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>Sub-block t of two groups against four activation rows, into each row's int32 sums (<see cref="Step4"/> on zmm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step2x4(byte* o, byte* oh, int t, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, short* c, Vector512<short>* sc,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        var q = Q4_Kx8.Load2(o + OffQ + 32 * t, oh + OffQ + 32 * t);
        var h = Q4_Kx8.Load2(o + OffHM + 32 * (t >> 1), oh + OffHM + 32 * (t >> 1));
        int at = 16 * t;
        Vector512<short> p0 = Vector512.Create(c[t]), p1 = Vector512.Create(c[16 + t]), p2 = Vector512.Create(c[32 + t]), p3 = Vector512.Create(c[48 + t]);
        Mac2x4(Values(q, h, t, 0), at, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values(q, h, t, 1), at + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values(q, h, t, 2), at + 8, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac2x4(Values(q, h, t, 3), at + 12, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        var scale = sc[t];
        s0 += Avx512BW.MultiplyAddAdjacent(p0, scale);
        s1 += Avx512BW.MultiplyAddAdjacent(p1, scale);
        s2 += Avx512BW.MultiplyAddAdjacent(p2, scale);
        s3 += Avx512BW.MultiplyAddAdjacent(p3, scale);
    }

    /// <summary>Values of two groups against the four rows' activation bytes at <paramref name="at"/> .. at + 4, broadcast.</summary>
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
