using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// The prompt tile on AVX-512BW: activations widened to int16 once per tile (cached across calls by
// TileScratch), weights widened once per block and met by eight activations with vpmaddwd, the
// exact same per-(row, activation) arithmetic as the AVX2 kernels.
internal static unsafe partial class Q8_0x8
{
    /// <summary>The AVX-512 tile runs where the AVX2+FMA kernels do and AVX-512BW exists.</summary>
    internal static bool UseAvx512Tile => IsSupported && Avx512BW.IsSupported;

    /// <summary>Activations per packed tile.</summary>
    private const int TileActs = 8;

    /// <summary>Bytes per block of a packed activation tile: eight activations' 32 values as int16, then their eight scales as f32.</summary>
    private const int TileBlockBytes = TileActs * 64 + TileActs * 4;

    private static readonly TileScratch.PackTile s_packTile = PackActivations;

    /// <summary>
    /// <see cref="DotTile"/> on AVX-512BW. Per block of a group, V_k (8 rows × 4 values) is widened
    /// to 32 int16 (<c>vpmovsxbw</c>) once and multiplied with each of eight activations' four values
    /// broadcast as int16 (<c>vpmaddwd</c>: lanes 2r and 2r+1 hold row r's two pair sums, exact for
    /// any int8). At the block's end two activations' pair lanes are folded together (<see cref="FoldPair"/>)
    /// into the eight rows' exact Σ w·a, interleaved, which then go through the same float steps as
    /// <see cref="DotRows"/> (dx·dy, FMA into even/odd block accumulators, even + odd), two
    /// activations per instruction. Measured one thread, 256 × 2048 × 128 (PackedTileThroughputTests,
    /// 2026-11-29): 53 GMAC/s, against 41–43 with one activation folded at a time and four per pass,
    /// and 40 for the plain AVX-512 Q8_0 tile.
    /// <code>
    /// packed activation tile, per block ib (544 bytes, ggml block_q8_0 source):
    ///   [ a_0[0..31] as int16 ] ... [ a_7[0..31] as int16 ]   8 × 64 bytes
    ///   [ d_0 .. d_7 as f32 ]                                  32 bytes
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotTileAvx512(int n, byte* weights, long rowBytes, int groups, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        int nb = n / QK;
        long tileBytes = (long)nb * TileBlockBytes;
        byte* packed = TileScratch.Packed(s_packTile, nb, acts, actStride, (long)nb * sizeof(BlockQ8_0), nActs, tileBytes);
        for (int a0 = 0; a0 < nActs; a0 += TileActs)
        {
            byte* pack = packed + a0 / TileActs * tileBytes;
            int na = Math.Min(TileActs, nActs - a0);
            for (int g = 0; g < groups; g++)
                Group8Avx512(weights + (long)g * Rows * rowBytes, nb, pack, na, y + a0 * yStride + g * Rows, yStride);
        }
    }

    /// <summary>Writes <paramref name="na"/> (≤ 8) activation rows in the tile layout; missing rows are zeros (computed, never stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackActivations(int nb, byte* acts, long actStride, int na, byte* pack)
    {
        for (int ib = 0; ib < nb; ib++)
        {
            byte* blk = pack + (long)ib * TileBlockBytes;
            var d = (float*)(blk + TileActs * 64);
            for (int a = 0; a < TileActs; a++)
            {
                if (a < na)
                {
                    var b = (BlockQ8_0*)(acts + a * actStride) + ib;
                    Avx512BW.ConvertToVector512Int16(Vector256.Load(b->Qs)).Store((short*)(blk + a * 64));
                    d[a] = QuantMath.Fp16ToFp32Fast(b->D);
                }
                else
                {
                    Vector512<short>.Zero.Store((short*)(blk + a * 64));
                    d[a] = 0;
                }
            }
        }
    }

