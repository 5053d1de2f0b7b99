using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// A K-quant weight format (256-value super-blocks, Q8_K activations) as <see cref="KQuant128"/>
/// needs it: the super-block unpacked to int8 values with its 16 sub-block scales, and the parts
/// of ggml's generic float tail that depend on the weights.
/// </summary>
internal unsafe interface IKQuant128Block
{
    /// <summary>Bytes per super-block.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The type's name, for errors.</summary>
    static abstract string Name { get; }

    /// <summary>True when the format has per-sub-block mins (the <c>dmin·Σ bsums·min</c> term).</summary>
    static abstract bool HasMins { get; }

    /// <summary>
    /// True for Q2_K's tail: per super-block <c>sumf += (y.d·d)·Σ lanes − (y.d·dmin)·Σ bsums·min</c>,
    /// no lane accumulators. False for the others: <c>sums[l] += (d·y.d)·aux32[l]</c>,
    /// <c>sumf −= (dmin·y.d)·Σ bsums·min</c>, the lanes added to sumf in order at the end.
    /// </summary>
    static abstract bool TotalTail { get; }

    /// <summary>
    /// True where both 16-value halves of each 32-value sub-block share one scale (Q4_K, Q5_K):
    /// <see cref="AdvSimdDpKLanes"/> then takes 32 products per scale multiply.
    /// </summary>
    static abstract bool Scale32 { get; }

    /// <summary>
    /// Writes the super-block's 256 values as int8 to <paramref name="a"/> (reference order), the
    /// scale of each 16-value sub-block to <paramref name="scales"/> and, with <see cref="HasMins"/>,
    /// its mins to <paramref name="mins"/> (up to 16, as <see cref="MinSum"/> reads them).
    /// </summary>
    static abstract void Unpack(byte* block, sbyte* a, int* scales, int* mins);

    /// <summary>Σ bsums·min, the integer of the min term (only with <see cref="HasMins"/>).</summary>
    static abstract int MinSum(int* mins, short* bsums);

    /// <summary>The super-block's scale d as f32 (the reference's conversion).</summary>
    static abstract float Scale(byte* block);

    /// <summary>The super-block's min scale dmin as f32 (only with <see cref="HasMins"/>).</summary>
    static abstract float MinScale(byte* block);
}

/// <summary>
/// <see cref="KQuantLanes"/>'s eight int32 lanes, <c>aux32[l] = Σ_j scale[j] · Σ_{p in sub-block j,
/// p ≡ l (mod 8)} a[p]·q8[p]</c>, as two 128-bit halves (lanes 0..3, 4..7).
/// </summary>
internal unsafe interface IKQuantLanes128
{
    /// <summary>
    /// False: the strategy gives ggml's eight lanes (<see cref="Lanes"/>) and the tile keeps the
    /// reference's float tail, bit for bit. True: it gives only the super-block's integer total
    /// (<see cref="Total"/>) and the tile adds it in llama.cpp's NEON order (see <see cref="KQuant128"/>).
    /// </summary>
    static abstract bool IsTotal { get; }

    static abstract (Vector128<int> Lo, Vector128<int> Hi) Lanes(sbyte* a, sbyte* q8, int* scales);

    /// <summary>
    /// Σ_j scales[j] · Σ_{p in sub-block j} a[p]·q8[p] over the super-block's sixteen 16-value
    /// sub-blocks (an exact integer: |total| &lt; 2^31 for every K-quant). <paramref name="scale32"/>:
    /// scales[2j] == scales[2j + 1] (<see cref="IKQuant128Block.Scale32"/>).
    /// </summary>
    static abstract int Total(sbyte* a, sbyte* q8, int* scales, bool scale32);
}

/// <summary>NEON: <see cref="KQuantLanes.DotLanesAdvSimd"/> (<c>smull</c> + <c>smlal</c>).</summary>
internal readonly unsafe struct AdvSimdKLanes : IKQuantLanes128
{
    public static bool IsTotal => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<int> Lo, Vector128<int> Hi) Lanes(sbyte* a, sbyte* q8, int* scales) => KQuantLanes.DotLanesAdvSimd(a, q8, scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Total(sbyte* a, sbyte* q8, int* scales, bool scale32)
    {
        var (lo, hi) = Lanes(a, q8, scales);
        return Vector128.Sum(lo + hi);
    }
}

