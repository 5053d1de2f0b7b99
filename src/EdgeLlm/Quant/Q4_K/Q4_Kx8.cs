using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q4_K weights repacked at load time so that eight rows are computed together ("Q4_Kx8"; the idea
/// of llama.cpp's CPU_REPACK <c>block_q4_Kx8</c> with <c>ggml_gemm_q4_K_8x8_q8_K</c>, with a layout
/// of our own). The plain kernels spend much of their work per row: unpacking one row's twelve
/// scale bytes, broadcasting eight scales, a horizontal sum, the mins' correction and two scalar
/// scales per super-block. With eight rows interleaved, each 32-bit lane of a vector belongs to one
/// row: one broadcast of four activation bytes meets four quants of each of the eight rows in one
/// <c>vpmaddubsw</c>, the sub-block scales of the eight rows are applied by one <c>vpmaddwd</c>, and
/// the eight rows' sums come out in the eight lanes of one vector, scaled and stored without any
/// horizontal sum.
/// <para>
/// Layout. A group is eight consecutive rows 8g..8g+7 and takes exactly the bytes the plain rows
/// took (8 × RowBytes), so the group of row r starts where row r started and nothing else in the
/// matrix moves. Rows past the last whole group stay plain. Inside a group, super-block i (256
/// values of each row) is 1152 bytes (8 × 144) at 1152·i:
/// <code>
///   [0, 16)      d[8]     the rows' fp16 super-scales, row order
///   [16, 32)     dmin[8]  the rows' fp16 min scales, row order
///   [32, 96)     S0, S1   low 4 bits of the 128 six-bit scales and mins (see below)
///   [96, 128)    H        their high 2 bits
///   [128, 1152)  Q[32]    32 vectors of 32 bytes: 4-byte lane r of Q[k] = row r's qs[4k .. 4k+4)
/// </code>
/// qs is the plain block's nibble array (ggml-common.h block_q4_K): byte 32c + l holds value 64c + l
/// (sub-block 2c) in its low nibble and 64c + 32 + l (sub-block 2c + 1) in its high nibble. So the
/// low nibbles of Q[8c + k] (k = 0..7) meet activations 64c + 4k .. +4 and their high nibbles
/// 64c + 32 + 4k .. +4: eight vectors per sub-block, four activation bytes broadcast each.
/// </para>
/// <para>
/// Scales and mins. The sixteen 6-bit values of each row (scale j and min j of <see cref="KQuant.GetScaleMinK4"/>)
/// are spread over four 32-byte vectors U0..U3 (U0: scales 0..3, U1: scales 4..7, U2: mins 0..3,
/// U3: mins 4..7); in each, byte 16h + 4jj + rr is sub-block 4u + jj (u the vector's index mod 2) of
/// row 4h + rr. Stored as 4 + 2 bits: U0 = low nibbles of S0 | (H bits 0..1) « 4, U1 = high nibbles
/// of S0 | (H bits 2..3) « 4, U2 and U3 likewise from S1 and H bits 4..5, 6..7: four ands, shifts and ors
/// per vector. Because row 4h + rr sits in 128-bit half h, one in-lane <c>vpshufb</c> gives the scale
/// of sub-block j to both int16 of row r's 32-bit lane (the <c>vpmaddwd</c> operand), and another
/// gives the pair (min 2k, min 2k + 1) of each row to meet the activation's pair of 32-value sums.
/// 96 bytes, exactly the twelve bytes per row of the plain blocks.
/// </para>
/// <para>
/// Arithmetic (the same in every kernel, so decode and prompt tiles agree bit for bit), per row r
/// and super-block i against activation block y: the exact integers sumi = Σ_j scale_j · Σ q·y.qs
/// and summ = Σ_j min_j · (bsums[2j] + bsums[2j+1]) (the pair added in int16, as the plain AVX2 kernels do); then <c>acc = fma(d_r·y.d, sumi, acc)</c> and
/// <c>accm = fma(dmin_r·y.d, summ, accm)</c> (each product rounded to f32 first), and the row's
/// result is acc − accm. That order differs from the plain kernels' (lanes of partial sums per
/// row), within float rounding; <see cref="DotRowsReference"/> is the scalar statement of it.
/// </para>
/// </summary>
internal static unsafe partial class Q4_Kx8
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>Values per super-block.</summary>
    public const int QK = KQuant.QK_K;

    /// <summary>Bytes of one super-block of a group (8 × 144).</summary>
    public const int GroupBlockBytes = Rows * BlockQ4_K.Size;

    /// <summary>Offsets inside a group super-block.</summary>
    internal const int OffD = 0, OffDMin = 16, OffS = 32, OffH = 96, OffQ = 128;

    /// <summary>Byte of U<paramref name="u"/> (0..3) holding sub-block <paramref name="jj"/> (0..3) of row <paramref name="r"/>.</summary>
    internal static int UByte(int r, int jj) => (r >> 2) * 16 + jj * 4 + (r & 3);

    /// <summary>The 6-bit value v (0..7: scale v, 8..15: min v − 8) of row <paramref name="r"/> from a packed group super-block.</summary>
    internal static int SixBit(byte* o, int r, int v) => SixBit(o + OffS, o + OffH, r, v);

    /// <summary>
    /// The 6-bit value v (0..15) of row <paramref name="r"/> from 64 bytes S0, S1 at <paramref name="s"/> and 32 bytes H at
    /// <paramref name="h"/> laid out as this header's (also <see cref="Q3_Kx8"/>'s sixteen scales).
    /// </summary>
    internal static int SixBit(byte* s, byte* h, int r, int v)
    {
        int u = v >> 2, b = UByte(r, v & 3);
        int low = (s[(u >> 1) * 32 + b] >> (4 * (u & 1))) & 0xF;
        int high = (h[b] >> (2 * u)) & 3;
        return low | (high << 4);
    }

    /// <summary>
    /// Writes the packed form of a Q4_K matrix of <paramref name="rows"/> × <paramref name="n"/>
    /// values from <paramref name="src"/> (plain) to <paramref name="dst"/> (same size, not
    /// overlapping). Returns false, writing nothing useful, when a d or dmin is inf or NaN: the
    /// kernels widen them exactly for every finite fp16 but not for those (QuantMath.HalfBitsToSingle).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool Pack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ4_K.Size;
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* gsrc = src + (long)g * Rows * rowBytes;
            byte* gdst = dst + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = gdst + (long)ib * GroupBlockBytes;
                new Span<byte>(o + OffS, OffQ - OffS).Clear();
                for (int r = 0; r < Rows; r++)
                {
                    var b = (BlockQ4_K*)(gsrc + r * rowBytes) + ib;
                    if (!PackHeader(o, r, b->D, b->DMin, b->Scales)) return false;
                    for (int k = 0; k < 32; k++)
                        *(uint*)(o + OffQ + k * 32 + r * 4) = *(uint*)(b->Qs + 4 * k);
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>
    /// Writes row <paramref name="r"/>'s d, dmin and twelve scale bytes into the header of a group
    /// super-block (bytes [0, 128), shared with <see cref="Q5_Kx8"/>), whose S and H bytes start cleared.
    /// False for an inf or NaN d or dmin.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static bool PackHeader(byte* o, int r, ushort d, ushort dmin, byte* scales)
    {
        if ((d & 0x7C00) == 0x7C00 || (dmin & 0x7C00) == 0x7C00) return false;
        ((ushort*)(o + OffD))[r] = d;
        ((ushort*)(o + OffDMin))[r] = dmin;
        for (int j = 0; j < 8; j++)
        {
            KQuant.GetScaleMinK4(j, scales, out byte sc, out byte m);
            PutSixBit(o, r, j, sc);
            PutSixBit(o, r, 8 + j, m);
        }
        return true;
    }

    /// <summary>The inverse of <see cref="PackHeader"/>: row <paramref name="r"/>'s d, dmin and twelve scale bytes.</summary>
    internal static void UnpackHeader(byte* o, int r, out ushort d, out ushort dmin, byte* scales)
    {
        d = ((ushort*)(o + OffD))[r];
        dmin = ((ushort*)(o + OffDMin))[r];
        for (int j = 0; j < KQuant.K_SCALE_SIZE; j++) scales[j] = 0;
        for (int j = 0; j < 8; j++) KQuant.PackScaleMinK4(j, scales, (byte)SixBit(o, r, j), (byte)SixBit(o, r, 8 + j));
    }

    private static void PutSixBit(byte* o, int r, int v, int x) => PutSixBit(o + OffS, o + OffH, r, v, x);

    /// <summary>ORs the 6-bit value <paramref name="x"/> in as value v of row <paramref name="r"/> (the inverse of <see cref="SixBit(byte*, byte*, int, int)"/>; S and H start cleared).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void PutSixBit(byte* s, byte* h, int r, int v, int x)
    {
        int u = v >> 2, b = UByte(r, v & 3);
        s[(u >> 1) * 32 + b] |= (byte)((x & 0xF) << (4 * (u & 1)));
        h[b] |= (byte)((x >> 4) << (2 * u));
    }

    /// <summary>The inverse of <see cref="Pack"/> (tests check the round trip; the plain 12-byte scale encoding is canonical).</summary>
    public static void Unpack(byte* src, byte* dst, int rows, int n)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / QK;
        long rowBytes = (long)nb * BlockQ4_K.Size;
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
                    var b = (BlockQ4_K*)(gdst + r * rowBytes) + ib;
                    UnpackHeader(o, r, out b->D, out b->DMin, b->Scales);
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
        KQuant.CheckLength(n, "Q4_K");
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
                        sbyte* x = a[ib].Qs + 64 * c + 32 * (j & 1) + 4 * k;
                        for (int l = 0; l < 4; l++) isum += ((q[l] >> shift) & 0xF) * x[l];
                    }
                    sumi += SixBit(o, ri, j) * isum;
                    summ += SixBit(o, ri, 8 + j) * (short)(a[ib].Bsums[2 * j] + a[ib].Bsums[2 * j + 1]); // the kernels add the pair in int16 (exact for real Q8_K rows: |bsums| ≤ 16·128)
                }
                float dxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffD))[ri]) * a[ib].D;
                float mxy = QuantMath.Fp16ToFp32(((ushort*)(o + OffDMin))[ri]) * a[ib].D;
                acc = MathF.FusedMultiplyAdd(dxy, sumi, acc);
                accm = MathF.FusedMultiplyAdd(mxy, summ, accm);
            }
            y[r] = acc - accm;
        }
        for (int r = full; r < nRows; r++) y[r] = Q4_K.DotQ4_KQ8_K(n, (BlockQ4_K*)(weights + r * rowBytes), (BlockQ8_K*)act);
    }
}

/// <summary>
/// Q4_K computed from the <see cref="Q4_Kx8"/> layout (AVX2 + FMA; the prompt tile in AVX-512 where
/// AVX-512 BW is present). Matrices are packed by
/// <see cref="WeightPacking"/> at load; <see cref="VecDotRows"/> and <see cref="VecDotTile"/>
/// read groups of eight rows and must be called at a group boundary (<see cref="RowGroup"/>).
/// Methods that take one row (<see cref="VecDot"/>, <see cref="DequantizeRow"/>) read a plain row,
/// which is what get_rows and conversions hand them (from the file mapping).
/// </summary>
internal sealed unsafe class Q4_Kx8Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_K;
    public override GgmlType VecDotType => GgmlType.Q8_K;
    public override int RowGroup => Q4_Kx8.Rows;
    public override string? Layout => "q4_Kx8";
    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_K.DequantizeRowReference((BlockQ4_K*)src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q4_K.DotQ4_KQ8_K(n, (BlockQ4_K*)weights, (BlockQ8_K*)activations);

    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q4_Kx8.DotRows(n, weights, rowBytes, nRows, activations, y);

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q4_Kx8.DotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
}
