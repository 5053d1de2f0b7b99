using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// Pieces shared by the vector-accumulating AVX2+FMA K-quant kernels (Q4_K, Q5_K, Q6_K ·
/// Q8_K), organised in the spirit of llama.cpp's x86 <c>ggml_vec_dot_q4_K_q8_K</c>: unsigned
/// quants meet the int8 activations with <c>vpmaddubsw</c> (pairs into int16), sub-block scales
/// are applied with <c>vpmaddwd</c> (pairs into int32), each super-block's eight int32 lanes are
/// converted to f32 once and accumulated with one FMA, and the row ends with one horizontal sum.
/// The integer sums are exactly the reference's; only the float summation order differs, so
/// these kernels equal the generic ones within a float-order tolerance, not bit for bit.
/// </summary>
internal static unsafe class KQuantFma
{
    /// <summary>
    /// Whether the AVX2+FMA K-quant kernels are the decode path (constant to the JIT and to
    /// NativeAOT). Where they are, the register tiles use the same arithmetic so that tiles and
    /// VecDot agree bit for bit.
    /// </summary>
    internal static bool UseAvx2Fma => Avx2.IsSupported && Fma.IsSupported;

    private const uint KMask1 = 0x3f3f3f3f, KMask2 = 0x0f0f0f0f, KMask3 = 0x03030303;

    /// <summary>
    /// The twelve packed 6-bit scales/mins of Q4_K and Q5_K as sixteen bytes: scales 0..7 in
    /// bytes 0..7, mins 0..7 in bytes 8..15 (the same values as <see cref="KQuant.GetScaleMinK4"/>,
    /// four at a time on 32-bit words).
    /// <code>
    /// packed bytes  0..3 : scale j (low 6 bits), top 2 bits = bits 4..5 of scale j+4
    ///               4..7 : min j   (low 6 bits), top 2 bits = bits 4..5 of min j+4
    ///               8..11: low nibble = bits 0..3 of scale j+4, high nibble = of min j+4
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> UnpackScalesMinsK4(byte* packed)
    {
        uint w0 = Unsafe.ReadUnaligned<uint>(packed);
        uint w1 = Unsafe.ReadUnaligned<uint>(packed + 4);
        uint w2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        uint scales03 = w0 & KMask1;
        uint scales47 = (w2 & KMask2) | (((w0 >> 6) & KMask3) << 4);
        uint mins03 = w1 & KMask1;
        uint mins47 = ((w2 >> 4) & KMask2) | (((w1 >> 6) & KMask3) << 4);
        return Vector128.Create(scales03, scales47, mins03, mins47).AsByte();
    }

    /// <summary>
    /// <c>vpshufb</c> masks that broadcast int16 element k (of a 128-bit lane) to all eight int16
    /// of the lane: k = 0..7. Used to give each 32-value chunk its sub-block scale.
    /// </summary>
    private static readonly Vector256<byte> s_bcast0 = Bcast16(0), s_bcast1 = Bcast16(1), s_bcast2 = Bcast16(2), s_bcast3 = Bcast16(3),
        s_bcast4 = Bcast16(4), s_bcast5 = Bcast16(5), s_bcast6 = Bcast16(6), s_bcast7 = Bcast16(7);

    private static Vector256<byte> Bcast16(int k)
    {
        byte lo = (byte)(2 * k), hi = (byte)(2 * k + 1);
        return Vector256.Create(lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi,
            lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi);
    }