/// <summary>
/// NEON with the dot-product extension (Raspberry Pi 5, arm64 phones): per 16 values one
/// <c>sdot</c> (four neighbouring products into each int32 lane) and, per scale, one <c>mla</c>;
/// Q4_K/Q5_K feed both halves of a 32-value sub-block into one <c>sdot</c> chain before their
/// shared scale. <c>sdot</c> mixes ggml's eight lanes, so this strategy gives the integer total
/// only (<see cref="IsTotal"/>). In the linux-arm64 binary the Q4_K/Q5_K loop is 20 instructions per
/// 64 values, <see cref="AdvSimdKLanes"/>' 19 per 16. Bounds: |a·q8| ≤ 32·128, four per lane ≤ 2^14, times a scale
/// ≤ 128, sixteen sub-blocks: below 2^26 per lane. Requires AdvSimd.Arm64 and Dp.
/// </summary>
internal readonly unsafe struct AdvSimdDpKLanes : IKQuantLanes128
{
    public static bool IsTotal => true;

    public static (Vector128<int> Lo, Vector128<int> Hi) Lanes(sbyte* a, sbyte* q8, int* scales) =>
        throw new NotSupportedException("sdot mixes ggml's lanes: use Total");

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Total(sbyte* a, sbyte* q8, int* scales, bool scale32)
    {
        // Two accumulators: one mla chain would wait on its own latency every step.
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        if (scale32)
        {
            // 64 values (two 32-value sub-blocks, scales[0] and scales[2]) per step.
            for (sbyte* end = a + KQuant.QK_K; a < end; a += 64, q8 += 64, scales += 4)
            {
                var p0 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, AdvSimd.LoadVector128(a), AdvSimd.LoadVector128(q8)),
                    AdvSimd.LoadVector128(a + 16), AdvSimd.LoadVector128(q8 + 16));
                var p1 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, AdvSimd.LoadVector128(a + 32), AdvSimd.LoadVector128(q8 + 32)),
                    AdvSimd.LoadVector128(a + 48), AdvSimd.LoadVector128(q8 + 48));
                acc0 = AdvSimd.MultiplyAdd(acc0, p0, Vector128.Create(scales[0]));
                acc1 = AdvSimd.MultiplyAdd(acc1, p1, Vector128.Create(scales[2]));
            }
        }
        else
        {
            // Two 16-value sub-blocks per step.
            for (sbyte* end = a + KQuant.QK_K; a < end; a += 32, q8 += 32, scales += 2)
            {
                var p0 = Dp.DotProduct(Vector128<int>.Zero, AdvSimd.LoadVector128(a), AdvSimd.LoadVector128(q8));
                var p1 = Dp.DotProduct(Vector128<int>.Zero, AdvSimd.LoadVector128(a + 16), AdvSimd.LoadVector128(q8 + 16));
                acc0 = AdvSimd.MultiplyAdd(acc0, p0, Vector128.Create(scales[0]));
                acc1 = AdvSimd.MultiplyAdd(acc1, p1, Vector128.Create(scales[1]));
            }
        }
        return Vector128.Sum(acc0 + acc1);
    }
}

/// <summary>
/// The integer total of <see cref="AdvSimdDpKLanes"/> from portable Vector128 steps
/// (<see cref="Vector128KLanes"/>' lanes, summed). No CPU runs it in production: it lets x64
/// tests drive <see cref="KQuant128"/>'s llama.cpp-order tail, which the NEON binary under qemu
/// then must reproduce bit for bit.
/// </summary>
internal readonly unsafe struct Vector128TotalKLanes : IKQuantLanes128
{
    public static bool IsTotal => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<int> Lo, Vector128<int> Hi) Lanes(sbyte* a, sbyte* q8, int* scales) => Vector128KLanes.Lanes(a, q8, scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Total(sbyte* a, sbyte* q8, int* scales, bool scale32)
    {
        var (lo, hi) = Vector128KLanes.Lanes(a, q8, scales);
        return Vector128.Sum(lo + hi);
    }
}

