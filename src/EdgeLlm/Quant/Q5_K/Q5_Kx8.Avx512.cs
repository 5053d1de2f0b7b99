using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_Kx8
{
    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels it falls back to.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// The AVX-512 prompt tile: y[a·yStride + r] = row r · act a, bit for bit <see cref="DotTileAvx2"/>'s
    /// (and so <see cref="DotRows"/>'s). As <see cref="Q4_Kx8.DotTileAvx512"/>: two consecutive groups
    /// (16 rows) share one zmm, group g in the low 256 bits and g + 1 in the high, and meet four
    /// activation rows; the scale unpacking and the five-bit values are built once per 16 rows for
    /// four activation rows. A leftover odd group, activation rows past the last four and rows past
    /// the last whole group go through the AVX2 code.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        if (!IsAvx512Supported)
        {
            DotTileAvx2(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        KQuant.CheckLength(n, "Q5_K");
        RowGroupLoops.DotTilePairs<BlockQ8_K>(&Group2x4, &Group1, &Group4, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on)
    /// against four activation rows: sixteen results per activation row to <paramref name="y"/>.
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
            Q4_Kx8.UnpackScales2(o, oh, sc, mn);
            byte* q = o + OffQ, qNext = oh + OffQ, qh = o + OffQh, qhNext = oh + OffQh;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Chunk c: sub-blocks 2c and 2c + 1, written out so that every shift count is a constant.
            Chunk2x4(q, qNext, qh, qhNext, x0, x1, x2, x3, 0, sc[0], sc[1], ref s0, ref s1, ref s2, ref s3);
            Chunk2x4(q + 256, qNext + 256, qh, qhNext, x0 + 64, x1 + 64, x2 + 64, x3 + 64, 2, sc[2], sc[3], ref s0, ref s1, ref s2, ref s3);
            Chunk2x4(q + 512, qNext + 512, qh, qhNext, x0 + 128, x1 + 128, x2 + 128, x3 + 128, 4, sc[4], sc[5], ref s0, ref s1, ref s2, ref s3);
            Chunk2x4(q + 768, qNext + 768, qh, qhNext, x0 + 192, x1 + 192, x2 + 192, x3 + 192, 6, sc[6], sc[7], ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + Q4_Kx8.OffD, oh + Q4_Kx8.OffD);
            var mx = Q4_Kx8.Widen2(o + Q4_Kx8.OffDMin, oh + Q4_Kx8.OffDMin);
            Q4_Kx8.Finish2(dx, mx, s0, mn, a0 + ib, bsp, ref acc0, ref accm0);
            Q4_Kx8.Finish2(dx, mx, s1, mn, a1 + ib, bsp, ref acc1, ref accm1);
            Q4_Kx8.Finish2(dx, mx, s2, mn, a2 + ib, bsp, ref acc2, ref accm2);
            Q4_Kx8.Finish2(dx, mx, s3, mn, a3 + ib, bsp, ref acc3, ref accm3);
        }
        (acc0 - accm0).Store(y);
        (acc1 - accm1).Store(y + yStride);
        (acc2 - accm2).Store(y + 2 * yStride);
        (acc3 - accm3).Store(y + 3 * yStride);
    }

    /// <summary>
    /// Sub-blocks <paramref name="j"/> (even) and j + 1 of two groups against four activation rows:
    /// each quant and QH vector loaded once, the int16 pair sums scaled into int32 every four vectors.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunk2x4(byte* q, byte* qNext, byte* qh, byte* qhNext, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j,
        Vector512<short> scLow, Vector512<short> scHigh,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        for (int half = 0; half < 2; half++)
        {
            Vector512<short> l0 = default, l1 = default, l2 = default, l3 = default;
            Vector512<short> h0 = default, h1 = default, h2 = default, h3 = default;
            int k = 4 * half;
            Mac2x4(q, qNext, qh, qhNext, k, x0, x1, x2, x3, j, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Mac2x4(q, qNext, qh, qhNext, k + 1, x0, x1, x2, x3, j, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Mac2x4(q, qNext, qh, qhNext, k + 2, x0, x1, x2, x3, j, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Mac2x4(q, qNext, qh, qhNext, k + 3, x0, x1, x2, x3, j, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            s0 += Avx512BW.MultiplyAddAdjacent(l0, scLow) + Avx512BW.MultiplyAddAdjacent(h0, scHigh);
            s1 += Avx512BW.MultiplyAddAdjacent(l1, scLow) + Avx512BW.MultiplyAddAdjacent(h1, scHigh);
            s2 += Avx512BW.MultiplyAddAdjacent(l2, scLow) + Avx512BW.MultiplyAddAdjacent(h2, scHigh);
            s3 += Avx512BW.MultiplyAddAdjacent(l3, scLow) + Avx512BW.MultiplyAddAdjacent(h3, scHigh);
        }
    }

    /// <summary>Bit <paramref name="bit"/> of every byte moved to bit 4, as <see cref="FifthBit(Vector256{byte}, int)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> FifthBit(Vector512<byte> h, int bit)
    {
        // A switch rather than a computed count: the shifts need immediates, and the JIT folds it away.
        var s = bit switch
        {
            0 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 4),
            1 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 3),
            2 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2),
            3 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 1),
            4 => h.AsUInt16(),
            5 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 1),
            6 => Avx512BW.ShiftRightLogical(h.AsUInt16(), 2),
            _ => Avx512BW.ShiftRightLogical(h.AsUInt16(), 3),
        };
        return s.AsByte() & Vector512.Create((byte)0x10);
    }

    /// <summary>Quant vector k of two groups, both sub-blocks' values, against four rows' broadcast activation bytes 4k.. (j) and 32 + 4k.. (j + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac2x4(byte* q, byte* qNext, byte* qh, byte* qhNext, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int j,
        ref Vector512<short> l0, ref Vector512<short> l1, ref Vector512<short> l2, ref Vector512<short> l3,
        ref Vector512<short> h0, ref Vector512<short> h1, ref Vector512<short> h2, ref Vector512<short> h3)
    {
        var m = Vector512.Create((byte)0x0F);
        var v = Q4_Kx8.Load2(q + k * 32, qNext + k * 32);
        var h = Q4_Kx8.Load2(qh + k * 32, qhNext + k * 32);
        var lo = (v & m) | FifthBit(h, j);
        var hi = (Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m) | FifthBit(h, j + 1);
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
