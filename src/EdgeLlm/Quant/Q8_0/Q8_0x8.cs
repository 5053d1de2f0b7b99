using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q8_0 weights repacked at load time so that eight rows are computed together ("Q8_0x8"; the
/// same idea as <see cref="Q4_0x8"/> and llama.cpp's CPU_REPACK buffers, with a layout of our
/// own). The plain kernel spends, per row and block, two sign extensions of the weights, two of
/// the activations, a scalar scale product and, per row, a horizontal sum. With eight rows
/// interleaved in 4-byte lanes, one 32-byte load holds four values of each of the eight rows, the
/// activation's four matching values are broadcast to every lane, and the multiply-adds leave
/// the eight rows' integer sums in the eight int32 lanes: scales are applied with one vector
/// multiply and one FMA per block, and results are stored without any horizontal sum.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 and takes exactly the bytes the plain rows
/// took (8 × RowBytes), so the group of row r starts where row r started and nothing else in the
/// matrix moves. Rows past the last whole group stay plain. Inside a group, block ib (32 values
/// of each row; ggml block_q8_0: an fp16 scale d and 32 int8 quants qs) is 272 bytes at 272·ib:
/// <code>
///   [0, 16)                 d[8]   the rows' fp16 scales, row order
///   [16 + 32k, 48 + 32k)    V_k    k = 0..7: eight 4-byte lanes, lane r = qs[4k..4k+4) of row r
/// </code>
/// </para>
/// <para>
/// Multiplying. <c>vpmaddubsw</c> multiplies unsigned by signed bytes, and both sides of Q8_0 are
/// signed, so the kernels move the activation's sign onto the weight: |a| (unsigned) times
/// <c>sign(w, a)</c> (<c>vpsignb</c>: w negated where a &lt; 0). |a| is computed once per
/// activation block and shared by every row, so a 32-byte weight vector costs one <c>vpsignb</c>,
/// one <c>vpmaddubsw</c>, one <c>vpmaddwd</c> by ones and one add. It is exact when the weights
/// are within ±127 (then sign(w, a) fits a byte and a pair of products is within
/// ±2·128·127 &lt; 2^15, no saturation) for ANY int8 activation. ggml's quantizers never write
/// -128 (q = round(x·127/amax)); a matrix holding one is refused by <see cref="Pack"/> and stays
/// plain, as one with an inf/NaN scale is. The AVX2 prompt tile turns it around where it can,
/// |w| times sign(a, w), so |w| is taken once for four activations (<c>Q8_0x8.Group4W</c>); that needs
/// the activations within ±127 too, which the Q8_0 quantizer guarantees, and the tile checks it per
/// four activation rows, falling back to the form above (the kernels widen scales with
/// <see cref="QuantMath.HalfBitsToSingle(System.Runtime.Intrinsics.Vector256{int})"/>, exact for every finite fp16 only).
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode and prompt tiles agree bit for bit): per row
/// and block the exact integer sum Σ w·a, times the float dx·dy, accumulated with a fused
/// multiply-add into one of two accumulators, even blocks and odd blocks, added at the end. That
/// order differs from the plain kernels' (lanes of partial sums per row), within the quantized
/// tolerances; <see cref="DotRowsReference"/> is the scalar statement of it.
/// </para>
/// </summary>
internal static unsafe partial class Q8_0x8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per block.</summary>
    public const int QK = BlockQ8_0.BlockSize;

    /// <summary>Bytes of one block of a group (8 × 34).</summary>
    public const int GroupBlockBytes = Rows * 34;

    /// <summary>Offset of the quants in a group block (after the eight scales).</summary>
    private const int QsOffset = 16;

    /// <summary>
    /// Writes the packed form of a Q8_0 matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a scale is inf or NaN or a quant
    /// of a packed row is -128 (see the class remarks): such a matrix stays plain.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool Pack(byte* src, byte* dst, int rows, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        long rowBytes = (long)nb * sizeof(BlockQ8_0);
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gdst + (long)ib * GroupBlockBytes;
                uint minus128 = 0;
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ8_0*)(gsrc + r * rowBytes) + ib;
                    if ((b->D & 0x7C00) == 0x7C00) return false;
                    ((ushort*)o)[r] = b->D;
                    var q = (uint*)b->Qs;
                    var lanes = (uint*)(o + QsOffset) + r;
                    for (int k = 0; k < QK / 4; k++)
                    {
                        uint v = q[k];
                        // A byte equal to 0x80 is a zero byte of v ^ 0x80808080 (the classic has-zero-byte test, exact).
                        uint x = v ^ 0x80808080u;
                        minus128 |= (x - 0x01010101u) & ~x & 0x80808080u;
                        lanes[k * Rows] = v;
                    }
                }
                if (minus128 != 0) return false;
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        long rowBytes = (long)nb * sizeof(BlockQ8_0);
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gsrc + (long)ib * GroupBlockBytes;
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ8_0*)(gdst + r * rowBytes) + ib;
                    b->D = ((ushort*)o)[r];
                    var lanes = (uint*)(o + QsOffset) + r;
                    for (int k = 0; k < QK / 4; k++) ((uint*)b->Qs)[k] = lanes[k * Rows];
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
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        var a = (BlockQ8_0*)act;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            float even = 0, odd = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sumi = 0;
                for (int k = 0; k < QK / 4; k++)
                {
                    var q = (sbyte*)(o + QsOffset + k * 32 + ri * 4);
                    for (int j = 0; j < 4; j++) sumi += q[j] * a[ib].Qs[4 * k + j];
                }
                float d = QuantMath.Fp16ToFp32(((ushort*)o)[ri]) * QuantMath.Fp16ToFp32(a[ib].D);
                if ((ib & 1) == 0) even = MathF.FusedMultiplyAdd(d, sumi, even);
                else odd = MathF.FusedMultiplyAdd(d, sumi, odd);
            }
            y[r] = even + odd;
        }
        for (int r = full; r < nRows; r++) y[r] = Q8_0.DotQ8_0Q8_0(n, weights + r * rowBytes, act);
    }
}

/// <summary>
/// Q8_0 computed from the <see cref="Q8_0x8"/> layout (AVX2 + FMA). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/>
/// read groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>).
/// Methods that take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row,
/// which is what get_rows and conversions hand them (from the file mapping).
/// </summary>
internal sealed unsafe class Q8_0x8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q8_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override int RowGroup => Q8_0x8.Rows;
    public override string? Layout => "q8_0x8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q8_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q8_0.DotQ8_0Q8_0(n, weights, activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q8_0x8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q8_0x8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
