using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q3_K weights repacked at load time so that eight rows are computed together ("Q3_Kx8"), in the
/// style of <see cref="Q4_Kx8"/>. Q3_K is the body of the Q3_K_S/M/L files that phones and small
/// boards run when Q4 does not fit, and part of every Q2_K file. The plain kernels expand each row's
/// three-bit values to bytes on the stack and keep ggml's eight float lanes per row; here the eight
/// rows' values stay in registers, one broadcast of four activation bytes meets four values of each
/// of the eight rows in one <c>vpmaddubsw</c>, the sixteen sub-block scales of the eight rows are
/// applied by one <c>vpmaddwd</c> each, and the eight rows' sums come out in the eight lanes of one
/// vector.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 in exactly the bytes the plain rows took
/// (8 × 110 per super-block); rows past the last whole group stay plain. Inside a group, super-block
/// i (256 values of each row) is 880 bytes at 880·i:
/// <code>
///   [0, 512)     Q[16]   4-byte lane r of Q[t], byte l, bits 2s..2s+1: low two bits of value 16t + 4s + l of row r
///   [512, 768)   HM[8]   4-byte lane r of HM[t/2], byte l, bit 4(t mod 2) + s: high bit of that value
///   [768, 832)   S0, S1  low 4 bits of the 128 six-bit scales (as <see cref="Q4_Kx8"/>'s header, scale j at index j)
///   [832, 864)   H       their high 2 bits
///   [864, 880)   d[8]    the rows' fp16 super-scales, row order
/// </code>
/// So Q[t] holds exactly sub-block t (values 16t .. 16t + 16) of every row, four activation bytes
/// per shift s. The unsigned value u = low | high « 2 is 0..7 and the plain value q = u − 4 (the
/// plain block's "minus 4 where the high bit is clear").
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode rows and prompt tiles agree bit for bit), per row
/// and super-block against a Q8_K activation block y: the exact integer
/// sumi = Σ_j (scale_j − 32) · (Σ u·a − 4·y.bsums[j]) = Σ_j (scale_j − 32) · Σ q·a, then
/// <c>acc = fma(d·y.d, sumi, acc)</c> in super-block order. The kernels read the activation's
/// block sums (y.bsums[j] = Σ of its values 16j .. 16j + 16, as every Q8_K quantizer writes them);
/// the plain kernels add eight float lanes per row, so the two differ within float rounding;
/// <see cref="DotRowsReference"/> is the scalar statement.
/// </para>
/// </summary>
internal static unsafe partial class Q3_Kx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per super-block.</summary>
    public const int QK = KQuant.QK_K;

    /// <summary>Bytes of one super-block of a group (8 × 110).</summary>
    public const int GroupBlockBytes = Rows * BlockQ3_K.Size;

    /// <summary>Offsets inside a group super-block.</summary>
    internal const int OffQ = 0, OffHM = 512, OffS = 768, OffH = 832, OffD = 864;

    /// <summary>The low two bits of value <paramref name="v"/> (0..255) of row lane <paramref name="r"/> in a packed group super-block.</summary>
    internal static int Low2(byte* o, int r, int v) => (o[OffQ + 32 * (v >> 4) + 4 * r + (v & 3)] >> (2 * ((v >> 2) & 3))) & 3;

    /// <summary>The high bit of value <paramref name="v"/> of row lane <paramref name="r"/> in a packed group super-block.</summary>
    internal static int HighBit(byte* o, int r, int v)
    {
        int t = v >> 4, s = (v >> 2) & 3;
        return (o[OffHM + 32 * (t >> 1) + 4 * r + (v & 3)] >> (4 * (t & 1) + s)) & 1;
    }

    /// <summary>Byte and shift of value <paramref name="v"/>'s low bits in a plain block's qs (value 128h + 32s + l at qs[32h + l], bits 2s).</summary>
    internal static (int Byte, int Shift) PlainLow(int v) => (32 * (v >> 7) + (v & 31), 2 * ((v >> 5) & 3));

    /// <summary>Byte and bit of value <paramref name="v"/>'s high bit in a plain block's hmask (hmask[l], bit 4h + s).</summary>
    private static (int Byte, int Bit) PlainHigh(int v) => (v & 31, 4 * (v >> 7) + ((v >> 5) & 3));

    /// <summary>
    /// Writes the packed form of a Q3_K matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a d is inf or NaN (the kernels widen
    /// every finite fp16 exactly, not those).
    /// </summary>
    public static bool Pack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: true);

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n) => Shuffle(src, dst, rows, n, pack: false);

    private static bool Shuffle(byte* src, byte* dst, int rows, int n, bool pack)
    {
        KQuant.CheckLength(n, "Q3_K");
        return RowGroupLoops.Shuffle(src, dst, rows, n / QK, BlockQ3_K.Size, pack, &Move);
    }

    /// <summary>Row <paramref name="r"/>'s plain block to or from group super-block <paramref name="o"/> (see <see cref="RowGroupLoops.Shuffle"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Move(byte* o, int r, byte* block, bool pack)
    {
        var b = (BlockQ3_K*)block;
        sbyte* scales = stackalloc sbyte[16];
        if (pack)
        {
            if (!RowGroupLoops.Finite(&b->D, 1)) return false;
            ((ushort*)(o + OffD))[r] = b->D;
            Q3_K.UnpackScales(b->Scales, scales);
            for (int j = 0; j < 16; j++) Q4_Kx8.PutSixBit(o + OffS, o + OffH, r, j, (byte)scales[j]);
            PackLowBits(b->Qs, o + OffQ, r);
            PackHighBits(b->HMask, o + OffHM, r);
        }
        else
        {
            b->D = ((ushort*)(o + OffD))[r];
            for (int j = 0; j < 16; j++) scales[j] = (sbyte)Q4_Kx8.SixBit(o + OffS, o + OffH, r, j);
            PackScales(scales, b->Scales);
            for (int v = 0; v < QK; v++)
            {
                var (lb, ls) = PlainLow(v);
                var (hb, hs) = PlainHigh(v);
                b->Qs[lb] |= (byte)(Low2(o, r, v) << ls);
                b->HMask[hb] |= (byte)(HighBit(o, r, v) << hs);
            }
        }
        return true;
    }

    /// <summary>
    /// Row lane <paramref name="r"/> of the sixteen quant vectors at <paramref name="q"/> from a plain
    /// block's 64 low-bit bytes (also <see cref="Q2_Kx8"/>'s), a 32-bit word at a time: byte l of lane
    /// r of Q[t] gathers, at bits 2s, the values 16t + 4s + l, which sit in plain bytes
    /// 32(t/8) + 16(t mod 2) + 4s + l at one common shift. (Loading a model packs every matrix, so
    /// this is what its load time pays, not a per-value loop.) <see cref="Low2"/> is the statement.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void PackLowBits(byte* qs, byte* q, int r)
    {
        for (int t = 0; t < 16; t++)
        {
            byte* src = qs + 32 * (t >> 3) + 16 * (t & 1);
            int shift = 2 * ((t >> 1) & 3);
            uint w = 0;
            for (int s = 0; s < 4; s++) w |= ((*(uint*)(src + 4 * s) >> shift) & 0x03030303u) << (2 * s);
            *(uint*)(q + 32 * t + 4 * r) = w;
        }
    }

    /// <summary>Row lane <paramref name="r"/> of the eight high-bit vectors at <paramref name="hm"/> from a plain block's hmask, as <see cref="PackLowBits"/> (<see cref="HighBit"/> is the statement).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void PackHighBits(byte* hmask, byte* hm, int r)
    {
        for (int u = 0; u < 8; u++)
        {
            int shift = 4 * (u >> 2) + (u & 3); // values of Q[2u] and Q[2u + 1]: plain bit 4(t/8) + (t/2 mod 4)
            uint w = 0;
            for (int half = 0; half < 2; half++)
                for (int s = 0; s < 4; s++)
                    w |= ((*(uint*)(hmask + 16 * half + 4 * s) >> shift) & 0x01010101u) << (4 * half + s);
            *(uint*)(hm + 32 * u + 4 * r) = w;
        }
    }

    /// <summary>The inverse of <see cref="Q3_K.UnpackScales"/>: sixteen six-bit values (offset by 32) to the plain twelve bytes.</summary>
    private static void PackScales(sbyte* scales, byte* packed)
    {
        for (int i = 0; i < 12; i++) packed[i] = 0;
        for (int j = 0; j < 16; j++)
        {
            int x = (byte)scales[j];
            packed[j & 7] |= (byte)((x & 0xF) << (4 * (j >> 3)));
            packed[8 + (j & 3)] |= (byte)((x >> 4) << (2 * (j >> 2)));
        }
    }

    /// <summary>
    /// Scalar statement of the packed arithmetic: y[r] for <paramref name="nRows"/> rows starting at
    /// a group boundary (whole groups packed, a last partial group plain) against one Q8_K row.
    /// </summary>
    public static void DotRowsReference(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        KQuant.CheckLength(n, "Q3_K");
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
                int sumi = 0;
                for (int j = 0; j < 16; j++)
                {
                    int isum = -4 * a[ib].Bsums[j];
                    for (int i = 16 * j; i < 16 * j + 16; i++) isum += (Low2(o, ri, i) | HighBit(o, ri, i) << 2) * a[ib].Qs[i];
                    sumi += (Q4_Kx8.SixBit(o + OffS, o + OffH, ri, j) - 32) * isum;
                }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * a[ib].D;
                acc = MathF.FusedMultiplyAdd(dxy, sumi, acc);
            }
            y[r] = acc;
        }
        for (int r = full; r < nRows; r++) y[r] = PlainDot(n, weights + r * rowBytes, act);
    }

    /// <summary>The plain kernel, for the rows past the last whole group.</summary>
    private static float PlainDot(int n, byte* row, byte* act) => Q3_K.DotQ3_KQ8_K(n, (BlockQ3_K*)row, (BlockQ8_K*)act);
}

/// <summary>
/// Q3_K computed from the <see cref="Q3_Kx8"/> layout (AVX2 + FMA). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/> read
/// groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>). Methods that
/// take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row, which is what
/// get_rows and conversions hand them.
/// </summary>
internal sealed unsafe class Q3_Kx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q3_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;
    public override int RowGroup => Q3_Kx8.Rows;
    public override string? Layout => "q3_Kx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q3_K.DequantizeRowReference((BlockQ3_K*)src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q3_K.DotQ3_KQ8_K(n, (BlockQ3_K*)weights, (BlockQ8_K*)activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q3_Kx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q3_Kx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
