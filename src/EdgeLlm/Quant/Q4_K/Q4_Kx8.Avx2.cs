using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_Kx8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, in-lane shuffles) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// <c>vpshufb</c> controls. Scale j (jj = j mod 4 of U0/U1) to both int16 of each row's 32-bit
    /// lane; mins 2kk and 2kk + 1 (of U2/U3) to the two int16 of each row's lane. Indices are
    /// lane-relative, so the same 16 bytes serve rows 0..3 (low half) and 4..7 (high half).
    /// <see cref="Q2_Kx8"/> uses them on its scale and min nibbles (which follow <see cref="UByte"/> too).
    /// </summary>
    internal static readonly Vector256<byte> s_scale0 = ScaleCtrl(0), s_scale1 = ScaleCtrl(1), s_scale2 = ScaleCtrl(2), s_scale3 = ScaleCtrl(3),
        s_min01 = MinCtrl(0), s_min23 = MinCtrl(1);

    private static Vector256<byte> ScaleCtrl(int jj)
    {
        var b = new byte[32];
        for (int i = 0; i < 32; i++)
        {
            int rr = (i & 15) >> 2;
            b[i] = (i & 1) == 0 ? (byte)(jj * 4 + rr) : (byte)0x80;
        }
        return Vector256.Create(b);
    }

    private static Vector256<byte> MinCtrl(int kk)
    {
        var b = new byte[32];
        for (int i = 0; i < 32; i++)
        {
            int rr = (i & 15) >> 2;
            b[i] = (i & 1) != 0 ? (byte)0x80 : (byte)(((i & 2) == 0 ? 2 * kk : 2 * kk + 1) * 4 + rr);
        }
        return Vector256.Create(b);
    }

    /// <summary>
    /// y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.
    /// Each group of eight rows is one pass over its super-blocks; rows past the last whole group
    /// are plain and go through the plain kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y);
            return;
        }
        KQuant.CheckLength(n, "Q4_K");
        RowGroupLoops.DotRows<BlockQ8_K>(&Group1, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>The plain kernel for the rows past the last whole group.</summary>
    private static float PlainDot(int n, byte* row, byte* act) => Q4_K.DotQ4_KQ8_K(n, (BlockQ4_K*)row, (BlockQ8_K*)act);

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. <see cref="DotTileAvx512"/> where AVX-512
    /// BW is present, else <see cref="DotTileAvx2"/>; both give <see cref="DotRows"/>'s results bit for bit.
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        if (IsAvx512Supported) DotTileAvx512(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else DotTileAvx2(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// The AVX2 prompt tile. Each group super-block's scales are unpacked once and its quants met by
    /// four activation rows; per (row, activation) the arithmetic is <see cref="DotRows"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx2(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        KQuant.CheckLength(n, "Q4_K");
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        RowGroupLoops.DotTile<BlockQ8_K>(&Group1, &Group4, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// The eight fp16 values at <paramref name="h16"/> as f32: exact for every finite half, by
    /// <see cref="QuantMath.HalfBitsToSingle(Vector256{int})"/> (<see cref="Pack"/> refuses inf/NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Widen(byte* h16)
    {
        var h = Avx2.ConvertToVector256Int32((ushort*)h16);
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary>The eight rows' scales of sub-blocks 0..7 (<paramref name="sc"/>, int16 pairs per row lane) and min pairs (<paramref name="mn"/>, 4 vectors).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScales(byte* o, Vector256<short>* sc, Vector256<short>* mn)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((byte)0x30);
        var s0 = Vector256.Load(o + OffS);
        var s1 = Vector256.Load(o + OffS + 32);
        var h = Vector256.Load(o + OffH);
        var u0 = (s0 & m4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & m2);
        var u1 = (Avx2.ShiftRightLogical(s0.AsUInt16(), 4).AsByte() & m4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & m2);
        var u2 = (s1 & m4) | (h & m2);
        var u3 = (Avx2.ShiftRightLogical(s1.AsUInt16(), 4).AsByte() & m4) | (Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & m2);
        sc[0] = Avx2.Shuffle(u0, s_scale0).AsInt16();
        sc[1] = Avx2.Shuffle(u0, s_scale1).AsInt16();
        sc[2] = Avx2.Shuffle(u0, s_scale2).AsInt16();
        sc[3] = Avx2.Shuffle(u0, s_scale3).AsInt16();
        sc[4] = Avx2.Shuffle(u1, s_scale0).AsInt16();
        sc[5] = Avx2.Shuffle(u1, s_scale1).AsInt16();
        sc[6] = Avx2.Shuffle(u1, s_scale2).AsInt16();
        sc[7] = Avx2.Shuffle(u1, s_scale3).AsInt16();
        mn[0] = Avx2.Shuffle(u2, s_min01).AsInt16();
        mn[1] = Avx2.Shuffle(u2, s_min23).AsInt16();
        mn[2] = Avx2.Shuffle(u3, s_min01).AsInt16();
        mn[3] = Avx2.Shuffle(u3, s_min23).AsInt16();
    }

    /// <summary>
    /// summ per row: Σ_k (min 2k, min 2k+1) · (bs 2k, bs 2k+1), with bs_j = bsums[2j] + bsums[2j+1]
    /// (fits int16: |bs| ≤ 32·128) written to <paramref name="bsp"/> and broadcast back as int32 pairs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> MinSums(Vector256<short>* mn, BlockQ8_K* yb, short* bsp)
    {
        Ssse3.HorizontalAdd(Vector128.Load(yb->Bsums), Vector128.Load(yb->Bsums + 8)).Store(bsp);
        var p0 = Avx2.MultiplyAddAdjacent(mn[0], Vector256.Create(((int*)bsp)[0]).AsInt16());
        var p1 = Avx2.MultiplyAddAdjacent(mn[1], Vector256.Create(((int*)bsp)[1]).AsInt16());
        var p2 = Avx2.MultiplyAddAdjacent(mn[2], Vector256.Create(((int*)bsp)[2]).AsInt16());
        var p3 = Avx2.MultiplyAddAdjacent(mn[3], Vector256.Create(((int*)bsp)[3]).AsInt16());
        return (p0 + p1) + (p2 + p3);
    }

    /// <summary>
    /// Σ q·a of one sub-block (eight vectors of Q from <paramref name="q"/>; low nibbles, or high
    /// when <paramref name="high"/>) against the activation bytes at <paramref name="a"/>, as int16
    /// pairs per row lane: each pair is within ±2·15·128 and eight of them within ±30720.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> SubBlock1(byte* q, sbyte* a, bool high)
    {
        // Two chains, written out (the JIT does not unroll loops).
        var p0 = Mac1(q, 0, a, high) + Mac1(q, 2, a, high) + Mac1(q, 4, a, high) + Mac1(q, 6, a, high);
        var p1 = Mac1(q, 1, a, high) + Mac1(q, 3, a, high) + Mac1(q, 5, a, high) + Mac1(q, 7, a, high);
        return p0 + p1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mac1(byte* q, int k, sbyte* a, bool high)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(q + k * 32);
        var nib = high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return Avx2.MultiplyAddAdjacent(nib, Vector256.Create(*(int*)(a + 4 * k)).AsSByte());
    }

    /// <summary>
    /// How far ahead of the super-block being read <see cref="Group1"/> (decode) prefetches, as the
    /// Q4_0, Q6_K and Q8_0 decode kernels do. Measured on the 2-core x64 machine (2026-11-29, TinyLlama-1.1B
    /// Q4_K_M, tg32 at 2 threads, 10 in-process alternating rounds, medians): none 21.3 t/s, 2 KiB 22.8,
    /// 4 KiB 24.3, 8 KiB 24.2. Prefetches never fault, so reading past a work item's or a matrix's end is harmless.
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_K* a, float* y)
    {
        short* bsp = stackalloc short[8];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        Vector256<short>* mn = stackalloc Vector256<short>[4];
        var acc = Vector256<float>.Zero;
        var accm = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            // One prefetch per cache line of the super-block DecodePrefetchBytes ahead (see there).
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(o + DecodePrefetchBytes + l);
            UnpackScales(o, sc, mn);
            byte* q = o + OffQ;
            sbyte* x = a[ib].Qs;
            var sumi = Avx2.MultiplyAddAdjacent(SubBlock1(q, x, false), sc[0]) + Avx2.MultiplyAddAdjacent(SubBlock1(q, x + 32, true), sc[1]);
            sumi += Avx2.MultiplyAddAdjacent(SubBlock1(q + 256, x + 64, false), sc[2]) + Avx2.MultiplyAddAdjacent(SubBlock1(q + 256, x + 96, true), sc[3]);
            sumi += Avx2.MultiplyAddAdjacent(SubBlock1(q + 512, x + 128, false), sc[4]) + Avx2.MultiplyAddAdjacent(SubBlock1(q + 512, x + 160, true), sc[5]);
            sumi += Avx2.MultiplyAddAdjacent(SubBlock1(q + 768, x + 192, false), sc[6]) + Avx2.MultiplyAddAdjacent(SubBlock1(q + 768, x + 224, true), sc[7]);
            var summ = MinSums(mn, a + ib, bsp);
            var yd = Vector256.Create(a[ib].D);
            acc = Fma.MultiplyAdd(Widen(o + OffD) * yd, Avx.ConvertToVector256Single(sumi), acc);
            accm = Fma.MultiplyAdd(Widen(o + OffDMin) * yd, Avx.ConvertToVector256Single(summ), accm);
        }
        (acc - accm).Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each super-block's scales unpacked once, each
    /// quant vector loaded once per sub-block and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        short* bsp = stackalloc short[8];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        Vector256<short>* mn = stackalloc Vector256<short>[4];
        // acc[0..3]: the four rows' scaled sums, acc[4..7]: their min terms. In memory, read and written once per
        // super-block (TileAccumulators): in registers beside the sub-blocks' int16 and int32 sums they spilled.
        var accs = default(TileAccumulators);
        var acc = (Vector256<float>*)&accs;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            UnpackScales(o, sc, mn);
            byte* q = o + OffQ;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Sub-block j = 2c (low nibbles of Q[8c..8c+8)) and 2c + 1 (their high nibbles), written out.
            SubBlock4(q, x0, x1, x2, x3, false, sc[0], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q, x0 + 32, x1 + 32, x2 + 32, x3 + 32, true, sc[1], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 256, x0 + 64, x1 + 64, x2 + 64, x3 + 64, false, sc[2], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 256, x0 + 96, x1 + 96, x2 + 96, x3 + 96, true, sc[3], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 512, x0 + 128, x1 + 128, x2 + 128, x3 + 128, false, sc[4], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 512, x0 + 160, x1 + 160, x2 + 160, x3 + 160, true, sc[5], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 768, x0 + 192, x1 + 192, x2 + 192, x3 + 192, false, sc[6], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 768, x0 + 224, x1 + 224, x2 + 224, x3 + 224, true, sc[7], ref s0, ref s1, ref s2, ref s3);
            var dx = Widen(o + OffD);
            var mx = Widen(o + OffDMin);
            Finish(dx, mx, s0, mn, a0 + ib, bsp, ref acc[0], ref acc[4]);
            Finish(dx, mx, s1, mn, a1 + ib, bsp, ref acc[1], ref acc[5]);
            Finish(dx, mx, s2, mn, a2 + ib, bsp, ref acc[2], ref acc[6]);
            Finish(dx, mx, s3, mn, a3 + ib, bsp, ref acc[3], ref acc[7]);
        }
        (acc[0] - acc[4]).Store(y);
        (acc[1] - acc[5]).Store(y + yStride);
        (acc[2] - acc[6]).Store(y + 2 * yStride);
        (acc[3] - acc[7]).Store(y + 3 * yStride);
    }

    /// <summary>One super-block's float step for one activation row (the order of <see cref="Group1"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Finish(Vector256<float> dx, Vector256<float> mx, Vector256<int> sumi, Vector256<short>* mn, BlockQ8_K* yb, short* bsp,
        ref Vector256<float> acc, ref Vector256<float> accm)
    {
        var summ = MinSums(mn, yb, bsp);
        var yd = Vector256.Create(yb->D);
        acc = Fma.MultiplyAdd(dx * yd, Avx.ConvertToVector256Single(sumi), acc);
        accm = Fma.MultiplyAdd(mx * yd, Avx.ConvertToVector256Single(summ), accm);
    }

    /// <summary>One sub-block against four activation rows: <see cref="SubBlock1"/>'s pairs, scaled into each row's int32 sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock4(byte* q, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, bool high, Vector256<short> scale,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
        // Written out (k = 0..7) so that every address is a constant offset: the JIT does not unroll loops.
        Mac4(q, 0, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 1, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 2, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 3, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 4, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 5, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 6, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, 7, x0, x1, x2, x3, high, ref p0, ref p1, ref p2, ref p3);
        s0 += Avx2.MultiplyAddAdjacent(p0, scale);
        s1 += Avx2.MultiplyAddAdjacent(p1, scale);
        s2 += Avx2.MultiplyAddAdjacent(p2, scale);
        s3 += Avx2.MultiplyAddAdjacent(p3, scale);
    }

    /// <summary>Quant vector k of a sub-block against four rows' broadcast activation bytes 4k .. 4k+4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(byte* q, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, bool high,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(q + k * 32);
        var nib = high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        p0 += Avx2.MultiplyAddAdjacent(nib, Vector256.Create(*(int*)(x0 + 4 * k)).AsSByte());
        p1 += Avx2.MultiplyAddAdjacent(nib, Vector256.Create(*(int*)(x1 + 4 * k)).AsSByte());
        p2 += Avx2.MultiplyAddAdjacent(nib, Vector256.Create(*(int*)(x2 + 4 * k)).AsSByte());
        p3 += Avx2.MultiplyAddAdjacent(nib, Vector256.Create(*(int*)(x3 + 4 * k)).AsSByte());
    }
}
