using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q2_K weights repacked at load time so that eight rows are computed together ("Q2_Kx8"), in the
/// style of <see cref="Q4_Kx8"/> and with <see cref="Q3_Kx8"/>'s quant vectors. Q2_K is the body of
/// the Q2_K files that put the largest models in the least memory. The plain kernels form each
/// row's sixteen sub-block sums, scales and mins apart; here one broadcast of four activation bytes
/// meets four values of each of eight rows in one <c>vpmaddubsw</c>, each sub-block's scales are
/// applied to the eight rows by one <c>vpmaddwd</c>, the mins meet the activation's block sums two
/// sub-blocks per <c>vpmaddwd</c>, and the eight rows' results come out in the lanes of one vector.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 in exactly the bytes the plain rows took
/// (8 × 84 per super-block); rows past the last whole group stay plain. Inside a group, super-block i
/// (256 values of each row) is 672 bytes at 672·i:
/// <code>
///   [0, 512)     Q[16]    4-byte lane r of Q[t], byte l, bits 2s..2s+1: value 16t + 4s + l of row r (as <see cref="Q3_Kx8"/>)
///   [512, 640)   V[4]     the plain scales bytes (scale | min « 4): byte 16h + 4jj + rr of V[u] is
///                         sub-block 4u + jj of row 4h + rr (<see cref="Q4_Kx8"/>'s arrangement, so its shuffles apply)
///   [640, 656)   d[8]     the rows' fp16 scales, row order
///   [656, 672)   dmin[8]  the rows' fp16 min scales, row order
/// </code>
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode rows and prompt tiles agree bit for bit), per row
/// and super-block against a Q8_K block y: the exact integers sumi = Σ_j scale_j · Σ q·a and
/// summ = Σ_j min_j · y.bsums[j]; then <c>acc = fma(d·y.d, sumi, acc)</c> and
/// <c>accm = fma(dmin·y.d, summ, accm)</c>, and the row's result is acc − accm. The plain kernels add
/// d·y.d·sumi − dmin·y.d·summ per super-block, so the two differ within float rounding;
/// <see cref="DotRowsReference"/> is the scalar statement.
/// </para>
/// </summary>
internal static unsafe partial class Q2_Kx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per super-block.</summary>
    public const int QK = KQuant.QK_K;

    /// <summary>Bytes of one super-block of a group (8 × 84).</summary>
    public const int GroupBlockBytes = Rows * BlockQ2_K.Size;

    /// <summary>Offsets inside a group super-block.</summary>
    internal const int OffQ = 0, OffV = 512, OffD = 640, OffDMin = 656;

    /// <summary>The plain scales byte (scale | min « 4) of sub-block <paramref name="j"/> of row lane <paramref name="r"/>.</summary>
    internal static int ScaleByte(byte* o, int r, int j) => o[OffV + 32 * (j >> 2) + Q4_Kx8.UByte(r, j & 3)];

    /// <summary>
    /// Writes the packed form of a Q2_K matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a d or dmin is inf or NaN.
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        KQuant.CheckLength(n, "Q2_K");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, BlockQ2_K.Size, pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group super-block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockQ2_K*)block;
        if (pack)
        {
            if (!RowGroupLoops.Finite(&b->D, 2)) return false;
            ((ushort*)(o + OffD))[r] = b->D;
            ((ushort*)(o + OffDMin))[r] = b->DMin;
            for (int j = 0; j < 16; j++) o[OffV + 32 * (j >> 2) + Q4_Kx8.UByte(r, j & 3)] = b->Scales[j];
            Q3_Kx8.PackLowBits(b->Qs, o + OffQ, r);
        }
        else
        {
            b->D = ((ushort*)(o + OffD))[r];
            b->DMin = ((ushort*)(o + OffDMin))[r];
            for (int j = 0; j < 16; j++) b->Scales[j] = (byte)ScaleByte(o, r, j);
            for (int v = 0; v < QK; v++)
            {
                var (lb, ls) = Q3_Kx8.PlainLow(v);
                b->Qs[lb] |= (byte)(Q3_Kx8.Low2(o, r, v) << ls);
            }
        }
        return true;
    }

    /// <summary>
    /// Scalar statement of the packed arithmetic: y[r] for <paramref name="nRows"/> rows starting at
    /// a group boundary (whole groups packed, a last partial group plain) against one Q8_K row.
    /// </summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        KQuant.CheckLength(n, "Q2_K");
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
                for (int j = 0; j < 16; j++)
                {
                    int isum = 0;
                    for (int i = 16 * j; i < 16 * j + 16; i++) isum += Q3_Kx8.Low2(o, ri, i) * a[ib].Qs[i];
                    int sc = ScaleByte(o, ri, j);
                    sumi += (sc & 0xF) * isum;
                    summ += (sc >> 4) * a[ib].Bsums[j];
                }
                acc = MathF.FusedMultiplyAdd(QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * a[ib].D, sumi, acc);
                accm = MathF.FusedMultiplyAdd(QuantMath.Fp16ToFp32(((ushort*)(o + OffDMin))[ri]) * a[ib].D, summ, accm);
            }
            y[r] = acc - accm;
        }
        for (int r = full; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    /// <summary>The plain kernel, for the rows past the last whole group.</summary>
    private static float PlainDot(int n, byte* row, byte* act) => Q2_K.DotQ2_KQ8_K(n, (BlockQ2_K*)row, (BlockQ8_K*)act);
}

/// <summary>
/// Q2_K computed from the <see cref="Q2_Kx8"/> layout (AVX2 + FMA). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/> read
/// groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>). Methods that
/// take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row, which is what
/// get_rows and conversions hand them.
/// </summary>
internal sealed unsafe class Q2_Kx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q2_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;
    public override int RowGroup => Q2_Kx8.Rows;
    public override string? Layout => "q2_Kx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q2_K.DequantizeRowReference((BlockQ2_K*)src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q2_K.DotQ2_KQ8_K(n, (BlockQ2_K*)weights, (BlockQ8_K*)activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q2_Kx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q2_Kx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
