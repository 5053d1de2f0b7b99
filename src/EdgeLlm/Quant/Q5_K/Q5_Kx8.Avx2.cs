using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_Kx8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, in-lane shuffles) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

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
        KQuant.CheckLength(n, "Q5_K");
        RowGroupLoops.DotRows<BlockQ8_K>(&Group1, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>The plain kernel for the rows past the last whole group.</summary>
    private static float PlainDot(int n, byte* row, byte* act) => Q5_K.DotQ5_KQ8_K(n, (BlockQ5_K*)row, (BlockQ8_K*)act);

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
        KQuant.CheckLength(n, "Q5_K");
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        RowGroupLoops.DotTile<BlockQ8_K>(&Group1, &Group4, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// Bit <paramref name="bit"/> (a constant 0..7 after inlining) of every byte of <paramref name="h"/>,
    /// moved to bit 4 (the value 16) with the other bits cleared. The shifts work on 16-bit lanes;
    /// by at most four places, the kept bit never comes from the neighbouring byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> FifthBit(Vector256<byte> h, int bit)
    {
        // A switch rather than a computed count: the shifts need immediates, and the JIT folds it away.
        var s = bit switch
        {
            0 => Avx2.ShiftLeftLogical(h.AsUInt16(), 4),
            1 => Avx2.ShiftLeftLogical(h.AsUInt16(), 3),
            2 => Avx2.ShiftLeftLogical(h.AsUInt16(), 2),
            3 => Avx2.ShiftLeftLogical(h.AsUInt16(), 1),
            4 => h.AsUInt16(),
            5 => Avx2.ShiftRightLogical(h.AsUInt16(), 1),
            6 => Avx2.ShiftRightLogical(h.AsUInt16(), 2),
            _ => Avx2.ShiftRightLogical(h.AsUInt16(), 3),
        };
        return s.AsByte() & Vector256.Create((byte)0x10);
    }

    /// <summary>
    /// The five-bit values of sub-block <paramref name="j"/> held by quant vector k: low nibbles of
    /// <paramref name="v"/> (j even) or high (j odd), with bit j of <paramref name="h"/> (QH[k]) as 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Values(Vector256<byte> v, Vector256<byte> h, int j)
    {
        var m = Vector256.Create((byte)0x0F);
        var nib = (j & 1) != 0 ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return nib | FifthBit(h, j);
    }

    /// <summary>
    /// How far ahead of the super-block being read <see cref="Group1"/> (decode) prefetches; see
    /// <see cref="Q4_Kx8.DecodePrefetchBytes"/> (the same distance measured best there).
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
            // One prefetch per cache line of the super-block DecodePrefetchBytes ahead.
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(o + DecodePrefetchBytes + l);
            Q4_Kx8.UnpackScales(o, sc, mn);
            byte* q = o + OffQ, qh = o + OffQh;
            sbyte* x = a[ib].Qs;
            // Chunk c: sub-blocks 2c and 2c + 1, written out so that every shift count is a constant.
            var sumi = Chunk1(q, qh, x, 0, sc[0], sc[1]) + Chunk1(q + 256, qh, x + 64, 2, sc[2], sc[3]);
            sumi += Chunk1(q + 512, qh, x + 128, 4, sc[4], sc[5]) + Chunk1(q + 768, qh, x + 192, 6, sc[6], sc[7]);
            var summ = Q4_Kx8.MinSums(mn, a + ib, bsp);
            var yd = Vector256.Create(a[ib].D);
            acc = Fma.MultiplyAdd(Q4_Kx8.Widen(o + Q4_Kx8.OffD) * yd, Avx.ConvertToVector256Single(sumi), acc);
            accm = Fma.MultiplyAdd(Q4_Kx8.Widen(o + Q4_Kx8.OffDMin) * yd, Avx.ConvertToVector256Single(summ), accm);
        }
        (acc - accm).Store(y);
    }

    /// <summary>
    /// Sub-blocks <paramref name="j"/> (even) and j + 1 of one activation row, as int32 per row lane:
    /// each quant vector and its QH vector loaded once, the int16 pair sums flushed through
    /// <c>vpmaddwd</c> every four vectors (eight would overflow, see the layout).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Chunk1(byte* q, byte* qh, sbyte* x, int j, Vector256<short> scLow, Vector256<short> scHigh)
    {
        Vector256<short> l0 = default, h0 = default, l1 = default, h1 = default;
        Mac1(q, qh, 0, x, j, ref l0, ref h0);
        Mac1(q, qh, 1, x, j, ref l0, ref h0);
        Mac1(q, qh, 2, x, j, ref l0, ref h0);
        Mac1(q, qh, 3, x, j, ref l0, ref h0);
        Mac1(q, qh, 4, x, j, ref l1, ref h1);
        Mac1(q, qh, 5, x, j, ref l1, ref h1);
        Mac1(q, qh, 6, x, j, ref l1, ref h1);
        Mac1(q, qh, 7, x, j, ref l1, ref h1);
        return (Avx2.MultiplyAddAdjacent(l0, scLow) + Avx2.MultiplyAddAdjacent(l1, scLow))
            + (Avx2.MultiplyAddAdjacent(h0, scHigh) + Avx2.MultiplyAddAdjacent(h1, scHigh));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac1(byte* q, byte* qh, int k, sbyte* x, int j, ref Vector256<short> lo, ref Vector256<short> hi)
    {
        var v = Vector256.Load(q + k * 32);
        var h = Vector256.Load(qh + k * 32);
        lo += Avx2.MultiplyAddAdjacent(Values(v, h, j), Vector256.Create(*(int*)(x + 4 * k)).AsSByte());
        hi += Avx2.MultiplyAddAdjacent(Values(v, h, j + 1), Vector256.Create(*(int*)(x + 32 + 4 * k)).AsSByte());
    }

    /// <summary>
    /// One group against four activation rows: each super-block's scales unpacked once, each
    /// sub-block's five-bit values built once and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        short* bsp = stackalloc short[8];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        Vector256<short>* mn = stackalloc Vector256<short>[4];
        // acc[0..3]: the four rows' scaled sums, acc[4..7]: their min terms, in memory as in Q4_Kx8.Group4.
        var accs = default(TileAccumulators);
        var acc = (Vector256<float>*)&accs;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Q4_Kx8.UnpackScales(o, sc, mn);
            byte* q = o + OffQ, qh = o + OffQh;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Sub-block j = 2c (low nibbles of Q[8c..8c+8)) and 2c + 1 (their high nibbles), written out.
            SubBlock4(q, qh, x0, x1, x2, x3, 0, sc[0], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q, qh, x0 + 32, x1 + 32, x2 + 32, x3 + 32, 1, sc[1], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 256, qh, x0 + 64, x1 + 64, x2 + 64, x3 + 64, 2, sc[2], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 256, qh, x0 + 96, x1 + 96, x2 + 96, x3 + 96, 3, sc[3], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 512, qh, x0 + 128, x1 + 128, x2 + 128, x3 + 128, 4, sc[4], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 512, qh, x0 + 160, x1 + 160, x2 + 160, x3 + 160, 5, sc[5], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 768, qh, x0 + 192, x1 + 192, x2 + 192, x3 + 192, 6, sc[6], ref s0, ref s1, ref s2, ref s3);
            SubBlock4(q + 768, qh, x0 + 224, x1 + 224, x2 + 224, x3 + 224, 7, sc[7], ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen(o + Q4_Kx8.OffD);
            var mx = Q4_Kx8.Widen(o + Q4_Kx8.OffDMin);
            Q4_Kx8.Finish(dx, mx, s0, mn, a0 + ib, bsp, ref acc[0], ref acc[4]);
            Q4_Kx8.Finish(dx, mx, s1, mn, a1 + ib, bsp, ref acc[1], ref acc[5]);
            Q4_Kx8.Finish(dx, mx, s2, mn, a2 + ib, bsp, ref acc[2], ref acc[6]);
            Q4_Kx8.Finish(dx, mx, s3, mn, a3 + ib, bsp, ref acc[3], ref acc[7]);
        }
        (acc[0] - acc[4]).Store(y);
        (acc[1] - acc[5]).Store(y + yStride);
        (acc[2] - acc[6]).Store(y + 2 * yStride);
        (acc[3] - acc[7]).Store(y + 3 * yStride);
    }

    /// <summary>Sub-block <paramref name="j"/> against four activation rows, scaled into each row's int32 sum in two halves of four vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)] // compiled on its own: inlined 8 times per super-block, NativeAOT spilled 44% of Group4
    private static void SubBlock4(byte* q, byte* qh, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j, Vector256<short> scale,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
        // Written out (k = 0..7) so that every address is a constant offset: the JIT does not unroll loops.
        Mac4(q, qh, 0, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 1, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 2, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 3, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        s0 += Avx2.MultiplyAddAdjacent(p0, scale);
        s1 += Avx2.MultiplyAddAdjacent(p1, scale);
        s2 += Avx2.MultiplyAddAdjacent(p2, scale);
        s3 += Avx2.MultiplyAddAdjacent(p3, scale);
        p0 = p1 = p2 = p3 = default;
        Mac4(q, qh, 4, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 5, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 6, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        Mac4(q, qh, 7, x0, x1, x2, x3, j, ref p0, ref p1, ref p2, ref p3);
        s0 += Avx2.MultiplyAddAdjacent(p0, scale);
        s1 += Avx2.MultiplyAddAdjacent(p1, scale);
        s2 += Avx2.MultiplyAddAdjacent(p2, scale);
        s3 += Avx2.MultiplyAddAdjacent(p3, scale);
    }

    /// <summary>Quant vector k's values of sub-block j against four rows' broadcast activation bytes 4k .. 4k+4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(byte* q, byte* qh, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        var w = Values(Vector256.Load(q + k * 32), Vector256.Load(qh + k * 32), j);
        p0 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x0 + 4 * k)).AsSByte());
        p1 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x1 + 4 * k)).AsSByte());
        p2 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x2 + 4 * k)).AsSByte());
        p3 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x3 + 4 * k)).AsSByte());
    }
}