/// <summary>
/// Portable Vector128, the same integers as <see cref="AdvSimdKLanes"/>: per 16-value sub-block,
/// products l and l + 8 as int16 added (|a·q8| ≤ 32·128, their sum fits), widened to int32 and
/// multiplied by the sub-block's scale.
/// </summary>
internal readonly unsafe struct Vector128KLanes : IKQuantLanes128
{
    public static bool IsTotal => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Total(sbyte* a, sbyte* q8, int* scales, bool scale32)
    {
        var (lo, hi) = Lanes(a, q8, scales);
        return Vector128.Sum(lo + hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<int> Lo, Vector128<int> Hi) Lanes(sbyte* a, sbyte* q8, int* scales)
    {
        if (Sse41.IsSupported) return LanesSse41(a, q8, scales);
        Vector128<int> lo = Vector128<int>.Zero, hi = Vector128<int>.Zero;
        for (int j = 0; j < KQuant.QK_K / 16; ++j)
        {
            var (al, ah) = Vector128.Widen(Vector128.Load(a + 16 * j));
            var (ql, qh) = Vector128.Widen(Vector128.Load(q8 + 16 * j));
            var p = al * ql + ah * qh;
            var (pl, ph) = Vector128.Widen(p);
            var s = Vector128.Create(scales[j]);
            lo += pl * s;
            hi += ph * s;
        }
        return (lo, hi);
    }

    /// <summary>
    /// x64 without AVX2 (SSE4.1): bytes l and l + 8 of a sub-block interleaved (<c>punpcklbw</c>), so
    /// one <c>pmaddwd</c> of the sign-extended halves gives lanes 0..3 and another lanes 4..7 of
    /// a[l]·q8[l] + a[l+8]·q8[l+8] directly as int32 (the same integers as the portable steps).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int> Lo, Vector128<int> Hi) LanesSse41(sbyte* a, sbyte* q8, int* scales)
    {
        Vector128<int> lo = Vector128<int>.Zero, hi = Vector128<int>.Zero;
        for (int j = 0; j < KQuant.QK_K / 16; ++j)
        {
            var va = Vector128.Load(a + 16 * j);
            var vq = Vector128.Load(q8 + 16 * j);
            var ai = Sse2.UnpackLow(va, Sse2.ShiftRightLogical128BitLane(va, 8)); // a0 a8 a1 a9 … a7 a15
            var qi = Sse2.UnpackLow(vq, Sse2.ShiftRightLogical128BitLane(vq, 8));
            var p0 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(ai), Sse41.ConvertToVector128Int16(qi));
            var p1 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(ai, 8)), Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(qi, 8)));
            var s = Vector128.Create(scales[j]);
            lo += Sse41.MultiplyLow(p0, s);
            hi += Sse41.MultiplyLow(p1, s);
        }
        return (lo, hi);
    }
}

/// <summary>
/// The K-quant dot product and prompt tile on 128-bit SIMD (NEON on the Raspberry Pi and arm64
/// phones; portable Vector128 elsewhere without AVX2), where x64 has its AVX2/AVX-512 kernels.
/// Per super-block: the weights unpacked to int8 once (<see cref="IKQuant128Block.Unpack"/>), then
/// for each activation row the eight int32 lanes of ggml's generic kernel and its float tail —
/// <c>sums[l] += (d·y.d)·aux32[l]</c>, <c>sumf −= (dmin·y.d)·Σ bsums·min</c>, the lanes added to
/// sumf in order at the end — so every result equals the scalar reference bit for bit. With the
/// dot-product extension (<see cref="AdvSimdDpKLanes"/>) the integers are the same but only their
/// per-super-block total exists, so the float tail is llama.cpp's own NEON one:
/// <c>sumf −= (dmin·y.d)·Σ bsums·min; sumf += (d·y.d)·total</c> (Q2_K keeps its reference tail,
/// which already works on the total, and stays bit-exact). That equals the reference within
/// float-order tolerance, as x64's AVX2+FMA kernels do, and equals
/// <see cref="DotTotalOrderReference{TK}"/> bit for bit. The tile
/// unpacks each super-block once for up to four activation rows (the per-pair dot unpacked it
/// for every pair). Written by hand: no library offers ggml's K-quant block arithmetic.
/// </summary>
internal static unsafe class KQuant128
{
    private const int Acts = 4;

    /// <summary>True where the 128-bit path runs (NEON, or an accelerated Vector128).</summary>
    public static bool IsSupported => AdvSimd.Arm64.IsSupported || Vector128.IsHardwareAccelerated;

