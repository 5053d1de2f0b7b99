using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// The AVX2 kernels of the 4-byte lane order (see DwordLanes).
internal static unsafe partial class Q4_0x8
{
    /// <summary>
    /// True when this process packs Q4_0 in 4-byte lanes (vector k, lane r = row r's qs[4k..4k+4)):
    /// on machines without the AVX-512 tile. In 8-byte lanes a broadcast activation quarter (8 bytes)
    /// meets four rows per vector, and each row's four 16-bit pair sums need a <c>vphaddw</c> to come
    /// together; in 4-byte lanes every vector holds all eight rows, a 4-byte broadcast meets them, and
    /// one <c>vpmaddwd</c> of the summed pair sums leaves the rows in lane order. That is four more
    /// broadcasts per block and activation but no horizontal add, which Zen 3 runs at one per two
    /// cycles. The integer sums are the same, so both orders give the same bits. The AVX-512 kernels
    /// read 8-byte lanes, so machines with them keep that order. <c>EDGELLM_Q4_0X8_LANES</c> = 8 or 4
    /// overrides the choice (to measure one against the other).
    /// </summary>
    internal static readonly bool DwordLanes = Environment.GetEnvironmentVariable("EDGELLM_Q4_0X8_LANES") switch
    {
        "4" => true,
        "8" => false,
        _ => !UseAvx512Tile,
    };

