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
