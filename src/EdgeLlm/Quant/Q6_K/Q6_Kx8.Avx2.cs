using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_Kx8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add, in-lane shuffles) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// <c>vpshufb</c> controls on an SC vector. s_scaleJ: the scale of sub-block 4c + J into the high
    /// byte of both int16 of each row's 32-bit lane (low byte zero), so an arithmetic shift right by 8
    /// sign-extends it. s_pair01 / s_pair23: scales (4c, 4c + 1) / (4c + 2, 4c + 3) into the two int16
    /// of each row's lane, to meet a pair of bsums. Indices are lane-relative, so the same 16 bytes
    /// serve rows 0..3 (low half) and 4..7 (high half).
    /// </summary>
    private static readonly Vector256<byte> s_scale0 = ScaleCtrl(0, 0), s_scale1 = ScaleCtrl(1, 1), s_scale2 = ScaleCtrl(2, 2), s_scale3 = ScaleCtrl(3, 3),
        s_pair01 = ScaleCtrl(0, 1), s_pair23 = ScaleCtrl(2, 3);

    /// <summary>Control giving scale <paramref name="jjLow"/> to the first int16 of each row lane and <paramref name="jjHigh"/> to the second.</summary>
    private static Vector256<byte> ScaleCtrl(int jjLow, int jjHigh)
    {
        var b = new byte[32];
        for (int i = 0; i < 32; i++)
        {
            int rr = (i & 15) >> 2;
            int jj = (i & 2) == 0 ? jjLow : jjHigh;
            b[i] = (i & 1) != 0 ? (byte)(jj * 4 + rr) : (byte)0x80;
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
        KQuant.CheckLength(n, "Q6_K");
        RowGroupLoops.DotRows<BlockQ8_K>(&Group1, &PlainDot, KQuant.QK_K, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>The plain kernel for the rows past the last whole group.</summary>
    private static float PlainDot(int n, byte* row, byte* act) => Q6_K.DotQ6_KQ8_K(n, (BlockQ6_K*)row, (BlockQ8_K*)act);

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile, <see cref="DotTileAvx512"/> where AVX-512BW
    /// exists, else <see cref="DotTileAvx2"/> (bit-identical to each other and to <see cref="DotRows"/>).
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        if (IsAvx512Supported) DotTileAvx512(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else DotTileAvx2(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// The prompt tile on AVX2 + FMA (the scalar statement without them). For each group, each
    /// super-block's scales and quants are unpacked once per four activation rows (the group's bytes
    /// stay in L1 while the activation rows pass); per (row, activation) the arithmetic is
    /// <see cref="DotRows"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx2(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / QK;
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        int groups = nRows / Rows;
        float* pad = stackalloc float[4 * Rows];
        for (int g = 0; g < groups; g++)
        {
            byte* gw = weights + (long)g * Rows * rowBytes;
            for (int a0 = 0; a0 < nActs; a0 += 4)
            {
                int na = Math.Min(4, nActs - a0);
                byte* a = acts + a0 * actStride;
                float* yg = y + a0 * yStride + g * Rows;
                if (na == 4) Group4(gw, nb, (BlockQ8_K*)a, (BlockQ8_K*)(a + actStride), (BlockQ8_K*)(a + 2 * actStride), (BlockQ8_K*)(a + 3 * actStride), yg, yStride);
                else if (na == 1) Group1(gw, nb, (BlockQ8_K*)a, yg);
                else
                {
                    // Two or three activations: the four-wide kernel with the last one repeated, into a
                    // scratch tile (per lane the arithmetic does not depend on the neighbours).
                    var a1 = (BlockQ8_K*)(a + actStride);
                    var a2 = (BlockQ8_K*)(a + Math.Min(2, na - 1) * actStride);
                    Group4(gw, nb, (BlockQ8_K*)a, a1, a2, a2, pad, Rows);
                    for (int k = 0; k < na; k++)
                        for (int r = 0; r < Rows; r++) yg[k * yStride + r] = pad[k * Rows + r];
                }
            }
        }
        for (int r = groups * Rows; r < nRows; r++)
            for (int k = 0; k < nActs; k++)
                y[k * yStride + r] = PlainDot(n, weights + r * rowBytes, acts + k * actStride);
    }

    /// <summary>
    /// The eight fp16 values at <paramref name="h16"/> as f32: exact for every finite half, by
    /// <see cref="QuantMath.HalfBitsToSingle(Vector256{int})"/> (<see cref="Pack"/> refuses inf/NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(byte* h16)
    {
        var h = Avx2.ConvertToVector256Int32((ushort*)h16);
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary>An SC vector through a scale control: int8 scales sign-extended into int16 (see <see cref="s_scale0"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Scales(Vector256<byte> sc, Vector256<byte> ctrl) =>
        Avx2.ShiftRightArithmetic(Avx2.Shuffle(sc, ctrl).AsInt16(), 8);

    /// <summary>
    /// Quant vector V_m (0..3) of sub-block jj (0..3) of the chunk at <paramref name="q"/>: four
    /// unsigned 6-bit quants of each row. Low nibbles of QL[m] (jj 0), QL[4 + m] (jj 1), their high
    /// nibbles (jj 2, 3); bits 2jj, 2jj + 1 of QH[m] moved to bits 4, 5 (the 16-bit shifts move
    /// bits across bytes only where the mask then clears them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Quants(byte* q, int m, int jj)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var m30 = Vector256.Create((byte)0x30);
        var l = Vector256.Load(q + 32 * (m + 4 * (jj & 1)));
        var h = Vector256.Load(q + OffQh + 32 * m);
        var low = jj >= 2 ? Avx2.ShiftRightLogical(l.AsUInt16(), 4).AsByte() & m4 : l & m4;
        var high = jj switch
        {
            0 => Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte(),
            1 => Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte(),
            2 => h,
            _ => Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte(),
        } & m30;
        return low | high;
    }

    /// <summary>Four activation bytes at <paramref name="x"/> in every 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(sbyte* x) => Vector256.Create(*(int*)x).AsSByte();

    /// <summary>
    /// One sub-block (four quant vectors) against the sixteen activation bytes at <paramref name="x"/>:
    /// per row lane, scale · Σ q·x. Two <c>vpmaddubsw</c> results are added in int16 (each pair
    /// |.| ≤ 2·63·128, two ≤ 32256) before each <c>vpmaddwd</c> by the scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot(Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2, Vector256<byte> v3, sbyte* x, Vector256<short> sc)
    {
        var p01 = Avx2.MultiplyAddAdjacent(v0, Broadcast(x)) + Avx2.MultiplyAddAdjacent(v1, Broadcast(x + 4));
        var p23 = Avx2.MultiplyAddAdjacent(v2, Broadcast(x + 8)) + Avx2.MultiplyAddAdjacent(v3, Broadcast(x + 12));
        return Avx2.MultiplyAddAdjacent(p01, sc) + Avx2.MultiplyAddAdjacent(p23, sc);
    }

    /// <summary>Sub-block jj of the chunk at <paramref name="q"/> against one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlock1(byte* q, int jj, sbyte* x, Vector256<short> sc) =>
        Dot(Quants(q, 0, jj), Quants(q, 1, jj), Quants(q, 2, jj), Quants(q, 3, jj), x, sc);

    /// <summary>Sub-block jj against four activation rows (each at offset <paramref name="at"/> of its qs): the quants unpacked once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock4(byte* q, int jj, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, int at, Vector256<short> sc,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var v0 = Quants(q, 0, jj);
        var v1 = Quants(q, 1, jj);
        var v2 = Quants(q, 2, jj);
        var v3 = Quants(q, 3, jj);
        s0 += Dot(v0, v1, v2, v3, x0 + at, sc);
        s1 += Dot(v0, v1, v2, v3, x1 + at, sc);
        s2 += Dot(v0, v1, v2, v3, x2 + at, sc);
        s3 += Dot(v0, v1, v2, v3, x3 + at, sc);
    }

    /// <summary>Σ_j scale_j · bsums[j] over the four sub-blocks of chunk c (scale pairs <paramref name="sp01"/>, <paramref name="sp23"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BsumTerm(Vector256<short> sp01, Vector256<short> sp23, short* bs) =>
        Avx2.MultiplyAddAdjacent(sp01, Vector256.Create(*(int*)bs).AsInt16()) + Avx2.MultiplyAddAdjacent(sp23, Vector256.Create(*(int*)(bs + 2)).AsInt16());

    /// <summary>
    /// How far ahead of the super-block being read the decode kernel prefetches (as the Q8_0 decode
    /// kernel does). Measured on the 2-core x64 machine (2026-11-29, single thread, 32000 × 2048 and
    /// 2048 × 5632 matrices, min of 7, alternating processes): 7.0–8.4 ms → 6.0–7.1 ms for the
    /// 32000-row matrix with 1 KiB (2 KiB about the same). Prefetches never fault, so reading past a
    /// chunk's or a matrix's end is harmless. Prompt tiles do not prefetch: they reuse each group
    /// from L1 for every four activation rows.
    /// </summary>
    internal const int DecodePrefetchBytes = 1024;

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_K* a, float* y)
    {
        var c0 = s_scale0;
        var c1 = s_scale1;
        var c2 = s_scale2;
        var c3 = s_scale3;
        var cp01 = s_pair01;
        var cp23 = s_pair23;
        var acc = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x = a[ib].Qs;
            short* bs = a[ib].Bsums;
            var sumi = Vector256<int>.Zero;
            var summ = Vector256<int>.Zero;
            // One prefetch per cache line of the super-block DecodePrefetchBytes ahead (see there).
            for (int l = 0; l < GroupBlockBytes; l += 64) Sse.Prefetch0(o + DecodePrefetchBytes + l);
            for (int c = 0; c < 4; c++)
            {
                byte* q = o + OffQ + c * ChunkBytes;
                var sv = Vector256.Load(o + OffSc + 32 * c);
                sbyte* xc = x + 64 * c;
                sumi += SubBlock1(q, 0, xc, Scales(sv, c0));
                sumi += SubBlock1(q, 1, xc + 16, Scales(sv, c1));
                sumi += SubBlock1(q, 2, xc + 32, Scales(sv, c2));
                sumi += SubBlock1(q, 3, xc + 48, Scales(sv, c3));
                summ += BsumTerm(Scales(sv, cp01), Scales(sv, cp23), bs + 4 * c);
            }
            var isum = sumi - Avx2.ShiftLeftLogical(summ, 5);
            acc = Fma.MultiplyAdd(Widen(o + OffD) * Vector256.Create(a[ib].D), Avx.ConvertToVector256Single(isum), acc);
        }
        acc.Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each super-block's scales and quants unpacked once
    /// and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_K* a0, BlockQ8_K* a1, BlockQ8_K* a2, BlockQ8_K* a3, float* y, long yStride)
    {
        var c0 = s_scale0;
        var c1 = s_scale1;
        var c2 = s_scale2;
        var c3 = s_scale3;
        var cp01 = s_pair01;
        var cp23 = s_pair23;
        // The four float accumulators live in memory (TileAccumulators), and each row's offset term goes
        // straight into its int32 sum: with them and four sums of offsets in registers beside the six scale
        // constants, the sums spilled. Integer sums, so s - (Σ m << 5) = Σ (s - (m << 5)) exactly.
        var accs = default(TileAccumulators);
        var acc = (Vector256<float>*)&accs;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int c = 0; c < 4; c++)
            {
                byte* q = o + OffQ + c * ChunkBytes;
                var sv = Vector256.Load(o + OffSc + 32 * c);
                int at = 64 * c;
                SubBlock4(q, 0, x0, x1, x2, x3, at, Scales(sv, c0), ref s0, ref s1, ref s2, ref s3);
                SubBlock4(q, 1, x0, x1, x2, x3, at + 16, Scales(sv, c1), ref s0, ref s1, ref s2, ref s3);
                SubBlock4(q, 2, x0, x1, x2, x3, at + 32, Scales(sv, c2), ref s0, ref s1, ref s2, ref s3);
                SubBlock4(q, 3, x0, x1, x2, x3, at + 48, Scales(sv, c3), ref s0, ref s1, ref s2, ref s3);
                var sp01 = Scales(sv, cp01);
                var sp23 = Scales(sv, cp23);
                s0 -= Avx2.ShiftLeftLogical(BsumTerm(sp01, sp23, a0[ib].Bsums + 4 * c), 5);
                s1 -= Avx2.ShiftLeftLogical(BsumTerm(sp01, sp23, a1[ib].Bsums + 4 * c), 5);
                s2 -= Avx2.ShiftLeftLogical(BsumTerm(sp01, sp23, a2[ib].Bsums + 4 * c), 5);
                s3 -= Avx2.ShiftLeftLogical(BsumTerm(sp01, sp23, a3[ib].Bsums + 4 * c), 5);
            }
            var dx = Widen(o + OffD);
            acc[0] = Fma.MultiplyAdd(dx * Vector256.Create(a0[ib].D), Avx.ConvertToVector256Single(s0), acc[0]);
            acc[1] = Fma.MultiplyAdd(dx * Vector256.Create(a1[ib].D), Avx.ConvertToVector256Single(s1), acc[1]);
            acc[2] = Fma.MultiplyAdd(dx * Vector256.Create(a2[ib].D), Avx.ConvertToVector256Single(s2), acc[2]);
            acc[3] = Fma.MultiplyAdd(dx * Vector256.Create(a3[ib].D), Avx.ConvertToVector256Single(s3), acc[3]);
        }
        acc[0].Store(y);
        acc[1].Store(y + yStride);
        acc[2].Store(y + 2 * yStride);
        acc[3].Store(y + 3 * yStride);
    }
}