    /// <summary>
    /// Σ q·a for the eight rows of one group block in 4-byte lanes (q the unsigned nibbles), rows in
    /// lane order: the eight products of 16-bit pair sums added in 16 bits (|each| ≤ 2·15·128, eight of
    /// them ≤ 30720, so exact), one <c>vpmaddwd</c> to 32 bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DwordSums(Vector256<byte> lo0, Vector256<byte> lo1, Vector256<byte> lo2, Vector256<byte> lo3,
        Vector256<byte> hi0, Vector256<byte> hi1, Vector256<byte> hi2, Vector256<byte> hi3, sbyte* aq)
    {
        var s = Avx2.MultiplyAddAdjacent(lo0, Vector256.Create(*(int*)aq).AsSByte())
            + Avx2.MultiplyAddAdjacent(lo1, Vector256.Create(*(int*)(aq + 4)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(lo2, Vector256.Create(*(int*)(aq + 8)).AsSByte())
            + Avx2.MultiplyAddAdjacent(lo3, Vector256.Create(*(int*)(aq + 12)).AsSByte());
        var t = Avx2.MultiplyAddAdjacent(hi0, Vector256.Create(*(int*)(aq + 16)).AsSByte())
            + Avx2.MultiplyAddAdjacent(hi1, Vector256.Create(*(int*)(aq + 20)).AsSByte());
        t += Avx2.MultiplyAddAdjacent(hi2, Vector256.Create(*(int*)(aq + 24)).AsSByte())
            + Avx2.MultiplyAddAdjacent(hi3, Vector256.Create(*(int*)(aq + 28)).AsSByte());
        return Avx2.MultiplyAddAdjacent(s + t, Vector256.Create((short)1));
    }

    /// <summary><see cref="DwordSums"/> of the group block at <paramref name="o"/>, unpacked here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DwordSums(byte* o, Vector256<byte> m, sbyte* aq)
    {
        var v0 = Vector256.Load(o + 16);
        var v1 = Vector256.Load(o + 48);
        var v2 = Vector256.Load(o + 80);
        var v3 = Vector256.Load(o + 112);
        return DwordSums(v0 & m, v1 & m, v2 & m, v3 & m,
            Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m, Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m,
            Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m, Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m, aq);
    }

    /// <summary><see cref="Group1"/> in 4-byte lanes: one group against one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupD1(byte* g, int nb, BlockQ8_0* a, int* corr, float* dy, float* y)
    {
        var m = Vector256.Create((byte)0x0F);
        var even = Vector256<float>.Zero;
        var odd = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Prefetch(o + DecodePrefetchBytes);
            var isum = DwordSums(o, m, a[ib].Qs) - Vector256.Create(corr[ib]);
            var scale = Scales(o) * Vector256.Create(dy[ib]);
            if ((ib & 1) == 0) even = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), even);
            else odd = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), odd);
        }
        (even + odd).Store(y);
    }

    /// <summary><see cref="Group2"/> in 4-byte lanes: two groups (<paramref name="groupBytes"/> apart) against one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupD2(byte* g, long groupBytes, int nb, BlockQ8_0* a, int* corr, float* dy, float* y)
    {
        var m = Vector256.Create((byte)0x0F);
        Vector256<float> e0 = default, o0 = default, e1 = default, o1 = default;
        byte* h = g + groupBytes;
        var ahead = new PairPrefetch(groupBytes);
        for (int ib = 0; ib < nb; ib++)
        {
            long off = (long)ib * GroupBlockBytes;
            long pf = ahead.Ahead(off, DecodePrefetchBytes);
            Prefetch(g + pf);
            Prefetch(h + pf);
            sbyte* aq = a[ib].Qs;
            var c = Vector256.Create(corr[ib]);
            var d = Vector256.Create(dy[ib]);
            var s0 = DwordSums(g + off, m, aq) - c;
            var s1 = DwordSums(h + off, m, aq) - c;
            var f0 = Scales(g + off) * d;
            var f1 = Scales(h + off) * d;
            if ((ib & 1) == 0)
            {
                e0 = Fma.MultiplyAdd(f0, Avx.ConvertToVector256Single(s0), e0);
                e1 = Fma.MultiplyAdd(f1, Avx.ConvertToVector256Single(s1), e1);
            }
            else
            {
                o0 = Fma.MultiplyAdd(f0, Avx.ConvertToVector256Single(s0), o0);
                o1 = Fma.MultiplyAdd(f1, Avx.ConvertToVector256Single(s1), o1);
            }
        }
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + Rows);
    }

    /// <summary><see cref="Group4"/> in 4-byte lanes: one group against four activation rows, even blocks then odd ones.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupD4(byte* g, int nb, byte* acts, long actStride, int* corr, float* dy, float* y, long yStride, bool prefetch)
    {
        var e0 = GroupD4Pass(g, 0, nb, acts, actStride, corr, dy, prefetch, out var e1, out var e2, out var e3);
        var o0 = GroupD4Pass(g, 1, nb, acts, actStride, corr, dy, false, out var o1, out var o2, out var o3);
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        (e2 + o2).Store(y + 2 * yStride);
        (e3 + o3).Store(y + 3 * yStride);
    }

    /// <summary>
    /// <see cref="GroupD4"/> for <paramref name="na"/> = 2 or 3 activation rows: a small batch (a
    /// speculative draft checked in one batch, the last rows of a prompt). One activation at a time
    /// (<see cref="GroupD1"/>) read and unpacked each block once per activation, so a batch of 2 or 3
    /// cost as much as 2 or 3 single tokens (TinyLlama-shape Q4_0, 2 threads: 59 and 79 ms, 60 for 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupDFew(byte* g, int nb, byte* acts, long actStride, int na, int* corr, float* dy, float* y, long yStride)
    {
        var e0 = GroupDFewPass(g, 0, nb, acts, actStride, na, corr, dy, out var e1, out var e2);
        var o0 = GroupDFewPass(g, 1, nb, acts, actStride, na, corr, dy, out var o1, out var o2);
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        if (na == 3) (e2 + o2).Store(y + 2 * yStride);
    }

    /// <summary>
    /// <see cref="GroupD4Pass"/> for 2 or 3 activation rows. The even pass (the first over the group)
    /// prefetches ahead as the decode kernels do: a small batch streams the matrix from memory, and
    /// without it the hardware prefetcher alone left the cores waiting (see <see cref="DecodePrefetchBytes"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static Vector256<float> GroupDFewPass(byte* g, int start, int nb, byte* acts, long actStride, int na, int* corr, float* dy,
        out Vector256<float> acc1, out Vector256<float> acc2)
    {
        var m = Vector256.Create((byte)0x0F);
        Vector256<float> c0 = default, c1 = default, c2 = default;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        bool three = na == 3;
        for (int k = start; k < nb; k += 2)
        {
            byte* o = g + (long)k * GroupBlockBytes;
            if (start == 0) PrefetchPair(o + SmallBatchPrefetchBytes);
            var v0 = Vector256.Load(o + 16); var v1 = Vector256.Load(o + 48); var v2 = Vector256.Load(o + 80); var v3 = Vector256.Load(o + 112);
            var lo0 = v0 & m; var hi0 = Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
            var lo1 = v1 & m; var hi1 = Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
            var lo2 = v2 & m; var hi2 = Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m;
            var lo3 = v3 & m; var hi3 = Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m;
            var dx = Scales(o);
            c0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a0[k].Qs) - Vector256.Create(corr[k])), c0);
            c1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[nb + k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a1[k].Qs) - Vector256.Create(corr[nb + k])), c1);
            if (three)
                c2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2 * nb + k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a2[k].Qs) - Vector256.Create(corr[2 * nb + k])), c2);
        }
        acc1 = c1; acc2 = c2;
        return c0;
    }

    /// <summary><see cref="Group4Pass"/> in 4-byte lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static Vector256<float> GroupD4Pass(byte* g, int start, int nb, byte* acts, long actStride, int* corr, float* dy, bool prefetch,
        out Vector256<float> acc1, out Vector256<float> acc2, out Vector256<float> acc3)
    {
        var m = Vector256.Create((byte)0x0F);
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        var a3 = (BlockQ8_0*)(acts + 3 * actStride);
        for (int k = start; k < nb; k += 2)
        {
            byte* o = g + (long)k * GroupBlockBytes;
            if (start == 0 && prefetch) PrefetchPair(o + SmallBatchPrefetchBytes);
            var v0 = Vector256.Load(o + 16); var v1 = Vector256.Load(o + 48); var v2 = Vector256.Load(o + 80); var v3 = Vector256.Load(o + 112);
            var lo0 = v0 & m; var hi0 = Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
            var lo1 = v1 & m; var hi1 = Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
            var lo2 = v2 & m; var hi2 = Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m;
            var lo3 = v3 & m; var hi3 = Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m;
            var dx = Scales(o);
            c0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a0[k].Qs) - Vector256.Create(corr[k])), c0);
            c1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[nb + k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a1[k].Qs) - Vector256.Create(corr[nb + k])), c1);
            c2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2 * nb + k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a2[k].Qs) - Vector256.Create(corr[2 * nb + k])), c2);
            c3 = Fma.MultiplyAdd(dx * Vector256.Create(dy[3 * nb + k]), Avx.ConvertToVector256Single(DwordSums(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, a3[k].Qs) - Vector256.Create(corr[3 * nb + k])), c3);
        }
        acc1 = c1; acc2 = c2; acc3 = c3;
        return c0;
    }
}