    /// <summary>
    /// Σ_j (bsums[2j] + bsums[2j+1])·mins[j] over the eight 32-value sub-blocks (Q4_K, Q5_K), in
    /// vector steps: it runs per (row, activation row, super-block), and the scalar loop measured
    /// 5–10% of the Q4_K tile on the x64 stand-in. Exact integers (|bsum| ≤ 16·128, mins &lt; 64), so
    /// the order of the additions does not matter.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int PairedMinSum(int* mins, short* bsums) =>
        Vector128.Sum(PairSums(Vector128.Load(bsums)) * Vector128.Load(mins) + PairSums(Vector128.Load(bsums + 8)) * Vector128.Load(mins + 4));

    /// <summary>
    /// For the NEON register-only Q4_K/Q5_K kernels: the eight 6-bit scales and the eight mins as
    /// int32 vectors of four (scales 0..3, 4..7; mins 0..3, 4..7). Requires AdvSimd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<int> Sc03, Vector128<int> Sc47, Vector128<int> Mn03, Vector128<int> Mn47) ScalesMinsK4AdvSimd(byte* packed)
    {
        Vector128<byte> sm = KQuantFma.UnpackScalesMinsK4(packed); // scales 0..7, mins 0..7
        Vector128<ushort> sc16 = AdvSimd.ZeroExtendWideningLower(sm.GetLower());
        Vector128<ushort> mn16 = AdvSimd.ZeroExtendWideningUpper(sm);
        return (AdvSimd.ZeroExtendWideningLower(sc16.GetLower()).AsInt32(), AdvSimd.ZeroExtendWideningUpper(sc16).AsInt32(),
            AdvSimd.ZeroExtendWideningLower(mn16.GetLower()).AsInt32(), AdvSimd.ZeroExtendWideningUpper(mn16).AsInt32());
    }

    /// <summary>The min term's integer Σ (bsums[2j] + bsums[2j+1])·min_j (exact, as <see cref="PairedMinSum"/>). Requires AdvSimd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MinSumK4AdvSimd(Vector128<int> mn03, Vector128<int> mn47, short* bsums) =>
        Vector128.Sum(AdvSimd.AddPairwiseWidening(Vector128.Load(bsums)) * mn03 + AdvSimd.AddPairwiseWidening(Vector128.Load(bsums + 8)) * mn47);

