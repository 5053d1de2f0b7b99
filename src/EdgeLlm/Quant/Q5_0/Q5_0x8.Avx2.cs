using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_0x8
{
    /// <summary>The packed kernels need AVX2 (byte multiply-add) and FMA; <see cref="WeightPacking"/> packs only then.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// How far ahead of the block being read <see cref="Group1"/> (decode) prefetches, as the other
    /// repacked decode kernels do (the hardware prefetcher alone keeps too few lines in flight on the
    /// x64 machine; see <see cref="Q4_Kx8.DecodePrefetchBytes"/>).
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    /// <summary>Activation blocks whose corrections the kernels keep on the stack (16 KiB).</summary>
    private const int MaxStackBlocks = 4096;

    /// <summary>
    /// y[r] = row r · act for <paramref name="nRows"/> rows from a group boundary: the decode product.
    /// The activation's block sums (the −16 of every weight) are formed once for all groups.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        if (!IsSupported)
        {
            DotRowsReference(n, weights, rowBytes, nRows, act, y);
            return;
        }
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        int nb = n / QK;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        // The corrections on the stack up to 16 KiB (rows of 131072 values), on the heap past that.
        int[]? heap = nb > MaxStackBlocks ? new int[nb] : null;
        int* stack = stackalloc int[heap is null ? nb : 0];
        fixed (int* ph = heap)
        {
            int* corr = ph != null ? ph : stack;
            Corrections((BlockQ8_0*)act, nb, corr);
            for (int g = 0; g < groups; g++)
                Group1(weights + g * groupBytes, nb, (BlockQ8_0*)act, corr, y + g * Rows);
        }
        for (int r = groups * Rows; r < nRows; r++) y[r] = Q5_0.DotQ5_0Q8_0(n, weights + r * rowBytes, act);
    }

    /// <summary>
    /// y[a·yStride + r] = row r · act a: the prompt tile. Each group block's values are built once and
    /// met by four activation rows (pairs of groups in one zmm where AVX-512 BW is present); per
    /// (row, activation) the arithmetic is <see cref="DotRows"/>'s.
    /// </summary>
    public static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        DotTile(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride, IsAvx512Supported);

    /// <summary><see cref="DotTile(int, byte*, long, int, byte*, long, int, float*, long)"/> with the AVX-512 pairs on or off (tests compare the two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        avx512 &= IsAvx512Supported;
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        if (!IsSupported)
        {
            WeightPacking.TileByRows(&DotRowsReference, n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
            return;
        }
        int nb = n / QK;
        int groups = nRows / Rows;
        long groupBytes = Rows * rowBytes;
        float* pad = stackalloc float[4 * Rows];
        int[]? heap = nb > MaxStackBlocks / 4 ? new int[4 * nb] : null;
        int* stack = stackalloc int[heap is null ? 4 * nb : 0];
        fixed (int* ph = heap)
        {
            int* c = ph != null ? ph : stack;
            for (int a0 = 0; a0 < nActs; a0 += 4)
            {
                int na = Math.Min(4, nActs - a0);
                byte* a = acts + a0 * actStride;
                // Two or three activations: the four-wide kernel with the last one repeated, into a
                // scratch tile (per lane the arithmetic does not depend on the neighbours).
                var x0 = (BlockQ8_0*)a;
                var x1 = (BlockQ8_0*)(a + Math.Min(1, na - 1) * actStride);
                var x2 = (BlockQ8_0*)(a + Math.Min(2, na - 1) * actStride);
                var x3 = (BlockQ8_0*)(a + Math.Min(3, na - 1) * actStride);
                Corrections(x0, nb, c);
                Corrections(x1, nb, c + nb);
                Corrections(x2, nb, c + 2 * nb);
                Corrections(x3, nb, c + 3 * nb);
                int g0 = 0;
                if (na == 4 && avx512)
                    for (; g0 + 2 <= groups; g0 += 2)
                        Group2x4(weights + g0 * groupBytes, groupBytes, nb, x0, x1, x2, x3, c, y + a0 * yStride + g0 * Rows, yStride);
                for (int g = g0; g < groups; g++)
                {
                    byte* gw = weights + g * groupBytes;
                    float* yg = y + a0 * yStride + g * Rows;
                    if (na == 4) Group4(gw, nb, x0, x1, x2, x3, c, yg, yStride);
                    else if (na == 1) Group1(gw, nb, x0, c, yg);
                    else
                    {
                        Group4(gw, nb, x0, x1, x2, x3, c, pad, Rows);
                        for (int k = 0; k < na; k++)
                            for (int r = 0; r < Rows; r++) yg[k * yStride + r] = pad[k * Rows + r];
                    }
                }
                for (int r = groups * Rows; r < nRows; r++)
                    for (int k = 0; k < na; k++)
                        y[(a0 + k) * yStride + r] = Q5_0.DotQ5_0Q8_0(n, weights + r * rowBytes, a + k * actStride);
            }
        }
    }

    /// <summary>corr[ib] = 16 · Σ of activation block ib's 32 values: the offset of the unsigned five-bit weights.</summary>
    private static void Corrections(BlockQ8_0* a, int nb, int* corr)
    {
        var ones = Vector256.Create((byte)1);
        for (int ib = 0; ib < nb; ib++)
        {
            var s = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, Vector256.Load(a[ib].Qs)), Vector256.Create((short)16));
            corr[ib] = Vector256.Sum(s);
        }
    }

    /// <summary>Bit <paramref name="bit"/> (a constant after inlining) of every byte of <paramref name="h"/> as the value 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> FifthBit(Vector256<byte> h, int bit) => Q5_Kx8.FifthBit(h, bit);

    /// <summary>
    /// The unsigned five-bit values held by quant vector k (at <paramref name="q"/> + 32k): its low
    /// (<paramref name="high"/> false) or high nibbles with their fifth bits from <paramref name="h"/>
    /// (shared with <see cref="Q5_1x8"/>, whose blocks have the same quant and fifth-bit vectors).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Values(byte* q, Vector256<byte> h, int k, bool high)
    {
        var m = Vector256.Create((byte)0x0F);
        var v = Vector256.Load(q + 32 * k);
        var nib = high ? Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m : v & m;
        return nib | FifthBit(h, high ? 4 + k : k);
    }

    /// <summary>Σ q·a over quant vectors k and k + 1 from <paramref name="o"/> (both nibbles: four products of ≤ 2·31·128 per int16, within range) as int16 pairs per row lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> Pairs(byte* o, Vector256<byte> h, int k, sbyte* x)
    {
        var p = Avx2.MultiplyAddAdjacent(Values(o, h, k, false), Vector256.Create(*(int*)(x + 4 * k)).AsSByte());
        p += Avx2.MultiplyAddAdjacent(Values(o, h, k, true), Vector256.Create(*(int*)(x + 16 + 4 * k)).AsSByte());
        p += Avx2.MultiplyAddAdjacent(Values(o, h, k + 1, false), Vector256.Create(*(int*)(x + 4 * k + 4)).AsSByte());
        p += Avx2.MultiplyAddAdjacent(Values(o, h, k + 1, true), Vector256.Create(*(int*)(x + 20 + 4 * k)).AsSByte());
        return p;
    }

    /// <summary>The eight fp16 scales at <paramref name="h16"/> as f32, exactly (<see cref="Pack"/> refuses inf/NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Widen(byte* h16) => QuantMath.HalfBitsToSingle(Avx2.ConvertToVector256Int32((ushort*)h16));

    /// <summary>One group against one activation row: eight results to <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group1(byte* g, int nb, BlockQ8_0* a, int* corr, float* y)
    {
        var ones = Vector256.Create((short)1);
        var acc = Vector256<float>.Zero;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            // The block's cache lines DecodePrefetchBytes ahead (176 bytes: three lines, one may be the next block's).
            Sse.Prefetch0(o + DecodePrefetchBytes);
            Sse.Prefetch0(o + DecodePrefetchBytes + 64);
            Sse.Prefetch0(o + DecodePrefetchBytes + 128);
            var h = Vector256.Load(o + OffH);
            sbyte* x = a[ib].Qs;
            var sumi = Avx2.MultiplyAddAdjacent(Pairs(o + OffQ, h, 0, x), ones) + Avx2.MultiplyAddAdjacent(Pairs(o + OffQ, h, 2, x), ones) - Vector256.Create(corr[ib]);
            acc = Fma.MultiplyAdd(Widen(o + OffD) * Vector256.Create(QuantMath.Fp16ToFp32Fast(a[ib].D)), Avx.ConvertToVector256Single(sumi), acc);
        }
        acc.Store(y);
    }

    /// <summary>
    /// One group against four activation rows (their corrections at <paramref name="corr"/>, nb apart):
    /// each quant vector's values built once and met by the four rows' broadcasts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group4(byte* g, int nb, BlockQ8_0* a0, BlockQ8_0* a1, BlockQ8_0* a2, BlockQ8_0* a3, int* corr, float* y, long yStride)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            var h = Vector256.Load(o + OffH);
            sbyte* x0 = a0[ib].Qs, x1 = a1[ib].Qs, x2 = a2[ib].Qs, x3 = a3[ib].Qs;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            // Vectors 0, 1 then 2, 3: four products per int16 pair sum at most, then widened.
            Half4(o + OffQ, h, 0, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            Half4(o + OffQ, h, 2, x0, x1, x2, x3, ones, ref s0, ref s1, ref s2, ref s3);
            var dx = Widen(o + OffD);
            acc0 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a0[ib].D)), Avx.ConvertToVector256Single(s0 - Vector256.Create(corr[ib])), acc0);
            acc1 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a1[ib].D)), Avx.ConvertToVector256Single(s1 - Vector256.Create(corr[nb + ib])), acc1);
            acc2 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a2[ib].D)), Avx.ConvertToVector256Single(s2 - Vector256.Create(corr[2 * nb + ib])), acc2);
            acc3 = Fma.MultiplyAdd(dx * Vector256.Create(QuantMath.Fp16ToFp32Fast(a3[ib].D)), Avx.ConvertToVector256Single(s3 - Vector256.Create(corr[3 * nb + ib])), acc3);
        }
        acc0.Store(y);
        acc1.Store(y + yStride);
        acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride);
    }

    /// <summary>Quant vectors k and k + 1 from <paramref name="o"/> against four activation rows, widened into each row's int32 sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Half4(byte* o, Vector256<byte> h, int k, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector256<short> ones,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
        Mac4(Values(o, h, k, false), 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(o, h, k, true), 16 + 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(o, h, k + 1, false), 4 * k + 4, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        Mac4(Values(o, h, k + 1, true), 20 + 4 * k, x0, x1, x2, x3, ref p0, ref p1, ref p2, ref p3);
        s0 += Avx2.MultiplyAddAdjacent(p0, ones);
        s1 += Avx2.MultiplyAddAdjacent(p1, ones);
        s2 += Avx2.MultiplyAddAdjacent(p2, ones);
        s3 += Avx2.MultiplyAddAdjacent(p3, ones);
    }

    /// <summary>Values <paramref name="w"/> against the four rows' activation bytes at <paramref name="at"/> .. at + 4, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mac4(Vector256<byte> w, int at, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        p0 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x0 + at)).AsSByte());
        p1 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x1 + at)).AsSByte());
        p2 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x2 + at)).AsSByte());
        p3 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x3 + at)).AsSByte());
    }
}
