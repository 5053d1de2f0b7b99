using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// Prompt processing (many activation rows against the same weights) on AVX-512BW, computing
// exactly what DotQ4_0Q8_0Avx2Fma computes for every (row, activation) pair.
internal static unsafe partial class Q4_0
{
    /// <summary>Activation pairs per register tile: 2 weight rows × 4 pairs (8 activations) = 16 accumulators (even and odd blocks).</summary>
    private const int TilePairs = 4;

    /// <summary>Bytes per (block, activation pair) in the packed tile: 64 bytes of quants, 64 of offset corrections, 64 of scales.</summary>
    private const int PairBytes = 192;

    /// <summary>The AVX-512 register tile runs where the AVX2+FMA VecDot is the decode kernel and AVX-512BW exists.</summary>
    internal static bool UseAvx512Tile => UseAvx2Fma && Avx512BW.IsSupported;

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> on AVX-512BW, bit-identical to
    /// <see cref="DotQ4_0Q8_0Avx2Fma"/> for every pair. One 512-bit accumulator holds the
    /// 8-lane accumulators of two activation rows (low half: activation 2p, high half: 2p+1),
    /// so each weight block, unpacked once, meets two activations per instruction.
    /// <code>
    /// packed activation tile, per block ib, per pair p (192 bytes, ggml block_q8_0 source):
    ///   [ y_2p (32 x s8) | y_2p+1 (32 x s8) ]  [ 8·Σ4 y_2p (8 x i32) | 8·Σ4 y_2p+1 (8 x i32) ]
    ///   [ d_2p (8 x f32) | d_2p+1 (8 x f32) ]
    /// per weight block: q = [qs | qs | qs | qs] (one broadcast load), vpsrlvw by [0 | 4 | 0 | 4],
    ///   &amp; 0x0F = [nib | nib]: the block's 32 quants (element order) in both halves
    /// per (weight row, pair):
    ///   s  = vpmaddwd(vpmaddubsw(nib, y), 1) - 8·Σ4 y      = Σ4 (nib - 8)·y per int32 lane
    ///   acc = fma(dx·dy, f32(s), acc)                    even blocks into e, odd into o
    /// </code>
    /// The lane sums, the scale products and the FMAs are those of the AVX2 kernel (integer sums
    /// are exact; taking the -8 offset out as a per-activation correction does not change them),
    /// and each half is reduced with Vector256.Sum(e + o) as there.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        if (nActs == 1)
        {
            // decode: nothing to share, the vector kernel as VecDot. (A 512-bit version of it, two
            // blocks per instruction, measured 3.5x slower in generation here: 4.2 vs 14.0 tok/s,
            // TinyLlama-shape Q4_0, 2 threads, 2026-11-29; removed.)
            for (int r = 0; r < nRows; r++) y[r] = DotQ4_0Q8_0Avx2Fma(n, weights + r * rowBytes, acts);
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
                Tile2x8(nb, (BlockQ4_0*)(weights + r * rowBytes), (BlockQ4_0*)(weights + (r + 1) * rowBytes), pack, y + a0 * yStride + r, yStride, na);
            if (r < nRows)
                Tile1x8(nb, (BlockQ4_0*)(weights + r * rowBytes), pack, y + a0 * yStride + r, yStride, na);
        }
    }

    private static readonly TileScratch.PackTile s_packTile = PackActivations;

    /// <summary>Writes <paramref name="na"/> (≤ 8) Q8_0 activation rows in the tile layout; missing rows are zeros (computed, never stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackActivations(int nb, byte* acts, long actStride, int na, byte* pack)
    {
        var eight = Vector256.Create((byte)8);
        for (int a = 0; a < 2 * TilePairs; a++)
        {
            // activation a is half (a & 1) of pair a >> 1
            byte* dst = pack + (a >> 1) * PairBytes + (a & 1) * 32;
            if (a >= na)
            {
                for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
                {
                    Vector256<byte>.Zero.Store(dst);
                    Vector256<byte>.Zero.Store(dst + 64);
                    Vector256<byte>.Zero.Store(dst + 128);
                }
                continue;
            }
            var src = (BlockQ8_0*)(acts + a * actStride);
            for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
            {
                var q = Vector256.Load(src[ib].Qs);
                q.Store((sbyte*)dst);
                // 8·(y0 + y1 + y2 + y3) per lane, the grouping vpmaddubsw + vpmaddwd use
                Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(eight, q), Vector256.Create((short)1)).Store((int*)(dst + 64));
                Vector256.Create(QuantMath.Fp16ToFp32Fast(src[ib].D)).Store((float*)(dst + 128));
            }
        }
    }

    /// <summary>One weight block's 32 quants in [0, 15] (element order), in both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Nibbles(BlockQ4_0* x, Vector512<ushort> shifts, Vector512<byte> low)
    {
        var q = Avx512F.BroadcastVector128ToVector512((uint*)x->Qs); // [qs | qs | qs | qs]
        return Avx512BW.ShiftRightLogicalVariable(q.AsUInt16(), shifts).AsByte() & low;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scale(BlockQ4_0* x) => Vector512.Create(QuantMath.Fp16ToFp32Fast(x->D));

    /// <summary>acc + (dx·dy)·f32(Σ4 (nib - 8)·y) for one weight block and one activation pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mac(Vector512<float> acc, byte* pair, Vector512<byte> nib, Vector512<float> dx)
    {
        var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(nib, Vector512.Load((sbyte*)pair)), Vector512<short>.One) - Vector512.Load((int*)(pair + 64));
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
    private static void Tile2x8(int nb, BlockQ4_0* x0, BlockQ4_0* x1, byte* pack, float* y, long yStride, int na)
    {
        Vector512<float> e00 = default, e01 = default, e02 = default, e03 = default;
        Vector512<float> e10 = default, e11 = default, e12 = default, e13 = default;
        Vector512<float> o00 = default, o01 = default, o02 = default, o03 = default;
        Vector512<float> o10 = default, o11 = default, o12 = default, o13 = default;
        const int BlockBytes = TilePairs * PairBytes;
        var shift4 = Vector256.Create(Vector128<ushort>.Zero, Vector128.Create((ushort)4));
        var shifts = Vector512.Create(shift4, shift4);
        var low = Vector512.Create((byte)0x0F);
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = Nibbles(x0 + ib, shifts, low);
            var d0 = Scale(x0 + ib);
            var w1 = Nibbles(x1 + ib, shifts, low);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, w0, d0);
            e10 = Mac(e10, p, w1, d1);
            e01 = Mac(e01, p + PairBytes, w0, d0);
            e11 = Mac(e11, p + PairBytes, w1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, w0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, w1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, w0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, w1, d1);
            p += BlockBytes;
            w0 = Nibbles(x0 + ib + 1, shifts, low);
            d0 = Scale(x0 + ib + 1);
            w1 = Nibbles(x1 + ib + 1, shifts, low);
            d1 = Scale(x1 + ib + 1);
            o00 = Mac(o00, p, w0, d0);
            o10 = Mac(o10, p, w1, d1);
            o01 = Mac(o01, p + PairBytes, w0, d0);
            o11 = Mac(o11, p + PairBytes, w1, d1);
            o02 = Mac(o02, p + 2 * PairBytes, w0, d0);
            o12 = Mac(o12, p + 2 * PairBytes, w1, d1);
            o03 = Mac(o03, p + 3 * PairBytes, w0, d0);
            o13 = Mac(o13, p + 3 * PairBytes, w1, d1);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = Nibbles(x0 + ib, shifts, low);
            var d0 = Scale(x0 + ib);
            var w1 = Nibbles(x1 + ib, shifts, low);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, w0, d0);
            e10 = Mac(e10, p, w1, d1);
            e01 = Mac(e01, p + PairBytes, w0, d0);
            e11 = Mac(e11, p + PairBytes, w1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, w0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, w1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, w0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, w1, d1);
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
    private static void Tile1x8(int nb, BlockQ4_0* x0, byte* pack, float* y, long yStride, int na)
    {
        Vector512<float> e00 = default, e01 = default, e02 = default, e03 = default;
        Vector512<float> o00 = default, o01 = default, o02 = default, o03 = default;
        const int BlockBytes = TilePairs * PairBytes;
        var shift4 = Vector256.Create(Vector128<ushort>.Zero, Vector128.Create((ushort)4));
        var shifts = Vector512.Create(shift4, shift4);
        var low = Vector512.Create((byte)0x0F);
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = Nibbles(x0 + ib, shifts, low);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, w0, d0);
            e01 = Mac(e01, p + PairBytes, w0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, w0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, w0, d0);
            p += BlockBytes;
            w0 = Nibbles(x0 + ib + 1, shifts, low);
            d0 = Scale(x0 + ib + 1);
            o00 = Mac(o00, p, w0, d0);
            o01 = Mac(o01, p + PairBytes, w0, d0);
            o02 = Mac(o02, p + 2 * PairBytes, w0, d0);
            o03 = Mac(o03, p + 3 * PairBytes, w0, d0);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = Nibbles(x0 + ib, shifts, low);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, w0, d0);
            e01 = Mac(e01, p + PairBytes, w0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, w0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, w0, d0);
        }
        StorePair(e00, o00, y, yStride, 0, na);
        StorePair(e01, o01, y, yStride, 1, na);
        StorePair(e02, o02, y, yStride, 2, na);
        StorePair(e03, o03, y, yStride, 3, na);
    }
}
