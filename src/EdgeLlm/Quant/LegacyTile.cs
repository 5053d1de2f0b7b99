using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Quant;

/// <summary>
/// A 32-value weight format with one fp16 scale per block (and a min for Q4_1/Q5_1) and Q8_0 or
/// Q8_1 activations (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; MXFP4, whose scale is an exponent byte), as <see cref="LegacyTile"/> needs it:
/// the block's values as int8 and the format's per-block float step, in the order its VecDot takes it.
/// </summary>
internal unsafe interface ILegacyTileWeights
{
    /// <summary>Bytes per block.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The type's name, for errors.</summary>
    static abstract string Name { get; }

    /// <summary>The block's 32 values as int8: values 0..15, then 16..31.</summary>
    static abstract (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block);

    /// <summary>The block's scale as f32 (exact).</summary>
    static abstract float Scale(byte* block);

    /// <summary>True for the formats paired with Q8_1 activations (Q4_1, Q5_1: a block of d, s = d·Σq, 32 quants).</summary>
    static abstract bool Q8_1Acts { get; }

    /// <summary>The block's min m as f32 (Q4_1, Q5_1), else 0.</summary>
    static abstract float Min(byte* block);

    /// <summary>
    /// The per-block float terms of four activations, lane by lane: the format's VecDot term for
    /// integer sum <paramref name="sumi"/> (already f32, exact), weight scale <paramref name="dx"/>
    /// and min <paramref name="mx"/> (broadcast), activation scales <paramref name="dy"/> and
    /// (Q8_1) sums <paramref name="sy"/>, with the same operations in the same order.
    /// </summary>
    static abstract Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy);

    /// <summary>The format's VecDot term for one block (its <c>Term</c>): integer sum <paramref name="sumi"/>, weight block, activation block.</summary>
    static abstract float Term(int sumi, byte* block, byte* act);
}

/// <summary>Q4_0: <c>sumi · dx · dy</c> (<see cref="Q4_0.Term"/>).</summary>
internal readonly unsafe struct Q4_0TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockQ4_0);
    public static string Name => "Q4_0";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => Q4_0.Split((BlockQ4_0*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ4_0*)block)->D);
    public static bool Q8_1Acts => false;
    public static float Min(byte* block) => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => sumi * dx * dy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => Q4_0.Term(sumi, (BlockQ4_0*)block, (BlockQ8_0*)act);
}

/// <summary>Q8_0: <c>sumi · (dx · dy)</c> (<see cref="Q8_0.Term"/>).</summary>
internal readonly unsafe struct Q8_0TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockQ8_0);
    public static string Name => "Q8_0";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => Q8_0.Split((BlockQ8_0*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ8_0*)block)->D);
    public static bool Q8_1Acts => false;
    public static float Min(byte* block) => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => sumi * (dx * dy);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => Q8_0.Term(sumi, (BlockQ8_0*)block, (BlockQ8_0*)act);
}

/// <summary>Q5_0: <c>dx · dy · sumi</c> (<see cref="Q5_0.Term"/>).</summary>
internal readonly unsafe struct Q5_0TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockQ5_0);
    public static string Name => "Q5_0";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => Q5_0.Split((BlockQ5_0*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ5_0*)block)->D);
    public static bool Q8_1Acts => false;
    public static float Min(byte* block) => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => dx * dy * sumi;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => Q5_0.Term(sumi, (BlockQ5_0*)block, (BlockQ8_0*)act);
}

/// <summary>IQ4_NL: <c>dx · dy · sumi</c> (<see cref="IQ4_NL.Term"/>).</summary>
internal readonly unsafe struct IQ4_NLTileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockIQ4_NL);
    public static string Name => "IQ4_NL";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => IQ4_NL.Split((BlockIQ4_NL*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockIQ4_NL*)block)->D);
    public static bool Q8_1Acts => false;
    public static float Min(byte* block) => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => dx * dy * sumi;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => IQ4_NL.Term(sumi, (BlockIQ4_NL*)block, (BlockQ8_0*)act);
}

