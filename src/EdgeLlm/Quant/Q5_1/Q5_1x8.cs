using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_1 weights repacked at load time so that eight rows are computed together ("Q5_1x8"):
/// <see cref="Q5_0x8"/>'s layout and kernels with a per-block minimum. Q5_1 matters beyond Q5_1
/// files: llama.cpp stores a Q5_K matrix whose rows are not a multiple of 256 values as Q5_1, so
/// Qwen2.5-0.5B's Q5_K_M file (rows of 896) is mostly Q5_1.
/// <para>
/// Layout. A group is eight consecutive rows in exactly the bytes the plain rows took (8 × 24 per
/// block); rows past the last whole group stay plain. Inside a group, block ib is 192 bytes at 192·ib:
/// <code>
///   [0, 16)     d[8]   the rows' fp16 scales, row order
///   [16, 32)    m[8]   the rows' fp16 minimums, row order
///   [32, 64)    H      the fifth bits, regrouped as in <see cref="Q5_0x8"/>
///   [64, 192)   Q[4]   4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// </para>
/// <para>
/// Arithmetic (every kernel the same, so decode rows and prompt tiles agree bit for bit): per row
/// and block against a Q8_1 activation block (scale dy, s = dy·Σa), the exact integer Σ q·a (q the
/// unsigned five-bit value), <c>acc = fma(dx·dy, sum, acc)</c> and <c>accm = fma(m, s, accm)</c>,
/// and the row's result is acc + accm. The plain kernels add dx·dy·sum + m·s per block, so the two
/// differ within float rounding; <see cref="DotRowsReference"/> is the scalar statement.
/// </para>
/// </summary>
internal static unsafe class Q5_1x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockQ5_1.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 24).</summary>
    public const int GroupBlockBytes = Rows * 24;

    /// <summary>Offsets inside a group block.</summary>
    internal const int OffD = 0, OffM = 16, OffH = 32, OffQ = 64;

    /// <summary>The packed kernels need AVX2 and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Decode prefetch distance, as <see cref="Q5_0x8.DecodePrefetchBytes"/>.</summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>
    /// Writes the packed form of a Q5_1 matrix (<paramref name="rows"/> × <paramref name="n"/>) from
    /// <paramref name="src"/> to <paramref name="dst"/> (same size, not overlapping); false, writing
    /// nothing useful, when a scale or minimum is inf or NaN.
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, sizeof(BlockQ5_1), pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockQ5_1*)block;
        if (pack)
        {
            if (!RowGroupLoops.Finite(&b->D, 2)) return false;
            ((ushort*)(o + OffD))[r] = b->D;
            ((ushort*)(o + OffM))[r] = b->M;
            Q5_0x8.RegroupFifthBits(*(uint*)b->Qh, o + OffH + 4 * r);
        }
        else
        {
            b->D = ((ushort*)(o + OffD))[r];
            b->M = ((ushort*)(o + OffM))[r];
            *(uint*)b->Qh = Q5_0x8.PlainFifthBits(o + OffH + 4 * r);
        }
        RowGroupLoops.MoveLanes(o + OffQ, r, b->Qs, pack);
        return true;
    }

    /// <summary>Scalar statement of the packed arithmetic for <paramref name="nRows"/> rows from a group boundary against one Q8_1 row.</summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
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
                        sum += Q5_0x8.Value(o + OffQ, o + OffH, ri, k, l, false) * a[ib].Qs[4 * k + l]
                            + Q5_0x8.Value(o + OffQ, o + OffH, ri, k, l, true) * a[ib].Qs[16 + 4 * k + l];
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                acc = MathF.FusedMultiplyAdd(dxy, sum, acc);
                accm = MathF.FusedMultiplyAdd(QuantMath.Fp16ToFp32(((ushort*)(o + OffM))[ri]), QuantMath.Fp16ToFp32(a[ib].S), accm);
            }
            y[r] = acc + accm;
        }
        for (int r = full; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    private static float PlainDot(int n, byte* row, byte* act) => Q5_1.DotQ5_1Q8_1(n, row, act);

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        RowGroupLoops.Decode<BlockQ8_1>(IsSupported, &DotRowsReference, &Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>The AVX-512 prompt tile needs AVX-512 F and BW besides the AVX2 kernels.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile, each group block's values built once per four
    /// activation rows (two groups per zmm where AVX-512 BW is present).
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, IsAvx512Supported);

    /// <summary><see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long)"/> with the AVX-512 pairs on or off (tests compare the two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        RowGroupLoops.Tile<BlockQ8_1>(IsSupported, avx512 && IsAvx512Supported, &DotRowsReference, &Group2x4, &Group1, &Group4, &PlainDot,
            QK, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on) against
    /// four activation rows, as <see cref="Q5_0x8"/>'s AVX-512 tile; per lane the float steps are <see cref="Group4"/>'s.
    /// </summary>
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
            var h = Q4_Kx8.Load2(o + OffH, oh + OffH);
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Q5_0x8.Half2x4(o + OffQ, oh + OffQ, h, 0, a0[ib].Qs, a1[ib].Qs, a2[ib].Qs, a3[ib].Qs, ones, ref s0, ref s1, ref s2, ref s3);
            Q5_0x8.Half2x4(o + OffQ, oh + OffQ, h, 2, a0[ib].Qs, a1[ib].Qs, a2[ib].Qs, a3[ib].Qs, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            var mx = Q4_Kx8.Widen2(o + OffM, oh + OffM);
            Step2(dx, mx, s0, a0 + ib, ref acc0, ref accm0);
            Step2(dx, mx, s1, a1 + ib, ref acc1, ref accm1);
            Step2(dx, mx, s2, a2 + ib, ref acc2, ref accm2);
            Step2(dx, mx, s3, a3 + ib, ref acc3, ref accm3);
        }
        (acc0 + accm0).Store(y);
        (acc1 + accm1).Store(y + yStride);
        (acc2 + accm2).Store(y + 2 * yStride);
        (acc3 + accm3).Store(y + 3 * yStride);
    }

    /// <summary><see cref="Step"/> on two groups (zmm), shared with <see cref="Q4_1x8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Step2(Vector512<float> dx, Vector512<float> mx, Vector512<int> sumi, BlockQ8_1* yb, ref Vector512<float> acc, ref Vector512<float> accm)
    {
        acc = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(yb->D)), Avx512F.ConvertToVector512Single(sumi), acc);
        accm = Avx512F.FusedMultiplyAdd(mx, Vector512.Create(QuantMath.Fp16ToFp32Fast(yb->S)), accm);
    }

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
            var h = Vector256.Load(o + OffH);
            sbyte* x = a[ib].Qs;
            var sumi = Avx2.MultiplyAddAdjacent(Q5_0x8.Pairs(o + OffQ, h, 0, x), ones) + Avx2.MultiplyAddAdjacent(Q5_0x8.Pairs(o + OffQ, h, 2, x), ones);
            acc = Fma.MultiplyAdd(Q5_0x8.Widen(o + OffD) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx.ConvertToVector256Single(sumi), acc);
            accm = Fma.MultiplyAdd(Q5_0x8.Widen(o + OffM), Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].S)), accm);
        }
        (acc + accm).Store(y);
    }

    /// <summary>
    /// One group against four activation rows: each quant vector's values built once and met by the
    /// four rows' broadcasts; the min terms in a second loop, as in <see cref="Q4_1x8"/>'s Group4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_1* a0, BlockQ8_1* a1, BlockQ8_1* a2, BlockQ8_1* a3, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            var h = Vector256.Load(o + OffH);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Q5_0x8.Half4(o + OffQ, h, 0, a0[ib].Qs, a1[ib].Qs, a2[ib].Qs, a3[ib].Qs, ones, ref s0, ref s1, ref s2, ref s3);
            Q5_0x8.Half4(o + OffQ, h, 2, a0[ib].Qs, a1[ib].Qs, a2[ib].Qs, a3[ib].Qs, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Q5_0x8.Widen(o + OffD);
            acc0 = Q4_1x8.ScaledSum(dx, s0, a0 + ib, acc0);
            acc1 = Q4_1x8.ScaledSum(dx, s1, a1 + ib, acc1);
            acc2 = Q4_1x8.ScaledSum(dx, s2, a2 + ib, acc2);
            acc3 = Q4_1x8.ScaledSum(dx, s3, a3 + ib, acc3);
        }
        var m0 = Q4_1x8.MinTerms4(g + OffM, GroupBlockBytes, nb, a0, a1, a2, a3, out var m1, out var m2, out var m3);
        (acc0 + m0).Store(y);
        (acc1 + m1).Store(y + yStride);
        (acc2 + m2).Store(y + 2 * yStride);
        (acc3 + m3).Store(y + 3 * yStride);
    }
}

/// <summary>
/// Q5_1 computed from the <see cref="Q5_1x8"/> layout (AVX2 + FMA); single-row methods read a plain
/// row (get_rows and conversions hand them one from the mapping).
/// </summary>
internal sealed unsafe class Q5_1x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q5_1;
    public override GgmlType VecDotType => GgmlType.Q8_1;
    public override int RowGroup => Q5_1x8.Rows;
    public override string? Layout => "q5_1x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q5_1.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q5_1.DotQ5_1Q8_1(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q5_1x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q5_1x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
