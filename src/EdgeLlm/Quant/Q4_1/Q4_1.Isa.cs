using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

// Q4_1·Q8_1 fast paths beyond AVX2: AVX-512BW (two blocks per register) and NEON with and
// without the dot-product extension. Every path forms the same per-block integer sums as the
// reference and adds the per-block float terms in the reference's order, so all of them equal
// the reference bit for bit (the tests assert exact equality).
internal static unsafe partial class Q4_1
{
    /// <summary>
    /// Dot product with a Q8_1 activation row on the fastest path this CPU has:
    /// AVX-512BW &gt; AVX2 &gt; NEON+DotProd &gt; NEON &gt; Vector128 &gt; scalar. The IsSupported
    /// checks are constants to the JIT and to NativeAOT, so the choice costs nothing per call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotQ4_1Q8_1(int n, byte* x, byte* y) =>
        Avx512BW.IsSupported ? DotQ4_1Q8_1Avx512(n, x, y)
        : Avx2.IsSupported ? DotQ4_1Q8_1Avx2(n, x, y)
        : AdvSimd.Arm64.IsSupported && Dp.IsSupported ? DotQ4_1Q8_1AdvSimdDp(n, x, y)
        : AdvSimd.Arm64.IsSupported ? DotQ4_1Q8_1AdvSimd(n, x, y)
        : Vector128.IsHardwareAccelerated ? DotQ4_1Q8_1Vector128(n, x, y)
        : DotQ4_1Q8_1Reference(n, x, y);

    /// <summary>NEON with the dot-product extension (<c>sdot</c>); requires AdvSimd.Arm64 and Dp.</summary>
    internal static float DotQ4_1Q8_1AdvSimdDp(int n, byte* x, byte* y) => LegacyTile.DotRow<Q4_1TileWeights, AdvSimdDpBlockDot>(n, x, y);

    /// <summary>Plain NEON (<c>smull</c> + <c>sadalp</c>); requires AdvSimd.Arm64.</summary>
    internal static float DotQ4_1Q8_1AdvSimd(int n, byte* x, byte* y) => LegacyTile.DotRow<Q4_1TileWeights, AdvSimdBlockDot>(n, x, y);


    /// <summary>
    /// AVX-512BW: four blocks per step, two per 512-bit register (weights q in [0, 15], so
    /// <see cref="Int8Dot.DotUnsigned"/> applies), reduced together by <see cref="Int8Dot.Reduce4"/>;
    /// the last nb mod 4 blocks take the AVX2 block dot. Requires Avx512BW.
    /// </summary>
    internal static float DotQ4_1Q8_1Avx512(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var x = (BlockQ4_1*)vx;
        var y = (BlockQ8_1*)vy;
        int nb = n / QK, ib = 0;
        float sumf = 0;
        for (; ib + 4 <= nb; ib += 4)
        {
            var s = Int8Dot.Reduce4(Pair512(x + ib, y + ib), Pair512(x + ib + 2, y + ib + 2));
            sumf += Term(s.GetElement(0), x + ib, y + ib);
            sumf += Term(s.GetElement(1), x + ib + 1, y + ib + 1);
            sumf += Term(s.GetElement(2), x + ib + 2, y + ib + 2);
            sumf += Term(s.GetElement(3), x + ib + 3, y + ib + 3);
        }
        for (; ib < nb; ib++)
        {
            var (a0, a1) = Split(x + ib);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            sumf += Term(Avx2BlockDot.Dot(a0, a1, y0, y1), x + ib, y + ib);
        }
        return sumf;
    }

    /// <summary>Integer dot products of blocks x[0], x[1] with y[0], y[1]: 8 int32 lanes per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> Pair512(BlockQ4_1* x, BlockQ8_1* y)
    {
        var (a0, a1) = Split(x);
        var (b0, b1) = Split(x + 1);
        return Int8Dot.DotUnsigned(Int8Dot.Pack(a0, a1, b0, b1).AsByte(), Int8Dot.Load2(y->Qs, (y + 1)->Qs));
    }

    /// <summary>A block's 32 weights as int8 (q in [0, 15]), values 0..15 then 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Split(BlockQ4_1* b)
    {
        var (lo, hi) = QuantMath.Nibbles(b->Qs);
        return (lo.AsSByte(), hi.AsSByte());
    }

