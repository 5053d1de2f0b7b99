using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>f16 vector helpers for the attention, whose operands ggml keeps in f16.</summary>
internal static unsafe class HalfMath
{
    /// <summary>
    /// Exact f16 → f32 of <paramref name="n"/> values: runs of normal halves by the short steps of
    /// <see cref="Widen32"/> (AVX-512) or <see cref="WidenNormal256"/> (AVX2), others by
    /// <see cref="Widen512"/> / <see cref="Widen256"/> / <see cref="Widen128"/>, then a scalar tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Widen(Half* src, float* dst, int n)
    {
        var h = (ushort*)src;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= n; i += 32) Widen32(h + i, dst + i);
            for (; i + 16 <= n; i += 16) Widen512(Vector256.Load(h + i)).Store(dst + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var exponent = Vector256.Create((ushort)0x7C00);
            for (; i + 16 <= n; i += 16)
            {
                var hv = Vector256.Load(h + i);
                var e = hv & exponent;
                if ((Vector256.Equals(e, Vector256<ushort>.Zero) | Vector256.Equals(e, exponent)) != Vector256<ushort>.Zero)
                {
                    // A zero, subnormal, infinity or NaN among the 16: the general steps.
                    Widen256(hv.GetLower()).Store(dst + i);
                    Widen256(hv.GetUpper()).Store(dst + i + 8);
                    continue;
                }
                var (lo, hi) = Vector256.Widen(hv.AsInt16());
                WidenNormal256(lo).Store(dst + i);
                WidenNormal256(hi).Store(dst + i + 8);
            }
            for (; i + 8 <= n; i += 8) Widen256(Vector128.Load(h + i)).Store(dst + i);
        }
        else if (Vector128.IsHardwareAccelerated)
            for (; i + 4 <= n; i += 4) Widen128(h + i).Store(dst + i);
        for (; i < n; i++) dst[i] = (float)src[i];
    }

    /// <summary>
    /// Exact f16 → f32 of 16 values with integer steps and no float operation on a subnormal operand
    /// (which would cost an x86 microcode assist per instruction). A half with exponent e ≥ 1 is its
    /// magnitude bits shifted into place with the exponent rebiased (+112); a zero or subnormal one
    /// (e = 0, value m·2⁻²⁴) is first built as if e were 1, 2⁻¹⁴·(1 + m/1024), and 2⁻¹⁴ subtracted,
    /// exact by Sterbenz's lemma and normal or zero; infinity and NaN (e = 31) get 112 more on the
    /// exponent (255), their mantissa bits kept; the sign goes in last. Every half is checked.
    /// The f16 cache is widened once per value and head group in decode attention, where this was the
    /// largest cost (no f16 conversion instruction in .NET's API): about 12 instructions per vector,
    /// 4 fewer than through <see cref="Quant.QuantMath.HalfBitsToSingle(Vector512{int})"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen512(Vector256<ushort> h)
    {
        var u = Vector512.WidenLower(h.ToVector512Unsafe()).AsUInt32();
        var abs = u & Vector512.Create(0x7fffu);
        var small = Vector512.LessThan(abs, Vector512.Create(0x0400u)); // e = 0
        var bits = (abs << 13) + Vector512.Create(0x38000000u) + (small & Vector512.Create(0x00800000u));
        var mag = bits.AsSingle() - (small & Vector512.Create(0x38800000u)).AsSingle(); // - 2^-14 where e = 0, else - 0
        var infNan = Vector512.GreaterThanOrEqual(abs, Vector512.Create(0x7c00u)) & Vector512.Create(0x38000000u);
        return ((mag.AsUInt32() + infNan) | ((u << 16) & Vector512.Create(0x80000000u))).AsSingle();
    }

    /// <summary>8 values, as <see cref="Widen512"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(Vector128<ushort> h)
    {
        var u = Vector256.WidenLower(h.ToVector256Unsafe()).AsUInt32();
        var abs = u & Vector256.Create(0x7fffu);
        var small = Vector256.LessThan(abs, Vector256.Create(0x0400u));
        var bits = (abs << 13) + Vector256.Create(0x38000000u) + (small & Vector256.Create(0x00800000u));
        var mag = bits.AsSingle() - (small & Vector256.Create(0x38800000u)).AsSingle();
        var infNan = Vector256.GreaterThanOrEqual(abs, Vector256.Create(0x7c00u)) & Vector256.Create(0x38000000u);
        return ((mag.AsUInt32() + infNan) | ((u << 16) & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary>
    /// 32 halves at <paramref name="h"/> to <paramref name="dst"/> in 512-bit vectors: <see cref="Widen"/>'s
    /// AVX2 steps twice as wide (the short path of <see cref="WidenNormal512"/> when none of the 32 is
    /// zero, subnormal, infinite or NaN, else <see cref="Widen512"/> twice). Vector512's operations mean
    /// the same on every machine (emulated where not accelerated), so the tests check it on AVX2 hosts too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Widen32(ushort* h, float* dst)
    {
        var exponent = Vector512.Create((ushort)0x7C00);
        var hv = Vector512.Load(h);
        var e = hv & exponent;
        if ((Vector512.Equals(e, Vector512<ushort>.Zero) | Vector512.Equals(e, exponent)) != Vector512<ushort>.Zero)
        {
            Widen512(hv.GetLower()).Store(dst);
            Widen512(hv.GetUpper()).Store(dst + 16);
            return;
        }
        var (lo, hi) = Vector512.Widen(hv.AsInt16());
        WidenNormal512(lo).Store(dst);
        WidenNormal512(hi).Store(dst + 16);
    }

    /// <summary>16 normal halves, sign-extended, as <see cref="WidenNormal256"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WidenNormal512(Vector512<int> s) =>
        (((s << 13) & Vector512.Create(unchecked((int)0x8FFFFFFF))) + Vector512.Create(0x38000000)).AsSingle();

    /// <summary>
    /// 8 normal halves (exponent field 1..30), sign-extended to int32 (<paramref name="s"/>): the
    /// f32 bits are the half's low 15 bits shifted into place, the sign (bit 31 of s &lt;&lt; 13, a copy
    /// of the half's sign) kept, the sign's other copies (bits 28..30) cleared, and the exponent
    /// rebiased by +112. Four instructions per vector against Widen256's fourteen; <see cref="Widen"/>
    /// takes this path for 16 halves at a time when none of them is zero, subnormal, infinite or NaN
    /// (two compares and a test). Decode attention widens each cached key and value once per token,
    /// and the general steps were its largest cost on AVX2 (qwen2.5-0.5b at 2048 positions, 2026-11-30).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenNormal256(Vector256<int> s) =>
        (((s << 13) & Vector256.Create(unchecked((int)0x8FFFFFFF))) + Vector256.Create(0x38000000)).AsSingle();

    /// <summary>
    /// 4 values at <paramref name="h"/>, as <see cref="Widen512"/> (NEON has no f16 conversion in
    /// .NET's API; the integer steps are the same on every platform).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen128(ushort* h)
    {
        var u = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)h).AsUInt16());
        var abs = (u & Vector128.Create(0x7fffu)).AsInt32();
        var normal = (Vector128.ShiftLeft(abs, 13) + Vector128.Create(0x38000000)).AsSingle(); // exponent 15 -> 127
        var small = Vector128.ConvertToSingle(abs) * Vector128.Create(0x33800000).AsSingle(); // 2^-24, a normal product
        var mag = Vector128.ConditionalSelect(Vector128.LessThan(abs, Vector128.Create(0x0400)).AsSingle(), small, normal);
        var infNan = Vector128.GreaterThanOrEqual(abs, Vector128.Create(0x7c00)).AsUInt32() & Vector128.Create(0x7f800000u);
        return (mag.AsUInt32() | infNan | Vector128.ShiftLeft(u & Vector128.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>
    /// Rounds <paramref name="n"/> floats to the nearest f16 value in place, keeping them as f32
    /// (nearest even, as ggml's fp32→fp16; bit-identical to <see cref="RoundInPlaceReference"/>).
    /// </summary>
    /// <remarks>
    /// Written by hand because a round trip through TensorPrimitives.ConvertToHalf/ConvertToSingle
    /// measured 5–10 ns a value here (attention rounds every probability, so a 512-token prompt
    /// spent as long rounding as multiplying); <see cref="RoundToHalf(Vector512{float})"/> stays in
    /// f32 lanes and costs a few instructions per vector.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RoundInPlace(float* x, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) RoundToHalf(Vector512.Load(x + i)).Store(x + i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) RoundToHalf(Vector256.Load(x + i)).Store(x + i);
        else if (Vector128.IsHardwareAccelerated)
            for (; i + 4 <= n; i += 4) RoundToHalf(Vector128.Load(x + i)).Store(x + i);
        for (; i < n; i++) x[i] = (float)(Half)x[i];
    }

    /// <summary>
    /// Each lane rounded to the nearest f16 value (ties to even) and returned as f32, as
    /// (float)(Half)x: f16-normal magnitudes drop 13 mantissa bits with an integer round-half-even;
    /// f16-subnormal ones (below 2^-14, a fixed quantum of 2^-24) are rounded by the FPU in
    /// (|x| + 0.5) − 0.5, whose ulp is that quantum; from 65520 up the result is infinity, and a
    /// NaN keeps its sign and top 10 payload bits with the quiet bit set (as Half does).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> RoundToHalf(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var a = bits & Vector512.Create(0x7fffffffu);
        var normal = (a + Vector512.Create(0xfffu) + (Vector512.ShiftRightLogical(a, 13) & Vector512<uint>.One)) & Vector512.Create(0xffffe000u);
        var half = Vector512.Create(0.5f);
        var sub = (a.AsSingle() + half - half).AsUInt32();
        var r = Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(0x38800000u)), sub, normal);
        var inf = Vector512.Create(0x7f800000u);
        var big = Vector512.ConditionalSelect(Vector512.GreaterThan(a, inf), (a & Vector512.Create(0xffffe000u)) | Vector512.Create(0x00400000u), inf);
        r = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(a, Vector512.Create(0x477ff000u)), big, r);
        return (r | (bits & Vector512.Create(0x80000000u))).AsSingle();
    }

    /// <summary><see cref="RoundToHalf(Vector512{float})"/> in 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> RoundToHalf(Vector256<float> x)
    {
        var bits = x.AsUInt32();
        var a = bits & Vector256.Create(0x7fffffffu);
        var normal = (a + Vector256.Create(0xfffu) + (Vector256.ShiftRightLogical(a, 13) & Vector256<uint>.One)) & Vector256.Create(0xffffe000u);
        var half = Vector256.Create(0.5f);
        var sub = (a.AsSingle() + half - half).AsUInt32();
        var r = Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256.Create(0x38800000u)), sub, normal);
        var inf = Vector256.Create(0x7f800000u);
        var big = Vector256.ConditionalSelect(Vector256.GreaterThan(a, inf), (a & Vector256.Create(0xffffe000u)) | Vector256.Create(0x00400000u), inf);
        r = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(a, Vector256.Create(0x477ff000u)), big, r);
        return (r | (bits & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary><see cref="RoundToHalf(Vector512{float})"/> in 4 lanes (NEON).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> RoundToHalf(Vector128<float> x)
    {
        var bits = x.AsUInt32();
        var a = bits & Vector128.Create(0x7fffffffu);
        var normal = (a + Vector128.Create(0xfffu) + (Vector128.ShiftRightLogical(a, 13) & Vector128<uint>.One)) & Vector128.Create(0xffffe000u);
        var half = Vector128.Create(0.5f);
        var sub = (a.AsSingle() + half - half).AsUInt32();
        var r = Vector128.ConditionalSelect(Vector128.LessThan(a, Vector128.Create(0x38800000u)), sub, normal);
        var inf = Vector128.Create(0x7f800000u);
        var big = Vector128.ConditionalSelect(Vector128.GreaterThan(a, inf), (a & Vector128.Create(0xffffe000u)) | Vector128.Create(0x00400000u), inf);
        r = Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(a, Vector128.Create(0x477ff000u)), big, r);
        return (r | (bits & Vector128.Create(0x80000000u))).AsSingle();
    }

    /// <summary>The scalar definition of <see cref="RoundInPlace"/>.</summary>
    public static void RoundInPlaceReference(float* x, int n)
    {
        for (int i = 0; i < n; i++) x[i] = (float)(Half)x[i];
    }

    /// <summary>Rounds <paramref name="n"/> floats to f16 (nearest even, as ggml's fp32→fp16).</summary>
    public static void Round(float* src, Half* dst, int n) =>
        TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(src, n), new Span<Half>(dst, n));
}
