using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// Prompt processing (many activation rows against the same weights) on AVX-512BW, computing
// exactly what DotQ8_0Q8_0Avx2Fma computes for every (row, activation) pair.
internal static unsafe partial class Q8_0
{
    /// <summary>Activation pairs per register tile: 2 weight rows × 4 pairs (8 activations) = 16 accumulators (even and odd blocks).</summary>
    private const int TilePairs = 4;

    /// <summary>Bytes per (block, activation pair) in the packed tile: two 64-byte int16 halves + 64 bytes of scales.</summary>
    private const int PairBytes = 192;

    /// <summary>The AVX-512 register tile runs where the AVX2+FMA VecDot is the decode kernel and AVX-512BW exists.</summary>
    internal static bool UseAvx512Tile => UseAvx2Fma && Avx512BW.IsSupported;

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> on AVX-512BW, bit-identical to
    /// <see cref="DotQ8_0Q8_0Avx2Fma"/> for every pair. One 512-bit accumulator holds the
    /// 8-lane accumulators of two activation rows (low half: activation 2p, high half: 2p+1).
    /// <code>
    /// packed activation tile, per block ib, per pair p (192 bytes, ggml block_q8_0 source):
    ///   [ y_2p[0..15] | y_2p+1[0..15] ] [ y_2p[16..31] | y_2p+1[16..31] ]  as int16
    ///   [ d_2p (8 x f32) | d_2p+1 (8 x f32) ]
    /// per (weight row, pair), with the row's quants widened and repeated in both halves:
    ///   s  = vpmaddwd([x0..15 | x0..15], Y1) + vpmaddwd([x16..31 | x16..31], Y2)
    ///   acc = fma(dx·dy, f32(s), acc)          even blocks into e, odd into o
    /// </code>
    /// Lane k of a half is x[2k]y[2k] + x[2k+1]y[2k+1] + x[16+2k]y[16+2k] + x[17+2k]y[17+2k],
    /// the AVX2 kernel's lane (exact in int32 for any int8, -128 included); scales, FMAs and the
    /// final Vector256.Sum(e + o) per half are the same operations.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        if (nActs == 1)
        {
            // decode: nothing to share, the vector kernel as VecDot
            for (int r = 0; r < nRows; r++) y[r] = DotQ8_0Q8_0Avx2Fma(n, weights + r * rowBytes, acts);
            return;
        }
        const long TileBytesPerBlock = TilePairs * PairBytes;
        long tileBytes = nb * TileBytesPerBlock;
        byte* packed = TileScratch.Packed(s_packTile, nb, acts, actStride, (long)nb * sizeof(BlockQ8_0), nActs, tileBytes);
        for (int a0 = 0; a0 < nActs; a0 += 2 * TilePairs)
        {
            int na = Math.Min(2 * TilePairs, nActs - a0);
            byte* pack = packed + a0 / (2 * TilePairs) * tileBytes;
            int r = 0;
            for (; r + 2 <= nRows; r += 2)
                Tile2x8(nb, (BlockQ8_0*)(weights + r * rowBytes), (BlockQ8_0*)(weights + (r + 1) * rowBytes), pack, y + a0 * yStride + r, yStride, na);
            if (r < nRows)
                Tile1x8(nb, (BlockQ8_0*)(weights + r * rowBytes), pack, y + a0 * yStride + r, yStride, na);
        }
    }

    private static readonly TileScratch.PackTile s_packTile = PackActivations;

    /// <summary>Writes <paramref name="na"/> (≤ 8) Q8_0 activation rows in the tile layout; missing rows are zeros (computed, never stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackActivations(int nb, byte* acts, long actStride, int na, byte* pack)
    {
        for (int a = 0; a < 2 * TilePairs; a++)
        {
            // activation a is half (a & 1) of pair a >> 1
            byte* dst = pack + (a >> 1) * PairBytes + (a & 1) * 32;
            if (a >= na)
            {
                for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
                {
                    Vector256<short>.Zero.Store((short*)dst);
                    Vector256<short>.Zero.Store((short*)(dst + 64));
                    Vector256<float>.Zero.Store((float*)(dst + 128));
                }
                continue;
            }
            var src = (BlockQ8_0*)(acts + a * actStride);
            for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
            {
                Avx2.ConvertToVector256Int16(Vector128.Load(src[ib].Qs)).Store((short*)dst);
                Avx2.ConvertToVector256Int16(Vector128.Load(src[ib].Qs + 16)).Store((short*)(dst + 64));
                Vector256.Create(QuantMath.Fp16ToFp32Fast(src[ib].D)).Store((float*)(dst + 128));
            }
        }
    }

    /// <summary>Quants [from, from + 16) of a weight block widened to int16, in both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Widened(BlockQ8_0* x, int from)
    {
        var v = Avx2.ConvertToVector256Int16(Vector128.Load(x->Qs + from));
        // One vinserti64x4: Vector512.Create(v, v) goes through a stack temporary.
        return Avx512F.InsertVector256(v.ToVector512Unsafe(), v, 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scale(BlockQ8_0* x) => Vector512.Create(QuantMath.Fp16ToFp32Fast(x->D));

    /// <summary>acc + (dx·dy)·f32(lane sums) for one weight block and one activation pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mac(Vector512<float> acc, byte* pair, Vector512<short> lo, Vector512<short> hi, Vector512<float> dx)
    {
        var sums = Avx512BW.MultiplyAddAdjacent(Vector512.Load((short*)pair), lo) + Avx512BW.MultiplyAddAdjacent(Vector512.Load((short*)(pair + 64)), hi);
        return Avx512F.FusedMultiplyAdd(dx * Vector512.Load((float*)(pair + 128)), Avx512F.ConvertToVector512Single(sums), acc);
    }

    /// <summary>Stores the two activations' results of one pair accumulator: Vector256.Sum(e + o) per half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePair(Vector512<float> e, Vector512<float> o, float* y, long yStride, int pair, int na)
    {
        var s = e + o;
        int a = 2 * pair;
        if (a < na) y[a * yStride] = Vector256.Sum(s.GetLower());
        if (a + 1 < na) y[(a + 1) * yStride] = Vector256.Sum(s.GetUpper());
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile2x8(int nb, BlockQ8_0* x0, BlockQ8_0* x1, byte* pack, float* y, long yStride, int na)
    {
        Vector512<float> e00 = default, e01 = default, e02 = default, e03 = default;
        Vector512<float> e10 = default, e11 = default, e12 = default, e13 = default;
        Vector512<float> o00 = default, o01 = default, o02 = default, o03 = default;
        Vector512<float> o10 = default, o11 = default, o12 = default, o13 = default;
        const int BlockBytes = TilePairs * PairBytes;
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var l0 = Widened(x0 + ib, 0);
            var h0 = Widened(x0 + ib, 16);
            var d0 = Scale(x0 + ib);
            var l1 = Widened(x1 + ib, 0);
            var h1 = Widened(x1 + ib, 16);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, l0, h0, d0);
            e10 = Mac(e10, p, l1, h1, d1);
            e01 = Mac(e01, p + PairBytes, l0, h0, d0);
            e11 = Mac(e11, p + PairBytes, l1, h1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, l0, h0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, l1, h1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, l0, h0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, l1, h1, d1);
            p += BlockBytes;
            l0 = Widened(x0 + ib + 1, 0);
            h0 = Widened(x0 + ib + 1, 16);
            d0 = Scale(x0 + ib + 1);
            l1 = Widened(x1 + ib + 1, 0);
            h1 = Widened(x1 + ib + 1, 16);
            d1 = Scale(x1 + ib + 1);
            o00 = Mac(o00, p, l0, h0, d0);
            o10 = Mac(o10, p, l1, h1, d1);
            o01 = Mac(o01, p + PairBytes, l0, h0, d0);
            o11 = Mac(o11, p + PairBytes, l1, h1, d1);
            o02 = Mac(o02, p + 2 * PairBytes, l0, h0, d0);
            o12 = Mac(o12, p + 2 * PairBytes, l1, h1, d1);
            o03 = Mac(o03, p + 3 * PairBytes, l0, h0, d0);
            o13 = Mac(o13, p + 3 * PairBytes, l1, h1, d1);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var l0 = Widened(x0 + ib, 0);
            var h0 = Widened(x0 + ib, 16);
            var d0 = Scale(x0 + ib);
            var l1 = Widened(x1 + ib, 0);
            var h1 = Widened(x1 + ib, 16);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, l0, h0, d0);
            e10 = Mac(e10, p, l1, h1, d1);
            e01 = Mac(e01, p + PairBytes, l0, h0, d0);
            e11 = Mac(e11, p + PairBytes, l1, h1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, l0, h0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, l1, h1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, l0, h0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, l1, h1, d1);
        }
        StorePair(e00, o00, y, yStride, 0, na);
        StorePair(e01, o01, y, yStride, 1, na);
        StorePair(e02, o02, y, yStride, 2, na);
        StorePair(e03, o03, y, yStride, 3, na);
        StorePair(e10, o10, y + 1, yStride, 0, na);
        StorePair(e11, o11, y + 1, yStride, 1, na);
        StorePair(e12, o12, y + 1, yStride, 2, na);
        StorePair(e13, o13, y + 1, yStride, 3, na);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x8(int nb, BlockQ8_0* x0, byte* pack, float* y, long yStride, int na)
    {
        Vector512<float> e00 = default, e01 = default, e02 = default, e03 = default;
        Vector512<float> o00 = default, o01 = default, o02 = default, o03 = default;
        const int BlockBytes = TilePairs * PairBytes;
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var l0 = Widened(x0 + ib, 0);
            var h0 = Widened(x0 + ib, 16);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, l0, h0, d0);
            e01 = Mac(e01, p + PairBytes, l0, h0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, l0, h0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, l0, h0, d0);
            p += BlockBytes;
            l0 = Widened(x0 + ib + 1, 0);
            h0 = Widened(x0 + ib + 1, 16);
            d0 = Scale(x0 + ib + 1);
            o00 = Mac(o00, p, l0, h0, d0);
            o01 = Mac(o01, p + PairBytes, l0, h0, d0);
            o02 = Mac(o02, p + 2 * PairBytes, l0, h0, d0);
            o03 = Mac(o03, p + 3 * PairBytes, l0, h0, d0);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var l0 = Widened(x0 + ib, 0);
            var h0 = Widened(x0 + ib, 16);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, l0, h0, d0);
            e01 = Mac(e01, p + PairBytes, l0, h0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, l0, h0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, l0, h0, d0);
        }
        StorePair(e00, o00, y, yStride, 0, na);
        StorePair(e01, o01, y, yStride, 1, na);
        StorePair(e02, o02, y, yStride, 2, na);
        StorePair(e03, o03, y, yStride, 3, na);
    }
}
