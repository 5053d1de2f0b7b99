using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_K weights repacked at load time so that eight rows are computed together ("Q5_Kx8"): the
/// <see cref="Q4_Kx8"/> layout and arithmetic with the fifth bit of every value beside it. The plain
/// Q5_K kernels pay per row what Q4_K's did (one row's scale unpacking, a horizontal sum, scalar
/// scales per super-block) and, on top, spreading the fifth bits over the values, which made Q5_K
/// decode compute-bound (about 10 GB/s on 2 threads of the x64 machine, half its read bandwidth).
/// <para>
/// Layout. As <see cref="Q4_Kx8"/>: a group is eight consecutive rows 8g..8g+7 in exactly the bytes
/// the plain rows took; rows past the last whole group stay plain. Inside a group, super-block i is
/// 1408 bytes (8 × 176) at 1408·i:
/// <code>
///   [0, 128)     d[8], dmin[8], S0, S1, H   the header of <see cref="Q4_Kx8"/>, byte for byte
///   [128, 384)   QH[8]   8 vectors of 32 bytes: 4-byte lane r of QH[k] = row r's qh[4k .. 4k+4)
///   [384, 1408)  Q[32]   as <see cref="Q4_Kx8"/>'s: 4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qh is the plain block's bit array (ggml-common.h block_q5_K): bit 2c of qh[l] is the fifth bit of
/// value 64c + l and bit 2c + 1 that of value 64c + 32 + l. Q[8c + k] holds values 64c + 4k .. +4 in
/// its low nibbles and 64c + 32 + 4k .. +4 in its high nibbles, so QH[k] serves all four chunks c: its
/// bit 2c completes the low nibbles of Q[8c + k] and bit 2c + 1 the high ones.
/// </para>
/// <para>
/// Arithmetic: <see cref="Q4_Kx8"/>'s, with five-bit values (0..31). A <c>vpmaddubsw</c> pair is then
/// within ±2·31·128 = ±7936, so only four of them fit an int16 sum: each sub-block's eight quant
/// vectors are summed in two halves, each scaled into int32 by its own <c>vpmaddwd</c>. The
/// integer sums are exact and the float steps per super-block are Q4_Kx8's, so decode rows and prompt
/// tiles agree bit for bit; <see cref="DotRowsReference"/> is the scalar statement.
/// </para>
/// </summary>
internal static unsafe partial class Q5_Kx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per super-block.</summary>
    public const int QK = KQuant.QK_K;

    /// <summary>Bytes of one super-block of a group (8 × 176).</summary>
    public const int GroupBlockBytes = Rows * BlockQ5_K.Size;

    /// <summary>Offsets inside a group super-block (the header's are <see cref="Q4_Kx8"/>'s).</summary>
    internal const int OffQh = Q4_Kx8.OffQ, OffQ = OffQh + 256;

    /// <summary>
    /// Writes the packed form of a Q5_K matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a d or dmin is inf or NaN (as <see cref="Q4_Kx8.Pack"/>).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool Pack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ5_K.Size;
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gdst + (long)ib * GroupBlockBytes;
                new Span<byte>(o + Q4_Kx8.OffS, Q4_Kx8.OffQ - Q4_Kx8.OffS).Clear();
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ5_K*)(gsrc + r * rowBytes) + ib;
                    if (!Q4_Kx8.PackHeader(o, r, b->D, b->DMin, b->Scales)) return false;
                    for (int k = 0; k < 8; k++)
                        *(uint*)(o + OffQh + k * 32 + r * 4) = *(uint*)(b->Qh + 4 * k);
                    for (int k = 0; k < 32; k++)
                        *(uint*)(o + OffQ + k * 32 + r * 4) = *(uint*)(b->Qs + 4 * k);
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip; the plain 12-byte scale encoding is canonical).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ5_K.Size;
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
                    var b = (BlockQ5_K*)(gdst + r * rowBytes) + ib;
                    Q4_Kx8.UnpackHeader(o, r, out b->D, out b->DMin, b->Scales);
                    for (int k = 0; k < 8; k++)
                        *(uint*)(b->Qh + 4 * k) = *(uint*)(o + OffQh + k * 32 + r * 4);
                    for (int k = 0; k < 32; k++)
                        *(uint*)(b->Qs + 4 * k) = *(uint*)(o + OffQ + k * 32 + r * 4);
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
    }

    /// <summary>
    /// Scalar statement of the packed arithmetic: y[r] for <paramref name="nRows"/> rows starting at
    /// a group boundary (whole groups packed, a last partial group plain) against one Q8_K row.
    /// </summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / QK;
        var a = (BlockQ8_K*)act;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            float acc = 0, accm = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sumi = 0, summ = 0;
                for (int j = 0; j < 8; j++)
                {
                    int c = j >> 1, shift = 4 * (j & 1);
                    int isum = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        byte* q = o + OffQ + (8 * c + k) * 32 + ri * 4;
                        byte* qh = o + OffQh + k * 32 + ri * 4;
                        sbyte* x = a[ib].Qs + 64 * c + 32 * (j & 1) + 4 * k;
                        for (int l = 0; l < 4; l++) isum += (((q[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4)) * x[l];
                    }
                    sumi += Q4_Kx8.SixBit(o, ri, j) * isum;
                    summ += Q4_Kx8.SixBit(o, ri, 8 + j) * (short)(a[ib].Bsums[2 * j] + a[ib].Bsums[2 * j + 1]); // the pair added in int16, as the kernels do
                }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_Kx8.OffD))[ri]) * a[ib].D;
                float mxy = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_Kx8.OffDMin))[ri]) * a[ib].D;
                acc = MathF.FusedMultiplyAdd(dxy, sumi, acc);
                accm = MathF.FusedMultiplyAdd(mxy, summ, accm);
            }
            y[r] = acc - accm;
        }
        for (int r = full; r < nRows; r++) y[r] = Q5_K.DotQ5_KQ8_K(n, (BlockQ5_K*)(weights + r * rowBytes), (BlockQ8_K*)act);
    }
}

/// <summary>
/// Q5_K computed from the <see cref="Q5_Kx8"/> layout (AVX2 + FMA; the prompt tile in AVX-512 where
/// AVX-512 BW is present). Matrices are packed by <see cref="WeightPacking"/> at load;
/// <see cref="VecDotRows"/> and <see cref="VecDotTile"/> read groups of eight rows and must be called
/// at a group boundary (<see cref="RowGroup"/>). Methods that take one row (<see cref="VecDot"/>,
/// <see cref="DequantizeRow"/>) read a plain row, which is what get_rows and conversions hand them.
/// </summary>
internal sealed unsafe class Q5_Kx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q5_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;
    public override int RowGroup => Q5_Kx8.Rows;
    public override string? Layout => "q5_Kx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q5_K.DequantizeRowReference((BlockQ5_K*)src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q5_K.DotQ5_KQ8_K(n, (BlockQ5_K*)weights, (BlockQ8_K*)activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q5_Kx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q5_Kx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
