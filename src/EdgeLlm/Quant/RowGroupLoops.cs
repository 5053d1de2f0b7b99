namespace EdgeLlm.Quant;

/// <summary>
/// The loops around the group kernels of the eight-row layouts whose kernels take one activation row
/// per pointer (<see cref="Q4_Kx8"/>, <see cref="Q5_Kx8"/>, <see cref="Q6_Kx8"/> with Q8_K activations,
/// <see cref="IQ4_NLx8"/> with Q8_0; TAct, on each method, is the activation block type): which group of eight rows meets which activation
/// rows, the two- and three-activation remainders, and the plain rows past the last whole group.
/// Each layout supplies its kernels as function pointers (each call covers a whole group's row of
/// super-blocks, so the indirect call costs nothing measurable):
/// <code>
///   group1  (g, nb, a, y)                        one group, one activation row: y[0..8)
///   group4  (g, nb, a0, a1, a2, a3, y, yStride)  one group, four activation rows
///   pair4   (g, groupBytes, nb, a0..a3, y, yStride)  two groups (16 rows, the second groupBytes on), four activation rows
///   plain   (n, row, act)                        one plain row (the tail) against one activation row
/// </code>
/// Every kernel of a layout gives the same bits per (row, activation), so how the loops split the
/// work never changes a result.
/// </summary>
internal static unsafe class RowGroupLoops
{
    /// <summary>Rows per group.</summary>
    public const int Rows = 8;