/// <summary>MXFP4: <c>dx · dy · sumi</c> with dx the exact half scale of the exponent byte (<see cref="MXFP4.ScaleHalf"/>), Q8_0 activations.</summary>
internal readonly unsafe struct MXFP4TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockMXFP4);
    public static string Name => "MXFP4";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => MXFP4.Split((BlockMXFP4*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => MXFP4.ScaleHalf(((BlockMXFP4*)block)->E);
    public static bool Q8_1Acts => false;
    public static float Min(byte* block) => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => dx * dy * sumi;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => MXFP4.Term(sumi, (BlockMXFP4*)block, (BlockQ8_0*)act);
}

/// <summary>Q4_1: <c>dx · dy · sumi + mx · sy</c> (<see cref="Q4_1.Term"/>), Q8_1 activations.</summary>
internal readonly unsafe struct Q4_1TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockQ4_1);
    public static string Name => "Q4_1";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => Q4_1.Split((BlockQ4_1*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ4_1*)block)->D);
    public static bool Q8_1Acts => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Min(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ4_1*)block)->M);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => dx * dy * sumi + mx * sy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => Q4_1.Term(sumi, (BlockQ4_1*)block, (BlockQ8_1*)act);
}

/// <summary>Q5_1: <c>dx · dy · sumi + mx · sy</c> (<see cref="Q5_1.Term"/>), Q8_1 activations.</summary>
internal readonly unsafe struct Q5_1TileWeights : ILegacyTileWeights
{
    public static int BlockBytes => sizeof(BlockQ5_1);
    public static string Name => "Q5_1";
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Values(byte* block) => Q5_1.Split((BlockQ5_1*)block);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ5_1*)block)->D);
    public static bool Q8_1Acts => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Min(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ5_1*)block)->M);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Terms(Vector128<float> sumi, Vector128<float> dx, Vector128<float> dy, Vector128<float> mx, Vector128<float> sy) => dx * dy * sumi + mx * sy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, byte* block, byte* act) => Q5_1.Term(sumi, (BlockQ5_1*)block, (BlockQ8_1*)act);
}

/// <summary>
/// The prompt tile (<see cref="WeightFormat.VecDotTile"/>) of the 32-value formats (Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, IQ4_NL) on 128-bit SIMD: NEON with the dot-product extension (Raspberry Pi 5, most
/// Android arm64 phones), plain NEON (Raspberry Pi 4), and portable Vector128 elsewhere. On x64
/// with AVX2 the repacked layouts and the AVX2/AVX-512 tiles serve instead.
/// <para>
/// Two weight rows meet four activation rows per block. Against one VecDot per (row,
/// activation), which unpacks the weight block, converts both fp16 scales and sums its lanes
/// across for every pair, the tile unpacks each weight block and converts its scale once per
/// four activations, loads each activation block once per two rows, folds the eight pairs' lane
/// vectors into one vector of four block sums per row with three pairwise adds
/// (<see cref="IBlockDotLanes.AddPairwise"/>, instead of eight reductions across lanes), and
/// does the float steps for four activations at once. Activation scales are converted once per
/// tile, not once per row.
/// </para>
/// <para>
/// Per (row, activation) the arithmetic is the format's VecDot: the same exact integer block
/// sum, then the same float operations in the same order (<see cref="ILegacyTileWeights.Terms"/>,
/// then one add into the row's sum, blocks in order), so results equal VecDot bit for bit and the
/// references too (<c>edgellm selftest</c> and the tests check it). The loops are written by hand:
/// no library offers int8 block dot products with ggml's per-block scales.
/// </para>
/// </summary>
internal static unsafe class LegacyTile
{
    /// <summary>Values per block.</summary>
    public const int QK = 32;

    /// <summary>Activation rows per pass.</summary>
    private const int Acts = 4;

    /// <summary>Blocks whose activation scales go on the stack (4 × 4 bytes each); longer rows use the heap.</summary>
    private const int MaxStackBlocks = 2048;

    /// <summary>True where <see cref="Dot{TW}"/> has a SIMD path (NEON, or any accelerated Vector128).</summary>
    public static bool IsSupported => AdvSimd.Arm64.IsSupported || Vector128.IsHardwareAccelerated;