    /// <summary>
    /// Row sums of one block for two activations from their vpmaddwd pair lanes: lane 2r of the result is
    /// row r against activation 0 (lanes 2r + 2r+1 of <paramref name="s0"/>), lane 2r+1 row r against
    /// activation 1 (of <paramref name="s1"/>); exact int32 sums, converted once for both activations.
    /// Two blends, one pair swap and one add, where folding each activation alone takes a shift, an add
    /// and a two-uop narrowing per activation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> FoldPair(Vector512<int> s0, Vector512<int> s1)
    {
        var odd = Vector512.Create(0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1);
        var a = Vector512.ConditionalSelect(odd, s1, s0);          // [s0[2r], s1[2r+1]]
        var b = Vector512.ConditionalSelect(odd, s0, s1);          // [s1[2r], s0[2r+1]]
        var bSwapped = Avx512F.Shuffle(b, 0xB1);                   // [s0[2r+1], s1[2r]]
        return Avx512F.ConvertToVector512Single(a + bSwapped);
    }

    /// <summary>
    /// One group against the eight activations of a packed tile. Accumulators hold two activations
    /// each, interleaved by row (lane 2r: activation 2p, lane 2r+1: activation 2p+1), so that a block's
    /// integer sums are folded, converted and scaled two activations per instruction; per (row,
    /// activation) the float steps are <see cref="DotRows"/>'s exactly: f32(Σ w·a) times the product
    /// dx·dy, fused into the even- or odd-block accumulator, even + odd at the end. Results for
    /// activations past <paramref name="na"/> are computed on the tile's zero rows and not stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group8Avx512(byte* g, int nb, byte* pack, int na, float* y, long yStride)
    {
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
        // dx[r] in lanes 2r and 2r+1
        var dupIndex = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            Block8(g, ib, pack, dupIndex, ref e0, ref e1, ref e2, ref e3);
            Block8(g, ib + 1, pack, dupIndex, ref o0, ref o1, ref o2, ref o3);
        }
        if (ib < nb) Block8(g, ib, pack, dupIndex, ref e0, ref e1, ref e2, ref e3);
        // lanes [r0a0, r0a1, r1a0, ...] -> low half activation 2p's rows, high half 2p+1's
        var split = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        StorePair(Avx512F.PermuteVar16x32(e0 + o0, split), y, yStride, 0, na);
        StorePair(Avx512F.PermuteVar16x32(e1 + o1, split), y, yStride, 2, na);
        StorePair(Avx512F.PermuteVar16x32(e2 + o2, split), y, yStride, 4, na);
        StorePair(Avx512F.PermuteVar16x32(e3 + o3, split), y, yStride, 6, na);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePair(Vector512<float> v, float* y, long yStride, int a, int na)
    {
        if (a < na) v.GetLower().Store(y + a * yStride);
        if (a + 1 < na) v.GetUpper().Store(y + (a + 1) * yStride);
    }

    /// <summary>Block <paramref name="ib"/> of a group against the tile's eight activations, into four paired accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block8(byte* g, int ib, byte* pack, Vector512<int> dupIndex,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3)
    {
        byte* o = g + (long)ib * GroupBlockBytes;
        byte* blk = pack + (long)ib * TileBlockBytes;
        Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int k = 0; k < QK / 4; k++)
        {
            var w = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(o + QsOffset + 32 * k)));
            byte* b = blk + 8 * k;
            s0 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)b).AsInt16());
            s1 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 64)).AsInt16());
            s2 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 128)).AsInt16());
            s3 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 192)).AsInt16());
            s4 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 256)).AsInt16());
            s5 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 320)).AsInt16());
            s6 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 384)).AsInt16());
            s7 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(b + 448)).AsInt16());
        }
        var dx = Avx512F.PermuteVar16x32(Scales(o).ToVector512Unsafe(), dupIndex);
        // (dy_2p, dy_2p+1) broadcast as one 64-bit element: lane 2r gets dy_2p, lane 2r+1 dy_2p+1
        var dy = (long*)(blk + TileActs * 64);
        c0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[0]).AsSingle(), FoldPair(s0, s1), c0);
        c1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[1]).AsSingle(), FoldPair(s2, s3), c1);
        c2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[2]).AsSingle(), FoldPair(s4, s5), c2);
        c3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[3]).AsSingle(), FoldPair(s6, s7), c3);
    }
}