    /// <summary>The reference's per-block float term for integer sum <paramref name="sumi"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Term(int sumi, BlockQ4_1* x, BlockQ8_1* y) => Combine(sumi, ref *x, ref *y);

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> with AVX-512BW: for each weight row, each pair of
    /// blocks is unpacked once and dotted with four activation rows (register tile 1 row x 2
    /// blocks x 4 activations); each (row, activation) keeps its own float sum in the
    /// reference's block order, so every output equals <see cref="DotQ4_1Q8_1Avx512"/> bit for bit.
    /// Fewer than four activations repeat the last one (its results are dropped).
    /// </summary>
    internal static void DotTileAvx512(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* yOut, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        int nb = n / QK;
        for (int a0 = 0; a0 < nActs; a0 += 4)
        {
            int na = Math.Min(4, nActs - a0);
            var y0 = (BlockQ8_1*)(activations + a0 * actStride);
            var y1 = (BlockQ8_1*)(activations + (a0 + Math.Min(1, na - 1)) * actStride);
            var y2 = (BlockQ8_1*)(activations + (a0 + Math.Min(2, na - 1)) * actStride);
            var y3 = (BlockQ8_1*)(activations + (a0 + Math.Min(3, na - 1)) * actStride);
            for (int r = 0; r < nRows; r++)
            {
                var x = (BlockQ4_1*)(weights + r * rowBytes);
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                int ib = 0;
                for (; ib + 2 <= nb; ib += 2)
                {
                    var (l0, h0) = Split(x + ib);
                    var (l1, h1) = Split(x + ib + 1);
                    var xv = Int8Dot.Pack(l0, h0, l1, h1).AsByte();
                    var p01 = Int8Dot.Reduce4(Int8Dot.DotUnsigned(xv, Int8Dot.Load2(y0[ib].Qs, y0[ib + 1].Qs)), Int8Dot.DotUnsigned(xv, Int8Dot.Load2(y1[ib].Qs, y1[ib + 1].Qs)));
                    var p23 = Int8Dot.Reduce4(Int8Dot.DotUnsigned(xv, Int8Dot.Load2(y2[ib].Qs, y2[ib + 1].Qs)), Int8Dot.DotUnsigned(xv, Int8Dot.Load2(y3[ib].Qs, y3[ib + 1].Qs)));
                    s0 += Term(p01.GetElement(0), x + ib, y0 + ib);
                    s0 += Term(p01.GetElement(1), x + ib + 1, y0 + ib + 1);
                    s1 += Term(p01.GetElement(2), x + ib, y1 + ib);
                    s1 += Term(p01.GetElement(3), x + ib + 1, y1 + ib + 1);
                    s2 += Term(p23.GetElement(0), x + ib, y2 + ib);
                    s2 += Term(p23.GetElement(1), x + ib + 1, y2 + ib + 1);
                    s3 += Term(p23.GetElement(2), x + ib, y3 + ib);
                    s3 += Term(p23.GetElement(3), x + ib + 1, y3 + ib + 1);
                }
                for (; ib < nb; ib++)
                {
                    var (a0v, a1v) = Split(x + ib);
                    s0 += Term(Avx2BlockDot.Dot(a0v, a1v, Vector128.Load(y0[ib].Qs), Vector128.Load(y0[ib].Qs + 16)), x + ib, y0 + ib);
                    s1 += Term(Avx2BlockDot.Dot(a0v, a1v, Vector128.Load(y1[ib].Qs), Vector128.Load(y1[ib].Qs + 16)), x + ib, y1 + ib);
                    s2 += Term(Avx2BlockDot.Dot(a0v, a1v, Vector128.Load(y2[ib].Qs), Vector128.Load(y2[ib].Qs + 16)), x + ib, y2 + ib);
                    s3 += Term(Avx2BlockDot.Dot(a0v, a1v, Vector128.Load(y3[ib].Qs), Vector128.Load(y3[ib].Qs + 16)), x + ib, y3 + ib);
                }
                yOut[a0 * yStride + r] = s0;
                if (na > 1) yOut[(a0 + 1) * yStride + r] = s1;
                if (na > 2) yOut[(a0 + 2) * yStride + r] = s2;
                if (na > 3) yOut[(a0 + 3) * yStride + r] = s3;
            }
        }
    }
}