    /// <summary>
    /// The walk of a layout's Pack and Unpack (<see cref="Q2_Kx8"/>, <see cref="Q3_Kx8"/>, <see cref="Q4_1x8"/>,
    /// <see cref="Q5_0x8"/>, <see cref="Q5_1x8"/>, <see cref="IQ4_NLx8"/>): for every whole group, block
    /// by block and row by row, <paramref name="move"/>(o, r, block, pack) moves row r's plain block
    /// into the group block at o (pack) or back (unpack), and may refuse (false: Pack returns false,
    /// having written nothing useful). Group blocks start cleared when packing (moves may OR bits in),
    /// as do plain blocks when unpacking. Rows past the last whole group are copied as they are.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool Shuffle(byte* src, byte* dst, int rows, int nb, int blockBytes, bool pack, delegate*<byte*, int, byte*, bool, bool> move)
    {
        long rowBytes = (long)nb * blockBytes;
        int groupBlockBytes = Rows * blockBytes;
        int groups = rows / Rows;
        for (int g = 0; g < groups; g++)
        {
            byte* plainGroup = (pack ? src : dst) + (long)g * Rows * rowBytes;
            byte* packedGroup = (pack ? dst : src) + (long)g * Rows * rowBytes;
            for (int ib = 0; ib < nb; ib++)
            {
                byte* o = packedGroup + (long)ib * groupBlockBytes;
                if (pack) new Span<byte>(o, groupBlockBytes).Clear();
                for (int r = 0; r < Rows; r++)
                {
                    byte* b = plainGroup + r * rowBytes + (long)ib * blockBytes;
                    if (!pack) new Span<byte>(b, blockBytes).Clear();
                    if (!move(o, r, b, pack)) return false;
                }
            }
        }
        long packed = (long)groups * Rows * rowBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, rows * rowBytes - packed, rows * rowBytes - packed);
        return true;
    }

    /// <summary>True when none of the fp16 values at <paramref name="halves"/> (<paramref name="count"/> of them) is inf or NaN: what the layouts' exact fp16 widening needs.</summary>
    public static bool Finite(ushort* halves, int count)
    {
        for (int i = 0; i < count; i++)
            if ((halves[i] & 0x7C00) == 0x7C00) return false;
        return true;
    }

    /// <summary>Moves the four 4-byte words of a 32-value block's 16 quant bytes to or from row lane <paramref name="r"/> of the four vectors at <paramref name="q"/> (lane r of vector k = bytes 4k .. 4k + 4).</summary>
    public static void MoveLanes(byte* q, int r, byte* qs, bool pack)
    {
        for (int k = 0; k < 4; k++)
        {
            if (pack) *(uint*)(q + 32 * k + 4 * r) = *(uint*)(qs + 4 * k);
            else *(uint*)(qs + 4 * k) = *(uint*)(q + 32 * k + 4 * r);
        }
    }

    /// <summary>
    /// A layout's decode entry: its scalar statement (<paramref name="reference"/>) where the CPU lacks
    /// its kernels (<paramref name="supported"/> false), else <see cref="DotRows"/>.
    /// </summary>
    public static void Decode<TAct>(bool supported, delegate*<int, byte*, long, int, byte*, float*, void> reference,
        delegate*<byte*, int, TAct*, float*, void> group1, delegate*<int, byte*, byte*, float> plain,
        int blockSize, int n, byte* weights, long rowBytes, int nRows, byte* act, float* y) where TAct : unmanaged
    {
        if (supported) DotRows(group1, plain, blockSize, n, weights, rowBytes, nRows, act, y);
        else reference(n, weights, rowBytes, nRows, act, y);
    }

    /// <summary>
    /// A layout's prompt-tile entry: its scalar statement row by row where the CPU lacks its kernels,
    /// pairs of groups (<see cref="DotTilePairs"/>) with <paramref name="pairs"/>, else <see cref="DotTile"/>.
    /// Every branch gives the same bits per (row, activation).
    /// </summary>
    public static void Tile<TAct>(bool supported, bool pairs, delegate*<int, byte*, long, int, byte*, float*, void> reference,
        delegate*<byte*, long, int, TAct*, TAct*, TAct*, TAct*, float*, long, void> pair4,
        delegate*<byte*, int, TAct*, float*, void> group1,
        delegate*<byte*, int, TAct*, TAct*, TAct*, TAct*, float*, long, void> group4,
        delegate*<int, byte*, byte*, float> plain,
        int blockSize, int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) where TAct : unmanaged
    {
        if (!supported) WeightPacking.TileByRows(reference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else if (pairs) DotTilePairs(pair4, group1, group4, plain, blockSize, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else DotTile(group1, group4, plain, blockSize, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>y[r] = row r · act (<paramref name="blockSize"/> values per block of the row) for <paramref name="nRows"/> rows from a group boundary (decode).</summary>
    public static void DotRows<TAct>(delegate*<byte*, int, TAct*, float*, void> group1, delegate*<int, byte*, byte*, float> plain,
        int blockSize, int n, byte* weights, long rowBytes, int nRows, byte* act, float* y) where TAct : unmanaged
    {
        int nb = n / blockSize;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        for (int g = 0; g < groups; g++)
            group1(weights + g * groupBytes, nb, (TAct*)act, y + g * Rows);
        for (int r = groups * Rows; r < nRows; r++) y[r] = plain(n, weights + r * rowBytes, act);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a, group by group against four activation rows at a time; two
    /// or three activation rows go through <paramref name="group4"/> with the last one repeated, into
    /// a scratch tile (per lane the arithmetic does not depend on the neighbours).
    /// </summary>
    public static void DotTile<TAct>(delegate*<byte*, int, TAct*, float*, void> group1,
        delegate*<byte*, int, TAct*, TAct*, TAct*, TAct*, float*, long, void> group4,
        delegate*<int, byte*, byte*, float> plain,
        int blockSize, int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) where TAct : unmanaged
    {
        int nb = n / blockSize;
        int groups = nRows / Rows;
        float* pad = stackalloc float[4 * Rows];
        for (int a0 = 0; a0 < nActs; a0 += 4)
        {
            int na = Math.Min(4, nActs - a0);
            byte* a = acts + a0 * actStride;
            var x0 = (TAct*)a;
            var x1 = (TAct*)(a + Math.Min(1, na - 1) * actStride);
            var x2 = (TAct*)(a + Math.Min(2, na - 1) * actStride);
            var x3 = (TAct*)(a + Math.Min(3, na - 1) * actStride);
            for (int g = 0; g < groups; g++)
            {
                byte* gw = weights + (long)g * Rows * rowBytes;
                float* yg = y + a0 * yStride + g * Rows;
                if (na == 4) group4(gw, nb, x0, x1, x2, x3, yg, yStride);
                else if (na == 1) group1(gw, nb, x0, yg);
                else
                {
                    group4(gw, nb, x0, x1, x2, x3, pad, Rows);
                    for (int k = 0; k < na; k++)
                        for (int r = 0; r < Rows; r++) yg[k * yStride + r] = pad[k * Rows + r];
                }
            }
            for (int r = groups * Rows; r < nRows; r++)
                for (int k = 0; k < na; k++)
                    y[(a0 + k) * yStride + r] = plain(n, weights + r * rowBytes, a + k * actStride);
        }
    }

    /// <summary>
    /// The tile with pairs of groups (<paramref name="pair4"/>, e.g. one zmm for 16 rows) against four
    /// activation rows at a time; a last odd group goes through <paramref name="group4"/>, and
    /// activation rows past the last four through <see cref="DotTile"/>.
    /// </summary>
    public static void DotTilePairs<TAct>(delegate*<byte*, long, int, TAct*, TAct*, TAct*, TAct*, float*, long, void> pair4,
        delegate*<byte*, int, TAct*, float*, void> group1,
        delegate*<byte*, int, TAct*, TAct*, TAct*, TAct*, float*, long, void> group4,
        delegate*<int, byte*, byte*, float> plain,
        int blockSize, int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) where TAct : unmanaged
    {
        int nb = n / blockSize;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        int a0 = 0;
        for (; a0 + 4 <= nActs; a0 += 4)
        {
            byte* a = acts + a0 * actStride;
            var x0 = (TAct*)a;
            var x1 = (TAct*)(a + actStride);
            var x2 = (TAct*)(a + 2 * actStride);
            var x3 = (TAct*)(a + 3 * actStride);
            int g = 0;
            for (; g + 2 <= groups; g += 2)
                pair4(weights + g * groupBytes, groupBytes, nb, x0, x1, x2, x3, y + a0 * yStride + g * Rows, yStride);
            if (g < groups)
                group4(weights + g * groupBytes, nb, x0, x1, x2, x3, y + a0 * yStride + g * Rows, yStride);
            for (int r = groups * Rows; r < nRows; r++)
                for (int k = 0; k < 4; k++)
                    y[(a0 + k) * yStride + r] = plain(n, weights + r * rowBytes, a + k * actStride);
        }
        if (a0 < nActs)
            DotTile(group1, group4, plain, blockSize, n, weights, rowBytes, nRows, acts + a0 * actStride, actStride, nActs - a0, y + a0 * yStride, yStride);
    }
}
