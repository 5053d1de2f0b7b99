using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q6_K weights repacked at load time so that eight rows are computed together ("Q6_Kx8"; the idea
/// of llama.cpp's CPU_REPACK layouts such as <c>block_q4_Kx8</c>, with a layout of our own, in the
/// style of <see cref="Q4_Kx8"/>). The plain kernels work per row: unpacking one row's 6-bit quants,
/// a second <c>vpmaddubsw</c> per 32 values for the −32 offset, sixteen scales to broadcast and a
/// horizontal sum. With eight rows interleaved, each 32-bit lane of a vector belongs to one row: one
/// broadcast of four activation bytes meets four quants of each of the eight rows in one
/// <c>vpmaddubsw</c>, the sub-block scales of the eight rows are applied by one <c>vpmaddwd</c>,
/// the −32 offset is applied once per super-block through the activation's bsums, and the eight
/// rows' sums come out in the eight lanes of one vector without any horizontal sum.
/// <para>
/// Plain block (ggml-common.h <c>block_q6_K</c>, see <see cref="BlockQ6_K"/>): ql[128] low nibbles,
/// qh[64] high 2 bits, int8 scales[16] (one per 16 values), fp16 d; value v of the block is
/// d·scales[v/16]·(q_v − 32), q_v in 0..63. 210 bytes per 256 values.
/// </para>
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 and takes exactly the bytes the plain rows
/// took (8 × RowBytes), so the group of row r starts where row r started and nothing else in the
/// matrix moves. Rows past the last whole group stay plain. Inside a group, super-block i (256
/// values of each row) is 1680 bytes (8 × 210) at 1680·i:
/// <code>
///   [0, 16)       d[8]      the rows' fp16 scales, row order
///   [16, 144)     SC[4]     four 32-byte vectors of int8 sub-block scales: byte 16h + 4jj + rr of
///                           SC[c] = scale of sub-block 4c + jj of row 4h + rr
///   [144, 1680)   chunk c (c = 0..3, values 64c .. 64c + 63 of every row) at 144 + 384c:
///                   [0, 256)    QL[8]  low nibble of QL[m] lane r = low 4 bits of row r's values
///                                      64c + 4m .. +4; high nibble: values 64c + 32 + 4m .. +4
///                   [256, 384)  QH[4]  bits 2s, 2s + 1 of QH[m] lane r = top 2 bits of row r's
///                                      values 64c + 16s + 4m .. +4
/// </code>
/// (a "lane r" is bytes 4r .. 4r + 3 of a 32-byte vector, one byte per value). So the 6-bit quants
/// of sub-block j = 4c + jj (values 16j .. 16j + 15, four vectors V_m, m = 0..3, of four values per
/// row) are V_m = nibble(QL[4(jj mod 2) + m], jj ≥ 2) | bits(QH[m], jj) « 4: one load, an and (and a
/// shift) for the low part, a shift and an and for the high part, one or. SC keeps the row 4h + rr
/// in 128-bit half h, so one in-lane <c>vpshufb</c> (and an arithmetic shift that sign-extends)
/// gives the scale of sub-block j to both int16 of row r's 32-bit lane (the <c>vpmaddwd</c>
/// operand), and another gives the pair (scale 2t, scale 2t + 1) to meet the activation's bsums.
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode and prompt tiles agree bit for bit), per row r
/// and super-block i against activation block y (Q8_K: d, qs[256], bsums[16]): the integers
/// sumi = Σ_j scale_j · Σ_{v in j} q_v·y.qs[v] (q unsigned, 0..63) and summ = Σ_j scale_j ·
/// y.bsums[j], isum = sumi − 32·summ (int32, wrapping as the vector lanes do; exact for real Q8_K
/// rows, whose bsums are the sums of their qs); then <c>acc = fma(d_r·y.d, (float)isum, acc)</c>
/// (the product rounded to f32 first), and the row's result is acc. The plain kernels sum per lane
/// of values instead, which differs within float rounding; <see cref="DotRowsReference"/> is the
/// scalar statement. In the vectors, two <c>vpmaddubsw</c> pairs (|.| ≤ 2·63·128 each) are added
/// in int16 (≤ 32256, no saturation) before each <c>vpmaddwd</c> by the scale.
/// </para>
/// </summary>
internal static unsafe partial class Q6_Kx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per super-block.</summary>
    public const int QK = KQuant.QK_K;

    /// <summary>Bytes of one super-block of a group (8 × 210).</summary>
    public const int GroupBlockBytes = Rows * BlockQ6_K.Size;

    /// <summary>Offsets inside a group super-block; bytes of one 64-value chunk of quants; offset of QH in a chunk.</summary>
    internal const int OffD = 0, OffSc = 16, OffQ = 144, ChunkBytes = 384, OffQh = 256;

    /// <summary>Byte offset (in a group super-block) of the scale of sub-block <paramref name="j"/> (0..15) of row <paramref name="r"/>.</summary>
    internal static int ScaleOffset(int r, int j) => OffSc + (j >> 2) * 32 + (r >> 2) * 16 + (j & 3) * 4 + (r & 3);

    /// <summary>The int8 scale of sub-block <paramref name="j"/> of row <paramref name="r"/> from a packed group super-block.</summary>
    internal static int Scale(byte* o, int r, int j) => (sbyte)o[ScaleOffset(r, j)];

    /// <summary>The 6-bit quant (0..63) of value <paramref name="v"/> of row <paramref name="r"/> from a packed group super-block.</summary>
    internal static int Quant(byte* o, int r, int v)
    {
        int k = v >> 2, t = v & 3;
        PackedPlace(k, r, out int ql, out int qlShift, out int qh, out int qhShift);
        return ((o[ql + t] >> qlShift) & 0xF) | (((o[qh + t] >> qhShift) & 3) << 4);
    }

    /// <summary>
    /// Where values 4k .. 4k + 3 of a plain block live: their ql bytes (at <paramref name="ql"/>,
    /// nibble shift <paramref name="qlShift"/>) and qh bytes (at <paramref name="qh"/>, bit shift
    /// <paramref name="qhShift"/>), four consecutive bytes each (ggml-common.h block_q6_K).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void PlainPlace(int k, out int ql, out int qlShift, out int qh, out int qhShift)
    {
        int h = k >> 5, s = (k >> 3) & 3, l0 = 4 * (k & 7);
        ql = 64 * h + 32 * (s & 1) + l0;
        qlShift = 4 * (s >> 1);
        qh = 32 * h + l0;
        qhShift = 2 * s;
    }

    /// <summary>The same for the packed group super-block: lane <paramref name="r"/> of QL and QH in value chunk k / 16.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void PackedPlace(int k, int r, out int ql, out int qlShift, out int qh, out int qhShift)
    {
        int c = k >> 4, i = k & 15;
        ql = OffQ + c * ChunkBytes + 32 * (i & 7) + 4 * r;
        qlShift = 4 * (i >> 3);
        qh = OffQ + c * ChunkBytes + OffQh + 32 * (i & 3) + 4 * r;
        qhShift = 2 * (i >> 2);
    }

    /// <summary>
    /// Writes the packed form of a Q6_K matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a d is inf or NaN: the kernels
    /// widen it exactly for every finite fp16 but not for those (QuantMath.HalfBitsToSingle).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool Pack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ6_K.Size;
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gdst + (long)ib * GroupBlockBytes;
                new Span<byte>(o + OffQ, GroupBlockBytes - OffQ).Clear();
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ6_K*)(gsrc + r * rowBytes) + ib;
                    if ((b->D & 0x7C00) == 0x7C00) return false;
                    ((ushort*)(o + OffD))[r] = b->D;
                    for (int j = 0; j < 16; j++) o[ScaleOffset(r, j)] = (byte)b->Scales[j];
                    byte* ql = (byte*)b;
                    // Four values at a time: their ql and qh bytes are consecutive in both layouts.
                    for (int k = 0; k < QK / 4; k++)
                    {
                        PlainPlace(k, out int pl, out int pls, out int ph, out int phs);
                        PackedPlace(k, r, out int ol, out int ols, out int oh, out int ohs);
                        uint low = (*(uint*)(ql + pl) >> pls) & 0x0F0F0F0Fu;
                        uint high = (*(uint*)(ql + BlockQ6_K.QhOffset + ph) >> phs) & 0x03030303u;
                        *(uint*)(o + ol) |= low << ols;
                        *(uint*)(o + oh) |= high << ohs;
                    }
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ6_K.Size;
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
                    var b = (BlockQ6_K*)(gdst + r * rowBytes) + ib;
                    byte* ql = (byte*)b;
                    new Span<byte>(ql, BlockQ6_K.ScalesOffset).Clear();
                    b->D = ((ushort*)(o + OffD))[r];
                    for (int j = 0; j < 16; j++) b->Scales[j] = (sbyte)o[ScaleOffset(r, j)];
                    for (int k = 0; k < QK / 4; k++)
                    {
                        PlainPlace(k, out int pl, out int pls, out int ph, out int phs);
                        PackedPlace(k, r, out int ol, out int ols, out int oh, out int ohs);
                        uint low = (*(uint*)(o + ol) >> ols) & 0x0F0F0F0Fu;
                        uint high = (*(uint*)(o + oh) >> ohs) & 0x03030303u;
                        *(uint*)(ql + pl) |= low << pls;
                        *(uint*)(ql + BlockQ6_K.QhOffset + ph) |= high << phs;
                    }
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
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / QK;
        var a = (BlockQ8_K*)act;
        int full = nRows / Rows * Rows;
        for (int r = 0; r < full; r++)
        {
            byte* g = weights + (long)(r / Rows) * Rows * rowBytes;
            int ri = r % Rows;
            float acc = 0;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = g + (long)ib * GroupBlockBytes;
                int sumi = 0, summ = 0;
                for (int j = 0; j < 16; j++)
                {
                    int isum = 0;
                    for (int v = 16 * j; v < 16 * j + 16; v++) isum += Quant(o, ri, v) * a[ib].Qs[v];
                    int scale = Scale(o, ri, j);
                    sumi += scale * isum;
                    summ += scale * a[ib].Bsums[j];
                }
                int total = unchecked(sumi - 32 * summ); // wraps as the int32 lanes do (only with bsums that are not the sums of qs)
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * a[ib].D;
                acc = MathF.FusedMultiplyAdd(dxy, total, acc);
            }
            y[r] = acc;
        }
        for (int r = full; r < nRows; r++) y[r] = Q6_K.DotQ6_KQ8_K(n, (BlockQ6_K*)(weights + r * rowBytes), (BlockQ8_K*)act);
    }
}

/// <summary>
/// Q6_K computed from the <see cref="Q6_Kx8"/> layout (AVX2 + FMA; the prompt tile on AVX-512BW
/// where it exists, <see cref="Q6_Kx8.DotTileAvx512"/>, bit-identical). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/>
/// read groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>).
/// Methods that take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row,
/// which is what get_rows and conversions hand them (from the file mapping).
/// </summary>
internal sealed unsafe class Q6_Kx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q6_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;
    public override int RowGroup => Q6_Kx8.Rows;
    public override string? Layout => "q6_Kx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q6_K.DequantizeRowReference((BlockQ6_K*)src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q6_K.DotQ6_KQ8_K(n, (BlockQ6_K*)weights, (BlockQ8_K*)activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q6_Kx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q6_Kx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
