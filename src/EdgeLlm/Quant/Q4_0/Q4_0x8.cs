using System.Runtime.CompilerServices;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q4_0 weights repacked at load time so that eight rows are computed together ("Q4_0x8"; the
/// idea of llama.cpp's CPU_REPACK buffers, block_q4_0x8, with a layout of our own). A matrix-vector
/// product over plain rows spends most of its instructions on per-row work: unpacking one row's
/// 16 bytes into a register, a horizontal sum per row, a scalar scale per row and block. With
/// eight rows interleaved, one block step loads 128 bytes of nibbles, multiplies them with the
/// activation block in 64-bit groups, and leaves the eight rows' integer sums in the eight lanes
/// of one vector, so their scales are applied with one vector multiply and one FMA, and the
/// results are stored without any horizontal sum.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 and takes exactly the bytes the plain rows
/// took (8 × RowBytes), so the group of row r starts where row r started and nothing else in the
/// matrix moves. Rows past the last whole group stay plain. Inside a group, block ib (32 values
/// of each row) is 144 bytes at 144·ib:
/// <code>
///   [0, 16)     d[8]    the rows' fp16 scales, row order
///   [16, 48)    V0      four 8-byte lanes: qs[0..8) of rows 0, 1, 4, 5
///   [48, 80)    V1      qs[0..8) of rows 2, 3, 6, 7
///   [80, 112)   V2      qs[8..16) of rows 0, 1, 4, 5
///   [112, 144)  V3      qs[8..16) of rows 2, 3, 6, 7
/// </code>
/// With <see cref="DwordLanes"/> (the AVX2-only machines) the 128 quant bytes are in 4-byte lanes
/// instead, as in <see cref="Q5_0x8"/>: vector k (k = 0..3, at 16 + 32k) holds in lane r row r's
/// qs[4k..4k+4), so one <c>vpmaddwd</c> leaves the eight rows' sums in row order with no horizontal
/// add (see <see cref="DwordLanes"/>).
/// qs is the plain block's nibble array (ggml block_q4_0): byte j holds x[j] in its low nibble and
/// x[j + 16] in its high nibble, so V0's low nibbles meet activations 0..7, V2's low nibbles
/// 8..15, V0's high nibbles 16..23 and V2's high nibbles 24..31. The 1, 4 / 2, 3 interleave makes
/// <c>vphaddd</c> of the two halves' pair sums come out in row order 0..7.
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode and prompt tiles agree bit for bit): per row
/// and block the exact integer sum Σ (q - 8)·a, times the float dx·dy, accumulated with a fused
/// multiply-add into one of two accumulators, even blocks and odd blocks, added at the end. That
/// order differs from the plain kernels' (lanes of partial sums per row), within the quantized
/// tolerances; <see cref="DotRowsReference"/> is the scalar statement of it.
/// </para>
/// </summary>
internal static unsafe partial class Q4_0x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockQ4_0.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 18).</summary>
    public const int GroupBlockBytes = Rows * 18;

    /// <summary>The plain row (0..7) held by 8-byte lane <c>lane</c> (0..3) of V0/V2 (<c>half = 0</c>) or V1/V3 (<c>half = 1</c>).</summary>
    private static int RowOfLane(int half, int lane) => (lane & 1) + (lane >> 1) * 4 + half * 2;

    /// <summary>
    /// Writes the packed form of a Q4_0 matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size). Returns false,
    /// writing nothing useful, when a scale is inf or NaN: the kernels widen scales with a bit
    /// trick that holds for every finite fp16 (normal, subnormal, zero) but not for those.
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Pack(src, dst, rows, n, DwordLanes);

    /// <summary><see cref="Pack(byte*, byte*, int, int)"/> in the 8-byte (<paramref name="dword"/> false) or 4-byte lane order; tests pack both.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static bool Pack(byte* src, byte* dst, int rows, int n, bool dword)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        long rowBytes = (long)nb * sizeof(BlockQ4_0);
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gdst + (long)ib * GroupBlockBytes;
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ4_0*)(gsrc + r * rowBytes) + ib;
                    if ((b->D & 0x7C00) == 0x7C00) return false;
                    ((ushort*)o)[r] = b->D;
                }
                if (dword)
                {
                    for (int r = 0; r < Rows; r++)
                        RowGroupLoops.MoveLanes(o + 16, r, ((BlockQ4_0*)(gsrc + r * rowBytes) + ib)->Qs, pack: true);
                    continue;
                }
                for (int v = 0; v < 4; v++)
                {
                    int chunk = v >> 1, half = v & 1;
                    for (int lane = 0; lane < 4; lane++)
                    {
                        var b = (BlockQ4_0*)(gsrc + RowOfLane(half, lane) * rowBytes) + ib;
                        Unsafe.CopyBlockUnaligned(o + 16 + v * 32 + lane * 8, b->Qs + chunk * 8, 8);
                    }
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Unpack(src, dst, rows, n, DwordLanes);

    /// <summary>The inverse of <see cref="Pack(byte*, byte*, int, int, bool)"/>.</summary>
    internal static void Unpack(byte* src, byte* dst, int rows, int n, bool dword)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        long rowBytes = (long)nb * sizeof(BlockQ4_0);
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gsrc + (long)ib * GroupBlockBytes;
                for (int r = 0; r < Rows; r++) ((BlockQ4_0*)(gdst + r * rowBytes) + ib)->D = ((ushort*)o)[r];
                if (dword)
                {
                    for (int r = 0; r < Rows; r++)
                        RowGroupLoops.MoveLanes(o + 16, r, ((BlockQ4_0*)(gdst + r * rowBytes) + ib)->Qs, pack: false);
                    continue;
                }
                for (int v = 0; v < 4; v++)
                {
                    int chunk = v >> 1, half = v & 1;
                    for (int lane = 0; lane < 4; lane++)
                    {
                        var b = (BlockQ4_0*)(gdst + RowOfLane(half, lane) * rowBytes) + ib;
                        Unsafe.CopyBlockUnaligned(b->Qs + chunk * 8, o + 16 + v * 32 + lane * 8, 8);
                    }
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
    }

    /// <summary>
    /// Scalar statement of the packed arithmetic: y[r] for <paramref name="nRows"/> rows starting at
    /// a group boundary (whole groups packed, a last partial group plain) against one Q8_0 row.
    /// </summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y) =>
        DotRowsReference(n, weights, rowBytes, nRows, act, y, DwordLanes);

    /// <summary><see cref="DotRowsReference(int, byte*, long, int, byte*, float*)"/> of a matrix packed in either lane order.</summary>
    internal static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y, bool dword)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            int half = (ri >> 1) & 1;
            int lane = (ri & 1) + (ri >> 2) * 2;
            float even = 0, odd = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sumi = 0;
                for (int chunk = 0; chunk < 2; chunk++)
                {
                    byte* q = o + 16 + (chunk * 2 + half) * 32 + lane * 8;
                    for (int j = 0; j < 8; j++)
                    {
                        // qs byte chunk·8 + j of this row: in 4-byte lanes, word (chunk·8 + j) / 4 of vector 0..3, lane ri
                        byte qb = dword ? o[16 + 32 * ((chunk * 8 + j) >> 2) + 4 * ri + (j & 3)] : q[j];
                        sumi += ((qb & 0x0F) - 8) * a[ib].Qs[chunk * 8 + j];
                        sumi += ((qb >> 4) - 8) * a[ib].Qs[16 + chunk * 8 + j];
                    }
                }
                float d = QuantMath.Fp16ToFp32(((ushort*)o)[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                if ((ib & 1) == 0) even = MathF.FusedMultiplyAdd(d, sumi, even);
                else odd = MathF.FusedMultiplyAdd(d, sumi, odd);
            }
            y[r] = even + odd;
        }
        for (int r = full; r < nRows; r++) y[r] = Q4_0.DotQ4_0Q8_0(n, weights + r * rowBytes, act);
    }
}

/// <summary>
/// Q4_0 computed from the <see cref="Q4_0x8"/> layout (AVX2 + FMA). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="WeightFormat.VecDotTile"/>
/// read groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>).
/// Methods that take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row,
/// which is what get_rows and conversions hand them (from the file mapping).
/// </summary>
internal sealed unsafe class Q4_0x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override int RowGroup => Q4_0x8.Rows;
    public override string? Layout => "q4_0x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q4_0.DotQ4_0Q8_0(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q4_0x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q4_0x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
