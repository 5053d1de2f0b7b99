using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_0x8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Blocks of activations whose per-block terms fit on the stack (8192 blocks = 262144 columns).</summary>
    private const int MaxStackBlocks = 8192;

    /// <summary>
    /// y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.
    /// Each group of eight rows is one pass over its 144-byte blocks; rows past the last whole
    /// group are plain and go through the plain kernel.
    /// </summary>
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y) =>
        DotRows(n, weights, rowBytes, nRows, act, y, UseAvx512Tile, DwordLanes);

    /// <summary><see cref="DotRows(int, byte*, long, int, byte*, float*, bool, bool)"/> in this machine's lane order.</summary>
    internal static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y, bool avx512) =>
        DotRows(n, weights, rowBytes, nRows, act, y, avx512, DwordLanes);

    /// <summary>
    /// <see cref="DotRows(int, byte*, long, int, byte*, float*)"/> with the 512-bit two-group step
    /// on or off (<paramref name="avx512"/> is ignored without AVX-512BW); tests run both. Measured on
    /// the 2-core AVX-512 machine, TinyLlama-shape Q4_0 tg32, alternating runs: +4–19% on one thread,
    /// +1–9% on two (where decode is bound by memory). <paramref name="dword"/>: the matrix was packed in
    /// 4-byte lanes (<see cref="DwordLanes"/>); the AVX-512 step reads 8-byte lanes only, so it is off then.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y, bool avx512, bool dword)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y, dword);
            return;
        }
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        if (nb > MaxStackBlocks) throw new ArgumentOutOfRangeException(nameof(n), n, $"rows longer than {MaxStackBlocks * QK} values are not supported by the Q4_0x8 kernels");
        int* corr = stackalloc int[nb];
        float* dy = stackalloc float[nb];
        ActivationTerms((BlockQ8_0*)act, nb, corr, dy);
        int groups = nRows / Rows;
        int g = 0;
        long groupBytes = Rows * rowBytes;
        if (dword)
        {
            for (; g + 1 < groups; g += 2)
                GroupD2(weights + g * groupBytes, groupBytes, nb, (BlockQ8_0*)act, corr, dy, y + g * Rows);
            if (g < groups)
                GroupD1(weights + g * groupBytes, nb, (BlockQ8_0*)act, corr, dy, y + g * Rows);
            g = groups;
        }
        if (avx512 && UseAvx512Tile)
            for (; g + 1 < groups; g += 2)
                Rows16Avx512(weights + g * groupBytes, groupBytes, nb, (BlockQ8_0*)act, corr, dy, y + g * Rows);
        for (; g + 1 < groups; g += 2)
            Group2(weights + g * groupBytes, groupBytes, nb, (BlockQ8_0*)act, corr, dy, y + g * Rows);
        if (g < groups && !dword)
            Group1(weights + g * groupBytes, nb, (BlockQ8_0*)act, corr, dy, y + g * Rows);
        for (int r = groups * Rows; r < nRows; r++) y[r] = Q4_0.DotQ4_0Q8_0(n, weights + r * rowBytes, act);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. Each group block is unpacked once and
    /// met by four activation rows (eight, two groups at a time, with AVX-512); per (row, activation) the arithmetic is <see cref="DotRows"/>'s.
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, UseAvx512Tile, DwordLanes);

    /// <summary><see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long, bool, bool)"/> in this machine's lane order.</summary>
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512, DwordLanes);

    /// <summary>
    /// <see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long)"/> with the 512-bit
    /// two-group tile on or off (<paramref name="avx512"/> is ignored without AVX-512BW, and with
    /// <paramref name="dword"/>, a matrix packed in 4-byte lanes); tests run both.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512, bool dword)
    {
        avx512 &= UseAvx512Tile && !dword;
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        if (!IsSupported || nb > MaxStackBlocks / 4)
        {
            // Same arithmetic one activation at a time (yStride may be 1 row of results per activation, so go through a copy).
            var tmp = new float[nRows];
            fixed (float* t = tmp)
                for (int a = 0; a < nActs; a++)
                {
                    DotRows(n, weights, rowBytes, nRows, acts + a * actStride, t, avx512, dword);
                    for (int r = 0; r < nRows; r++) y[a * yStride + r] = t[r];
                }
            return;
        }
        int groups = nRows / Rows;
        // AVX-512: eight activations per pass over a pair of groups (measured ~10% over four).
        bool wide = avx512 && nb <= MaxStackBlocks / 8;
        // The activation terms of every row, from this thread's cache when the same activations came
        // in the last call: a forward pass walks a matrix in slices of 64 rows (or a head at a time),
        // and recomputing the terms per slice cost ~12% of a small model's prompt (qwen2.5-0.5b, 1 thread).
        long tileBytes = 8L * nb * (sizeof(int) + sizeof(float));
        byte* terms = TileScratch.Packed(s_termsTile, nb, acts, actStride, (long)nb * sizeof(BlockQ8_0), nActs, tileBytes);
        for (int a0 = 0; a0 < nActs;)
        {
            int na = wide && nActs - a0 >= 8 ? 8 : Math.Min(4, nActs - a0);
            // chunks start at a multiple of 4 and never cross a tile of 8
            byte* tile = terms + a0 / 8 * tileBytes;
            int* corr = (int*)tile + a0 % 8 * nb;
            float* dy = (float*)(tile + 8L * nb * sizeof(int)) + a0 % 8 * nb;
            for (int g = 0; g < groups; g++)
            {
                byte* gw = weights + (long)g * Rows * rowBytes;
                float* yg = y + a0 * yStride + g * Rows;
                if (dword)
                {
                    if (na == 4)
                        GroupD4(gw, nb, acts + a0 * actStride, actStride, corr, dy, yg, yStride, a0 == 0);
                    else if (na > 1)
                        GroupDFew(gw, nb, acts + a0 * actStride, actStride, na, corr, dy, yg, yStride);
                    else
                        for (int a = 0; a < na; a++)
                            GroupD1(gw, nb, (BlockQ8_0*)(acts + (a0 + a) * actStride), corr + a * nb, dy + a * nb, yg + a * yStride);
                }
                else if (na == 8 && g + 1 < groups)
                {
                    Group8x2Avx512(gw, Rows * rowBytes, nb, acts + a0 * actStride, actStride, corr, dy, yg, yStride);
                    g++;
                }
                else if (na == 8)
                {
                    Group4(gw, nb, acts + a0 * actStride, actStride, corr, dy, yg, yStride);
                    Group4(gw, nb, acts + (a0 + 4) * actStride, actStride, corr + 4 * nb, dy + 4 * nb, yg + 4 * yStride, yStride);
                }
                else if (na == 4 && avx512 && g + 1 < groups)
                {
                    Group4x2Avx512(gw, Rows * rowBytes, nb, acts + a0 * actStride, actStride, corr, dy, yg, yStride);
                    g++;
                }
                else if (na == 4)
                {
                    Group4(gw, nb, acts + a0 * actStride, actStride, corr, dy, yg, yStride);
                }
                else if (na > 1)
                {
                    GroupFew(gw, nb, acts + a0 * actStride, actStride, na, corr, dy, yg, yStride);
                }
                else
                {
                    Group1(gw, nb, (BlockQ8_0*)(acts + a0 * actStride), corr, dy, yg);
                }
            }
            for (int r = groups * Rows; r < nRows; r++)
                for (int a = 0; a < na; a++)
                    y[(a0 + a) * yStride + r] = Q4_0.DotQ4_0Q8_0(n, weights + r * rowBytes, acts + (a0 + a) * actStride);
            a0 += na;
        }
    }

    private static readonly TileScratch.PackTile s_termsTile = TermsTile;

    /// <summary>
    /// <see cref="ActivationTerms"/> of <paramref name="na"/> (≤ 8) activation rows into one cached
    /// tile: corr[a·nb + ib] (int) for a = 0..7, then dy[a·nb + ib] (f32).
    /// </summary>
    private static void TermsTile(int nb, byte* acts, long actStride, int na, byte* pack)
    {
        for (int a = 0; a < na; a++)
            ActivationTerms((BlockQ8_0*)(acts + a * actStride), nb, (int*)pack + a * nb, (float*)(pack + 8L * nb * sizeof(int)) + a * nb);
    }

    /// <summary>Per activation block: 8·Σq (the -8 offset of every weight nibble, taken out once) and the scale as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ActivationTerms(BlockQ8_0* a, int nb, int* corr, float* dy)
    {
        var eight = Vector256.Create((byte)8);
        var ones = Vector256.Create((short)1);
        int ib = 0;
        // Eight blocks at a time: their eight partial-sum vectors reduced together by a tree of
        // in-lane horizontal adds (exact integers: any order gives the same sums).
        for (; ib + 8 <= nb; ib += 8)
        {
            var s0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib].Qs)), ones);
            var s1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 1].Qs)), ones);
            var s2 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 2].Qs)), ones);
            var s3 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 3].Qs)), ones);
            var s4 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 4].Qs)), ones);
            var s5 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 5].Qs)), ones);
            var s6 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 6].Qs)), ones);
            var s7 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, Vector256.Load(a[ib + 7].Qs)), ones);
            // per 128-bit half: [b0 b1 b2 b3] partial sums, then halves added across
            var u0 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(s0, s1), Avx2.HorizontalAdd(s2, s3));
            var u1 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(s4, s5), Avx2.HorizontalAdd(s6, s7));
            (Avx2.Permute2x128(u0, u1, 0x20) + Avx2.Permute2x128(u0, u1, 0x31)).Store(corr + ib);
            for (int j = 0; j < 8; j++) dy[ib + j] = QuantMath.Fp16ToFp32Fast(a[ib + j].D);
        }
        for (; ib < nb; ib++)
        {
            var q = Vector256.Load(a[ib].Qs);
            corr[ib] = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, q), ones));
            dy[ib] = QuantMath.Fp16ToFp32Fast(a[ib].D);
        }
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

    /// <summary>
    /// Σ q·a for the eight rows of one group block (q unsigned nibbles, no offset yet), rows in lane
    /// order. p holds rows 0, 1 | 4, 5 and q rows 2, 3 | 6, 7 as four int16 pair sums per row; one
    /// <c>vphaddw</c> adds them pairwise into rows 0..3 | 4..7 (|each| ≤ 4·2·15·128 = 15360, so a sum
    /// of two fits int16) and one <c>vpmaddwd</c> widens the last pairs: exact integers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RawSums(Vector256<byte> lo0, Vector256<byte> hi0, Vector256<byte> lo2, Vector256<byte> hi2,
        Vector256<byte> lo1, Vector256<byte> hi1, Vector256<byte> lo3, Vector256<byte> hi3, sbyte* aq)
    {
        // Each broadcast is used for both halves at once, so it dies before the next one is made.
        var b0 = Vector256.Create(*(long*)aq).AsSByte();
        var p = Avx2.MultiplyAddAdjacent(lo0, b0);
        var q = Avx2.MultiplyAddAdjacent(lo1, b0);
        var b1 = Vector256.Create(*(long*)(aq + 8)).AsSByte();
        p += Avx2.MultiplyAddAdjacent(lo2, b1);
        q += Avx2.MultiplyAddAdjacent(lo3, b1);
        var b2 = Vector256.Create(*(long*)(aq + 16)).AsSByte();
        p += Avx2.MultiplyAddAdjacent(hi0, b2);
        q += Avx2.MultiplyAddAdjacent(hi1, b2);
        var b3 = Vector256.Create(*(long*)(aq + 24)).AsSByte();
        p += Avx2.MultiplyAddAdjacent(hi2, b3);
        q += Avx2.MultiplyAddAdjacent(hi3, b3);
        return Avx2.MultiplyAddAdjacent(Avx2.HorizontalAdd(p, q), Vector256.Create((short)1));
    }

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Group1(byte* g, int nb, BlockQ8_0* a, int* corr, float* dy, float* y)
    {
        var m = Vector256.Create((byte)0x0F);
        var even = Vector256<float>.Zero;
        var odd = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Prefetch(o + DecodePrefetchBytes);
            var v0 = Vector256.Load(o + 16);
            var v1 = Vector256.Load(o + 48);
            var v2 = Vector256.Load(o + 80);
            var v3 = Vector256.Load(o + 112);
            var isum = RawSums(v0 & m, Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m, v2 & m, Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m,
                v1 & m, Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m, v3 & m, Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m, a[ib].Qs)
                - Vector256.Create(corr[ib]);
            var scale = Scales(o) * Vector256.Create(dy[ib]);
            if ((ib & 1) == 0) even = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), even);
            else odd = Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(isum), odd);
        }
        (even + odd).Store(y);
    }

    /// <summary>
    /// How far ahead of the block being read the decode kernels (<see cref="Group1"/>, <see cref="Group2"/>,
    /// <c>Rows16Avx512</c>) prefetch each stream. A matrix-vector product reads every weight once, and
    /// the hardware prefetcher alone kept fewer lines in flight than the memory system can serve.
    /// Measured on the 2-core x64 machine (2026-11-29, in-process alternating rounds, tg32 at 2 threads):
    /// qwen2.5-0.5b Q4_0 +18–23% (AVX-512), +10% (AVX2); TinyLlama-1.1B Q4_0 +14%; 4 KiB and 12 KiB
    /// about the same, 16 KiB worse, 1–2 KiB little gain. (An earlier try with 1–2 KiB found no gain, which
    /// is why this kernel went without.) Those figures were taken while the two-group kernels prefetched
    /// at plain off + 8 KiB, past their first group's end for most blocks (see <see cref="PairPrefetch"/>);
    /// with each stream prefetched in its own reading order, 4 KiB measured best (2026-12-02, the 2-core
    /// AVX-512 AMD EPYC, <c>edgellm bench -t 2 -p 0 -n 32 -r 3 --generic</c>, three alternating rounds,
    /// t/s): TinyLlama-1.1B Q4_0 35.6–36.8 before, 42.3–44.3 at 4 KiB, 40.4–41.0 at 8 KiB; the same
    /// file on the AVX2 path (4-byte lanes) 34.8–36.2 before, 39.8–43.6 at 4 KiB; qwen2.5-0.5b Q4_0
    /// 60.7–60.9 before, 65.6–68.2 at 4 KiB, 64.0–64.8 at 2 KiB. Prefetches never fault, so reading past a
    /// work item's or a matrix's end is harmless.
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>
    /// How far ahead the small-batch kernels (2–4 activation rows over one group, even blocks then
    /// odd: <c>GroupDFew</c>, <c>GroupD4</c>, their 8-byte-lane twins) prefetch their one stream: 8 KiB,
    /// the distance all Q4_0 kernels used before the pair kernels moved to 4 KiB. Kept apart because
    /// a batch of three measured no better at 4 KiB (2026-12-02, AVX2 path on the AVX-512 EPYC,
    /// TinyLlama Q4_0 pp3 at 2 threads, three alternating rounds: 76.6–89.8 t/s at 4 KiB, 78.7–97.0 at 8).
    /// </summary>
    internal const int SmallBatchPrefetchBytes = 8192;

    /// <summary>Prefetches the three cache lines a group block (144 bytes) can touch from <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p)
    {
        Sse.Prefetch0(p);
        Sse.Prefetch0(p + 64);
        Sse.Prefetch0(p + 128);
    }

    /// <summary>Prefetches the five cache lines two group blocks (288 bytes) can touch from <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchPair(byte* p)
    {
        Sse.Prefetch0(p);
        Sse.Prefetch0(p + 64);
        Sse.Prefetch0(p + 128);
        Sse.Prefetch0(p + 192);
        Sse.Prefetch0(p + 256);
    }

    /// <summary>Two groups (<paramref name="groupBytes"/> apart) against one activation row: the activation block is loaded and broadcast once for both.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Group2(byte* g, long groupBytes, int nb, BlockQ8_0* a, int* corr, float* dy, float* y)
    {
        var m = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        Vector256<float> e0 = default, o0 = default, e1 = default, o1 = default;
        byte* h = g + groupBytes;
        var ahead = new PairPrefetch(groupBytes);
        for (int ib = 0; ib < nb; ib++)
        {
            sbyte* aq = a[ib].Qs;
            var b0 = Vector256.Create(*(long*)aq).AsSByte();
            var b1 = Vector256.Create(*(long*)(aq + 8)).AsSByte();
            var b2 = Vector256.Create(*(long*)(aq + 16)).AsSByte();
            var b3 = Vector256.Create(*(long*)(aq + 24)).AsSByte();
            var c = Vector256.Create(corr[ib]);
            var d = Vector256.Create(dy[ib]);
            long off = (long)ib * GroupBlockBytes;
            long pf = ahead.Ahead(off, DecodePrefetchBytes);
            Prefetch(g + pf);
            Prefetch(h + pf);
            var s0 = Sums(g + off, m, ones, b0, b1, b2, b3) - c;
            var s1 = Sums(h + off, m, ones, b0, b1, b2, b3) - c;
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

    /// <summary><see cref="RawSums"/> of the group block at <paramref name="o"/> with broadcast activation groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sums(byte* o, Vector256<byte> m, Vector256<short> ones, Vector256<sbyte> b0, Vector256<sbyte> b1, Vector256<sbyte> b2, Vector256<sbyte> b3)
    {
        var v0 = Vector256.Load(o + 16);
        var v1 = Vector256.Load(o + 48);
        var v2 = Vector256.Load(o + 80);
        var v3 = Vector256.Load(o + 112);
        var p = Avx2.MultiplyAddAdjacent(v0 & m, b0) + Avx2.MultiplyAddAdjacent(v2 & m, b1)
            + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m, b2) + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m, b3);
        var q = Avx2.MultiplyAddAdjacent(v1 & m, b0) + Avx2.MultiplyAddAdjacent(v3 & m, b1)
            + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m, b2) + Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m, b3);
        return Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(p, ones), Avx2.MultiplyAddAdjacent(q, ones));
    }

    /// <summary>
    /// One group against four activation rows (<paramref name="actStride"/> apart): each block
    /// unpacked once per pass. The even blocks go first (<see cref="Group4Pass"/> from block 0),
    /// then the odd ones (from block 1), so each pass holds four accumulators, not eight: with eight,
    /// the unpacked block and the broadcasts no longer fit the sixteen ymm registers and the JIT
    /// kept the accumulators and some broadcasts on the stack (JIT listing: 172 stack references in
    /// the old method, 26 in a pass, prolog included). The sums are the same: even blocks into one accumulator, odd ones into the other,
    /// in block order, added at the end, as in <see cref="Group1"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Group4(byte* g, int nb, byte* acts, long actStride, int* corr, float* dy, float* y, long yStride)
    {
        var e0 = Group4Pass(g, 0, nb, acts, actStride, corr, dy, out var e1, out var e2, out var e3);
        var o0 = Group4Pass(g, 1, nb, acts, actStride, corr, dy, out var o1, out var o2, out var o3);
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        (e2 + o2).Store(y + 2 * yStride);
        (e3 + o3).Store(y + 3 * yStride);
    }

    /// <summary>
    /// Blocks <paramref name="start"/>, start + 2, ... of a group against four activation rows:
    /// per row of the group and activation, Σ over those blocks of (dx·dy)·(Σ q·a − corr), one fused
    /// multiply-add per block in block order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static Vector256<float> Group4Pass(byte* g, int start, int nb, byte* acts, long actStride, int* corr, float* dy,
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
            var v0 = Vector256.Load(o + 16); var v1 = Vector256.Load(o + 48); var v2 = Vector256.Load(o + 80); var v3 = Vector256.Load(o + 112);
            var lo0 = v0 & m; var hi0 = Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
            var lo1 = v1 & m; var hi1 = Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
            var lo2 = v2 & m; var hi2 = Avx2.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m;
            var lo3 = v3 & m; var hi3 = Avx2.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m;
            var dx = Scales(o);
            c0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a0[k].Qs) - Vector256.Create(corr[k])), c0);
            c1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[nb + k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a1[k].Qs) - Vector256.Create(corr[nb + k])), c1);
            c2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2 * nb + k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a2[k].Qs) - Vector256.Create(corr[2 * nb + k])), c2);
            c3 = Fma.MultiplyAdd(dx * Vector256.Create(dy[3 * nb + k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a3[k].Qs) - Vector256.Create(corr[3 * nb + k])), c3);
        }
        acc1 = c1; acc2 = c2; acc3 = c3;
        return c0;
    }

    /// <summary>
    /// <see cref="Group4"/> for <paramref name="na"/> = 2 or 3 activation rows (a small batch: a
    /// speculative draft checked at once, the last rows of a prompt), as <see cref="GroupDFew"/> in
    /// 4-byte lanes: each block unpacked once for all of them, not once per activation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupFew(byte* g, int nb, byte* acts, long actStride, int na, int* corr, float* dy, float* y, long yStride)
    {
        var e0 = GroupFewPass(g, 0, nb, acts, actStride, na, corr, dy, out var e1, out var e2);
        var o0 = GroupFewPass(g, 1, nb, acts, actStride, na, corr, dy, out var o1, out var o2);
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        if (na == 3) (e2 + o2).Store(y + 2 * yStride);
    }

    /// <summary><see cref="Group4Pass"/> for 2 or 3 activation rows; the even pass prefetches as <see cref="GroupDFewPass"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static Vector256<float> GroupFewPass(byte* g, int start, int nb, byte* acts, long actStride, int na, int* corr, float* dy,
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
            c0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a0[k].Qs) - Vector256.Create(corr[k])), c0);
            c1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[nb + k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a1[k].Qs) - Vector256.Create(corr[nb + k])), c1);
            if (three)
                c2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2 * nb + k]), Avx.ConvertToVector256Single(RawSums(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a2[k].Qs) - Vector256.Create(corr[2 * nb + k])), c2);
        }
        acc1 = c1; acc2 = c2;
        return c0;
    }
}