    /// <summary>
    /// Σ_c (lo_c·scale[2c] + hi_c·scale[2c+1]) summed over lanes: the super-block total of the
    /// Q4_K/Q5_K register kernels from their eight <c>sdot</c> results (lo_c: sub-block 2c, hi_c:
    /// 2c + 1), two <c>mla</c>-by-element chains. Exact (|lane| &lt; 2^23). Requires AdvSimd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ScaledTotalK4AdvSimd(Vector128<int> lo0, Vector128<int> hi0, Vector128<int> lo1, Vector128<int> hi1,
        Vector128<int> lo2, Vector128<int> hi2, Vector128<int> lo3, Vector128<int> hi3, Vector128<int> sc03, Vector128<int> sc47)
    {
        var acc0 = AdvSimd.MultiplyBySelectedScalar(lo0, sc03, 0);
        var acc1 = AdvSimd.MultiplyBySelectedScalar(hi0, sc03, 1);
        acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, lo1, sc03, 2);
        acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, hi1, sc03, 3);
        acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, lo2, sc47, 0);
        acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, hi2, sc47, 1);
        acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, lo3, sc47, 2);
        acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, hi3, sc47, 3);
        return Vector128.Sum(acc0 + acc1);
    }

    /// <summary>Σ_j bsums[j]·mins[j] over the sixteen 16-value sub-blocks (Q2_K), in vector steps (exact integers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MinSum16(int* mins, short* bsums)
    {
        var (b0, b1) = Vector128.Widen(Vector128.Load(bsums));
        var (b2, b3) = Vector128.Widen(Vector128.Load(bsums + 8));
        return Vector128.Sum(b0 * Vector128.Load(mins) + b1 * Vector128.Load(mins + 4) + b2 * Vector128.Load(mins + 8) + b3 * Vector128.Load(mins + 12));
    }

    /// <summary><c>[v0 + v1, v2 + v3, v4 + v5, v6 + v7]</c> as int32 (NEON <c>saddlp</c>, SSE2 <c>pmaddwd</c> by ones).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> PairSums(Vector128<short> v)
    {
        if (AdvSimd.IsSupported) return AdvSimd.AddPairwiseWidening(v);
        if (Sse2.IsSupported) return Sse2.MultiplyAddAdjacent(v, Vector128<short>.One);
        var (lo, hi) = Vector128.Widen(v);
        return Vector128.Create(lo[0] + lo[1], lo[2] + lo[3], hi[0] + hi[1], hi[2] + hi[3]);
    }

    /// <summary>
    /// Q4_K/Q5_K's packed 6-bit scales and mins: each 32-value scale given to both 16-value
    /// halves, the eight mins as they are. Unpacked on 32-bit words (<see cref="KQuantFma.UnpackScalesMinsK4"/>,
    /// llama.cpp's <c>utmp</c> masks) and widened in vector steps: the per-scale
    /// <see cref="KQuant.GetScaleMinK4"/> loop was ~80 scalar instructions per super-block, which a
    /// matrix-vector product pays for every row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScalesAndMinsK4(byte* packed, int* scales, int* mins)
    {
        Vector128<byte> sm = KQuantFma.UnpackScalesMinsK4(packed); // scales 0..7, mins 0..7
        var (pairs0, pairs1) = Vector128.Widen(Vector128.Shuffle(sm, Vector128.Create((byte)0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
        var (s0, s1) = Vector128.Widen(pairs0);
        var (s2, s3) = Vector128.Widen(pairs1);
        s0.AsInt32().Store(scales);
        s1.AsInt32().Store(scales + 4);
        s2.AsInt32().Store(scales + 8);
        s3.AsInt32().Store(scales + 12);
        var (m0, m1) = Vector128.Widen(Vector128.Widen(sm).Upper);
        m0.AsInt32().Store(mins);
        m1.AsInt32().Store(mins + 4);
    }

    /// <summary>
    /// The scalar statement of the dot-product-extension order (see the class summary): per
    /// super-block the unpacked integers' total Σ_j scale_j·Σ a·q8, then
    /// <c>sumf −= (dmin·y.d)·Σ bsums·min; sumf += (d·y.d)·total</c> (Q2_K: its reference tail).
    /// Tests hold it within float-order tolerance of ggml's reference and the NEON tile to it bit for bit.
    /// </summary>
    internal static float DotTotalOrderReference<TK>(int n, byte* x, byte* y) where TK : struct, IKQuant128Block
    {
        KQuant.CheckLength(n, TK.Name);
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        int* mins = stackalloc int[16];
        float sumf = 0;
        for (int ib = 0; ib < n / KQuant.QK_K; ib++)
        {
            byte* block = x + (long)ib * TK.BlockBytes;
            var yb = (BlockQ8_K*)y + ib;
            TK.Unpack(block, a, scales, mins);
            int isum = 0;
            for (int j = 0; j < 16; j++)
            {
                int s = 0;
                for (int i = 16 * j; i < 16 * j + 16; i++) s += a[i] * yb->Qs[i];
                isum += scales[j] * s;
            }
            float dx = TK.Scale(block);
            float dmx = TK.HasMins ? TK.MinScale(block) : 0;
            if (TK.TotalTail)
            {
                sumf += yb->D * dx * isum - yb->D * dmx * TK.MinSum(mins, yb->Bsums);
                continue;
            }
            if (TK.HasMins) sumf -= dmx * yb->D * TK.MinSum(mins, yb->Bsums);
            sumf += dx * yb->D * isum;
        }
        return sumf;
    }

    /// <summary>One row · one activation row on this CPU's 128-bit path.</summary>
    public static float Dot<TK>(int n, byte* x, byte* y) where TK : struct, IKQuant128Block
    {
        float r;
        if (AdvSimd.Arm64.IsSupported && Dp.IsSupported) DotTile<TK, AdvSimdDpKLanes>(n, x, 0, 1, y, 0, 1, &r, 1);
        else if (AdvSimd.Arm64.IsSupported) DotTile<TK, AdvSimdKLanes>(n, x, 0, 1, y, 0, 1, &r, 1);
        else DotTile<TK, Vector128KLanes>(n, x, 0, 1, y, 0, 1, &r, 1);
        return r;
    }

    /// <summary><see cref="WeightFormat.VecDotTile"/> on this CPU's 128-bit path.</summary>
    public static void DotTile<TK>(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
        where TK : struct, IKQuant128Block
    {
        if (AdvSimd.Arm64.IsSupported && Dp.IsSupported) DotTile<TK, AdvSimdDpKLanes>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else if (AdvSimd.Arm64.IsSupported) DotTile<TK, AdvSimdKLanes>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else DotTile<TK, Vector128KLanes>(n, weights, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }

    /// <summary>y[a·yStride + r] = row r · activation a with <typeparamref name="TL"/>'s lanes (tests and selftest call each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTile<TK, TL>(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
        where TK : struct, IKQuant128Block where TL : struct, IKQuantLanes128
    {
        KQuant.CheckLength(n, TK.Name);
        int nb = n / KQuant.QK_K;
        sbyte* a = stackalloc sbyte[KQuant.QK_K];
        int* scales = stackalloc int[16];
        int* mins = stackalloc int[16];
        var sums = stackalloc Vector128<float>[2 * Acts];
        float* sumf = stackalloc float[Acts];
        for (int r = 0; r < nRows; r++)
        {
            byte* row = weights + r * rowBytes;
            for (int a0 = 0; a0 < nActs; a0 += Acts)
            {
                int na = Math.Min(Acts, nActs - a0);
                for (int k = 0; k < 2 * Acts; k++) sums[k] = Vector128<float>.Zero;
                for (int k = 0; k < Acts; k++) sumf[k] = 0;
                for (int ib = 0; ib < nb; ib++)
                {
                    byte* block = row + (long)ib * TK.BlockBytes;
                    TK.Unpack(block, a, scales, mins);
                    float dx = TK.Scale(block);
                    float dmx = TK.HasMins ? TK.MinScale(block) : 0;
                    for (int k = 0; k < na; k++)
                    {
                        var yb = (BlockQ8_K*)(acts + (a0 + k) * actStride) + ib;
                        if (TK.TotalTail)
                        {
                            int isum = TL.Total(a, yb->Qs, scales, TK.Scale32);
                            float dall = yb->D * dx;
                            float dmin = yb->D * dmx;
                            sumf[k] += dall * isum - dmin * TK.MinSum(mins, yb->Bsums);
                            continue;
                        }
                        if (TL.IsTotal)
                        {
                            // llama.cpp's NEON order (ggml_vec_dot_q{3,4,5,6}_K_q8_K): min term first, then d·total.
                            int isum = TL.Total(a, yb->Qs, scales, TK.Scale32);
                            if (TK.HasMins) sumf[k] -= dmx * yb->D * TK.MinSum(mins, yb->Bsums);
                            sumf[k] += dx * yb->D * isum;
                            continue;
                        }
                        var (lo, hi) = TL.Lanes(a, yb->Qs, scales);
                        var d = Vector128.Create(dx * yb->D);
                        sums[2 * k] += d * Vector128.ConvertToSingle(lo);
                        sums[2 * k + 1] += d * Vector128.ConvertToSingle(hi);
                        if (TK.HasMins)
                        {
                            float dmin = dmx * yb->D;
                            sumf[k] -= dmin * TK.MinSum(mins, yb->Bsums);
                        }
                    }
                }
                for (int k = 0; k < na; k++)
                {
                    float s = sumf[k];
                    if (TK.TotalTail || TL.IsTotal)
                    {
                        y[(a0 + k) * yStride + r] = s;
                        continue;
                    }
                    var lo = sums[2 * k];
                    var hi = sums[2 * k + 1];
                    s += lo.GetElement(0); s += lo.GetElement(1); s += lo.GetElement(2); s += lo.GetElement(3);
                    s += hi.GetElement(0); s += hi.GetElement(1); s += hi.GetElement(2); s += hi.GetElement(3);
                    y[(a0 + k) * yStride + r] = s;
                }
            }
        }
    }
}

/// <summary>Q4_K for <see cref="KQuant128"/>: nibbles 32 bytes at a time (low = values 64c..64c+31, high = 64c+32..64c+63), each 32-value scale given to both 16-value halves.</summary>
internal readonly unsafe struct Q4_K128 : IKQuant128Block
{
    public static bool Scale32 => true;
    public static int BlockBytes => sizeof(BlockQ4_K);
    public static string Name => "Q4_K";
    public static bool HasMins => true;
    public static bool TotalTail => false;
    public static int MinSum(int* mins, short* bsums) => KQuant128.PairedMinSum(mins, bsums);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unpack(byte* block, sbyte* a, int* scales, int* mins)
    {
        var x = (BlockQ4_K*)block;
        var low = Vector128.Create((byte)0xF);
        for (int c = 0; c < 4; ++c)
        {
            var q0 = Vector128.Load(x->Qs + 32 * c);
            var q1 = Vector128.Load(x->Qs + 32 * c + 16);
            (q0 & low).Store((byte*)a + 64 * c);
            (q1 & low).Store((byte*)a + 64 * c + 16);
            Vector128.ShiftRightLogical(q0, 4).Store((byte*)a + 64 * c + 32);
            Vector128.ShiftRightLogical(q1, 4).Store((byte*)a + 64 * c + 48);
        }
        KQuant128.ScalesAndMinsK4(x->Scales, scales, mins);
    }

    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ4_K*)block)->D);
    public static float MinScale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ4_K*)block)->DMin);
}

