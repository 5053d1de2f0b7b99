using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// The prompt tile on AVX-512BW: activations widened to int16 once per tile (cached across calls by
// TileScratch), weights widened once per block and met by four activations with vpmaddwd, the
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
    /// to 32 int16 (<c>vpmovsxbw</c>), multiplied with the activation's four values broadcast as
    /// int16 (<c>vpmaddwd</c>: lanes 2r and 2r+1 hold row r's two pair sums, exact for any int8),
    /// and at the block's end the pair lanes are folded (<c>vpsrlq</c>, add, <c>vpmovqd</c>) into
    /// the eight rows' exact Σ w·a in lane order, which then go through the same float steps as
    /// <see cref="DotRows"/> (dx·dy, FMA into even/odd block accumulators, even + odd).
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
            {
                byte* gw = weights + (long)g * Rows * rowBytes;
                float* yg = y + a0 * yStride + g * Rows;
                for (int h = 0; h < na; h += 4)
                    Group4Avx512(gw, nb, pack, h, Math.Min(4, na - h), yg + h * yStride, yStride);
            }
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

    /// <summary>Row sums of one block from vpmaddwd pair lanes: lane 2r + lane 2r+1 -> lane r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fold(Vector512<int> s) =>
        Avx.ConvertToVector256Single(Avx512F.ConvertToVector256Int32((s + Avx512F.ShiftRightLogical(s.AsInt64(), 32).AsInt32()).AsInt64()));

    /// <summary>One group against activations h..h+<paramref name="na"/>-1 (≤ 4) of a packed tile; results for those activations only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group4Avx512(byte* g, int nb, byte* pack, int h, int na, float* y, long yStride)
    {
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* o = g + (long)ib * GroupBlockBytes;
            byte* blk = pack + (long)ib * TileBlockBytes + h * 64;
            Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < QK / 4; k++)
            {
                var w = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(o + QsOffset + 32 * k)));
                s0 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(blk + 8 * k)).AsInt16());
                s1 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(blk + 64 + 8 * k)).AsInt16());
                s2 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(blk + 128 + 8 * k)).AsInt16());
                s3 += Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(*(long*)(blk + 192 + 8 * k)).AsInt16());
            }
            var dx = Scales(o);
            var dy = (float*)(pack + (long)ib * TileBlockBytes + TileActs * 64) + h;
            if ((ib & 1) == 0)
            {
                e0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[0]), Fold(s0), e0);
                e1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[1]), Fold(s1), e1);
                e2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2]), Fold(s2), e2);
                e3 = Fma.MultiplyAdd(dx * Vector256.Create(dy[3]), Fold(s3), e3);
            }
            else
            {
                o0 = Fma.MultiplyAdd(dx * Vector256.Create(dy[0]), Fold(s0), o0);
                o1 = Fma.MultiplyAdd(dx * Vector256.Create(dy[1]), Fold(s1), o1);
                o2 = Fma.MultiplyAdd(dx * Vector256.Create(dy[2]), Fold(s2), o2);
                o3 = Fma.MultiplyAdd(dx * Vector256.Create(dy[3]), Fold(s3), o3);
            }
        }
        (e0 + o0).Store(y);
        if (na > 1) (e1 + o1).Store(y + yStride);
        if (na > 2) (e2 + o2).Store(y + 2 * yStride);
        if (na > 3) (e3 + o3).Store(y + 3 * yStride);
    }
}
