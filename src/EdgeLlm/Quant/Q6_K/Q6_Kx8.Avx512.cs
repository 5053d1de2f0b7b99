using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// The prompt tile of the Q6_Kx8 layout on AVX-512BW: two groups per 512-bit vector, computing
// exactly what the AVX2 kernels compute for every (row, activation) pair.
internal static unsafe partial class Q6_Kx8
{
    /// <summary>The AVX-512 prompt tile runs where the AVX2+FMA kernels run and AVX-512 F and BW exist.</summary>
    internal static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// <see cref="DotTile"/> on AVX-512BW, bit-identical to <see cref="DotTileAvx2"/> (and so to
    /// <see cref="DotRows"/>) for every (row, activation) pair. One 512-bit vector holds the same
    /// super-block of TWO groups: the low 256 bits are group g exactly as the AVX2 kernel holds it,
    /// the high 256 bits group g + 1 (rows 8g .. 8g + 15 in lane order):
    /// <code>
    ///   quants  V = [ V(group g) | V(group g+1) ]      Load2: vmovdqu ymm + vinserti64x4
    ///   scales  S = vpshufb(SC pair, ctrl | ctrl)      the AVX2 controls, in-lane per 128 bits
    ///   acts    x = vpbroadcastd (4 bytes of one activation row: the same in both halves)
    ///   per row lane:  sumi += vpmaddwd(vpmaddubsw(V0, x0) + vpmaddubsw(V1, x1), S) + (same for V2, V3)
    ///                  sumi -= (S01·bsums01 + S23·bsums23) « 5       (once per 64-value chunk)
    ///                  acc   = fma(d_row·d_act, (float)sumi, acc)    (once per super-block)
    /// </code>
    /// So the quants and scales of sixteen rows are unpacked once per <see cref="WideActs"/>
    /// activation rows, twice as many rows per instruction as the AVX2 tile. The integer sums are
    /// those of the AVX2 kernel in another order (int32 addition wraps, so any order gives the same
    /// bits; taking 32·summ off per chunk instead of once is the same sum), and the float steps,
    /// the fp16 widening, d·d, the int→float conversion and the FMA, are the AVX2 kernel's, lane by
    /// lane. A last odd group, the plain tail rows and a last single activation row go through the
    /// AVX2 code. End to end (2026-11-29, 2-core x64 machine under load from other builds, synthetic
    /// TinyLlama-shape Q4_K_M, <c>edgellm bench -t 1 -p 128 -n 0 -r 4</c>, alternating with a build
    /// that took the AVX2 tile): pp128 35.8 / 41.2 / 42.9 tok/s against 33.5 / 38.2 / 39.3.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        if (!IsAvx512Supported) throw new PlatformNotSupportedException("Q6_Kx8.DotTileAvx512 needs AVX2, FMA, AVX-512F and AVX-512BW");
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / QK;
        int pairs = nRows / (2 * Rows);
        long groupBytes = Rows * rowBytes;
        float* pad = stackalloc float[NarrowActs * 2 * Rows];
        int a0 = 0;
        for (; a0 + WideActs <= nActs; a0 += WideActs)
        {
            byte* a = acts + a0 * actStride;
            for (int p = 0; p < pairs; p++)
                PairWide(weights + 2 * p * groupBytes, groupBytes, nb, a, actStride, y + a0 * yStride + 2 * Rows * p, yStride);
        }
        for (; a0 + 1 < nActs; a0 += NarrowActs)
        {
            int na = Math.Min(NarrowActs, nActs - a0);
            byte* a = acts + a0 * actStride;
            for (int p = 0; p < pairs; p++)
            {
                byte* gw = weights + 2 * p * groupBytes;
                float* yp = y + a0 * yStride + 2 * Rows * p;
                if (na == NarrowActs)
                {
                    PairNarrow(gw, groupBytes, nb, (BlockQ8_K*)a, (BlockQ8_K*)(a + actStride), (BlockQ8_K*)(a + 2 * actStride), (BlockQ8_K*)(a + 3 * actStride), yp, yStride);
                    continue;
                }
                // Two or three activations: the four-wide kernel with the last one repeated, into a
                // scratch tile (per lane the arithmetic does not depend on the neighbours).
                var a1 = (BlockQ8_K*)(a + actStride);
                var a2 = (BlockQ8_K*)(a + Math.Min(2, na - 1) * actStride);
                PairNarrow(gw, groupBytes, nb, (BlockQ8_K*)a, a1, a2, a2, pad, 2 * Rows);
                for (int k = 0; k < na; k++)
                    for (int r = 0; r < 2 * Rows; r++) yp[k * yStride + r] = pad[k * 2 * Rows + r];
            }
        }
        if (a0 < nActs)
        {
            // One last activation row: nothing to share the unpacking with; the decode kernel.
            for (int g = 0; g < 2 * pairs; g++)
                Group1(weights + g * groupBytes, nb, (BlockQ8_K*)(acts + a0 * actStride), y + a0 * yStride + g * Rows);
        }
        int done = 2 * pairs * Rows;
        if (done < nRows)
            DotTileAvx2(n, weights + done * rowBytes, rowBytes, nRows - done, acts, actStride, nActs, y + done, yStride);
    }

    /// <summary>
    /// Activation rows per call of the wide pair kernel (32 registers: 8 sums, 8 accumulators, 4
    /// quant vectors, scales, temporaries). Measured on the 2-core x64 machine (2026-11-29, one
    /// thread, 256 rows × 2048 columns × 128 activations, best of 6, AVX2 tile interleaved, three
    /// runs each): 8 rows per pass 80.8–85.2 GMAC/s (AVX2 tile 52–57), 4 rows per pass only 67–78
    /// (AVX2 47–59). Sixteen rows per pass (float accumulators in y) went past the JIT's inlining
    /// budget, its helpers stayed calls and it ran at 1–17 GMAC/s; removed.
    /// </summary>
    private const int WideActs = 8;

    /// <summary>Activation rows per call of the narrow pair kernel (the rest of a tile).</summary>
    private const int NarrowActs = 4;

    /// <summary>The 32 bytes at <paramref name="p"/> (group g) and <paramref name="p"/> + <paramref name="gd"/> (group g + 1) as one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Load2(byte* p, long gd) =>
        // InsertVector256 rather than Vector512.Create(lower, upper): the JIT builds the latter in a stack temporary.
        Avx512F.InsertVector256(Vector256.Load(p).ToVector512Unsafe(), Vector256.Load(p + gd), 1);

    /// <summary>
    /// Sixteen fp16 values (eight at <paramref name="h16"/>, eight <paramref name="gd"/> further) as
    /// f32, as <see cref="Widen"/> converts them (exact, so equal to it lane by lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen2(byte* h16, long gd)
    {
        var h = Avx512F.ConvertToVector512Int32(Avx2.InsertVector128(Vector128.Load((ushort*)h16).ToVector256Unsafe(), Vector128.Load((ushort*)(h16 + gd)), 1));
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary>A pair of SC vectors through a scale control (<see cref="Ctrl2"/>): int8 scales sign-extended into int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Scales2(Vector512<byte> sc, Vector512<byte> ctrl) =>
        Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(sc, ctrl).AsInt16(), 8);

    /// <summary>An AVX2 scale control (<see cref="s_scale0"/>) in both 256-bit halves (vpshufb indexes within each 128 bits, so it serves both groups).</summary>
    private static Vector512<byte> Ctrl2(Vector256<byte> ctrl) => Vector512.Create(ctrl, ctrl);

    /// <summary><see cref="Quants"/> for the two groups: quant vector V_m of sub-block jj of the chunk at <paramref name="q"/> (group g) and <paramref name="q"/> + <paramref name="gd"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Quants2(byte* q, long gd, int m, int jj)
    {
        var m4 = Vector512.Create((byte)0x0F);
        var m30 = Vector512.Create((byte)0x30);
        var l = Load2(q + 32 * (m + 4 * (jj & 1)), gd);
        var h = Load2(q + OffQh + 32 * m, gd);
        var low = jj >= 2 ? Avx512BW.ShiftRightLogical(l.AsUInt16(), 4).AsByte() & m4 : l & m4;
        var high = jj switch
        {
            0 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 4).AsByte(),
            1 => Avx512BW.ShiftLeftLogical(h.AsUInt16(), 2).AsByte(),
            2 => h,
            _ => Avx512BW.ShiftRightLogical(h.AsUInt16(), 2).AsByte(),
        } & m30;
        return low | high;
    }

    /// <summary>Four activation bytes at <paramref name="x"/> in every 32-bit lane of both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Broadcast2(sbyte* x) => Vector512.Create(*(int*)x).AsSByte();

    /// <summary><see cref="Dot"/> at 512 bits: per row lane, scale · Σ q·x over one sub-block (the same int16 pairing, no saturation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Dot2(Vector512<byte> v0, Vector512<byte> v1, Vector512<byte> v2, Vector512<byte> v3, sbyte* x, Vector512<short> sc)
    {
        var p01 = Avx512BW.MultiplyAddAdjacent(v0, Broadcast2(x)) + Avx512BW.MultiplyAddAdjacent(v1, Broadcast2(x + 4));
        var p23 = Avx512BW.MultiplyAddAdjacent(v2, Broadcast2(x + 8)) + Avx512BW.MultiplyAddAdjacent(v3, Broadcast2(x + 12));
        return Avx512BW.MultiplyAddAdjacent(p01, sc) + Avx512BW.MultiplyAddAdjacent(p23, sc);
    }

    /// <summary>Sub-block jj of the chunk at <paramref name="q"/> (both groups) against eight activation rows (each at offset <paramref name="at"/> of its qs): the quants unpacked once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockWide(byte* q, long gd, int jj, Vector512<short> sc, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, sbyte* x4, sbyte* x5, sbyte* x6, sbyte* x7, int at,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3, ref Vector512<int> s4, ref Vector512<int> s5, ref Vector512<int> s6, ref Vector512<int> s7)
    {
        var v0 = Quants2(q, gd, 0, jj);
        var v1 = Quants2(q, gd, 1, jj);
        var v2 = Quants2(q, gd, 2, jj);
        var v3 = Quants2(q, gd, 3, jj);
        s0 += Dot2(v0, v1, v2, v3, x0 + at, sc);
        s1 += Dot2(v0, v1, v2, v3, x1 + at, sc);
        s2 += Dot2(v0, v1, v2, v3, x2 + at, sc);
        s3 += Dot2(v0, v1, v2, v3, x3 + at, sc);
        s4 += Dot2(v0, v1, v2, v3, x4 + at, sc);
        s5 += Dot2(v0, v1, v2, v3, x5 + at, sc);
        s6 += Dot2(v0, v1, v2, v3, x6 + at, sc);
        s7 += Dot2(v0, v1, v2, v3, x7 + at, sc);
    }

    /// <summary>Sub-block jj of the chunk at <paramref name="q"/> (both groups) against four activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockNarrow(byte* q, long gd, int jj, Vector512<short> sc, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int at,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        var v0 = Quants2(q, gd, 0, jj);
        var v1 = Quants2(q, gd, 1, jj);
        var v2 = Quants2(q, gd, 2, jj);
        var v3 = Quants2(q, gd, 3, jj);
        s0 += Dot2(v0, v1, v2, v3, x0 + at, sc);
        s1 += Dot2(v0, v1, v2, v3, x1 + at, sc);
        s2 += Dot2(v0, v1, v2, v3, x2 + at, sc);
        s3 += Dot2(v0, v1, v2, v3, x3 + at, sc);
    }

    /// <summary>32 · Σ_j scale_j · bsums[j] over the four sub-blocks of a chunk: what the chunk takes off sumi for the −32 offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Offset2(Vector512<short> sp01, Vector512<short> sp23, short* bs) =>
        Avx512F.ShiftLeftLogical(
            Avx512BW.MultiplyAddAdjacent(sp01, Vector512.Create(*(int*)bs).AsInt16()) + Avx512BW.MultiplyAddAdjacent(sp23, Vector512.Create(*(int*)(bs + 2)).AsInt16()),
            5);

    /// <summary>
    /// Groups g (at <paramref name="g"/>) and g + 1 (<paramref name="gd"/> further) against
    /// <see cref="WideActs"/> activation rows from <paramref name="acts"/>: sixteen results per
    /// activation row to <paramref name="y"/> (row a at y + a·yStride).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairWide(byte* g, long gd, int nb, byte* acts, long actStride, float* y, long yStride)
    {
        // The controls once per call (statics are not constants in a method compiled straight to full opts).
        Vector512<byte> c0 = Ctrl2(s_scale0), c1 = Ctrl2(s_scale1), c2 = Ctrl2(s_scale2), c3 = Ctrl2(s_scale3), cp01 = Ctrl2(s_pair01), cp23 = Ctrl2(s_pair23);
        var a0 = (BlockQ8_K*)acts;
        var a1 = (BlockQ8_K*)(acts + actStride);
        var a2 = (BlockQ8_K*)(acts + 2 * actStride);
        var a3 = (BlockQ8_K*)(acts + 3 * actStride);
        var a4 = (BlockQ8_K*)(acts + 4 * actStride);
        var a5 = (BlockQ8_K*)(acts + 5 * actStride);
        var a6 = (BlockQ8_K*)(acts + 6 * actStride);
        var a7 = (BlockQ8_K*)(acts + 7 * actStride);
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs, x4 = a4[ib].Qs, x5 = a5[ib].Qs, x6 = a6[ib].Qs, x7 = a7[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            for (int c = 0; c < 4; c++)
            {
                byte* q = o + OffQ + c * ChunkBytes;
                var sv = Load2(o + OffSc + 32 * c, gd);
                var sp01 = Scales2(sv, cp01);
                var sp23 = Scales2(sv, cp23);
                s0 -= Offset2(sp01, sp23, a0[ib].Bsums + 4 * c);
                s1 -= Offset2(sp01, sp23, a1[ib].Bsums + 4 * c);
                s2 -= Offset2(sp01, sp23, a2[ib].Bsums + 4 * c);
                s3 -= Offset2(sp01, sp23, a3[ib].Bsums + 4 * c);
                s4 -= Offset2(sp01, sp23, a4[ib].Bsums + 4 * c);
                s5 -= Offset2(sp01, sp23, a5[ib].Bsums + 4 * c);
                s6 -= Offset2(sp01, sp23, a6[ib].Bsums + 4 * c);
                s7 -= Offset2(sp01, sp23, a7[ib].Bsums + 4 * c);
                SubBlockWide(q, gd, 0, Scales2(sv, c0), x0, x1, x2, x3, x4, x5, x6, x7, 64 * c + 0, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
                SubBlockWide(q, gd, 1, Scales2(sv, c1), x0, x1, x2, x3, x4, x5, x6, x7, 64 * c + 16, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
                SubBlockWide(q, gd, 2, Scales2(sv, c2), x0, x1, x2, x3, x4, x5, x6, x7, 64 * c + 32, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
                SubBlockWide(q, gd, 3, Scales2(sv, c3), x0, x1, x2, x3, x4, x5, x6, x7, 64 * c + 48, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6, ref s7);
            }
            var dx = Widen2(o + OffD, gd);
            f0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a0[ib].D), Avx512F.ConvertToVector512Single(s0), f0);
            f1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a1[ib].D), Avx512F.ConvertToVector512Single(s1), f1);
            f2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a2[ib].D), Avx512F.ConvertToVector512Single(s2), f2);
            f3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a3[ib].D), Avx512F.ConvertToVector512Single(s3), f3);
            f4 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a4[ib].D), Avx512F.ConvertToVector512Single(s4), f4);
            f5 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a5[ib].D), Avx512F.ConvertToVector512Single(s5), f5);
            f6 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a6[ib].D), Avx512F.ConvertToVector512Single(s6), f6);
            f7 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a7[ib].D), Avx512F.ConvertToVector512Single(s7), f7);
        }
        f0.Store(y);
        f1.Store(y + yStride);
        f2.Store(y + 2 * yStride);
        f3.Store(y + 3 * yStride);
        f4.Store(y + 4 * yStride);
        f5.Store(y + 5 * yStride);
        f6.Store(y + 6 * yStride);
        f7.Store(y + 7 * yStride);
    }

    /// <summary>Groups g and g + 1 against four activation rows (<see cref="PairWide"/> for the rest of a tile).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairNarrow(byte* g, long gd, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        // The controls once per call (statics are not constants in a method compiled straight to full opts).
        Vector512<byte> c0 = Ctrl2(s_scale0), c1 = Ctrl2(s_scale1), c2 = Ctrl2(s_scale2), c3 = Ctrl2(s_scale3), cp01 = Ctrl2(s_pair01), cp23 = Ctrl2(s_pair23);
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int c = 0; c < 4; c++)
            {
                byte* q = o + OffQ + c * ChunkBytes;
                var sv = Load2(o + OffSc + 32 * c, gd);
                var sp01 = Scales2(sv, cp01);
                var sp23 = Scales2(sv, cp23);
                s0 -= Offset2(sp01, sp23, a0[ib].Bsums + 4 * c);
                s1 -= Offset2(sp01, sp23, a1[ib].Bsums + 4 * c);
                s2 -= Offset2(sp01, sp23, a2[ib].Bsums + 4 * c);
                s3 -= Offset2(sp01, sp23, a3[ib].Bsums + 4 * c);
                SubBlockNarrow(q, gd, 0, Scales2(sv, c0), x0, x1, x2, x3, 64 * c + 0, ref s0, ref s1, ref s2, ref s3);
                SubBlockNarrow(q, gd, 1, Scales2(sv, c1), x0, x1, x2, x3, 64 * c + 16, ref s0, ref s1, ref s2, ref s3);
                SubBlockNarrow(q, gd, 2, Scales2(sv, c2), x0, x1, x2, x3, 64 * c + 32, ref s0, ref s1, ref s2, ref s3);
                SubBlockNarrow(q, gd, 3, Scales2(sv, c3), x0, x1, x2, x3, 64 * c + 48, ref s0, ref s1, ref s2, ref s3);
            }
            var dx = Widen2(o + OffD, gd);
            f0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a0[ib].D), Avx512F.ConvertToVector512Single(s0), f0);
            f1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a1[ib].D), Avx512F.ConvertToVector512Single(s1), f1);
            f2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a2[ib].D), Avx512F.ConvertToVector512Single(s2), f2);
            f3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(a3[ib].D), Avx512F.ConvertToVector512Single(s3), f3);
        }
        f0.Store(y);
        f1.Store(y + yStride);
        f2.Store(y + 2 * yStride);
        f3.Store(y + 3 * yStride);
    }
}