/// <summary>Q5_K for <see cref="KQuant128"/>: Q4_K's nibbles plus 16 where the high bit (qh bit 2c / 2c+1) is set.</summary>
internal readonly unsafe struct Q5_K128 : IKQuant128Block
{
    public static bool Scale32 => true;
    public static int BlockBytes => sizeof(BlockQ5_K);
    public static string Name => "Q5_K";
    public static bool HasMins => true;
    public static bool TotalTail => false;
    public static int MinSum(int* mins, short* bsums) => KQuant128.PairedMinSum(mins, bsums);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unpack(byte* block, sbyte* a, int* scales, int* mins)
    {
        var x = (BlockQ5_K*)block;
        var low = Vector128.Create((byte)0xF);
        var sixteen = Vector128.Create((byte)16);
        var qh0 = Vector128.Load(x->Qh);
        var qh1 = Vector128.Load(x->Qh + 16);
        for (int c = 0; c < 4; ++c)
        {
            var b1 = Vector128.Create((byte)(1 << (2 * c)));
            var b2 = Vector128.Create((byte)(2 << (2 * c)));
            var q0 = Vector128.Load(x->Qs + 32 * c);
            var q1 = Vector128.Load(x->Qs + 32 * c + 16);
            ((q0 & low) + (Vector128.Equals(qh0 & b1, b1) & sixteen)).Store((byte*)a + 64 * c);
            ((q1 & low) + (Vector128.Equals(qh1 & b1, b1) & sixteen)).Store((byte*)a + 64 * c + 16);
            (Vector128.ShiftRightLogical(q0, 4) + (Vector128.Equals(qh0 & b2, b2) & sixteen)).Store((byte*)a + 64 * c + 32);
            (Vector128.ShiftRightLogical(q1, 4) + (Vector128.Equals(qh1 & b2, b2) & sixteen)).Store((byte*)a + 64 * c + 48);
        }
        KQuant128.ScalesAndMinsK4(x->Scales, scales, mins);
    }

    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ5_K*)block)->D);
    public static float MinScale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ5_K*)block)->DMin);
}

