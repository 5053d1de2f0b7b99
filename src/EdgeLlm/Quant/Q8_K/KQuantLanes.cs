using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// Wider and ARM versions of <see cref="KQuant.DotLanesAvx2"/>: the eight int32 lanes
/// <c>aux32[l] = Σ_j scale[j] · Σ_{p in sub-block j, p ≡ l (mod 8)} a[p]·q8[p]</c> of ggml's
/// generic K-quant kernels. Integer sums are exact in any order, so each equals the scalar
/// loop bit for bit; the float tail stays with the caller.
/// </summary>
internal static unsafe class KQuantLanes
{
    /// <summary>
    /// Within each 16-byte sub-block, pairs position l with l + 8 (<c>[0,8,1,9,..,7,15]</c>), so
    /// that <c>vpmaddwd</c>'s adjacent-pair add forms exactly lane l's two products.
    /// </summary>
    private static readonly Vector512<sbyte> s_pairLanes = Vector512.Create(
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);

    /// <summary>
    /// AVX-512BW: 64 values (four sub-blocks) per step. Bytes are paired (l, l+8) in-lane,
    /// sign-extended to int16, q8 is multiplied by its sub-block's scale in int16
    /// (|q8·scale| ≤ 128·128 fits), and <c>vpmaddwd</c> adds a·(q8·scale) for the pair into
    /// int32 (|sum| ≤ 2·32·16384). Lanes 0..7 and 8..15 of the accumulator are two
    /// sub-blocks' worth of the same eight lanes and are added at the end.
    /// Requires Avx512BW; |a| ≤ 32 and |scale| ≤ 128 as every K-quant has.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotLanesAvx512(sbyte* a, sbyte* q8, int* scales)
    {
        // 16 scales as int16, then per step the 32-lane vector [s_j x16 | s_j+1 x16].
        Vector256<short> sc16 = Avx512F.ConvertToVector256Int16(Vector512.Load(scales));
        Vector512<short> sc = Avx512F.InsertVector256(sc16.ToVector512Unsafe(), sc16, 1); // not Vector512.Create(sc16, sc16): a stack temporary
        Vector512<short> idx = Vector512.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
        Vector512<short> two = Vector512.Create((short)2);
        Vector512<int> acc = Vector512<int>.Zero;
        for (int j = 0; j < KQuant.QK_K; j += 64)
        {
            Vector512<sbyte> va = Avx512BW.Shuffle(Vector512.Load(a + j), s_pairLanes);
            Vector512<sbyte> vq = Avx512BW.Shuffle(Vector512.Load(q8 + j), s_pairLanes);
            Vector512<short> s01 = Avx512BW.PermuteVar32x16(sc, idx);
            idx += two;
            Vector512<short> s23 = Avx512BW.PermuteVar32x16(sc, idx);
            idx += two;
            Vector512<short> q0 = Avx512BW.ConvertToVector512Int16(vq.GetLower()) * s01;
            Vector512<short> q1 = Avx512BW.ConvertToVector512Int16(vq.GetUpper()) * s23;
            acc += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(va.GetLower()), q0);
            acc += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(va.GetUpper()), q1);
        }
        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>
    /// NEON: per sub-block, <c>smull</c>/<c>smull2</c> give products 0..7 and 8..15 as int16
    /// (|a·q8| ≤ 32·128); their sum is lane l's pair (≤ 2^13, fits), and
    /// <c>smlal</c>/<c>smlal2</c> multiply by the scale while widening into the int32 lanes 0..3
    /// and 4..7. (The dot-product extension's <c>sdot</c> adds four neighbours, which would mix
    /// lanes, so both NEON variants use this.) Requires AdvSimd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<int> Lo, Vector128<int> Hi) DotLanesAdvSimd(sbyte* a, sbyte* q8, int* scales)
    {
        Vector128<int> lo = Vector128<int>.Zero, hi = Vector128<int>.Zero;
        for (int j = 0; j < KQuant.QK_K / 16; ++j)
        {
            Vector128<sbyte> va = AdvSimd.LoadVector128(a + 16 * j);
            Vector128<sbyte> vq = AdvSimd.LoadVector128(q8 + 16 * j);
            Vector128<short> p = AdvSimd.Add(AdvSimd.MultiplyWideningLower(va.GetLower(), vq.GetLower()), AdvSimd.MultiplyWideningUpper(va, vq));
            Vector128<short> s = Vector128.Create((short)scales[j]);
            lo = AdvSimd.MultiplyWideningLowerAndAdd(lo, p.GetLower(), s.GetLower());
            hi = AdvSimd.MultiplyWideningUpperAndAdd(hi, p, s);
        }
        return (lo, hi);
    }
}
