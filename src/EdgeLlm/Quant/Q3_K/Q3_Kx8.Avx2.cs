using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q3_Kx8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, in-lane shuffles) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// How far ahead of the super-block being read <see cref="Group1"/> (decode) prefetches, as the
    /// other repacked decode kernels do (see <see cref="Q4_Kx8.DecodePrefetchBytes"/>).
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>
    /// <c>vpshufb</c> controls: the scale of sub-block 4u + jj (byte 4jj + rr of U_u, lane-relative) to
    /// the high byte of both int16 of each row's 32-bit lane, the low bytes zero; an arithmetic shift
    /// by 8 then sign-extends it (the scales are signed, −32..31).
    /// </summary>
    private static readonly Vector256<byte> s_scale0 = ScaleCtrl(0), s_scale1 = ScaleCtrl(1), s_scale2 = ScaleCtrl(2), s_scale3 = ScaleCtrl(3);

    private static Vector256<byte> ScaleCtrl(int jj)
    {
        var b = new byte[32];
        for (int i = 0; i < 32; i++) b[i] = (i & 1) != 0 ? (byte)(jj * 4 + ((i & 15) >> 2)) : (byte)0x80;
        return Vector256.Create(b);
    }

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        KQuant.CheckLength(n, "Q3_K");
        RowGroupLoops.Decode<BlockQ8_K>(IsSupported, &DotRowsReference, &Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. Each group super-block's scales and three-bit values are built once
    /// per four activation rows; with <paramref name="avx512"/> (and AVX-512 BW present) two consecutive
    /// groups share one zmm (<see cref="Group2x4"/>), a leftover odd group, activation rows past the last
    /// four and the plain tail going through the AVX2 kernels. Per (row, activation) the arithmetic is
    /// <see cref="DotRows"/>'s, so every path gives the same bits (tests compare them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        KQuant.CheckLength(n, "Q3_K");
        RowGroupLoops.Tile<BlockQ8_K>(IsSupported, avx512 && IsAvx512Supported, &DotRowsReference, &Group2x4, &Group1, &Group4, &PlainDot,
            QK, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>The eight rows' sixteen scales (−32..31) as int16 pairs per row lane: the <c>vpmaddwd</c> operands.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackScales(byte* o, Vector256<short>* sc)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((byte)0x30);
        var bias = Vector256.Create((byte)32);
        var s0 = Vector256.Load(o + OffS);
        var s1 = Vector256.Load(o + OffS + 32);
        var h = Vector256.Load(o + OffH);
        var u0 = ((s0 & m4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & m2)) - bias;
        var u1 = ((Avx2.ShiftRightLogical(s0.AsUInt16(), 4).AsByte() & m4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & m2)) - bias;
        var u2 = ((s1 & m4) | (h & m2)) - bias;
        var u3 = ((Avx2.ShiftRightLogical(s1.AsUInt16(), 4).AsByte() & m4) | (Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & m2)) - bias;
        Spread(u0, sc);
        Spread(u1, sc + 4);
        Spread(u2, sc + 8);
        Spread(u3, sc + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Spread(Vector256<byte> u, Vector256<short>* sc)
    {
        sc[0] = Avx2.ShiftRightArithmetic(Avx2.Shuffle(u, s_scale0).AsInt16(), 8);
        sc[1] = Avx2.ShiftRightArithmetic(Avx2.Shuffle(u, s_scale1).AsInt16(), 8);
        sc[2] = Avx2.ShiftRightArithmetic(Avx2.Shuffle(u, s_scale2).AsInt16(), 8);
        sc[3] = Avx2.ShiftRightArithmetic(Avx2.Shuffle(u, s_scale3).AsInt16(), 8);
    }

    /// <summary>
    /// −2·bsums[j] of an activation block, sixteen int16 to <paramref name="c"/>: added to both int16 of
    /// a row's pair sums, it takes 4·Σa off the unsigned values' sum (the plain value is u − 4).
    /// |bsums| ≤ 16·128, so the doubled sum and the pair sums it meets stay in int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Corrections(BlockQ8_K* yb, short* c)
    {
        var b = Vector256.Load(yb->Bsums);
        (Vector256<short>.Zero - (b + b)).Store(c);
    }

    /// <summary>
    /// The unsigned values (0..7) of shift <paramref name="s"/> of quant vector <paramref name="t"/>
    /// (<paramref name="q"/> = Q[t], <paramref name="h"/> = HM[t/2]); t and s are constants after inlining.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Values(Vector256<byte> q, Vector256<byte> h, int t, int s)
    {
        // Switches rather than computed counts: the shifts need immediates, and the JIT folds them away.
        var low = s switch
        {
            0 => q.AsUInt16(),
            1 => Avx2.ShiftRightLogical(q.AsUInt16(), 2),
            2 => Avx2.ShiftRightLogical(q.AsUInt16(), 4),
            _ => Avx2.ShiftRightLogical(q.AsUInt16(), 6),
        };
        // The high bit sits at bit 4(t mod 2) + s of HM's byte and moves to bit 2 (the value 4).
        var high = (4 * (t & 1) + s) switch
        {
            0 => Avx2.ShiftLeftLogical(h.AsUInt16(), 2),
            1 => Avx2.ShiftLeftLogical(h.AsUInt16(), 1),
            2 => h.AsUInt16(),
            3 => Avx2.ShiftRightLogical(h.AsUInt16(), 1),
            4 => Avx2.ShiftRightLogical(h.AsUInt16(), 2),
            5 => Avx2.ShiftRightLogical(h.AsUInt16(), 3),
            6 => Avx2.ShiftRightLogical(h.AsUInt16(), 4),
            _ => Avx2.ShiftRightLogical(h.AsUInt16(), 5),
        };
        return (low.AsByte() & Vector256.Create((byte)3)) | (high.AsByte() & Vector256.Create((byte)4));
    }

    /// <summary>
    /// Σ u·a of sub-block <paramref name="t"/> (16 values per row) against the activation bytes at
    /// <paramref name="x"/> (its sixteen), as int16 pairs per row lane: four pair sums of ≤ 2·7·128 each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> SubBlock1(byte* o, int t, sbyte* x)
    {
        var q = Vector256.Load(o + OffQ + 32 * t);
        var h = Vector256.Load(o + OffHM + 32 * (t >> 1));
        var p0 = Avx2.MultiplyAddAdjacent(Values(q, h, t, 0), Vector256.Create(*(int*)x).AsSByte())
            + Avx2.MultiplyAddAdjacent(Values(q, h, t, 1), Vector256.Create(*(int*)(x + 4)).AsSByte());
        var p1 = Avx2.MultiplyAddAdjacent(Values(q, h, t, 2), Vector256.Create(*(int*)(x + 8)).AsSByte())
            + Avx2.MultiplyAddAdjacent(Values(q, h, t, 3), Vector256.Create(*(int*)(x + 12)).AsSByte());
        return p0 + p1;
    }

    /// <summary>Sub-block t of one activation row into the row sums: (pairs − 2·bsum_t) · scale_t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Step1(byte* o, int t, sbyte* x, short* c, Vector256<short>* sc) =>
        Avx2.MultiplyAddAdjacent(SubBlock1(o, t, x + 16 * t) + Vector256.Create(c[t]), sc[t]);

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_K* a, float* y)
    {
        short* c = stackalloc short[16];
        Vector256<short>* sc = stackalloc Vector256<short>[16];
        var acc = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            // One prefetch per cache line of the super-block DecodePrefetchBytes ahead (see there).
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(o + DecodePrefetchBytes + l);
            UnpackScales(o, sc);
            Corrections(a + ib, c);
            sbyte* x = a[ib].Qs;
            // Written out (t = 0..15) so that every offset and shift is a constant: the JIT does not unroll loops.
            var s0 = Step1(o, 0, x, c, sc) + Step1(o, 1, x, c, sc) + Step1(o, 2, x, c, sc) + Step1(o, 3, x, c, sc);
            var s1 = Step1(o, 4, x, c, sc) + Step1(o, 5, x, c, sc) + Step1(o, 6, x, c, sc) + Step1(o, 7, x, c, sc);
            s0 += Step1(o, 8, x, c, sc) + Step1(o, 9, x, c, sc) + Step1(o, 10, x, c, sc) + Step1(o, 11, x, c, sc);
            s1 += Step1(o, 12, x, c, sc) + Step1(o, 13, x, c, sc) + Step1(o, 14, x, c, sc) + Step1(o, 15, x, c, sc);
            acc = Fma.MultiplyAdd(Q4_Kx8.Widen(o + OffD) * Vector256.Create(a[ib].D), Avx.ConvertToVector256Single(s0 + s1), acc);
        }
        acc.Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each super-block's scales unpacked once, each sub-block's
    /// values built once and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        short* c = stackalloc short[64];
        Vector256<short>* sc = stackalloc Vector256<short>[16];
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            UnpackScales(o, sc);
            Corrections(a0 + ib, c);
            Corrections(a1 + ib, c + 16);
            Corrections(a2 + ib, c + 32);
            Corrections(a3 + ib, c + 48);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Step4(o, 0, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 1, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 2, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 3, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 4, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 5, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 6, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 7, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 8, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 9, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 10, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 11, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 12, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 13, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 14, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            Step4(o, 15, x0, x1, x2, x3, c, sc, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen(o + OffD);
            acc0 = Fma.MultiplyAdd(dx * Vector256.Create(a0[ib].D), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(dx * Vector256.Create(a1[ib].D), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(dx * Vector256.Create(a2[ib].D), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(dx * Vector256.Create(a3[ib].D), Avx.ConvertToVector256Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>Sub-block t against four activation rows (their corrections 16 apart at <paramref name="c"/>), into each row's int32 sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4(byte* o, int t, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, short* c, Vector256<short>* sc,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var q = Vector256.Load(o + OffQ + 32 * t);
        var h = Vector256.Load(o + OffHM + 32 * (t >> 1));
        int at = 16 * t;
        Vector256<short> p0 = Vector256.Create(c[t]), p1 = Vector256.Create(c[16 + t]), p2 = Vector256.Create(c[32 + t]), p3 = Vector256.Create(c[48 + t]);
        Mac4(Values(q, h, t, 0), at, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, h, t, 1), at + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, h, t, 2), at + 8, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(q, h, t, 3), at + 12, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
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
