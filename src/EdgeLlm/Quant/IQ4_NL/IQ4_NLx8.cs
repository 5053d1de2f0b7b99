using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// IQ4_NL weights repacked at load time so that eight rows are computed together ("IQ4_NLx8", as
/// llama.cpp's CPU_REPACK does with <c>block_iq4_nlx4</c>, with a layout of our own). IQ4_NL matters
/// beyond IQ4_NL files: llama.cpp stores a Q2_K or Q3_K matrix whose row length is not a multiple
/// of 256 as IQ4_NL, so small models' Q2_K and Q3_K files are largely IQ4_NL.
/// <para>
/// Layout. A group is eight consecutive rows in exactly the bytes the plain rows took (8 × 18 per
/// block); rows past the last whole group stay plain. Inside a group, block ib is 144 bytes at 144·ib:
/// <code>
///   [0, 16)     d[8]   the rows' fp16 scales, row order
///   [16, 144)   Q[4]   4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qs is the plain block's nibble array (ggml block_iq4_nl): byte j holds the grid index of value j
/// in its low nibble and of value 16 + j in its high nibble; the value is
/// <see cref="IQ4_NL.KValues"/>[index], −127..113.
/// </para>
/// <para>
/// Arithmetic (every kernel the same, so decode rows and prompt tiles agree bit for bit): per row
/// and block the exact integer Σ kvalue·a, then <c>acc = fma(dx·dy, sum, acc)</c> in block order;
/// against the plain kernels only the float rounding differs (<see cref="DotRowsReference"/> is the
/// scalar statement). The grid values are signed, so the kernels multiply |a| by the value carrying
/// a's sign (<c>vpsignb</c>; ggml's <c>mul_sum_i8_pairs</c> puts the weight's sign on the activation
/// instead, which needs activations above −128: real Q8_0 rows are, the tests' random rows need not be); one such pair sum reaches ±2·128·127, so each is widened to
/// int32 at once.
/// </para>
/// </summary>
internal static unsafe partial class IQ4_NLx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockIQ4_NL.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 18).</summary>
    public const int GroupBlockBytes = Rows * 18;

    /// <summary>Offsets inside a group block.</summary>
    internal const int OffD = 0, OffQ = 16;

    /// <summary>The packed kernels need AVX2 (byte shuffles and multiply-add) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>The grid in both 128-bit lanes, for <c>vpshufb</c> lookups.</summary>
    private static readonly Vector256<sbyte> s_grid = Vector256.Create(Vector128.Create(IQ4_NL.KValues), Vector128.Create(IQ4_NL.KValues));

    /// <summary>Decode prefetch distance, as <see cref="Q5_0x8.DecodePrefetchBytes"/>.</summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>
    /// Writes the packed form of an IQ4_NL matrix (<paramref name="rows"/> × <paramref name="n"/>) from
    /// <paramref name="src"/> to <paramref name="dst"/> (same size, not overlapping); false, writing
    /// nothing useful, when a scale is inf or NaN.
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, sizeof(BlockIQ4_NL), pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockIQ4_NL*)block;
        if (pack && !RowGroupLoops.Finite(&b->D, 1)) return false;
        RowGroupLoops.MoveLanes(o + OffQ, r, b->Qs, pack);
        if (pack) ((ushort*)(o + OffD))[r] = b->D;
        else b->D = ((ushort*)(o + OffD))[r];
        return true;
    }

    /// <summary>Scalar statement of the packed arithmetic for <paramref name="nRows"/> rows from a group boundary against one Q8_0 row.</summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
        var grid = IQ4_NL.KValues;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            float acc = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sum = 0;
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 4; l++)
                    {
                        int q = o[OffQ + 32 * k + 4 * ri + l];
                        sum += grid[q & 0xF] * a[ib].Qs[4 * k + l] + grid[q >> 4] * a[ib].Qs[16 + 4 * k + l];
                    }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                acc = MathF.FusedMultiplyAdd(dxy, sum, acc);
            }
            y[r] = acc;
        }
        for (int r = full; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    private static float PlainDot(int n, byte* row, byte* act) => IQ4_NL.DotIQ4_NLQ8_0(n, row, act);

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y);
            return;
        }
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        RowGroupLoops.DotRows<BlockQ8_0>(&Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>y[a·yStride + r] = row r · act a: the prompt tile, each group block's values looked up once per four activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, IsAvx512Supported);

    /// <summary>The AVX-512 tile needs AVX-512 F and BW besides the AVX2 kernels.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// The tile with the AVX-512 pairs of groups (<see cref="Group2x4"/>) on or off (tests compare the two);
    /// activation rows past the last four, a last odd group and the plain tail go through the AVX2 kernels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        QuantMath.CheckBlocks(n, QK, "IQ4_NL");
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        DotTilePrepared(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, avx512 && IsAvx512Supported);
    }

    /// <summary>The grid values of quant vector k's low (<paramref name="high"/> false) or high nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Values(byte* o, int k, bool high)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(o + OffQ + 32 * k);
        var idx = high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return Avx2.Shuffle(s_grid, idx.AsSByte());
    }

    /// <summary>
    /// Σ w·a over one quant vector's values against four activation bytes (broadcast), as int32 per row
    /// lane: |a| (unsigned, 128 for −128) times w with a's sign, which fits int8 because |w| ≤ 127.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot(Vector256<sbyte> w, sbyte* x, Vector256<short> ones)
    {
        var a = Vector256.Create(*(int*)x).AsSByte();
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(a), Avx2.Sign(w, a)), ones);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(byte* h16) => QuantMath.HalfBitsToSingle(Avx2.ConvertToVector256Int32((ushort*)h16));

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_0* a, float* y)
    {
        var ones = Vector256.Create((short)1);
        var acc = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            Sse.Prefetch0(o + DecodePrefetchBytes);
            Sse.Prefetch0(o + DecodePrefetchBytes + 64);
            Sse.Prefetch0(o + DecodePrefetchBytes + 128);
            sbyte* x = a[ib].Qs;
            Vector256<int> s0 = default, s1 = default;
            for (int k = 0; k < 4; k++)
            {
                var lo = Values(o, k, false);
                var hi = Values(o, k, true);
                s0 += Dot(lo, x + 4 * k, ones);
                s1 += Dot(hi, x + 16 + 4 * k, ones);
            }
            acc = Fma.MultiplyAdd(Widen(o + OffD) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx.ConvertToVector256Single(s0 + s1), acc);
        }
        acc.Store(y);
    }

    /// <summary>Grid values <paramref name="w"/> (looked up once) against four rows' activation bytes at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(Vector256<sbyte> w, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector256<short> ones,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        s0 += Dot(w, x0 + at, ones);
        s1 += Dot(w, x1 + at, ones);
        s2 += Dot(w, x2 + at, ones);
        s3 += Dot(w, x3 + at, ones);
    }

    /// <summary>One group against four activation rows: each quant vector's grid values and their magnitudes formed once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Low nibbles of vector k meet values 4k.., high nibbles values 16 + 4k...
            for (int k = 0; k < 4; k++) Mac4(Values(o, k, false), 4 * k, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            for (int k = 0; k < 4; k++) Mac4(Values(o, k, true), 16 + 4 * k, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Widen(o + OffD);
            acc0 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }
    /// <summary>
    /// <see cref="Group4"/> against four prepared activation rows (<see cref="DotTilePrepared"/>): the
    /// magnitudes come prepared, the sign still from the activation byte (<c>vpsignb</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4P(byte* g, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, byte* prep, long prepRow, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* p = prep + ib * PrepBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // The eight steps written out: NativeAOT kept the four sums of the two loops here in memory (a store
            // after every add, reloads each step). Integer sums, so the order is exact either way.
            Mac4P(Values(o, 0, false), 0, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 1, false), 4, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 2, false), 8, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 3, false), 12, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 0, true), 16, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 1, true), 20, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 2, true), 24, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4P(Values(o, 3, true), 28, x0, x1, x2, x3, p, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Widen(o + OffD);
            acc0 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4P(Vector256<sbyte> w, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, byte* p, long prepRow, Vector256<short> ones,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        s0 += DotP(w, x0 + at, p + at, ones);
        s1 += DotP(w, x1 + at, p + prepRow + at, ones);
        s2 += DotP(w, x2 + at, p + 2 * prepRow + at, ones);
        s3 += DotP(w, x3 + at, p + 3 * prepRow + at, ones);
    }

    /// <summary>The grid's magnitudes |w| (all ≤ 127), for <see cref="Group4W"/>.</summary>
    private static readonly Vector256<sbyte> s_absGrid = Avx2.IsSupported ? Avx2.Abs(s_grid).AsSByte() : default;

    /// <summary>
    /// <see cref="Group4"/> with the sign moved the other way: the grid's magnitudes |w| (one lookup per
    /// quant vector, shared by the four activations) times sign(a, w), where the prepared tile reads |a|
    /// per activation and vector. Exact when no activation quant is -128 (<see cref="QuantMath.NoMinus128"/>,
    /// checked by the caller); the same integer sums, so the same bits as Group4 and Group4P.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4W(byte* g, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Written out, as Group4P (NativeAOT kept a loop's four sums in memory).
            Mac4W(o, 0, false, 0, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 1, false, 4, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 2, false, 8, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 3, false, 12, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 0, true, 16, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 1, true, 20, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 2, true, 24, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Mac4W(o, 3, true, 28, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Widen(o + OffD);
            acc0 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0), acc0);
            acc1 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1), acc1);
            acc2 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2), acc2);
            acc3 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>Quant vector k's low or high nibbles as grid values w and magnitudes |w|, against four rows' activation bytes at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4W(byte* o, int k, bool high, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector256<short> ones,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(o + OffQ + 32 * k);
        var idx = (high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m).AsSByte();
        var w = Avx2.Shuffle(s_grid, idx);
        var absW = Avx2.Shuffle(s_absGrid, idx).AsByte();
        s0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(x0 + at)).AsSByte(), w)), ones);
        s1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(x1 + at)).AsSByte(), w)), ones);
        s2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(x2 + at)).AsSByte(), w)), ones);
        s3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(x3 + at)).AsSByte(), w)), ones);
    }

    /// <summary><see cref="Dot"/> with the magnitudes |a| read prepared at <paramref name="magnitudes"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotP(Vector256<sbyte> w, sbyte* x, byte* magnitudes, Vector256<short> ones)
    {
        var a = Vector256.Create(*(int*)x).AsSByte();
        var m = Vector256.Create(*(int*)magnitudes).AsByte();
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(m, Avx2.Sign(w, a)), ones);
    }
}

