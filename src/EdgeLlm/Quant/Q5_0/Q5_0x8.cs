using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_0 weights repacked at load time so that eight rows are computed together ("Q5_0x8"), in the
/// style of <see cref="Q5_Kx8"/>. Q5_0 matters beyond Q5_0 files: llama.cpp's K-quant files store a
/// matrix whose row length is not a multiple of 256 in a fallback type, Q5_0 for Q4_K, so most of
/// Qwen2.5-0.5B's Q4_K_M file (rows of 896) is Q5_0. The plain kernels add one scalar float term per
/// row and block; here the eight rows' integer sums land in the eight lanes of one vector and are
/// scaled with one FMA per block.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 in exactly the bytes the plain rows took
/// (8 × 22 per block); rows past the last whole group stay plain. Inside a group, block ib (32
/// values of each row) is 176 bytes at 176·ib:
/// <code>
///   [0, 16)     d[8]   the rows' fp16 scales, row order
///   [16, 48)    H      4-byte lane r, byte l: bit k (k = 0..3) = fifth bit of value 4k + l of row r,
///                      bit 4 + k = fifth bit of value 16 + 4k + l
///   [48, 176)   Q[4]   4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qs is the plain block's nibble array (ggml block_q5_0): byte j holds value j in its low nibble and
/// value 16 + j in its high nibble, and bit j of the plain qh (a little-endian uint32) is value j's
/// fifth bit. The fifth bits are regrouped at packing so that the values of Q[k] find theirs at
/// bits k and 4 + k of H, one shift and one mask away from the value 16.
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode rows and prompt tiles agree bit for bit): per row
/// and block the exact integer sum Σ q·a − 16·Σ a (q the unsigned five-bit value, so the sum is
/// Σ (q − 16)·a, the plain kernels' integer), then <c>acc = fma(dx·dy, sum, acc)</c> in block order.
/// The plain kernels add dx·dy·sum as separate roundings, so results differ from them within float
/// rounding; <see cref="DotRowsReference"/> is the scalar statement.
/// </para>
/// </summary>
internal static unsafe partial class Q5_0x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockQ5_0.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 22).</summary>
    public const int GroupBlockBytes = Rows * 22;

    /// <summary>Offsets inside a group block.</summary>
    internal const int OffD = 0, OffH = 16, OffQ = 48;

    /// <summary>
    /// Writes the packed form of a Q5_0 matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a scale is inf or NaN (the kernels'
    /// exact fp16 widening holds for every finite half only).
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, sizeof(BlockQ5_0), pack: true, &Move);
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        RowGroupLoops.Shuffle(src, dst, rows, n / QK, sizeof(BlockQ5_0), pack: false, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockQ5_0*)block;
        if (pack)
        {
            if (!RowGroupLoops.Finite(&b->D, 1)) return false;
            ((ushort*)(o + OffD))[r] = b->D;
            RegroupFifthBits(*(uint*)b->Qh, o + OffH + 4 * r);
        }
        else
        {
            b->D = ((ushort*)(o + OffD))[r];
            *(uint*)b->Qh = PlainFifthBits(o + OffH + 4 * r);
        }
        RowGroupLoops.MoveLanes(o + OffQ, r, b->Qs, pack);
        return true;
    }

    /// <summary>
    /// A plain block's fifth bits (<paramref name="qh"/>, bit j of value j) as the four bytes of its row
    /// lane in H: byte l, bit k = value 4k + l, bit 4 + k = value 16 + 4k + l (also <see cref="Q5_1x8"/>'s).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void RegroupFifthBits(uint qh, byte* lane)
    {
        for (int l = 0; l < 4; l++)
        {
            int h = 0;
            for (int k = 0; k < 4; k++)
                h |= (int)((qh >> (4 * k + l)) & 1) << k | (int)((qh >> (16 + 4 * k + l)) & 1) << (4 + k);
            lane[l] = (byte)h;
        }
    }

    /// <summary>The inverse of <see cref="RegroupFifthBits"/>.</summary>
    internal static uint PlainFifthBits(byte* lane)
    {
        uint qh = 0;
        for (int l = 0; l < 4; l++)
            for (int k = 0; k < 4; k++)
                qh |= (uint)((lane[l] >> k) & 1) << (4 * k + l) | (uint)((lane[l] >> (4 + k)) & 1) << (16 + 4 * k + l);
        return qh;
    }

    /// <summary>The unsigned five-bit value of row lane <paramref name="ri"/>, quant vector k, byte l (high nibble or low), from a packed block's Q and H.</summary>
    internal static int Value(byte* q, byte* h, int ri, int k, int l, bool high)
    {
        int b = q[32 * k + 4 * ri + l], bits = h[4 * ri + l];
        return high ? (b >> 4) | ((bits >> (4 + k)) & 1) << 4 : (b & 0xF) | ((bits >> k) & 1) << 4;
    }

    /// <summary>
    /// Scalar statement of the packed arithmetic: y[r] for <paramref name="nRows"/> rows starting at
    /// a group boundary (whole groups packed, a last partial group plain) against one Q8_0 row.
    /// </summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
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
                        sum += (Value(o + OffQ, o + OffH, ri, k, l, false) - 16) * a[ib].Qs[4 * k + l]
                            + (Value(o + OffQ, o + OffH, ri, k, l, true) - 16) * a[ib].Qs[16 + 4 * k + l];
                    }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                acc = MathF.FusedMultiplyAdd(dxy, sum, acc);
            }
            y[r] = acc;
        }
        for (int r = full; r < nRows; r++) y[r] = Q5_0.DotQ5_0Q8_0(n, weights + r * rowBytes, act);
    }
}

/// <summary>
/// Q5_0 computed from the <see cref="Q5_0x8"/> layout (AVX2 + FMA). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/> read
/// groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>). Methods that
/// take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row, which is what
/// get_rows and conversions hand them.
/// </summary>
internal sealed unsafe class Q5_0x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q5_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override int RowGroup => Q5_0x8.Rows;
    public override string? Layout => "q5_0x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q5_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q5_0.DotQ5_0Q8_0(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q5_0x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q5_0x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
