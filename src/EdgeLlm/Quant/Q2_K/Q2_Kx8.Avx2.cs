using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q2_Kx8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, in-lane shuffles) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// How far ahead of the super-block being read <see cref="Group1"/> (decode) prefetches, as the
    /// other repacked decode kernels do (see <see cref="Q4_Kx8.DecodePrefetchBytes"/>).
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        KQuant.CheckLength(n, "Q2_K");
        RowGroupLoops.Decode<BlockQ8_K>(IsSupported, &DotRowsReference, &Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. Each group super-block's scales, mins and two-bit values are built once
    /// per four activation rows; with <paramref name="avx512"/> (and AVX-512 BW present) two consecutive
    /// groups share one zmm (<see cref="Group2x4"/>), a leftover odd group, activation rows past the last
    /// four and the plain tail going through the AVX2 kernels. Per (row, activation) the arithmetic is
    /// <see cref="DotRows"/>'s, so every path gives the same bits (tests compare them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        KQuant.CheckLength(n, "Q2_K");
        RowGroupLoops.Tile<BlockQ8_K>(IsSupported, avx512 && IsAvx512Supported, &DotRowsReference, &Group2x4, &Group1, &Group4, &PlainDot,
            QK, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// The eight rows' sixteen scales as int16 pairs per row lane (<paramref name="sc"/>, the <c>vpmaddwd</c>
    /// operands) and their mins as pairs (min 2k, min 2k + 1) per row lane (<paramref name="mn"/>, eight vectors).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackScales(byte* o, Vector256<short>* sc, Vector256<short>* mn)
    {
        Spread(Vector256.Load(o + OffV), sc, mn);
        Spread(Vector256.Load(o + OffV + 32), sc + 4, mn + 2);
        Spread(Vector256.Load(o + OffV + 64), sc + 8, mn + 4);
        Spread(Vector256.Load(o + OffV + 96), sc + 12, mn + 6);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Spread(Vector256<byte> v, Vector256<short>* sc, Vector256<short>* mn)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var s = v & m4;
        var m = Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m4;
        sc[0] = Avx2.Shuffle(s, Q4_Kx8.s_scale0).AsInt16();
        sc[1] = Avx2.Shuffle(s, Q4_Kx8.s_scale1).AsInt16();
        sc[2] = Avx2.Shuffle(s, Q4_Kx8.s_scale2).AsInt16();
        sc[3] = Avx2.Shuffle(s, Q4_Kx8.s_scale3).AsInt16();
        mn[0] = Avx2.Shuffle(m, Q4_Kx8.s_min01).AsInt16();
        mn[1] = Avx2.Shuffle(m, Q4_Kx8.s_min23).AsInt16();
    }

    /// <summary>summ per row: Σ_k (min 2k, min 2k + 1) · (bsums[2k], bsums[2k + 1]), one <c>vpmaddwd</c> per pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> MinSums(Vector256<short>* mn, BlockQ8_K* yb)
    {
        int* bs = (int*)yb->Bsums;
        var p0 = Avx2.MultiplyAddAdjacent(mn[0], Vector256.Create(bs[0]).AsInt16()) + Avx2.MultiplyAddAdjacent(mn[1], Vector256.Create(bs[1]).AsInt16());
        var p1 = Avx2.MultiplyAddAdjacent(mn[2], Vector256.Create(bs[2]).AsInt16()) + Avx2.MultiplyAddAdjacent(mn[3], Vector256.Create(bs[3]).AsInt16());
        var p2 = Avx2.MultiplyAddAdjacent(mn[4], Vector256.Create(bs[4]).AsInt16()) + Avx2.MultiplyAddAdjacent(mn[5], Vector256.Create(bs[5]).AsInt16());
        var p3 = Avx2.MultiplyAddAdjacent(mn[6], Vector256.Create(bs[6]).AsInt16()) + Avx2.MultiplyAddAdjacent(mn[7], Vector256.Create(bs[7]).AsInt16());
        return (p0 + p1) + (p2 + p3);
    }

    /// <summary>The two-bit values of shift <paramref name="s"/> (a constant after inlining) of a quant vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Values(Vector256<byte> q, int s)
    {
        // A switch rather than a computed count: the shifts need immediates, and the JIT folds it away.
        var v = s switch
        {
            0 => q.AsUInt16(),
            1 => Avx2.ShiftRightLogical(q.AsUInt16(), 2),
            2 => Avx2.ShiftRightLogical(q.AsUInt16(), 4),
            _ => Avx2.ShiftRightLogical(q.AsUInt16(), 6),
        };
        return v.AsByte() & Vector256.Create((byte)3);
    }

    /// <summary>Sub-block t of one activation row, scaled into the row sums: Σ q·a as int16 pairs (eight products of ≤ 3·128), then · scale_t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Step1(byte* o, int t, sbyte* x, Vector256<short>* sc)
    {
        var q = Vector256.Load(o + OffQ + 32 * t);
        x += 16 * t;
        var p = Avx2.MultiplyAddAdjacent(Values(q, 0), Vector256.Create(*(int*)x).AsSByte())
            + Avx2.MultiplyAddAdjacent(Values(q, 1), Vector256.Create(*(int*)(x + 4)).AsSByte())
            + (Avx2.MultiplyAddAdjacent(Values(q, 2), Vector256.Create(*(int*)(x + 8)).AsSByte())
            + Avx2.MultiplyAddAdjacent(Values(q, 3), Vector256.Create(*(int*)(x + 12)).AsSByte()));
        return Avx2.MultiplyAddAdjacent(p, sc[t]);
    }

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_K* a, float* y)
    {
        Vector256<short>* sc = stackalloc Vector256<short>[16];
        Vector256<short>* mn = stackalloc Vector256<short>[8];
        var acc = Vector256<float>.Zero;
        var accm = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            // One prefetch per cache line of the super-block DecodePrefetchBytes ahead (see there).
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(o + DecodePrefetchBytes + l);
            UnpackScales(o, sc, mn);
            sbyte* x = a[ib].Qs;
            // Written out (t = 0..15) so that every offset and shift is a constant: the JIT does not unroll loops.
            var s0 = Step1(o, 0, x, sc) + Step1(o, 1, x, sc) + Step1(o, 2, x, sc) + Step1(o, 3, x, sc);
            var s1 = Step1(o, 4, x, sc) + Step1(o, 5, x, sc) + Step1(o, 6, x, sc) + Step1(o, 7, x, sc);
            s0 += Step1(o, 8, x, sc) + Step1(o, 9, x, sc) + Step1(o, 10, x, sc) + Step1(o, 11, x, sc);
            s1 += Step1(o, 12, x, sc) + Step1(o, 13, x, sc) + Step1(o, 14, x, sc) + Step1(o, 15, x, sc);
            var yd = Vector256.Create(a[ib].D);
            acc = Fma.MultiplyAdd(Q4_Kx8.Widen(o + OffD) * yd, Avx.ConvertToVector256Single(s0 + s1), acc);
            accm = Fma.MultiplyAdd(Q4_Kx8.Widen(o + OffDMin) * yd, Avx.ConvertToVector256Single(MinSums(mn, a + ib)), accm);
        }
        (acc - accm).Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each super-block's scales unpacked once, each sub-block's
    /// values built once and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        Vector256<short>* sc = stackalloc Vector256<short>[16];
        Vector256<short>* mn = stackalloc Vector256<short>[8];
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector256<float> accm0 = default, accm1 = default, accm2 = default, accm3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            UnpackScales(o, sc, mn);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Step4(o, 0, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 1, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 2, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 3, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 4, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 5, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 6, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 7, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 8, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 9, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 10, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 11, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 12, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 13, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 14, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 15, x0, x1, x2, x3, sc, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen(o + OffD);
            var mx = Q4_Kx8.Widen(o + OffDMin);
            Finish(dx, mx, s0, mn, a0 + ib, ref acc0, ref accm0);
            Finish(dx, mx, s1, mn, a1 + ib, ref acc1, ref accm1);
            Finish(dx, mx, s2, mn, a2 + ib, ref acc2, ref accm2);
            Finish(dx, mx, s3, mn, a3 + ib, ref acc3, ref accm3);
        }
        (acc0 - accm0).Store(y);
        (acc1 - accm1).Store(y + yStride);
        (acc2 - accm2).Store(y + 2 * yStride);
        (acc3 - accm3).Store(y + 3 * yStride);
    }

    /// <summary>One super-block's float steps for one activation row (<see cref="Group1"/>'s order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(Vector256<float> dx, Vector256<float> mx, Vector256<int> sumi, Vector256<short>* mn, BlockQ8_K* yb,
        ref Vector256<float> acc, ref Vector256<float> accm)
    {
        var yd = Vector256.Create(yb->D);
        acc = Fma.MultiplyAdd(dx * yd, Avx.ConvertToVector256Single(sumi), acc);
        accm = Fma.MultiplyAdd(mx * yd, Avx.ConvertToVector256Single(MinSums(mn, yb)), accm);
    }

    /// <summary>Sub-block t against four activation rows, scaled into each row's int32 sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4(byte* o, int t, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector256<short>* sc,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var q = Vector256.Load(o + OffQ + 32 * t);
        int at = 16 * t;
        Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
        Mac4(Values(q, 0), at, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, 1), at + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, 2), at + 8, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, 3), at + 12, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        var scale = sc[t];
        s0 += Avx2.MultiplyAddAdjacent(p0, scale);
        s1 += Avx2.MultiplyAddAdjacent(p1, scale);
        s2 += Avx2.MultiplyAddAdjacent(p2, scale);
        s3 += Avx2.MultiplyAddAdjacent(p3, scale);
    }

    /// <summary>Values <paramref name="w"/> against the four rows' activation bytes at <paramref name="at"/> .. at + 4, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(Vector256<byte> w, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        p0 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x0 + at)).AsSByte());
        p1 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x1 + at)).AsSByte());
        p2 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x2 + at)).AsSByte());
        p3 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x3 + at)).AsSByte());
    }
}
