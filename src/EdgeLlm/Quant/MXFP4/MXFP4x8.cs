using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// MXFP4 weights repacked at load time so that eight rows are computed together ("MXFP4x8"): <see cref="IQ4_NLx8"/>'s
/// scheme with MXFP4's table and exponent scales. The plain kernels spend most of each 32-value block on one row's
/// horizontal sum and scalar scale (about 6 GB/s per core on the AVX-512 EPYC, where llama.cpp's MXFP4 decode ran 3.5×
/// faster); here one table lookup and one multiply-add serve eight rows, whose sums stay in the eight lanes of a vector.
/// <para>
/// Layout. A group is eight consecutive rows in exactly the bytes the plain rows took (8 × 17 per block); rows past
/// the last whole group stay plain. Inside a group, block ib is 136 bytes at 136·ib:
/// <code>
///   [0, 8)      e[8]   the rows' E8M0 exponents, row order
///   [8, 136)    Q[4]   4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qs is the plain block's nibble array (ggml block_mxfp4): byte j holds the code of value j in its low nibble and of
/// value 16 + j in its high nibble; the value is <see cref="MXFP4.KValues"/>[code] × <see cref="MXFP4.ScaleHalf"/>(e).
/// </para>
/// <para>
/// Arithmetic (decode rows and prompt tiles alike, so they agree bit for bit): per row and block the exact integer
/// Σ kvalue·a, then <c>acc = fma(scale·dy, sum, acc)</c> in block order, the scale widened exactly from its exponent;
/// against the plain kernels only the float rounding differs (<see cref="DotRowsReference"/> is the scalar statement).
/// The table values are signed, so the kernels multiply |a| by the value carrying a's sign (<c>vpsignb</c>, as IQ4_NLx8).
/// </para>
/// </summary>
internal static unsafe class MXFP4x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockMXFP4.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 17).</summary>
    public const int GroupBlockBytes = Rows * BlockMXFP4.Size;

    /// <summary>Offsets inside a group block.</summary>
    internal const int OffE = 0, OffQ = 8;

    /// <summary>The packed kernels need AVX2 (byte shuffles, variable shifts, multiply-add) and FMA.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>The table in both 128-bit lanes, for <c>vpshufb</c> lookups.</summary>
    private static readonly Vector256<sbyte> s_grid = Vector256.Create(Vector128.Create(MXFP4.KValues), Vector128.Create(MXFP4.KValues));

    /// <summary>Decode prefetch distance, as the other eight-row layouts'.</summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>Writes the packed form of an MXFP4 matrix (every exponent is a valid scale, so packing never refuses).</summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, BlockMXFP4.Size, pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group block <paramref name="o"/>.</summary>
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockMXFP4*)block;
        RowGroupLoops.MoveLanes(o + OffQ, r, b->Qs, pack);
        if (pack) o[OffE + r] = b->E;
        else b->E = o[OffE + r];
        return true;
    }

    /// <summary>Scalar statement of the packed arithmetic for <paramref name="nRows"/> rows from a group boundary against one Q8_0 row.</summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
        var grid = MXFP4.KValues;
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
                acc = MathF.FusedMultiplyAdd(MXFP4.ScaleHalf(o[OffE + ri]) * QuantMath.Fp16ToFp32(a[ib].D), sum, acc);
            }
            y[r] = acc;
        }
        for (int r = full; r < nRows; r++) y[r] = MXFP4.DotMXFP4Q8_0(n, weights + r * rowBytes, act);
    }

    private static float PlainDot(int n, byte* row, byte* act) => MXFP4.DotMXFP4Q8_0(n, row, act);

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y);
            return;
        }
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        if (!IsAvx512Supported || n / QK > MaxStackBlocks)
        {
            RowGroupLoops.DotRows<BlockQ8_0>(&Group1, &PlainDot, QK, n, weights, rowBytes, nRows, act, y);
            return;
        }
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
        // Rows16Avx512's offset term per block: 12 · Σ of the block's 32 activation values
        int* corr = stackalloc int[nb];
        for (int ib = 0; ib < nb; ib++)
        {
            int sum = 0;
            for (int j = 0; j < QK; j++) sum += a[ib].Qs[j];
            corr[ib] = Offset * sum;
        }
        int groups = nRows / Rows, g = 0;
        long groupBytes = Rows * rowBytes;
        for (; g + 2 <= groups; g += 2) Rows16Avx512(weights + g * groupBytes, groupBytes, nb, a, corr, y + g * Rows);
        if (g < groups) Group1(weights + g * groupBytes, nb, a, y + g * Rows);
        for (int r = groups * Rows; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    /// <summary>Rows up to this many blocks (131072 values) keep <see cref="Rows16Avx512"/>'s offsets on the stack; longer ones take the AVX2 kernel.</summary>
    private const int MaxStackBlocks = 4096;

    /// <summary>The decode step over two groups per 512-bit register needs AVX-512 F and BW besides the AVX2 kernels.</summary>
    public static bool IsAvx512Supported => IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary><see cref="Rows16Avx512"/>'s table is <see cref="MXFP4.KValues"/> + 12 (0..24, unsigned for <c>vpmaddubsw</c>: AVX-512 has no <c>vpsignb</c>).</summary>
    private const int Offset = 12;

    /// <summary>The offset table in all four 128-bit lanes.</summary>
    private static readonly Vector512<byte> s_gridU512 = Vector512.Create((byte)Offset) + Vector512.Create(s_grid, s_grid).AsByte();

    /// <summary>
    /// The decode product of two groups (16 rows from <paramref name="g"/>, the second <paramref name="groupBytes"/> on)
    /// against one activation row: <see cref="Group1"/>'s work for both groups in one zmm per step (group g in the low
    /// 256 bits), each stream prefetched in its own reading order (<see cref="PairPrefetch"/>). The table is offset to
    /// 0..24 and <paramref name="corr"/> (12 · Σ a per block) taken off the exact integer sum, so per lane the sums and
    /// the float step are <see cref="Group1"/>'s and the results bit for bit its own. A pair is within 2·24·127, four
    /// vectors' (one nibble half) within 24384 in int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows16Avx512(byte* g, long groupBytes, int nb, BlockQ8_0* a, int* corr, float* y)
    {
        var ones = Vector512.Create((short)1);
        var m = Vector512.Create((byte)0x0F);
        var grid = s_gridU512;
        var acc = Vector512<float>.Zero;
        byte* h = g + groupBytes;
        var ahead = new PairPrefetch(groupBytes);
        for (int ib = 0; ib < nb; ib++)
        {
            long off = (long)ib * GroupBlockBytes;
            byte* o = g + off, oh = h + off;
            long pf = ahead.Ahead(off, DecodePrefetchBytes);
            Sse.Prefetch0(g + pf);
            Sse.Prefetch0(g + pf + 64);
            Sse.Prefetch0(g + pf + 128);
            Sse.Prefetch0(h + pf);
            Sse.Prefetch0(h + pf + 64);
            Sse.Prefetch0(h + pf + 128);
            sbyte* x = a[ib].Qs;
            Vector512<short> p0 = default, p1 = default;
            for (int k = 0; k < 4; k++)
            {
                var v = Avx512F.InsertVector256(Vector256.Load(o + OffQ + 32 * k).ToVector512Unsafe(), Vector256.Load(oh + OffQ + 32 * k), 1);
                p0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(grid, v & m), Vector512.Create(*(int*)(x + 4 * k)).AsSByte());
                p1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(grid, Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m), Vector512.Create(*(int*)(x + 16 + 4 * k)).AsSByte());
            }
            var s = Avx512BW.MultiplyAddAdjacent(p0, ones) + Avx512BW.MultiplyAddAdjacent(p1, ones) - Vector512.Create(corr[ib]);
            acc = Avx512F.FusedMultiplyAdd(Scales2(o + OffE, oh + OffE) * Vector512.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx512F.ConvertToVector512Single(s), acc);
        }
        acc.Store(y);
    }

    /// <summary><see cref="Scales"/> for two groups' exponents (eight at <paramref name="lo"/>, eight at <paramref name="hi"/>): the same bits per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Scales2(byte* lo, byte* hi)
    {
        var e = Avx512F.ConvertToVector512Int32(Vector128.Create(*(ulong*)lo, *(ulong*)hi).AsByte());
        var normal = Avx512F.ShiftLeftLogical(e - Vector512<int>.One, 23);
        var subnormal = Avx512F.ShiftLeftLogicalVariable(Vector512.Create(0x00200000), e.AsUInt32());
        return Vector512.ConditionalSelect(Vector512.LessThan(e, Vector512.Create(2)), subnormal, normal).AsSingle();
    }

    /// <summary>y[a·yStride + r] = row r · act a: the prompt tile, each group block's values looked up once per four activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        RowGroupLoops.DotTile<BlockQ8_0>(&Group1, &Group4, &PlainDot, QK, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>The table values of quant vector k's low (<paramref name="high"/> false) or high nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Values(byte* o, int k, bool high)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(o + OffQ + 32 * k);
        var idx = high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return Avx2.Shuffle(s_grid, idx.AsSByte());
    }

    /// <summary>
    /// Σ w·a over one quant vector's values against four activation bytes (broadcast), as int16 pair sums per row lane:
    /// |a| (unsigned, 128 for −128) times w with a's sign. |w| ≤ 12, so a pair is within ±2·12·128 = 3072 and a block's
    /// eight vectors add up within ±24576 in int16 before one <c>vpmaddwd</c> widens them (IQ4_NL's table reaches 127
    /// and must widen every vector).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Dot(Vector256<sbyte> w, sbyte* x)
    {
        var a = Vector256.Create(*(int*)x).AsSByte();
        return Avx2.MultiplyAddAdjacent(Avx2.Abs(a), Avx2.Sign(w, a));
    }

    /// <summary>
    /// The eight rows' scales 2^(e − 128) from their exponent bytes, exactly <see cref="MXFP4.ScaleHalf"/>: (e − 1) « 23 as
    /// f32 bits, or the subnormal 0x00200000 « e for e &lt; 2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Scales(byte* e8)
    {
        var e = Avx2.ConvertToVector256Int32(e8);
        var normal = Avx2.ShiftLeftLogical(e - Vector256<int>.One, 23);
        var subnormal = Avx2.ShiftLeftLogicalVariable(Vector256.Create(0x00200000), e.AsUInt32());
        return Avx2.BlendVariable(normal.AsByte(), subnormal.AsByte(), Avx2.CompareGreaterThan(Vector256.Create(2), e).AsByte()).AsSingle();
    }

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
            Vector256<short> p0 = default, p1 = default;
            for (int k = 0; k < 4; k++)
            {
                p0 += Dot(Values(o, k, false), x + 4 * k);
                p1 += Dot(Values(o, k, true), x + 16 + 4 * k);
            }
            var s = Avx2.MultiplyAddAdjacent(p0 + p1, ones);
            acc = Fma.MultiplyAdd(Scales(o + OffE) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx.ConvertToVector256Single(s), acc);
        }
        acc.Store(y);
    }

    /// <summary>One group against four activation rows: each quant vector's table values formed once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
            for (int k = 0; k < 4; k++)
            {
                var lo = Values(o, k, false);
                p0 += Dot(lo, x0 + 4 * k); p1 += Dot(lo, x1 + 4 * k); p2 += Dot(lo, x2 + 4 * k); p3 += Dot(lo, x3 + 4 * k);
                var hi = Values(o, k, true);
                p0 += Dot(hi, x0 + 16 + 4 * k); p1 += Dot(hi, x1 + 16 + 4 * k); p2 += Dot(hi, x2 + 16 + 4 * k); p3 += Dot(hi, x3 + 16 + 4 * k);
            }
            var s0 = Avx2.MultiplyAddAdjacent(p0, ones);
            var s1 = Avx2.MultiplyAddAdjacent(p1, ones);
            var s2 = Avx2.MultiplyAddAdjacent(p2, ones);
            var s3 = Avx2.MultiplyAddAdjacent(p3, ones);
            var dx = Scales(o + OffE);
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
}

/// <summary>
/// MXFP4 computed from the <see cref="MXFP4x8"/> layout (AVX2 + FMA). Methods that take one row (<see cref="VecDot"/>,
/// <see cref="DequantizeRow"/>) read a plain row, which is what get_rows and conversions hand them.
/// </summary>
internal sealed unsafe class MXFP4x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.MXFP4;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override int RowGroup => MXFP4x8.Rows;
    public override string? Layout => "mxfp4x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => MXFP4.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => MXFP4.DotMXFP4Q8_0(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        MXFP4x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        MXFP4x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
