using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q8_0x8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, vpsignb) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>The plain kernels, for rows past the last whole group.</summary>
    private static readonly Q8_0Format s_plain = new();

    /// <summary>
    /// y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.
    /// Groups go two at a time (each activation broadcast and its |a| serve both); rows past the
    /// last whole group are plain and go through the plain kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y);
            return;
        }
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        int g = 0;
        for (; g + 1 < groups; g += 2)
            Group2(weights + g * groupBytes, groupBytes, nb, (BlockQ8_0*)act, y + g * Rows);
        if (g < groups)
            Group1(weights + g * groupBytes, nb, (BlockQ8_0*)act, y + g * Rows);
        for (int r = groups * Rows; r < nRows; r++) y[r] = Q8_0.DotQ8_0Q8_0(n, weights + r * rowBytes, act);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. Each weight vector is loaded once and met
    /// by four activation rows; per (row, activation) the arithmetic is <see cref="DotRows"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        int groups = nRows / Rows;
        int full = groups * Rows;
        if (!IsSupported)
        {
            var tmp = new float[full];
            fixed (float* t = tmp)
                for (int a = 0; a < nActs; a++)
                {
                    DotRowsReference(n, weights, rowBytes, full, acts + a * actStride, t);
                    for (int r = 0; r < full; r++) y[a * yStride + r] = t[r];
                }
        }
        else if (UseAvx512Tile && nActs >= 4)
        {
            DotTileAvx512(n, weights, rowBytes, groups, acts, actStride, nActs, y, yStride);
        }
        else
        {
            bool clean = false;
            for (int a0 = 0; a0 < nActs; a0 += 4)
            {
                int na = Math.Min(4, nActs - a0);
                for (int g = 0; g < groups; g++)
                {
                    byte* gw = weights + (long)g * Rows * rowBytes;
                    float* yg = y + a0 * yStride + g * Rows;
                    if (na == 4)
                    {
                        if (g == 0) clean = QuantMath.NoMinus128(acts + a0 * actStride, actStride, 4, nb);
                        // The first four activations of a tile meet the weights first: prefetch then.
                        if (clean) Group4W(gw, nb, acts + a0 * actStride, actStride, yg, yStride, a0 == 0);
                        else Group4(gw, nb, acts + a0 * actStride, actStride, yg, yStride, a0 == 0);
                        continue;
                    }
                    if (na > 1)
                    {
                        GroupFew(gw, nb, acts + a0 * actStride, actStride, na, yg, yStride);
                        continue;
                    }
                    Group1(gw, nb, (BlockQ8_0*)(acts + a0 * actStride), yg);
                }
            }
        }
        // The plain tail: the plain tile equals VecDot (what DotRows uses there) bit for bit.
        if (full < nRows)
            s_plain.VecDotTile(n, weights + full * rowBytes, rowBytes, nRows - full, acts, actStride, nActs, y + full, yStride);
    }

    /// <summary>
    /// The eight fp16 scales at <paramref name="d"/> as f32: exact for every finite half, by
    /// <see cref="QuantMath.HalfBitsToSingle(Vector256{int})"/> (<see cref="Pack"/> refuses inf/NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales(byte* d)
    {
        var h = Avx2.ConvertToVector256Int32((ushort*)d);
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary>Σ over four values of w·a per int32 lane: |a|·sign(w, a) with vpmaddubsw (exact, see the class remarks), widened by vpmaddwd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot4(Vector256<sbyte> w, Vector256<byte> absA, Vector256<sbyte> a) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absA, Avx2.Sign(w, a)), Vector256<short>.One);

    /// <summary>The activation's four values 4k..4k+3 of a block in every int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast4(sbyte* qs, int k) => Vector256.Create(((int*)qs)[k]).AsSByte();

    /// <summary>Exact Σ w·a for the eight rows of the group block at <paramref name="o"/>, rows in lane order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSums(byte* o, sbyte* aq)
    {
        var s = Vector256<int>.Zero;
        for (int k = 0; k < QK / 4; k++)
        {
            var a = Broadcast4(aq, k);
            s += Dot4(Vector256.Load((sbyte*)(o + QsOffset + 32 * k)), Avx2.Abs(a), a);
        }
        return s;
    }

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group1(byte* g, int nb, BlockQ8_0* a, float* y)
    {
        var even = Vector256<float>.Zero;
        var odd = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            var isum = BlockSums(o, a[ib].Qs);
            var scale = Scales(o) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D));
            if ((ib & 1) == 0) even = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), even);
            else odd = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), odd);
        }
        (even + odd).Store(y);
    }

    /// <summary>Two groups (<paramref name="groupBytes"/> apart) against one activation row: each broadcast and |a| serve both.</summary>
    // Compiled on its own (NoInlining): inlined into DotRows and from there into Q8_0x8Format.VecDotRows, the JIT
    // left Scales a call per block and kept the accumulators on the stack (perf: 17% of decode time in Scales,
    // tg 10-20% slower than the plain kernel); one call per 16 rows costs nothing.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Group2(byte* g, long groupBytes, int nb, BlockQ8_0* a, float* y)
    {
        Vector256<float> e0 = default, o0 = default, e1 = default, o1 = default;
        byte* h = g + groupBytes;
        var ahead = new PairPrefetch(groupBytes);
        for (int ib = 0; ib < nb; ib++)
        {
            long off = (long)ib * GroupBlockBytes;
            byte* p0 = g + off + QsOffset;
            byte* p1 = h + off + QsOffset;
            // Q8_0 decode stalls on memory (see Q8_0.DecodePrefetchBytes): each stream's next lines, that far
            // ahead in the order the stream is read (PairPrefetch).
            long pf = ahead.Ahead(off, Q8_0.DecodePrefetchBytes) + QsOffset;
            Prefetch(g + pf);
            Prefetch(h + pf);
            sbyte* aq = a[ib].Qs;
            // The eight steps written out, as in Group4: NativeAOT kept a loop's two sums in memory.
            var s0 = Vector256<int>.Zero;
            var s1 = Vector256<int>.Zero;
            Step2(p0, p1, aq, 0, ref s0, ref s1);
            Step2(p0, p1, aq, 1, ref s0, ref s1);
            Step2(p0, p1, aq, 2, ref s0, ref s1);
            Step2(p0, p1, aq, 3, ref s0, ref s1);
            Step2(p0, p1, aq, 4, ref s0, ref s1);
            Step2(p0, p1, aq, 5, ref s0, ref s1);
            Step2(p0, p1, aq, 6, ref s0, ref s1);
            Step2(p0, p1, aq, 7, ref s0, ref s1);
            var d = Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D));
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

    /// <summary>Values 4k..4k+3 of two groups' block (quants at <paramref name="p0"/>, <paramref name="p1"/>) against one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step2(byte* p0, byte* p1, sbyte* aq, int k, ref Vector256<int> s0, ref Vector256<int> s1)
    {
        var av = Broadcast4(aq, k);
        var abs = Avx2.Abs(av);
        s0 += Dot4(Vector256.Load((sbyte*)(p0 + 32 * k)), abs, av);
        s1 += Dot4(Vector256.Load((sbyte*)(p1 + 32 * k)), abs, av);
    }

    /// <summary>Prefetches the 320 bytes from <paramref name="p"/> (a group block is 272 bytes; a prefetch never faults).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p)
    {
        Sse.Prefetch0(p);
        Sse.Prefetch0(p + 64);
        Sse.Prefetch0(p + 128);
        Sse.Prefetch0(p + 192);
        Sse.Prefetch0(p + 256);
    }

    /// <summary>One group against four activation rows (<paramref name="actStride"/> apart): each weight vector loaded once.</summary>
    /// <remarks>
    /// Before 2026-11-30 both compilers spilled inside the block's steps: NativeAOT stored and reloaded the
    /// four int32 sums on every step of the loop over k (perf annotate: a third of the kernel's samples;
    /// pp128 of TinyLlama-shape Q8_0 at 0.75× the JIT build's), and the JIT spilled three of them. What
    /// removed it: the steps written out (<see cref="Step4"/>) and this method compiled on its own. The
    /// eight float accumulators (even and odd blocks, as <see cref="Group1"/>) also live in memory, read and
    /// written once per block, so the steps have registers to spare. Same operations in the same order,
    /// so the results are unchanged.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Group4(byte* g, int nb, byte* acts, long actStride, float* y, long yStride, bool prefetch)
    {
        var accs = default(TileAccumulators); // [0..3]: even blocks of activations 0..3, [4..7]: odd blocks
        var acc = (Vector256<float>*)&accs;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        var a3 = (BlockQ8_0*)(acts + 3 * actStride);
        for (int ib = 0; ib < nb; ib++)
        {
            if (prefetch) Prefetch(g + (long)ib * GroupBlockBytes + Q8_0.DecodePrefetchBytes);
            Step4(g, ib, a0, a1, a2, a3, acc + 4 * (ib & 1));
        }
        (acc[0] + acc[4]).Store(y);
        (acc[1] + acc[5]).Store(y + yStride);
        (acc[2] + acc[6]).Store(y + 2 * yStride);
        (acc[3] + acc[7]).Store(y + 3 * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4(byte* g, int ib, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, Vector256<float>* c)
    {
        byte* o = g + (long)ib * GroupBlockBytes;
        sbyte* q0 = a0[ib].Qs, q1 = a1[ib].Qs, q2 = a2[ib].Qs, q3 = a3[ib].Qs;
        // The eight steps written out: NativeAOT kept the four sums of a loop here in memory (a store after
        // every add and four reloads per step), with registers to spare. Integer sums, so any order is exact.
        Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
        Step4Quad(o, 0, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 1, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 2, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 3, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 4, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 5, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 6, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        Step4Quad(o, 7, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
        var dx = Scales(o);
        c[0] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0), c[0]);
        c[1] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1), c[1]);
        c[2] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2), c[2]);
        c[3] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3), c[3]);
    }

    /// <summary>Values 4k..4k+3 of the block at <paramref name="o"/> (eight rows) against four activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4Quad(byte* o, int k, sbyte* q0, sbyte* q1, sbyte* q2, sbyte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var w = Vector256.Load((sbyte*)(o + QsOffset + 32 * k));
        var b0 = Broadcast4(q0, k);
        s0 += Dot4(w, Avx2.Abs(b0), b0);
        var b1 = Broadcast4(q1, k);
        s1 += Dot4(w, Avx2.Abs(b1), b1);
        var b2 = Broadcast4(q2, k);
        s2 += Dot4(w, Avx2.Abs(b2), b2);
        var b3 = Broadcast4(q3, k);
        s3 += Dot4(w, Avx2.Abs(b3), b3);
    }

    /// <summary>
    /// <see cref="Group4"/> with the sign moved the other way: |w| (unsigned) times sign(a, w), so the
    /// absolute value is taken once per weight vector for the four activations instead of once per
    /// activation and vector (a C prototype of the tile: 41–43 → 45–48 GMAC/s on one Zen 3 core; NativeAOT
    /// `x64-avx2`, TinyLlama-shape Q8_0 pp128 on 2 threads, 14 alternating pairs on 2026-12-01: faster in 10,
    /// mean 80.0 → 86.0 t/s). Exact
    /// when the weights are within ±127 (<see cref="Pack"/>) and the activations too (sign(a, w) of
    /// a = -128 would overflow a byte): callers check with <see cref="QuantMath.NoMinus128"/>. Same integer sums,
    /// so the same bits as <see cref="Group4"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Group4W(byte* g, int nb, byte* acts, long actStride, float* y, long yStride, bool prefetch)
    {
        var accs = default(TileAccumulators); // [0..3]: even blocks of activations 0..3, [4..7]: odd blocks
        var acc = (Vector256<float>*)&accs;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        var a3 = (BlockQ8_0*)(acts + 3 * actStride);
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            if (prefetch) Prefetch(o + Q8_0.DecodePrefetchBytes);
            sbyte* q0 = a0[ib].Qs, q1 = a1[ib].Qs, q2 = a2[ib].Qs, q3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Step4QuadW(o, 0, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 1, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 2, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 3, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 4, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 5, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 6, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            Step4QuadW(o, 7, q0, q1, q2, q3, ref s0, ref s1, ref s2, ref s3);
            var dx = Scales(o);
            var c = acc + 4 * (ib & 1);
            c[0] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0), c[0]);
            c[1] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1), c[1]);
            c[2] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2), c[2]);
            c[3] = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3), c[3]);
        }
        (acc[0] + acc[4]).Store(y);
        (acc[1] + acc[5]).Store(y + yStride);
        (acc[2] + acc[6]).Store(y + 2 * yStride);
        (acc[3] + acc[7]).Store(y + 3 * yStride);
    }

    /// <summary>
    /// One group against <paramref name="na"/> = 2 or 3 activation rows: a small batch (a speculative
    /// draft checked in one batch, the last rows of a prompt). One activation at a time
    /// (<see cref="Group1"/>) loaded each weight vector once per activation, so a batch of 2 or 3 cost
    /// as much as 2 or 3 single tokens. Prefetches ahead as <see cref="Group2"/> does: a small batch
    /// streams the matrix from memory. Per (row, activation) the arithmetic is <see cref="Group1"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void GroupFew(byte* g, int nb, byte* acts, long actStride, int na, float* y, long yStride)
    {
        Vector256<float> e0 = default, o0 = default, e1 = default, o1 = default, e2 = default, o2 = default;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        bool three = na == 3;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Prefetch(o + Q8_0.DecodePrefetchBytes);
            var dx = Scales(o);
            var f0 = dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D));
            var f1 = dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D));
            var s0 = BlockSums(o, a0[ib].Qs);
            var s1 = BlockSums(o, a1[ib].Qs);
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
            if (three)
            {
                var f2 = dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D));
                var s2 = BlockSums(o, a2[ib].Qs);
                if ((ib & 1) == 0) e2 = Fma.MultiplyAdd(f2, Avx.ConvertToVector256Single(s2), e2);
                else o2 = Fma.MultiplyAdd(f2, Avx.ConvertToVector256Single(s2), o2);
            }
        }
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        if (three) (e2 + o2).Store(y + 2 * yStride);
    }

    /// <summary><see cref="Step4Quad"/> for <see cref="Group4W"/>: |w| once, sign(a, w) per activation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4QuadW(byte* o, int k, sbyte* q0, sbyte* q1, sbyte* q2, sbyte* q3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var w = Vector256.Load((sbyte*)(o + QsOffset + 32 * k));
        var absW = Avx2.Abs(w);
        s0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Broadcast4(q0, k), w)), Vector256<short>.One);
        s1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Broadcast4(q1, k), w)), Vector256<short>.One);
        s2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Broadcast4(q2, k), w)), Vector256<short>.One);
        s3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Broadcast4(q3, k), w)), Vector256<short>.One);
    }
}