/// <summary>
/// Q6_K for <see cref="KQuant128"/>: per 128-value half, ql bytes 0..31 and 32..63 give four nibble
/// runs (values +0, +32, +64, +96), each with two high bits from qh shifted by 0/2/4/6, minus 32.
/// </summary>
internal readonly unsafe struct Q6_K128 : IKQuant128Block
{
    public static bool Scale32 => false;
    public static int BlockBytes => sizeof(BlockQ6_K);
    public static string Name => "Q6_K";
    public static bool HasMins => false;
    public static bool TotalTail => false;
    public static int MinSum(int* mins, short* bsums) => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unpack(byte* block, sbyte* a, int* scales, int* mins)
    {
        var x = (BlockQ6_K*)block;
        for (int h = 0; h < 2; ++h)
            for (int half = 0; half < 2; ++half)
            {
                int o = 16 * half;
                var l0 = Vector128.Load(x->Ql + 64 * h + o);
                var l1 = Vector128.Load(x->Ql + 64 * h + 32 + o);
                var hb = Vector128.Load(x->Qh + 32 * h + o);
                byte* dst = (byte*)a + 128 * h + o;
                Combine(l0 & Vector128.Create((byte)0xF), hb).Store(dst);
                Combine(l1 & Vector128.Create((byte)0xF), Vector128.ShiftRightLogical(hb, 2)).Store(dst + 32);
                Combine(Vector128.ShiftRightLogical(l0, 4), Vector128.ShiftRightLogical(hb, 4)).Store(dst + 64);
                Combine(Vector128.ShiftRightLogical(l1, 4), Vector128.ShiftRightLogical(hb, 6)).Store(dst + 96);
            }
        for (int j = 0; j < 16; ++j) scales[j] = x->Scales[j];
    }

    /// <summary>(nibble | (qhShifted &amp; 3) &lt;&lt; 4) − 32, per byte (wrapping to the signed value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Combine(Vector128<byte> nib, Vector128<byte> qhShifted) =>
        (nib | Vector128.ShiftLeft(qhShifted & Vector128.Create((byte)3), 4)) - Vector128.Create((byte)32);

    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ6_K*)block)->D);
    public static float MinScale(byte* block) => 0;
}

