using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q4_1 weights repacked at load time so that eight rows are computed together ("Q4_1x8"):
/// <see cref="Q5_1x8"/>'s layout and arithmetic without the fifth bits. The plain kernels add one
/// scale term and one minimum term per row and block; here the eight rows' integer sums land in the
/// eight lanes of one vector and both terms take one FMA each per block for the eight rows.
/// <para>
/// Layout. A group is eight consecutive rows in exactly the bytes the plain rows took (8 × 20 per
/// block); rows past the last whole group stay plain. Inside a group, block ib is 160 bytes at 160·ib:
/// <code>
///   [0, 16)     d[8]   the rows' fp16 scales, row order
///   [16, 32)    m[8]   the rows' fp16 minimums, row order
///   [32, 160)   Q[4]   4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qs is the plain block's nibble array: byte j holds value j (low nibble) and 16 + j (high nibble),
/// so the low nibbles of Q[k] meet activations 4k .. 4k + 4 and the high ones 16 + 4k .. 20 + 4k.
/// </para>
/// <para>
/// Arithmetic (every kernel the same, so decode rows and prompt tiles agree bit for bit): per row
/// and block against a Q8_1 activation block (scale dy, s = dy·Σa), the exact integer Σ q·a (all
/// eight products per int16 pair sum: ≤ 8·2·15·128 = 30720), <c>acc = fma(dx·dy, sum, acc)</c> and
/// <c>accm = fma(m, s, accm)</c>, and the row's result is acc + accm. The plain kernels add
/// dx·dy·sum + m·s per block, so the two differ within float rounding; <see cref="DotRowsReference"/>
/// is the scalar statement.
/// </para>
/// </summary>
internal static unsafe class Q4_1x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockQ4_1.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 20).</summary>
    public const int GroupBlockBytes = Rows * 20;

    /// <summary>Offsets inside a group block.</summary>
    internal const int OffD = 0, OffM = 16, OffQ = 32;

    /// <summary>The packed kernels need AVX2 and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Decode prefetch distance, as <see cref="Q5_0x8.DecodePrefetchBytes"/>.</summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>
    /// Writes the packed form of a Q4_1 matrix (<paramref name="rows"/> × <paramref name="n"/>) from
    /// <paramref name="src"/> to <paramref name="dst"/> (same size, not overlapping); false, writing
    /// nothing useful, when a scale or minimum is inf or NaN.
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, sizeof(BlockQ4_1), pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockQ4_1*)block;
        if (pack)
        {
            if (!RowGroupLoops.Finite(&b->D, 2)) return false;
            ((ushort*)(o + OffD))[r] = b->D;
            ((ushort*)(o + OffM))[r] = b->M;
        }
        else
        {
            b->D = ((ushort*)(o + OffD))[r];
            b->M = ((ushort*)(o + OffM))[r];
        }
        RowGroupLoops.MoveLanes(o + OffQ, r, b->Qs, pack);
        return true;
    }

    /// <summary>Scalar statement of the packed arithmetic for <paramref name="nRows"/> rows from a group boundary against one Q8_1 row.</summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        int nb = n / QK;
        var a = (BlockQ8_1*)act;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            float acc = 0, accm = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sum = 0;
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 4; l++)
                    {
                        int b = o[OffQ + 32 * k + 4 * ri + l];
                        sum += (b & 0xF) * a[ib].Qs[4 * k + l] + (b >> 4) * a[ib].Qs[16 + 4 * k + l];
                    }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                acc = MathF.FusedMultiplyAdd(dxy, sum, acc);
                accm = MathF.FusedMultiplyAdd(QuantMath.Fp16ToFp32(((ushort*)(o + OffM))[ri]), QuantMath.Fp16ToFp32(a[ib].S), accm);
            }
            y[r] = acc + accm;
        }
        for (int r = full; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    private static float PlainDot(int n, byte* row, byte* act) => Q4_1.DotQ4_1Q8_1(n, row, act);

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        RowGroupLoops.Decode<BlockQ8_1>(IsSupported, &DotRowsReference, &Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile, each group block's nibbles split once per four
    /// activation rows (two groups per zmm where AVX-512 BW is present).
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, IsAvx512Supported);

    /// <summary><see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long)"/> with the AVX-512 pairs on or off (tests compare the two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        RowGroupLoops.Tile<BlockQ8_1>(IsSupported, avx512 && IsAvx512Supported, &DotRowsReference, &Group2x4, &Group1, &Group4, &PlainDot,
            QK, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>Two groups (16 rows, the second <paramref name="groupBytes"/> on) against four activation rows; per lane <see cref="Group4"/>'s arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_1* a0, BlockQ8_1* a1, BlockQ8_1* a2, BlockQ8_1* a3, float* y, long yStride)
    {
        var ones = Vector512.Create((short)1);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector512<float> accm0 = default, accm1 = default, accm2 = default, accm3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector512<short> p0 = default, p1 = default, p2 = default, p3 = default;
            Mac2x4(o + OffQ, oh + OffQ, 0, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac2x4(o + OffQ, oh + OffQ, 1, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac2x4(o + OffQ, oh + OffQ, 2, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac2x4(o + OffQ, oh + OffQ, 3, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            var mx = Q4_Kx8.Widen2(o + OffM, oh + OffM);
            Q5_1x8.Step2(dx, mx, Avx512BW.MultiplyAddAdjacent(p0, ones), a0 + ib, ref acc0, ref accm0);
            Q5_1x8.Step2(dx, mx, Avx512BW.MultiplyAddAdjacent(p1, ones), a1 + ib, ref acc1, ref accm1);
            Q5_1x8.Step2(dx, mx, Avx512BW.MultiplyAddAdjacent(p2, ones), a2 + ib, ref acc2, ref accm2);
            Q5_1x8.Step2(dx, mx, Avx512BW.MultiplyAddAdjacent(p3, ones), a3 + ib, ref acc3, ref accm3);
        }
        (acc0 + accm0).Store(y);
        (acc1 + accm1).Store(y + yStride);
        (acc2 + accm2).Store(y + 2 * yStride);
        (acc3 + accm3).Store(y + 3 * yStride);
    }

    /// <summary>Quant vector k of two groups (both nibbles) against the four rows' broadcast activation bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac2x4(byte* q, byte* qNext, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector512<short> p0, ref Vector512<short> p1, ref Vector512<short> p2, ref Vector512<short> p3)
    {
        var m = Vector512.Create((byte)0x0F);
        var v = Q4_Kx8.Load2(q + 32 * k, qNext + 32 * k);
        var lo = v & m;
        var hi = Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m;
        Q5_0x8.Mac2x4(lo, 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Q5_0x8.Mac2x4(hi, 16 + 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
    }

    /// <summary>The low (<paramref name="high"/> false) or high nibbles of quant vector k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibbles(byte* q, int k, bool high)
    {
        var v = Vector256.Load(q + 32 * k);
        return (high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() : v) & Vector256.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mac1(byte* q, int k, bool high, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Nibbles(q, k, high), Vector256.Create(*(int*)(x + (high ? 16 : 0) + 4 * k)).AsSByte());

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_1* a, float* y)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc = default, accm = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Sse.Prefetch0(o + DecodePrefetchBytes);
            Sse.Prefetch0(o + DecodePrefetchBytes + 64);
            Sse.Prefetch0(o + DecodePrefetchBytes + 128);
            byte* q = o + OffQ;
            sbyte* x = a[ib].Qs;
            var p0 = Mac1(q, 0, false, x) + Mac1(q, 1, false, x) + Mac1(q, 2, false, x) + Mac1(q, 3, false, x);
            var p1 = Mac1(q, 0, true, x) + Mac1(q, 1, true, x) + Mac1(q, 2, true, x) + Mac1(q, 3, true, x);
            var sumi = Avx2.MultiplyAddAdjacent(p0 + p1, ones);
            acc = Fma.MultiplyAdd(Q5_0x8.Widen(o + OffD) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx.ConvertToVector256Single(sumi), acc);
            accm = Fma.MultiplyAdd(Q5_0x8.Widen(o + OffM), Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].S)), accm);
        }
        (acc + accm).Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each quant vector's nibbles split once and met by the
    /// four rows' broadcasts. The min terms (mx·s) run in a second loop (<see cref="MinTerms4"/>):
    /// with them in the first, eight accumulators and the block's values did not fit the sixteen ymm
    /// registers. Each accumulator sees the same steps in the same block order, so the sums are unchanged.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_1* a0, BlockQ8_1* a1, BlockQ8_1* a2, BlockQ8_1* a3, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* q = o + OffQ;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
            Mac4(q, 0, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac4(q, 1, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac4(q, 2, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            Mac4(q, 3, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
            var dx = Q5_0x8.Widen(o + OffD);
            acc0 = ScaledSum(dx, Avx2.MultiplyAddAdjacent(p0, ones), a0 + ib, acc0);
            acc1 = ScaledSum(dx, Avx2.MultiplyAddAdjacent(p1, ones), a1 + ib, acc1);
            acc2 = ScaledSum(dx, Avx2.MultiplyAddAdjacent(p2, ones), a2 + ib, acc2);
            acc3 = ScaledSum(dx, Avx2.MultiplyAddAdjacent(p3, ones), a3 + ib, acc3);
        }
        var m0 = MinTerms4(g + OffM, GroupBlockBytes, nb, a0, a1, a2, a3, out var m1, out var m2, out var m3);
        (acc0 + m0).Store(y);
        (acc1 + m1).Store(y + yStride);
        (acc2 + m2).Store(y + 2 * yStride);
        (acc3 + m3).Store(y + 3 * yStride);
    }

    /// <summary>acc + (dx·d)·sumi for one block and activation row (<see cref="Group1"/>'s scaled-sum step).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ScaledSum(Vector256<float> dx, Vector256<int> sumi, BlockQ8_1* yb, Vector256<float> acc) =>
        Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(yb->D)), Avx.ConvertToVector256Single(sumi), acc);

    /// <summary>
    /// The min terms of a Q4_1/Q5_1 group against four activation rows: per row of the group and
    /// activation, Σ over blocks in order of mx·s (one fused multiply-add each, <see cref="Group1"/>'s
    /// order), where <paramref name="m"/> points at block 0's eight fp16 mins and blocks are
    /// <paramref name="groupBlockBytes"/> apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> MinTerms4(byte* m, long groupBlockBytes, int nb, BlockQ8_1* a0, BlockQ8_1* a1, BlockQ8_1* a2, BlockQ8_1* a3,
        out Vector256<float> m1, out Vector256<float> m2, out Vector256<float> m3)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            var mx = Q5_0x8.Widen(m + ib * groupBlockBytes);
            c0 = Fma.MultiplyAdd(mx, Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].S)), c0);
            c1 = Fma.MultiplyAdd(mx, Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].S)), c1);
            c2 = Fma.MultiplyAdd(mx, Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].S)), c2);
            c3 = Fma.MultiplyAdd(mx, Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].S)), c3);
        }
        m1 = c1; m2 = c2; m3 = c3;
        return c0;
    }

    /// <summary>Quant vector k (both nibbles) against the four rows' broadcast activation bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(byte* q, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        var lo = Nibbles(q, k, false);
        var hi = Nibbles(q, k, true);
        p0 += Avx2.MultiplyAddAdjacent(lo, Vector256.Create(*(int*)(x0 + 4 * k)).AsSByte()) + Avx2.MultiplyAddAdjacent(hi, Vector256.Create(*(int*)(x0 + 16 + 4 * k)).AsSByte());
        p1 += Avx2.MultiplyAddAdjacent(lo, Vector256.Create(*(int*)(x1 + 4 * k)).AsSByte()) + Avx2.MultiplyAddAdjacent(hi, Vector256.Create(*(int*)(x1 + 16 + 4 * k)).AsSByte());
        p2 += Avx2.MultiplyAddAdjacent(lo, Vector256.Create(*(int*)(x2 + 4 * k)).AsSByte()) + Avx2.MultiplyAddAdjacent(hi, Vector256.Create(*(int*)(x2 + 16 + 4 * k)).AsSByte());
        p3 += Avx2.MultiplyAddAdjacent(lo, Vector256.Create(*(int*)(x3 + 4 * k)).AsSByte()) + Avx2.MultiplyAddAdjacent(hi, Vector256.Create(*(int*)(x3 + 16 + 4 * k)).AsSByte());
    }

}

/// <summary>
/// Q4_1 computed from the <see cref="Q4_1x8"/> layout (AVX2 + FMA); single-row methods read a plain
/// row (get_rows and conversions hand them one from the mapping).
/// </summary>
internal sealed unsafe class Q4_1x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_1;
    public override GgmlType VecDotType => GgmlType.Q8_1;
    public override int RowGroup => Q4_1x8.Rows;
    public override string? Layout => "q4_1x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_1.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q4_1.DotQ4_1Q8_1(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q4_1x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q4_1x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
