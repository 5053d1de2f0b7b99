using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_Kx8
{
    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW (512-bit byte multiply-add and shuffles) besides the AVX2 kernels it falls back to.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// The AVX2 <c>vpshufb</c> controls twice: a zmm holds two groups, one per 256-bit half, and
    /// <c>vpshufb</c> works within 128-bit lanes, so the same lane-relative indices serve all four.
    /// (Built here rather than from the AVX2 fields: static initialisers of partial-class files run in no defined order.)
    /// </summary>
    internal static readonly Vector512<byte> s_scale0x2 = Twice(ScaleCtrl(0)), s_scale1x2 = Twice(ScaleCtrl(1)), s_scale2x2 = Twice(ScaleCtrl(2)),
        s_scale3x2 = Twice(ScaleCtrl(3)), s_min01x2 = Twice(MinCtrl(0)), s_min23x2 = Twice(MinCtrl(1));

    private static Vector512<byte> Twice(Vector256<byte> v) => Vector512.Create(v, v);

    /// <summary>
    /// The AVX-512 prompt tile: y[a·yStride + r] = row r · act a, bit for bit <see cref="DotTileAvx2"/>'s
    /// (and so <see cref="DotRows"/>'s). Two consecutive groups (16 rows) share one zmm: group g in the
    /// low 256 bits, g + 1 in the high, lane for lane the AVX2 kernel's layout. Both halves meet the
    /// same activation bytes, so a plain 32-bit broadcast serves them, and the scale unpacking, the
    /// quant loads and nibble splits are done once per 16 rows for four activation rows. Per
    /// (row, activation) the exact integer sums and the float steps are the AVX2 kernel's: the int16
    /// pair sums of a sub-block and the int32 sums are exact (so their order does not matter), and
    /// the float operations per super-block are the same ones in the same order. A leftover odd
    /// group, activation rows past the last four and rows past the last whole group go through the
    /// AVX2 code. Measured on an AVX-512 Xeon (one thread, 256 rows × 2048 × 128 activations): about
    /// 1.1–1.5× the AVX2 tile; eight activation rows per pass (each load shared by twice the rows)
    /// measured 10–15% slower than four, so four it is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        if (!IsAvx512Supported)
        {
            DotTileAvx2(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        KQuant.CheckLength(n, "Q4_K");
        RowGroupLoops.DotTilePairs<BlockQ8_K>(&Group2x4, &Group1, &Group4, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>Two 32-byte pieces as one zmm (<c>vinserti64x4</c>): <paramref name="lo"/> for group g, <paramref name="hi"/> for g + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> Load2(byte* lo, byte* hi) =>
        // Not Vector512.Create(lo, hi): the JIT builds that through a stack temporary with two inserts.
        Avx512F.InsertVector256(Vector256.Load(lo).ToVector512Unsafe(), Vector256.Load(hi), 1);

    /// <summary><see cref="Widen"/> for the sixteen fp16 values of two groups (eight at <paramref name="lo"/>, eight at <paramref name="hi"/>): the same exact conversion per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Widen2(byte* lo, byte* hi)
    {
        var h = Avx512F.ConvertToVector512Int32(Avx2.InsertVector128(Vector128.Load((ushort*)lo).ToVector256Unsafe(), Vector128.Load((ushort*)hi), 1));
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary><see cref="UnpackScales"/> for two groups at once (group g's super-block at <paramref name="o"/>, g + 1's at <paramref name="oh"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScales2(byte* o, byte* oh, Vector512<short>* sc, Vector512<short>* mn)
    {
        var m4 = Vector512.Create((byte)0x0F);
        var m2 = Vector512.Create((byte)0x30);
        var s0 = Load2(o + OffS, oh + OffS);
        var s1 = Load2(o + OffS + 32, oh + OffS + 32);
        var h = Load2(o + OffH, oh + OffH);
        var u0 = (s0 & m4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & m2);
        var u1 = (Avx512BW.ShiftRightLogical(s0.AsUInt16(), 4).AsByte() & m4) | (Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & m2);
        var u2 = (s1 & m4) | (h & m2);
        var u3 = (Avx512BW.ShiftRightLogical(s1.AsUInt16(), 4).AsByte() & m4) | (Avx512BW.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & m2);
        sc[0] = Avx512BW.Shuffle(u0, s_scale0x2).AsInt16();
        sc[1] = Avx512BW.Shuffle(u0, s_scale1x2).AsInt16();
        sc[2] = Avx512BW.Shuffle(u0, s_scale2x2).AsInt16();
        sc[3] = Avx512BW.Shuffle(u0, s_scale3x2).AsInt16();
        sc[4] = Avx512BW.Shuffle(u1, s_scale0x2).AsInt16();
        sc[5] = Avx512BW.Shuffle(u1, s_scale1x2).AsInt16();
        sc[6] = Avx512BW.Shuffle(u1, s_scale2x2).AsInt16();
        sc[7] = Avx512BW.Shuffle(u1, s_scale3x2).AsInt16();
        mn[0] = Avx512BW.Shuffle(u2, s_min01x2).AsInt16();
        mn[1] = Avx512BW.Shuffle(u2, s_min23x2).AsInt16();
        mn[2] = Avx512BW.Shuffle(u3, s_min01x2).AsInt16();
        mn[3] = Avx512BW.Shuffle(u3, s_min23x2).AsInt16();
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on)
    /// against four activation rows: sixteen results per activation row to <paramref name="y"/>
    /// (the two groups' rows are consecutive).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        short* bsp = stackalloc short[8];
        Vector512<short>* sc = stackalloc Vector512<short>[8];
        Vector512<short>* mn = stackalloc Vector512<short>[4];
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector512<float> accm0 = default, accm1 = default, accm2 = default, accm3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            UnpackScales2(o, oh, sc, mn);
            byte* q = o + OffQ, qh = oh + OffQ;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Chunk c: sub-blocks 2c (low nibbles of Q[8c..8c+8)) and 2c + 1 (their high nibbles) from one load of each vector.
            // A loop, not written out: four copies of the chunk overflow the decoded-uop cache.
            for (int c = 0; c < 4; c++)
                Chunk2x4(q + 256 * c, qh + 256 * c, x0 + 64 * c, x1 + 64 * c, x2 + 64 * c, x3 + 64 * c, sc[2 * c], sc[2 * c + 1], ref s0, ref s1, ref s2, ref s3);
            var dx = Widen2(o + OffD, oh + OffD);
            var mx = Widen2(o + OffDMin, oh + OffDMin);
            Finish2(dx, mx, s0, mn, a0 + ib, bsp, ref acc0, ref accm0);
            Finish2(dx, mx, s1, mn, a1 + ib, bsp, ref acc1, ref accm1);
            Finish2(dx, mx, s2, mn, a2 + ib, bsp, ref acc2, ref accm2);
            Finish2(dx, mx, s3, mn, a3 + ib, bsp, ref acc3, ref accm3);
        }
        (acc0 - accm0).Store(y);
        (acc1 - accm1).Store(y + yStride);
        (acc2 - accm2).Store(y + 2 * yStride);
        (acc3 - accm3).Store(y + 3 * yStride);
    }

    /// <summary><see cref="Finish"/> for 16 rows: the same float steps per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Finish2(Vector512<float> dx, Vector512<float> mx, Vector512<int> sumi, Vector512<short>* mn, BlockQ8_K* yb, short* bsp,
        ref Vector512<float> acc, ref Vector512<float> accm)
    {
        Ssse3.HorizontalAdd(Vector128.Load(yb->Bsums), Vector128.Load(yb->Bsums + 8)).Store(bsp);
        var p0 = Avx512BW.MultiplyAddAdjacent(mn[0], Vector512.Create(((int*)bsp)[0]).AsInt16());
        var p1 = Avx512BW.MultiplyAddAdjacent(mn[1], Vector512.Create(((int*)bsp)[1]).AsInt16());
        var p2 = Avx512BW.MultiplyAddAdjacent(mn[2], Vector512.Create(((int*)bsp)[2]).AsInt16());
        var p3 = Avx512BW.MultiplyAddAdjacent(mn[3], Vector512.Create(((int*)bsp)[3]).AsInt16());
        var summ = (p0 + p1) + (p2 + p3);
        var yd = Vector512.Create(yb->D);
        acc = Avx512F.FusedMultiplyAdd(dx * yd, Avx512F.ConvertToVector512Single(sumi), acc);
        accm = Avx512F.FusedMultiplyAdd(mx * yd, Avx512F.ConvertToVector512Single(summ), accm);
    }

    /// <summary>
    /// Sub-blocks 2c and 2c + 1 of two groups against four activation rows (<paramref name="x0"/>..
    /// point at value 64c of each): each quant vector is loaded once and split into its low nibbles
    /// (met by activation bytes 4k..4k+4) and high nibbles (bytes 32 + 4k..), as int16 pairs per
    /// row lane (within ±30720 over eight vectors, as in <see cref="SubBlock1"/>), then scaled into
    /// each activation row's int32 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunk2x4(byte* q, byte* qh, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector512<short> scLow, Vector512<short> scHigh,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        Vector512<short> l0 = default, l1 = default, l2 = default, l3 = default;
        Vector512<short> h0 = default, h1 = default, h2 = default, h3 = default;
        // Written out (k = 0..7) so that every address is a constant offset: the JIT does not unroll loops.
        Mac2x4(q, qh, 0, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 1, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 2, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 3, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 4, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 5, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 6, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        Mac2x4(q, qh, 7, x0, x1, x2, x3, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
        s0 += Avx512BW.MultiplyAddAdjacent(l0, scLow) + Avx512BW.MultiplyAddAdjacent(h0, scHigh);
        s1 += Avx512BW.MultiplyAddAdjacent(l1, scLow) + Avx512BW.MultiplyAddAdjacent(h1, scHigh);
        s2 += Avx512BW.MultiplyAddAdjacent(l2, scLow) + Avx512BW.MultiplyAddAdjacent(h2, scHigh);
        s3 += Avx512BW.MultiplyAddAdjacent(l3, scLow) + Avx512BW.MultiplyAddAdjacent(h3, scHigh);
    }

    /// <summary>Quant vector k of two groups, both nibbles, against four rows' broadcast activation bytes 4k.. (low) and 32 + 4k.. (high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac2x4(byte* q, byte* qh, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector512<short> l0, ref Vector512<short> l1, ref Vector512<short> l2, ref Vector512<short> l3,
        ref Vector512<short> h0, ref Vector512<short> h1, ref Vector512<short> h2, ref Vector512<short> h3)
    {
        var m = Vector512.Create((byte)0x0F);
        var v = Load2(q + k * 32, qh + k * 32);
        var lo = v & m;
        var hi = Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m;
        l0 += Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create(*(int*)(x0 + 4 * k)).AsSByte());
        h0 += Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create(*(int*)(x0 + 32 + 4 * k)).AsSByte());
        l1 += Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create(*(int*)(x1 + 4 * k)).AsSByte());
        h1 += Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create(*(int*)(x1 + 32 + 4 * k)).AsSByte());
        l2 += Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create(*(int*)(x2 + 4 * k)).AsSByte());
        h2 += Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create(*(int*)(x2 + 32 + 4 * k)).AsSByte());
        l3 += Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create(*(int*)(x3 + 4 * k)).AsSByte());
        h3 += Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create(*(int*)(x3 + 32 + 4 * k)).AsSByte());
    }
}