/// <summary>
/// Q3_K for <see cref="KQuant128"/>: per 128-value half h and shift s, value 128h + 32s + l is
/// ((qs[32h + l] &gt;&gt; 2s) &amp; 3) − 4 where hmask[l] bit 4h + s is clear; the 16 six-bit scales minus 32.
/// </summary>
internal readonly unsafe struct Q3_K128 : IKQuant128Block
{
    public static bool Scale32 => false;
    public static int BlockBytes => sizeof(BlockQ3_K);
    public static string Name => "Q3_K";
    public static bool HasMins => false;
    public static bool TotalTail => false;
    public static int MinSum(int* mins, short* bsums) => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unpack(byte* block, sbyte* a, int* scales, int* mins)
    {
        var x = (BlockQ3_K*)block;
        var three = Vector128.Create((byte)3);
        var four = Vector128.Create((byte)4);
        for (int half = 0; half < 2; ++half)
        {
            var hm = Vector128.Load(x->HMask + 16 * half);
            for (int h = 0; h < 2; ++h)
            {
                var q = Vector128.Load(x->Qs + 32 * h + 16 * half);
                for (int s = 0; s < 4; ++s)
                {
                    var bit = Vector128.Create((byte)(1 << (4 * h + s)));
                    // 4 where the high bit is clear, 0 where it is set.
                    var off = Vector128.AndNot(four, Vector128.Equals(hm & bit, bit));
                    ((q & three) - off).Store((byte*)a + 128 * h + 32 * s + 16 * half);
                    q = Vector128.ShiftRightLogical(q, 2);
                }
            }
        }
        sbyte* packed = stackalloc sbyte[16];
        Q3_K.UnpackScales(x->Scales, packed);
        for (int j = 0; j < 16; ++j) scales[j] = packed[j] - 32;
    }

    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ3_K*)block)->D);
    public static float MinScale(byte* block) => 0;
}

/// <summary>
/// Q2_K for <see cref="KQuant128"/>: value 128h + 32s + l is (qs[32h + l] &gt;&gt; 2s) &amp; 3; each
/// 16-value sub-block's scale is the low nibble of its scale byte and its min the high nibble.
/// </summary>
internal readonly unsafe struct Q2_K128 : IKQuant128Block
{
    public static bool Scale32 => false;
    public static int BlockBytes => sizeof(BlockQ2_K);
    public static string Name => "Q2_K";
    public static bool HasMins => true;
    public static bool TotalTail => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MinSum(int* mins, short* bsums) => KQuant128.MinSum16(mins, bsums);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Unpack(byte* block, sbyte* a, int* scales, int* mins)
    {
        var x = (BlockQ2_K*)block;
        var three = Vector128.Create((byte)3);
        for (int h = 0; h < 2; ++h)
            for (int half = 0; half < 2; ++half)
            {
                var q = Vector128.Load(x->Qs + 32 * h + 16 * half);
                for (int s = 0; s < 4; ++s)
                {
                    (q & three).Store((byte*)a + 128 * h + 32 * s + 16 * half);
                    q = Vector128.ShiftRightLogical(q, 2);
                }
            }
        for (int j = 0; j < 16; ++j)
        {
            scales[j] = x->Scales[j] & 0xF;
            mins[j] = x->Scales[j] >> 4;
        }
    }

    public static float Scale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ2_K*)block)->D);
    public static float MinScale(byte* block) => QuantMath.Fp16ToFp32Fast(((BlockQ2_K*)block)->DMin);
}
