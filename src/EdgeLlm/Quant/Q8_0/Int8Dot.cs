using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// Σ x[i]·y[i] over one 32-value block (two 16-lane halves), the integer core of the legacy
/// block formats, as a strategy type so one generic kernel body serves every ISA (the JIT and
/// NativeAOT specialize generic methods over structs; no reflection, no virtual calls).
/// </summary>
internal interface IBlockDot
{
    /// <summary>Σ over the 32 lanes of a·b (exact: every path sums int8 products as int32).</summary>
    static abstract int Dot(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1);
}

/// <summary>
/// <see cref="IBlockDot"/> left unreduced, for tiles that meet several activation rows: the
/// block's products summed into four int32 lanes (which products land in which lane is the
/// strategy's business; their total is the block sum, exactly), and the pairwise add that folds
/// four such vectors into one holding the four block sums (<see cref="LegacyTile"/>).
/// </summary>
internal interface IBlockDotLanes
{
    /// <summary>Four int32 lanes whose total is Σ over the 32 lanes of a·b (exact).</summary>
    static abstract Vector128<int> Lanes(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1);

    /// <summary><c>[a0 + a1, a2 + a3, b0 + b1, b2 + b3]</c> (NEON <c>addp</c>, SSSE3 <c>phaddd</c>).</summary>
    static abstract Vector128<int> AddPairwise(Vector128<int> a, Vector128<int> b);
}

/// <summary>AVX2 <c>vpmovsxbw</c> + <c>vpmaddwd</c> (<see cref="QuantMath.DotI8Avx2"/>).</summary>
internal readonly struct Avx2BlockDot : IBlockDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        QuantMath.DotI8Avx2(a0, a1, b0, b1);
}