    /// <summary>
    /// Eight 32-value sub-block scales (bytes 0..7 of <paramref name="scalesMins"/>, unsigned) as
    /// eight int16 vectors, each the scale broadcast to all sixteen lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void BroadcastScalesK4(Vector128<byte> scalesMins, Vector256<short>* dst)
    {
        Vector128<short> s16 = Sse41.ConvertToVector128Int16(scalesMins);
        Vector256<byte> s = Vector256.Create(s16, s16).AsByte();
        dst[0] = Avx2.Shuffle(s, s_bcast0).AsInt16();
        dst[1] = Avx2.Shuffle(s, s_bcast1).AsInt16();
        dst[2] = Avx2.Shuffle(s, s_bcast2).AsInt16();
        dst[3] = Avx2.Shuffle(s, s_bcast3).AsInt16();
        dst[4] = Avx2.Shuffle(s, s_bcast4).AsInt16();
        dst[5] = Avx2.Shuffle(s, s_bcast5).AsInt16();
        dst[6] = Avx2.Shuffle(s, s_bcast6).AsInt16();
        dst[7] = Avx2.Shuffle(s, s_bcast7).AsInt16();
    }

    /// <summary>The eight mins (bytes 8..15 of <paramref name="scalesMins"/>) as int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> MinsK4(Vector128<byte> scalesMins) =>
        Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(scalesMins, 8));

    /// <summary>
    /// Σ_j min_j · (bsums[2j] + bsums[2j+1]) as four int32 partial sums: the integer part of the
    /// mins' correction (pair sums of bsums fit int16: |.| ≤ 32·127).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> MinProduct(Vector128<short> mins16, short* bsums)
    {
        Vector128<short> pairs = Ssse3.HorizontalAdd(Sse2.LoadVector128(bsums), Sse2.LoadVector128(bsums + 8));
        return Sse2.MultiplyAddAdjacent(mins16, pairs);
    }

    /// <summary>
    /// One 64-value chunk of Q4_K/Q5_K: Σ q·q8 per pair (<c>vpmaddubsw</c>: q ≤ 31 unsigned,
    /// q8 signed, so |pair| ≤ 2·31·128 never saturates), times the chunk's two scales
    /// (<c>vpmaddwd</c>), as eight int32 lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ChunkDot(Vector256<byte> qLow, Vector256<byte> qHigh, sbyte* q8, Vector256<short> scaleLow, Vector256<short> scaleHigh)
    {
        Vector256<short> pl = Avx2.MultiplyAddAdjacent(qLow, Avx.LoadVector256(q8));
        Vector256<short> ph = Avx2.MultiplyAddAdjacent(qHigh, Avx.LoadVector256(q8 + 32));
        return Avx2.Add(Avx2.MultiplyAddAdjacent(pl, scaleLow), Avx2.MultiplyAddAdjacent(ph, scaleHigh));
    }

    /// <summary>
    /// One unpacked Q4_K/Q5_K super-block (<paramref name="q"/>: 256 quants in value order,
    /// <paramref name="sc"/>: the eight broadcast scales, <paramref name="mins"/>: the eight
    /// mins) against one activation block: the VecDot kernels' per-block arithmetic, for the
    /// register tiles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void TileStepK4(byte* q, Vector256<short>* sc, Vector128<short> mins, float xd, float xdmin, BlockQ8_K* yb,
        ref Vector256<float> acc, ref Vector128<float> accMins)
    {
        sbyte* q8 = yb->Qs;
        Vector256<int> sumi = ChunkDot(Avx.LoadVector256(q), Avx.LoadVector256(q + 32), q8, sc[0], sc[1]);
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 64), Avx.LoadVector256(q + 96), q8 + 64, sc[2], sc[3]));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 128), Avx.LoadVector256(q + 160), q8 + 128, sc[4], sc[5]));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 192), Avx.LoadVector256(q + 224), q8 + 192, sc[6], sc[7]));
        float yd = yb->D;
        acc = Fma.MultiplyAdd(Vector256.Create(yd * xd), Avx.ConvertToVector256Single(sumi), acc);
        accMins = Fma.MultiplyAdd(Vector128.Create(-yd * xdmin), Sse2.ConvertToVector128Single(MinProduct(mins, yb->Bsums)), accMins);
    }

    /// <summary>Horizontal sums of the row's two accumulators, in the kernels' fixed order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Finish(Vector256<float> acc, Vector128<float> accMins) =>
        Vector256.Sum(acc) + Vector128.Sum(accMins);
}