internal static unsafe partial class IQ4_NLx8
{
    /// <summary>The grid in all four 128-bit lanes, for <c>vpshufb</c> lookups on zmm.</summary>
    private static readonly Vector512<sbyte> s_grid512 = Vector512.Create(s_grid, s_grid);

    /// <summary>
    /// Bytes of one prepared activation block for <see cref="Group2x4"/>: its 32 magnitudes |a| (128 for
    /// −128, as an unsigned byte), then 32 sign masks (0xFF where a &lt; 0).
    /// </summary>
    private const int PrepBlockBytes = 64;

    /// <summary>
    /// The tile: four activation rows at a time are prepared once (<see cref="Prepare"/>: their signs and
    /// magnitudes do not depend on the weights), then every group meets them in <see cref="Group4P"/>,
    /// or with <paramref name="avx512"/> every pair of groups in <see cref="Group2x4"/> (a last odd group
    /// in Group4P); activation rows past the last four go through <see cref="Group1"/> and
    /// <see cref="Group4"/>, the plain tail through the plain kernel. Every kernel gives the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotTilePrepared(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        int nb = n / QK;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        int a0 = 0;
        if (nActs >= 4 && groups >= 1)
        {
            byte[] buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(4 * nb * PrepBlockBytes + 64);
            try
            {
                fixed (byte* pb = buffer)
                {
                    byte* prep = (byte*)(((nint)pb + 63) & ~(nint)63);
                    long prepRow = (long)nb * PrepBlockBytes;
                    for (; a0 + 4 <= nActs; a0 += 4)
                    {
                        byte* a = acts + a0 * actStride;
                        var x0 = (BlockQ8_0*)a;
                        var x1 = (BlockQ8_0*)(a + actStride);
                        var x2 = (BlockQ8_0*)(a + 2 * actStride);
                        var x3 = (BlockQ8_0*)(a + 3 * actStride);
                        if (!avx512 && QuantMath.NoMinus128(a, actStride, 4, nb))
                        {
                            // Activations in the quantizer's range: |w|·sign(a, w), nothing to prepare.
                            for (int gw = 0; gw < groups; gw++)
                                Group4W(weights + gw * groupBytes, nb, x0, x1, x2, x3, y + a0 * yStride + gw * Rows, yStride);
                            for (int r = groups * Rows; r < nRows; r++)
                                for (int k = 0; k < 4; k++)
                                    y[(a0 + k) * yStride + r] = PlainDot(n, weights + r * rowBytes, a + k * actStride);
                            continue;
                        }
                        Prepare(x0, nb, prep);
                        Prepare(x1, nb, prep + prepRow);
                        Prepare(x2, nb, prep + 2 * prepRow);
                        Prepare(x3, nb, prep + 3 * prepRow);
                        int g = 0;
                        if (avx512)
                            for (; g + 2 <= groups; g += 2)
                                Group2x4(weights + g * groupBytes, groupBytes, nb, x0, x1, x2, x3, prep, prepRow, y + a0 * yStride + g * Rows, yStride);
                        for (; g < groups; g++)
                            Group4P(weights + g * groupBytes, nb, x0, x1, x2, x3, prep, prepRow, y + a0 * yStride + g * Rows, yStride);
                        for (int r = groups * Rows; r < nRows; r++)
                            for (int k = 0; k < 4; k++)
                                y[(a0 + k) * yStride + r] = PlainDot(n, weights + r * rowBytes, a + k * actStride);
                    }
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        if (a0 < nActs)
            RowGroupLoops.DotTile<BlockQ8_0>(&Group1, &Group4, &PlainDot, QK, n, weights, rowBytes, nRows, acts + a0 * actStride, actStride, nActs - a0, y + a0 * yStride, yStride);
    }

    /// <summary>An activation row's magnitudes and sign masks, block by block (<see cref="PrepBlockBytes"/>).</summary>
    private static void Prepare(BlockQ8_0* a, int nb, byte* prep)
    {
        for (int ib = 0; ib < nb; ib++)
        {
            var v = Vector256.Load(a[ib].Qs);
            Avx2.Abs(v).Store(prep + ib * PrepBlockBytes);
            Vector256.LessThan(v, Vector256<sbyte>.Zero).AsByte().Store(prep + ib * PrepBlockBytes + 32);
        }
    }

    /// <summary>
    /// Two groups (16 rows from <paramref name="g"/>; the second <paramref name="groupBytes"/> on) against
    /// four activation rows (prepared at <paramref name="prep"/>, <paramref name="prepRow"/> apart): group g
    /// in the low 256 bits of each zmm, g + 1 in the high. The grid value takes the activation's sign by a
    /// select on the prepared mask (exact: |w| ≤ 127) and meets the prepared |a|; the products and sums
    /// are <see cref="Group4"/>'s, lane for lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group2x4(byte* g, long groupBytes, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, byte* prep, long prepRow, float* y, long yStride)
    {
        var ones = Vector512.Create((short)1);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* oh = o + groupBytes;
            byte* p0 = prep + ib * PrepBlockBytes;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < 4; k++) Mac2x4(Values2(o, oh, k, false), p0 + 4 * k, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            for (int k = 0; k < 4; k++) Mac2x4(Values2(o, oh, k, true), p0 + 16 + 4 * k, prepRow, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Q4_Kx8.Widen2(o + OffD, oh + OffD);
            acc0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx512F.ConvertToVector512Single(s0), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx512F.ConvertToVector512Single(s1), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx512F.ConvertToVector512Single(s2), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx512F.ConvertToVector512Single(s3), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>The grid values of quant vector k of two groups (low or high nibbles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Values2(byte* o, byte* oh, int k, bool high)
    {
        var m = Vector512.Create((byte)0x0F);
        var v = Q4_Kx8.Load2(o + OffQ + 32 * k, oh + OffQ + 32 * k);
        var idx = high ? Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return Avx512BW.Shuffle(s_grid512, idx.AsSByte());
    }

    /// <summary>
    /// Grid values <paramref name="w"/> of two groups against four prepared activation rows' bytes at
    /// <paramref name="p"/> (the first row's; the others <paramref name="prepRow"/> apart), widened into int32 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac2x4(Vector512<sbyte> w, byte* p, long prepRow, Vector512<short> ones,
        ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3)
    {
        var neg = Vector512<sbyte>.Zero - w;
        s0 += Dot2(w, neg, p, ones);
        s1 += Dot2(w, neg, p + prepRow, ones);
        s2 += Dot2(w, neg, p + 2 * prepRow, ones);
        s3 += Dot2(w, neg, p + 3 * prepRow, ones);
    }

    /// <summary>|a| times w with a's sign (−w where a &lt; 0), pair sums widened to int32: <see cref="Dot"/> on zmm, from a prepared block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Dot2(Vector512<sbyte> w, Vector512<sbyte> neg, byte* p, Vector512<short> ones)
    {
        var magnitude = Vector512.Create(*(int*)p).AsByte();
        var negative = Vector512.Create(*(int*)(p + 32)).AsSByte();
        var signed = Vector512.ConditionalSelect(negative, neg, w);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, signed), ones);
    }
}

/// <summary>
/// IQ4_NL computed from the <see cref="IQ4_NLx8"/> layout (AVX2 + FMA); single-row methods read a
/// plain row (get_rows and conversions hand them one from the mapping).
/// </summary>
internal sealed unsafe class IQ4_NLx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.IQ4_NL;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override int RowGroup => IQ4_NLx8.Rows;
    public override string? Layout => "iq4_nlx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => IQ4_NL.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => IQ4_NL.DotIQ4_NLQ8_0(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        IQ4_NLx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        IQ4_NLx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
