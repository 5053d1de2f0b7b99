using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>MXFP4 weights, paired with Q8_0 activations (ggml-cpu type_traits: vec_dot_type Q8_0).</summary>
internal sealed unsafe class MXFP4Format : WeightFormat
{
    public override GgmlType Type => GgmlType.MXFP4;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => MXFP4.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => MXFP4.DotMXFP4Q8_0(n, weights, activations);

    /// <summary>Four rows at a time on AVX-512BW (<see cref="MXFP4.DotRowsAvx512"/>); elsewhere one VecDot per row.</summary>
    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y)
    {
        if (Avx512BW.IsSupported) MXFP4.DotRowsAvx512(n, weights, rowBytes, nRows, activations, y);
        else base.VecDotRows(n, weights, rowBytes, nRows, activations, y);
    }

    /// <summary>
    /// Register-tiled on AVX-512BW (<see cref="MXFP4.DotTileAvx512"/>, IQ4_NL's scheme), without AVX2 (NEON) by
    /// <see cref="LegacyTile"/>; elsewhere one VecDot per pair.
    /// </summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Avx512BW.IsSupported) MXFP4.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<MXFP4TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>
/// MXFP4 kernels: quantizer, dequantizer and the dot product with Q8_0 activations. The format is
/// IQ4_NL's shape (a 16-entry table indexed by nibbles) with a power-of-two scale byte instead of an
/// fp16 one, so the kernels are IQ4_NL's table lookup (<c>pshufb</c>, NEON <c>tbl</c>) with
/// <see cref="ScaleHalf"/> in place of the fp16 conversion. Every path forms the reference's per-block
/// integer sums and adds the per-block float terms in its order, so all equal it bit for bit.
/// </summary>
internal static unsafe class MXFP4
{
    private const int QK = BlockMXFP4.BlockSize;

    /// <summary>The E2M1 values doubled (ggml-common.h <c>kvalues_mxfp4</c>): codes 0..7 positive, 8..15 their negatives.</summary>
    public static ReadOnlySpan<sbyte> KValues => [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    private static readonly Vector128<sbyte> s_kvalues = Vector128.Create(KValues);

    /// <summary>
    /// Half the block scale 2^(e − 127), exactly (ggml's <c>GGML_E8M0_TO_FP32_HALF</c>): 2^(e − 128) as f32 bits,
    /// subnormal for e &lt; 2. Halved because <see cref="KValues"/> holds the E2M1 values doubled.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ScaleHalf(byte e) =>
        BitConverter.UInt32BitsToSingle(e < 2 ? 0x00200000u << e : (uint)(e - 1) << 23);

    /// <summary>
    /// f32 → MXFP4 as ggml's <c>quantize_row_mxfp4_ref</c>: e = floor(log2(max |x|)) − 2 + 127 (0 for an
    /// all-zero block), then each value to the nearest table entry times <see cref="ScaleHalf"/>(e) (first of equals).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var y = (BlockMXFP4*)dst;
        for (long ib = 0; ib < n / QK; ib++)
        {
            float* xb = x + ib * QK;
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            // (uint8_t) of a float in C: the exponent is 0..255 for every finite amax above 2^-125
            byte e = amax > 0f ? (byte)(int)(MathF.Floor(MathF.Log2(amax)) - 2 + 127) : (byte)0;
            float d = ScaleHalf(e);
            y[ib].E = e;
            for (int j = 0; j < QK / 2; j++)
                y[ib].Qs[j] = (byte)(BestIndex(xb[j], d) | BestIndex(xb[j + QK / 2], d) << 4);
        }
    }

    /// <summary>ggml's best_index_mxfp4: the table entry nearest to <paramref name="x"/>/<paramref name="d"/> (the first of equals).</summary>
    private static int BestIndex(float x, float d)
    {
        var kv = KValues;
        int best = 0;
        float bestErr = MathF.Abs(kv[0] * d - x);
        for (int i = 1; i < 16; i++)
        {
            float err = MathF.Abs(kv[i] * d - x);
            if (err < bestErr)
            {
                best = i;
                bestErr = err;
            }
        }
        return best;
    }