    /// <summary>The tile on this CPU's best 128-bit path: NEON with DotProd, plain NEON, else portable Vector128.</summary>
    public static void Dot<TW>(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
        where TW : struct, ILegacyTileWeights
    {
        if (AdvSimd.Arm64.IsSupported && Dp.IsSupported) Dot<TW, AdvSimdDpBlockDot>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else if (AdvSimd.Arm64.IsSupported) Dot<TW, AdvSimdBlockDot>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else Dot<TW, Vector128BlockDot>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · activation a, with <typeparamref name="TDot"/>'s integer lanes
    /// (tests and <c>edgellm selftest</c> call each strategy the CPU has).
    /// </summary>
    internal static void Dot<TW, TDot>(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
        where TW : struct, ILegacyTileWeights where TDot : struct, IBlockDotLanes
    {
        QuantMath.CheckBlocks(n, QK, TW.Name);
        if (nRows <= 0 || nActs <= 0) return;
        int nb = n / QK;
        // Per block, the four activations' scales (dy) and, for Q8_1, their sums (sy).
        int tables = TW.Q8_1Acts ? 2 : 1;
        float[]? heap = nb > MaxStackBlocks ? new float[tables * nb * Acts] : null;
        float* stack = stackalloc float[heap is null ? tables * nb * Acts : 0];
        fixed (float* pinned = heap)
        {
            float* dy = heap is null ? stack : pinned;
            float* sy = dy + nb * Acts;
            for (int a0 = 0; a0 < nActs; a0 += Acts)
            {
                int na = Math.Min(Acts, nActs - a0);
                // A short pass repeats its last activation row in the missing lanes (computed, never stored).
                byte* p0 = acts + a0 * actStride;
                byte* p1 = acts + (a0 + Math.Min(1, na - 1)) * actStride;
                byte* p2 = acts + (a0 + Math.Min(2, na - 1)) * actStride;
                byte* p3 = acts + (a0 + Math.Min(3, na - 1)) * actStride;
                for (int ib = 0; ib < nb; ib++)
                {
                    dy[ib * Acts] = ActScale<TW>(p0, ib);
                    dy[ib * Acts + 1] = ActScale<TW>(p1, ib);
                    dy[ib * Acts + 2] = ActScale<TW>(p2, ib);
                    dy[ib * Acts + 3] = ActScale<TW>(p3, ib);
                    if (TW.Q8_1Acts)
                    {
                        sy[ib * Acts] = QuantMath.Fp16ToFp32Fast(((BlockQ8_1*)p0)[ib].S);
                        sy[ib * Acts + 1] = QuantMath.Fp16ToFp32Fast(((BlockQ8_1*)p1)[ib].S);
                        sy[ib * Acts + 2] = QuantMath.Fp16ToFp32Fast(((BlockQ8_1*)p2)[ib].S);
                        sy[ib * Acts + 3] = QuantMath.Fp16ToFp32Fast(((BlockQ8_1*)p3)[ib].S);
                    }
                }
                float* ya = y + a0 * yStride;
                int r = 0;
                for (; r + 2 <= nRows; r += 2)
                {
                    var (s0, s1) = Rows2<TW, TDot>(nb, weights + r * rowBytes, weights + (r + 1) * rowBytes, p0, p1, p2, p3, dy, sy);
                    Store(s0, ya + r, yStride, na);
                    Store(s1, ya + r + 1, yStride, na);
                }
                if (r < nRows) Store(Rows1<TW, TDot>(nb, weights + r * rowBytes, p0, p1, p2, p3, dy, sy), ya + r, yStride, na);
            }
        }
    }

    /// <summary>
    /// One weight row's dot with one activation row, the formats' NEON VecDot (and any <see cref="IBlockDot"/>): per
    /// block <typeparamref name="TDot"/>'s exact integer sum, then the format's float term (<see cref="ILegacyTileWeights.Term"/>)
    /// added in block order, so the result equals the scalar reference bit for bit.
    /// </summary>
    internal static float DotRow<TW, TDot>(int n, byte* x, byte* y) where TW : struct, ILegacyTileWeights where TDot : struct, IBlockDot
    {
        QuantMath.CheckBlocks(n, QK, TW.Name);
        int actBytes = TW.Q8_1Acts ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            byte* xb = x + ib * TW.BlockBytes;
            var (a0, a1) = TW.Values(xb);
            var (y0, y1) = ActQuants<TW>(y, ib);
            sumf += TW.Term(TDot.Dot(a0, a1, y0, y1), xb, y + ib * actBytes);
        }
        return sumf;
    }

    /// <summary>The 32 quants of activation block <paramref name="ib"/> of row <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) ActQuants<TW>(byte* p, int ib) where TW : struct, ILegacyTileWeights =>
        QuantMath.LoadI8x32(TW.Q8_1Acts ? ((BlockQ8_1*)p)[ib].Qs : ((BlockQ8_0*)p)[ib].Qs);

    /// <summary>The scale of activation block <paramref name="ib"/> of row <paramref name="p"/> as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ActScale<TW>(byte* p, int ib) where TW : struct, ILegacyTileWeights =>
        QuantMath.Fp16ToFp32Fast(TW.Q8_1Acts ? ((BlockQ8_1*)p)[ib].D : ((BlockQ8_0*)p)[ib].D);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector128<float> s, float* y, long yStride, int na)
    {
        y[0] = s.GetElement(0);
        if (na > 1) y[yStride] = s.GetElement(1);
        if (na > 2) y[2 * yStride] = s.GetElement(2);
        if (na > 3) y[3 * yStride] = s.GetElement(3);
    }

    /// <summary>Two weight rows against four activation rows: lane a of each result is that row's dot with activation a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the hot loop: compiled fully optimized at once
    private static (Vector128<float>, Vector128<float>) Rows2<TW, TDot>(int nb, byte* w0, byte* w1, byte* p0, byte* p1, byte* p2, byte* p3, float* dy, float* sy)
        where TW : struct, ILegacyTileWeights where TDot : struct, IBlockDotLanes
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        int bb = TW.BlockBytes;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* b0 = w0 + (long)ib * bb;
            byte* b1 = w1 + (long)ib * bb;
            var (x0l, x0h) = TW.Values(b0);
            var (x1l, x1h) = TW.Values(b1);
            var (y0l, y0h) = ActQuants<TW>(p0, ib);
            var s00 = TDot.Lanes(x0l, x0h, y0l, y0h);
            var s10 = TDot.Lanes(x1l, x1h, y0l, y0h);
            var (y1l, y1h) = ActQuants<TW>(p1, ib);
            var s01 = TDot.Lanes(x0l, x0h, y1l, y1h);
            var s11 = TDot.Lanes(x1l, x1h, y1l, y1h);
            var (y2l, y2h) = ActQuants<TW>(p2, ib);
            var s02 = TDot.Lanes(x0l, x0h, y2l, y2h);
            var s12 = TDot.Lanes(x1l, x1h, y2l, y2h);
            var (y3l, y3h) = ActQuants<TW>(p3, ib);
            var s03 = TDot.Lanes(x0l, x0h, y3l, y3h);
            var s13 = TDot.Lanes(x1l, x1h, y3l, y3h);
            var i0 = TDot.AddPairwise(TDot.AddPairwise(s00, s01), TDot.AddPairwise(s02, s03));
            var i1 = TDot.AddPairwise(TDot.AddPairwise(s10, s11), TDot.AddPairwise(s12, s13));
            var d = Vector128.Load(dy + ib * Acts);
            var sv = TW.Q8_1Acts ? Vector128.Load(sy + ib * Acts) : default;
            acc0 += TW.Terms(Vector128.ConvertToSingle(i0), Vector128.Create(TW.Scale(b0)), d, Vector128.Create(TW.Min(b0)), sv);
            acc1 += TW.Terms(Vector128.ConvertToSingle(i1), Vector128.Create(TW.Scale(b1)), d, Vector128.Create(TW.Min(b1)), sv);
        }
        return (acc0, acc1);
    }

    /// <summary>One weight row against four activation rows (the odd row of a tile).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Rows1<TW, TDot>(int nb, byte* w0, byte* p0, byte* p1, byte* p2, byte* p3, float* dy, float* sy)
        where TW : struct, ILegacyTileWeights where TDot : struct, IBlockDotLanes
    {
        var acc = Vector128<float>.Zero;
        int bb = TW.BlockBytes;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* b0 = w0 + (long)ib * bb;
            var (xl, xh) = TW.Values(b0);
            var (y0l, y0h) = ActQuants<TW>(p0, ib);
            var (y1l, y1h) = ActQuants<TW>(p1, ib);
            var (y2l, y2h) = ActQuants<TW>(p2, ib);
            var (y3l, y3h) = ActQuants<TW>(p3, ib);
            var i = TDot.AddPairwise(TDot.AddPairwise(TDot.Lanes(xl, xh, y0l, y0h), TDot.Lanes(xl, xh, y1l, y1h)),
                TDot.AddPairwise(TDot.Lanes(xl, xh, y2l, y2h), TDot.Lanes(xl, xh, y3l, y3h)));
            var sv = TW.Q8_1Acts ? Vector128.Load(sy + ib * Acts) : default;
            acc += TW.Terms(Vector128.ConvertToSingle(i), Vector128.Create(TW.Scale(b0)), Vector128.Load(dy + ib * Acts), Vector128.Create(TW.Min(b0)), sv);
        }
        return acc;
    }
}
