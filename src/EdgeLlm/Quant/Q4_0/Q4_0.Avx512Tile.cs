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

    /// <summary>Bytes per (block, activation pair) in the packed tile: 64 bytes of quants + 64 of scales.</summary>
    private const int PairBytes = 128;

    /// <summary>The AVX-512 register tile runs where the AVX2+FMA VecDot is the decode kernel and AVX-512BW exists.</summary>
    internal static bool UseAvx512Tile => UseAvx2Fma && Avx512BW.IsSupported;

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> on AVX-512BW, bit-identical to
    /// <see cref="DotQ4_0Q8_0Avx2Fma"/> for every pair. One 512-bit accumulator holds the
    /// 8-lane accumulators of two activation rows (low half: activation 2p, high half: 2p+1),
    /// so each weight block, unpacked once, meets two activations per instruction.
    /// <code>
    /// packed activation tile, per block ib, per pair p (128 bytes, ggml block_q8_0 source):
    ///   [ y_2p + 128 (32 x u8) | y_2p+1 + 128 (32 x u8) | d_2p (8 x f32) | d_2p+1 (8 x f32) ]
    /// per (weight row, pair):
    ///   w  = [nib - 8 | nib - 8]                        32 x s8, both halves (the block's element order)
    ///   s  = vpmaddwd(vpmaddubsw(y + 128, w), 1) - 128·Σ4 w    = Σ4 (nib - 8)·y per int32 lane
    ///   acc = fma(dx·dy, f32(s), acc)                    even blocks into e, odd into o
    /// </code>
    /// The lane sums, the scale products and the FMAs are those of the AVX2 kernel (integer sums
    /// are exact; moving the act's sign offset (+128) into a per-row correction does not change
    /// them), and each half is reduced with Vector256.Sum(e + o) as there.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx512Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        int nb = n / QK;
        byte* pack = TileScratch.Get((long)nb * TilePairs * PairBytes);
        for (int a0 = 0; a0 < nActs; a0 += 2 * TilePairs)
        {
            int na = Math.Min(2 * TilePairs, nActs - a0);
            PackActivations(nb, acts + a0 * actStride, actStride, na, pack);
            int r = 0;
            for (; r + 2 <= nRows; r += 2)
                Tile2x8(nb, (BlockQ4_0*)(weights + r * rowBytes), (BlockQ4_0*)(weights + (r + 1) * rowBytes), pack, y + a0 * yStride + r, yStride, na);
            if (r < nRows)
                Tile1x8(nb, (BlockQ4_0*)(weights + r * rowBytes), pack, y + a0 * yStride + r, yStride, na);
        }
    }

    /// <summary>Writes <paramref name="na"/> (≤ 8) Q8_0 activation rows in the tile layout; missing rows are zeros (computed, never stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackActivations(int nb, byte* acts, long actStride, int na, byte* pack)
    {
        var offset = Vector256.Create((byte)0x80);
        for (int a = 0; a < 2 * TilePairs; a++)
        {
            // activation a is half (a & 1) of pair a >> 1
            byte* dst = pack + (a >> 1) * PairBytes + (a & 1) * 32;
            if (a >= na)
            {
                for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
                {
                    offset.Store(dst);
                    Vector256<float>.Zero.Store((float*)(dst + 64));
                }
                continue;
            }
            var src = (BlockQ8_0*)(acts + a * actStride);
            for (int ib = 0; ib < nb; ib++, dst += TilePairs * PairBytes)
            {
                // int8 + 128 as uint8 is a flip of the sign bit
                (Vector256.Load((byte*)src[ib].Qs) ^ offset).Store(dst);
                Vector256.Create(QuantMath.Fp16ToFp32Fast(src[ib].D)).Store((float*)(dst + 64));
            }
        }
    }

    /// <summary>One weight block's quants - 8 as int8, in both halves (element order of the block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> SignedQuants(BlockQ4_0* x)
    {
        var packed = Vector128.Load(x->Qs);
        var nib = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        var w256 = (nib - Vector256.Create((byte)8)).AsSByte();
        return Vector512.Create(w256, w256);
    }

    /// <summary>128·(w0 + w1 + w2 + w3) per int32 lane: what the +128 on the activations added to each lane sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Correction(Vector512<sbyte> w) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create((byte)128), w), Vector512<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scale(BlockQ4_0* x) => Vector512.Create(QuantMath.Fp16ToFp32Fast(x->D));

    /// <summary>acc + (dx·dy)·f32(Σ4 w·y) for one weight block and one activation pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mac(Vector512<float> acc, byte* pair, Vector512<sbyte> w, Vector512<int> correction, Vector512<float> dx)
    {
        var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Load(pair), w), Vector512<short>.One) - correction;
        return Avx512F.FusedMultiplyAdd(dx * Vector512.Load((float*)(pair + 64)), Avx512F.ConvertToVector512Single(sums), acc);
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
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = SignedQuants(x0 + ib);
            var c0 = Correction(w0);
            var d0 = Scale(x0 + ib);
            var w1 = SignedQuants(x1 + ib);
            var c1 = Correction(w1);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, w0, c0, d0);
            e10 = Mac(e10, p, w1, c1, d1);
            e01 = Mac(e01, p + PairBytes, w0, c0, d0);
            e11 = Mac(e11, p + PairBytes, w1, c1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, w0, c0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, w1, c1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, w0, c0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, w1, c1, d1);
            p += BlockBytes;
            w0 = SignedQuants(x0 + ib + 1);
            c0 = Correction(w0);
            d0 = Scale(x0 + ib + 1);
            w1 = SignedQuants(x1 + ib + 1);
            c1 = Correction(w1);
            d1 = Scale(x1 + ib + 1);
            o00 = Mac(o00, p, w0, c0, d0);
            o10 = Mac(o10, p, w1, c1, d1);
            o01 = Mac(o01, p + PairBytes, w0, c0, d0);
            o11 = Mac(o11, p + PairBytes, w1, c1, d1);
            o02 = Mac(o02, p + 2 * PairBytes, w0, c0, d0);
            o12 = Mac(o12, p + 2 * PairBytes, w1, c1, d1);
            o03 = Mac(o03, p + 3 * PairBytes, w0, c0, d0);
            o13 = Mac(o13, p + 3 * PairBytes, w1, c1, d1);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = SignedQuants(x0 + ib);
            var c0 = Correction(w0);
            var d0 = Scale(x0 + ib);
            var w1 = SignedQuants(x1 + ib);
            var c1 = Correction(w1);
            var d1 = Scale(x1 + ib);
            e00 = Mac(e00, p, w0, c0, d0);
            e10 = Mac(e10, p, w1, c1, d1);
            e01 = Mac(e01, p + PairBytes, w0, c0, d0);
            e11 = Mac(e11, p + PairBytes, w1, c1, d1);
            e02 = Mac(e02, p + 2 * PairBytes, w0, c0, d0);
            e12 = Mac(e12, p + 2 * PairBytes, w1, c1, d1);
            e03 = Mac(e03, p + 3 * PairBytes, w0, c0, d0);
            e13 = Mac(e13, p + 3 * PairBytes, w1, c1, d1);
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
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = SignedQuants(x0 + ib);
            var c0 = Correction(w0);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, w0, c0, d0);
            e01 = Mac(e01, p + PairBytes, w0, c0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, w0, c0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, w0, c0, d0);
            p += BlockBytes;
            w0 = SignedQuants(x0 + ib + 1);
            c0 = Correction(w0);
            d0 = Scale(x0 + ib + 1);
            o00 = Mac(o00, p, w0, c0, d0);
            o01 = Mac(o01, p + PairBytes, w0, c0, d0);
            o02 = Mac(o02, p + 2 * PairBytes, w0, c0, d0);
            o03 = Mac(o03, p + 3 * PairBytes, w0, c0, d0);
        }
        if (ib < nb)
        {
            byte* p = pack + ib * BlockBytes;
            var w0 = SignedQuants(x0 + ib);
            var c0 = Correction(w0);
            var d0 = Scale(x0 + ib);
            e00 = Mac(e00, p, w0, c0, d0);
            e01 = Mac(e01, p + PairBytes, w0, c0, d0);
            e02 = Mac(e02, p + 2 * PairBytes, w0, c0, d0);
            e03 = Mac(e03, p + 3 * PairBytes, w0, c0, d0);
        }
        StorePair(e00, o00, y, yStride, 0, na);
        StorePair(e01, o01, y, yStride, 1, na);
        StorePair(e02, o02, y, yStride, 2, na);
        StorePair(e03, o03, y, yStride, 3, na);
    }
}