    /// <summary>MXFP4 → f32 (dequantize_row_mxfp4): x = <see cref="ScaleHalf"/>(e) · kvalues[q].</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)src;
        var kv = KValues;
        for (long i = 0; i < n / QK; i++)
        {
            float d = ScaleHalf(x[i].E);
            for (int j = 0; j < QK / 2; j++)
            {
                dst[i * QK + j] = d * kv[x[i].Qs[j] & 0x0F];
                dst[i * QK + j + QK / 2] = d * kv[x[i].Qs[j] >> 4];
            }
        }
    }

    /// <summary>
    /// Dot product with a Q8_0 activation row on the fastest path this CPU has
    /// (AVX-512BW &gt; AVX2 &gt; NEON+DotProd &gt; NEON &gt; Vector128 &gt; scalar).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotMXFP4Q8_0(int n, byte* x, byte* y) =>
        Avx512BW.IsSupported ? DotMXFP4Q8_0Avx512(n, x, y)
        : Avx2.IsSupported ? DotMXFP4Q8_0Avx2(n, x, y)
        : AdvSimd.Arm64.IsSupported && Dp.IsSupported ? DotMXFP4Q8_0AdvSimdDp(n, x, y)
        : AdvSimd.Arm64.IsSupported ? DotMXFP4Q8_0AdvSimd(n, x, y)
        : Vector128.IsHardwareAccelerated ? DotMXFP4Q8_0Vector128(n, x, y)
        : DotMXFP4Q8_0Reference(n, x, y);

    /// <summary>NEON with the dot-product extension: <c>tbl</c> lookup, <c>sdot</c> sums; requires AdvSimd.Arm64 and Dp.</summary>
    internal static float DotMXFP4Q8_0AdvSimdDp(int n, byte* x, byte* y) => LegacyTile.DotRow<MXFP4TileWeights, AdvSimdDpBlockDot>(n, x, y);

    /// <summary>Plain NEON (<c>tbl</c>, then <c>smull</c> + <c>sadalp</c>); requires AdvSimd.Arm64.</summary>
    internal static float DotMXFP4Q8_0AdvSimd(int n, byte* x, byte* y) => LegacyTile.DotRow<MXFP4TileWeights, AdvSimdBlockDot>(n, x, y);


    /// <summary>Scalar oracle (ggml_vec_dot_mxfp4_q8_0 generic): (e8m0_half(e)·dy)·(sumi1 + sumi2) per block, summed in float.</summary>
    public static float DotMXFP4Q8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)vx;
        var y = (BlockQ8_0*)vy;
        var kv = KValues;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                sumi1 += y[ib].Qs[j] * kv[x[ib].Qs[j] & 0x0F];
                sumi2 += y[ib].Qs[j + QK / 2] * kv[x[ib].Qs[j] >> 4];
            }
            sumf += Term(sumi1 + sumi2, x + ib, y + ib);
        }
        return sumf;
    }

    /// <summary>AVX2: the table lookup is one <c>pshufb</c> per half, the integer dot <see cref="Avx2BlockDot"/> (<see cref="LegacyTile.DotRow"/>).</summary>
    public static float DotMXFP4Q8_0Avx2(int n, byte* vx, byte* vy) => LegacyTile.DotRow<MXFP4TileWeights, Avx2BlockDot>(n, vx, vy);

    /// <summary>Portable Vector128 (NEON <c>tbl</c> for the lookup; <see cref="LegacyTile.DotRow"/>).</summary>
    public static float DotMXFP4Q8_0Vector128(int n, byte* vx, byte* vy) => LegacyTile.DotRow<MXFP4TileWeights, Vector128BlockDot>(n, vx, vy);

    /// <summary>
    /// AVX-512BW: four blocks per step, two per 512-bit register (table values in [−12, 12], so
    /// <see cref="Int8Dot.DotSigned"/> applies), their integer sums reduced together by <see cref="Int8Dot.Reduce4"/>
    /// and the four float terms added in the reference's order; the last nb mod 4 blocks take the AVX2 block dot.
    /// Requires Avx512BW.
    /// </summary>
    internal static float DotMXFP4Q8_0Avx512(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        var x = (BlockMXFP4*)vx;
        var y = (BlockQ8_0*)vy;
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

    /// <summary>
    /// The decode product: y[r] = row r · act for <paramref name="nRows"/> rows, four rows at a time. A row's float
    /// sum is one chain of dependent adds in the reference's block order (so each result equals
    /// <see cref="DotMXFP4Q8_0Avx512"/> bit for bit); four rows interleaved keep four chains in flight, where one row
    /// at a time waits on each add's latency.
    /// </summary>
    internal static void DotRowsAvx512(int n, byte* weights, long rowBytes, int nRows, byte* act, float* yOut)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        int nb = n / QK;
        var y = (BlockQ8_0*)act;
        int r = 0;
        for (; r + 4 <= nRows; r += 4)
        {
            var x0 = (BlockMXFP4*)(weights + r * rowBytes);
            var x1 = (BlockMXFP4*)(weights + (r + 1) * rowBytes);
            var x2 = (BlockMXFP4*)(weights + (r + 2) * rowBytes);
            var x3 = (BlockMXFP4*)(weights + (r + 3) * rowBytes);
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int ib = 0;
            for (; ib + 4 <= nb; ib += 4)
            {
                var p0 = Int8Dot.Reduce4(Pair512(x0 + ib, y + ib), Pair512(x0 + ib + 2, y + ib + 2));
                var p1 = Int8Dot.Reduce4(Pair512(x1 + ib, y + ib), Pair512(x1 + ib + 2, y + ib + 2));
                var p2 = Int8Dot.Reduce4(Pair512(x2 + ib, y + ib), Pair512(x2 + ib + 2, y + ib + 2));
                var p3 = Int8Dot.Reduce4(Pair512(x3 + ib, y + ib), Pair512(x3 + ib + 2, y + ib + 2));
                for (int j = 0; j < 4; j++)
                {
                    s0 += Term(p0.GetElement(j), x0 + ib + j, y + ib + j);
                    s1 += Term(p1.GetElement(j), x1 + ib + j, y + ib + j);
                    s2 += Term(p2.GetElement(j), x2 + ib + j, y + ib + j);
                    s3 += Term(p3.GetElement(j), x3 + ib + j, y + ib + j);
                }
            }
            for (; ib < nb; ib++)
            {
                var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
                var (a0, a1) = Split(x0 + ib); s0 += Term(Avx2BlockDot.Dot(a0, a1, y0, y1), x0 + ib, y + ib);
                (a0, a1) = Split(x1 + ib); s1 += Term(Avx2BlockDot.Dot(a0, a1, y0, y1), x1 + ib, y + ib);
                (a0, a1) = Split(x2 + ib); s2 += Term(Avx2BlockDot.Dot(a0, a1, y0, y1), x2 + ib, y + ib);
                (a0, a1) = Split(x3 + ib); s3 += Term(Avx2BlockDot.Dot(a0, a1, y0, y1), x3 + ib, y + ib);
            }
            yOut[r] = s0;
            yOut[r + 1] = s1;
            yOut[r + 2] = s2;
            yOut[r + 3] = s3;
        }
        for (; r < nRows; r++) yOut[r] = DotMXFP4Q8_0Avx512(n, weights + r * rowBytes, act);
    }

    /// <summary>Integer dot products of blocks x[0], x[1] with y[0], y[1]: 8 int32 lanes per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair512(BlockMXFP4* x, BlockQ8_0* y)
    {
        var (a0, a1) = Split(x);
        var (b0, b1) = Split(x + 1);
        return Int8Dot.DotSigned(Int8Dot.Pack(a0, a1, b0, b1), Int8Dot.Load2(y->Qs, (y + 1)->Qs));
    }

    /// <summary>A block's 32 weights as int8 table values, values 0..15 then 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Split(BlockMXFP4* b)
    {
        var (lo, hi) = QuantMath.Nibbles(b->Qs);
        return (Vector128.Shuffle(s_kvalues, lo.AsSByte()), Vector128.Shuffle(s_kvalues, hi.AsSByte()));
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> with AVX-512BW (IQ4_NL's tile): each pair of blocks of a weight row is
    /// unpacked once and met by four activation rows; each (row, activation) keeps its own float sum in the reference's
    /// block order, so every output equals <see cref="DotMXFP4Q8_0Avx512"/> bit for bit. Fewer than four activations
    /// repeat the last one (its results are dropped).
    /// </summary>
    internal static void DotTileAvx512(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* yOut, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "MXFP4");
        int nb = n / QK;
        for (int a0 = 0; a0 < nActs; a0 += 4)
        {
            int na = Math.Min(4, nActs - a0);
            var y0 = (BlockQ8_0*)(activations + a0 * actStride);
            var y1 = (BlockQ8_0*)(activations + (a0 + Math.Min(1, na - 1)) * actStride);
            var y2 = (BlockQ8_0*)(activations + (a0 + Math.Min(2, na - 1)) * actStride);
            var y3 = (BlockQ8_0*)(activations + (a0 + Math.Min(3, na - 1)) * actStride);
            for (int r = 0; r < nRows; r++)
            {
                var x = (BlockMXFP4*)(weights + r * rowBytes);
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                int ib = 0;
                for (; ib + 4 <= nb; ib += 4)
                {
                    // four blocks at a time, as the dot product: two packed pairs, each met by the four activation rows
                    var (l0, h0) = Split(x + ib);
                    var (l1, h1) = Split(x + ib + 1);
                    var (l2, h2) = Split(x + ib + 2);
                    var (l3, h3) = Split(x + ib + 3);
                    var xa = Int8Dot.Pack(l0, h0, l1, h1);
                    var xb = Int8Dot.Pack(l2, h2, l3, h3);
                    var p0 = Int8Dot.Reduce4(Int8Dot.DotSigned(xa, Int8Dot.Load2(y0[ib].Qs, y0[ib + 1].Qs)), Int8Dot.DotSigned(xb, Int8Dot.Load2(y0[ib + 2].Qs, y0[ib + 3].Qs)));
                    var p1 = Int8Dot.Reduce4(Int8Dot.DotSigned(xa, Int8Dot.Load2(y1[ib].Qs, y1[ib + 1].Qs)), Int8Dot.DotSigned(xb, Int8Dot.Load2(y1[ib + 2].Qs, y1[ib + 3].Qs)));
                    var p2 = Int8Dot.Reduce4(Int8Dot.DotSigned(xa, Int8Dot.Load2(y2[ib].Qs, y2[ib + 1].Qs)), Int8Dot.DotSigned(xb, Int8Dot.Load2(y2[ib + 2].Qs, y2[ib + 3].Qs)));
                    var p3 = Int8Dot.Reduce4(Int8Dot.DotSigned(xa, Int8Dot.Load2(y3[ib].Qs, y3[ib + 1].Qs)), Int8Dot.DotSigned(xb, Int8Dot.Load2(y3[ib + 2].Qs, y3[ib + 3].Qs)));
                    for (int j = 0; j < 4; j++)
                    {
                        s0 += Term(p0.GetElement(j), x + ib + j, y0 + ib + j);
                        s1 += Term(p1.GetElement(j), x + ib + j, y1 + ib + j);
                        s2 += Term(p2.GetElement(j), x + ib + j, y2 + ib + j);
                        s3 += Term(p3.GetElement(j), x + ib + j, y3 + ib + j);
                    }
                }
                for (; ib < nb; ib++)
                {
                    var (av, bv) = Split(x + ib);
                    s0 += Term(Avx2BlockDot.Dot(av, bv, Vector128.Load(y0[ib].Qs), Vector128.Load(y0[ib].Qs + 16)), x + ib, y0 + ib);
                    s1 += Term(Avx2BlockDot.Dot(av, bv, Vector128.Load(y1[ib].Qs), Vector128.Load(y1[ib].Qs + 16)), x + ib, y1 + ib);
                    s2 += Term(Avx2BlockDot.Dot(av, bv, Vector128.Load(y2[ib].Qs), Vector128.Load(y2[ib].Qs + 16)), x + ib, y2 + ib);
                    s3 += Term(Avx2BlockDot.Dot(av, bv, Vector128.Load(y3[ib].Qs), Vector128.Load(y3[ib].Qs + 16)), x + ib, y3 + ib);
                }
                yOut[a0 * yStride + r] = s0;
                if (na > 1) yOut[(a0 + 1) * yStride + r] = s1;
                if (na > 2) yOut[(a0 + 2) * yStride + r] = s2;
                if (na > 3) yOut[(a0 + 3) * yStride + r] = s3;
            }
        }
    }

    /// <summary>The reference's per-block float term: (e8m0_half(e) · dy) · sumi.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Term(int sumi, BlockMXFP4* x, BlockQ8_0* y) => ScaleHalf(x->E) * QuantMath.Fp16ToFp32(y->D) * sumi;
}