/// <summary>Portable Vector128 widening (<see cref="QuantMath.DotI8Vector128"/>).</summary>
internal readonly struct Vector128BlockDot : IBlockDot, IBlockDotLanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        QuantMath.DotI8Vector128(a0, a1, b0, b1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Lanes(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        QuantMath.DotI8Vector128Lanes(a0, a1, b0, b1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddPairwise(Vector128<int> a, Vector128<int> b) =>
        Ssse3.IsSupported ? Ssse3.HorizontalAdd(a, b)
        : AdvSimd.Arm64.IsSupported ? AdvSimd.Arm64.AddPairwise(a, b)
        : Vector128.Create(a.GetElement(0) + a.GetElement(1), a.GetElement(2) + a.GetElement(3), b.GetElement(0) + b.GetElement(1), b.GetElement(2) + b.GetElement(3));
}

/// <summary>ARMv8.2 dot-product extension: <c>sdot</c> adds four int8 products into each int32 lane.</summary>
internal readonly struct AdvSimdDpBlockDot : IBlockDot, IBlockDotLanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        AdvSimd.Arm64.AddAcross(Lanes(a0, a1, b0, b1)).ToScalar();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Lanes(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, a0, b0), a1, b1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddPairwise(Vector128<int> a, Vector128<int> b) => AdvSimd.Arm64.AddPairwise(a, b);
}

/// <summary>
/// Plain NEON: <c>smull</c>/<c>smull2</c> form int16 products (|a·b| ≤ 2^14, exact), each
/// product vector is widened pairwise into int32 (<c>saddlp</c>/<c>sadalp</c>) before any
/// two products are added, so -128·-128 + -128·-128 cannot overflow int16.
/// </summary>
internal readonly struct AdvSimdBlockDot : IBlockDot, IBlockDotLanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        AdvSimd.Arm64.AddAcross(Lanes(a0, a1, b0, b1)).ToScalar();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Lanes(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1)
    {
        var acc = AdvSimd.AddPairwiseWidening(AdvSimd.MultiplyWideningLower(a0.GetLower(), b0.GetLower()));
        acc = AdvSimd.AddPairwiseWideningAndAdd(acc, AdvSimd.MultiplyWideningUpper(a0, b0));
        acc = AdvSimd.AddPairwiseWideningAndAdd(acc, AdvSimd.MultiplyWideningLower(a1.GetLower(), b1.GetLower()));
        return AdvSimd.AddPairwiseWideningAndAdd(acc, AdvSimd.MultiplyWideningUpper(a1, b1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddPairwise(Vector128<int> a, Vector128<int> b) => AdvSimd.Arm64.AddPairwise(a, b);
}

/// <summary>
/// AVX-512BW helpers: two 32-value blocks share one 512-bit register
/// (<c>[block A: values 0..31 | block B: values 0..31]</c>), so the 16 int32 lanes that
/// <c>vpmaddwd</c> leaves are lanes 0..7 for A and 8..15 for B; <see cref="Reduce4"/> turns two
/// such registers into the four per-block sums.
/// </summary>
internal static unsafe class Int8Dot
{
    /// <summary>Builds <c>[a0 | a1 | b0 | b1]</c> from the halves of two blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Pack(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        Join(Avx2.InsertVector128(a0.ToVector256Unsafe(), a1, 1), Avx2.InsertVector128(b0.ToVector256Unsafe(), b1, 1));

    /// <summary>
    /// <c>[lo | hi]</c> with one <c>vinserti64x4</c>. (Vector512.Create(lo, hi) is built through a
    /// stack temporary by the .NET 10 JIT, measured 10–15% slower in the Q8_0 prompt tile.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Join(Vector256<sbyte> lo, Vector256<sbyte> hi) => Avx512F.InsertVector256(lo.ToVector512Unsafe(), hi, 1);

    /// <summary>Loads the 32 quants of two (non-adjacent) blocks into one register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Load2(sbyte* a, sbyte* b) => Join(Vector256.Load(a), Vector256.Load(b));

    /// <summary>
    /// x·y for weights x in [-127, 127] and any int8 y: <c>vpmaddubsw</c> needs one unsigned
    /// operand, so it multiplies |y| by x with y's sign moved onto x (AVX-512 has no
    /// <c>vpsignb</c>: a masked subtract from zero instead). Pairs stay within ±2·128·127, so
    /// the int16 saturation never triggers; <c>vpmaddwd</c> by ones widens to int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> DotSigned(Vector512<sbyte> x, Vector512<sbyte> y)
    {
        var ay = Avx512BW.Abs(y);
        var sx = Vector512.ConditionalSelect(Vector512.LessThan(y, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - x, x);
        var p = Avx512BW.MultiplyAddAdjacent(ay, sx);
        return Avx512BW.MultiplyAddAdjacent(p, Vector512<short>.One);
    }

    /// <summary>x·y for unsigned weights x in [0, 127]: one <c>vpmaddubsw</c> (no saturation: |pair| ≤ 2·127·128 &lt; 2^15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> DotUnsigned(Vector512<byte> x, Vector512<sbyte> y) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(x, y), Vector512<short>.One);

    /// <summary>
    /// x·y for any int8 on both sides (Q8_0 weights may hold -128): sign-extend each block to
    /// 32 int16 and <c>vpmaddwd</c>; the two 16-lane results are folded to 8 lanes per block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> DotExact(Vector512<sbyte> x, Vector512<sbyte> y)
    {
        var pa = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(x.GetLower()), Avx512BW.ConvertToVector512Int16(y.GetLower()));
        var pb = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(x.GetUpper()), Avx512BW.ConvertToVector512Int16(y.GetUpper()));
        // [pa.q0, pa.q1, pb.q0, pb.q1] + [pa.q2, pa.q3, pb.q2, pb.q3]
        return Avx512F.Shuffle4x128(pa, pb, 0b01_00_01_00) + Avx512F.Shuffle4x128(pa, pb, 0b11_10_11_10);
    }

    /// <summary>
    /// The four block sums of two registers laid out <c>[A: 8 lanes | B: 8 lanes]</c>,
    /// <c>[C | D]</c>, returned as <c>(A, B, C, D)</c>.
    /// <code>
    /// quarters: v01 = [A0 A1 B0 B1], v23 = [C0 C1 D0 D1]
    /// even + odd quarters -> [A B C D] (4 lanes each) -> in-quarter pshufd adds -> lane 0 of each
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Reduce4(Vector512<int> v01, Vector512<int> v23)
    {
        var s = Avx512F.Shuffle4x128(v01, v23, 0b10_00_10_00) + Avx512F.Shuffle4x128(v01, v23, 0b11_01_11_01);
        s += Avx512F.Shuffle(s, 0b01_00_11_10);
        s += Avx512F.Shuffle(s, 0b10_11_00_01);
        return Avx512F.PermuteVar16x32(s, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }
}
