using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>f16 vector helpers for the attention, whose operands ggml keeps in f16.</summary>
internal static unsafe class HalfMath
{
    private const int Chunk = 256;

    /// <summary>
    /// Σ a[i]·b[i] with a already in f32 (an f16 vector widened once, for reuse across many dots).
    /// The f16 side is widened in registers (exact) and multiplied-added in 16 lanes.
    /// </summary>
    public static float Dot(float* a, Half* b, int n)
    {
        if (Vector512.IsHardwareAccelerated) return DotVector512(a, b, n);
        if (Vector256.IsHardwareAccelerated) return DotVector256(a, b, n);
        return DotReference(a, b, n);
    }

    /// <summary>Sequential f32 sum of exact products (the definition; other paths sum in another order).</summary>
    public static float DotReference(float* a, Half* b, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += a[i] * (float)b[i];
        return sum;
    }

    /// <summary>Two 16-lane accumulators with fused multiply-add (as ggml's f16 dot on AVX-512).</summary>
    public static float DotVector512(float* a, Half* b, int n)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var hb = (ushort*)b;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Widen512(Vector256.Load(hb + i)), acc0);
            acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Widen512(Vector256.Load(hb + i + 16)), acc1);
        }
        for (; i + 16 <= n; i += 16)
            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Widen512(Vector256.Load(hb + i)), acc0);
        float sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++) sum += a[i] * (float)b[i];
        return sum;
    }

    /// <summary>8 lanes, as <see cref="DotVector512"/>.</summary>
    public static float DotVector256(float* a, Half* b, int n)
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var hb = (ushort*)b;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Widen256(Vector128.Load(hb + i)), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Widen256(Vector128.Load(hb + i + 8)), acc1);
        }
        for (; i + 8 <= n; i += 8)
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Widen256(Vector128.Load(hb + i)), acc0);
        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++) sum += a[i] * (float)b[i];
        return sum;
    }

    /// <summary>
    /// <see cref="Dot"/> with the f16 operand already widened to f32 (exact): the same lanes, fused
    /// multiply-adds, horizontal sum and tail in the same order, so the result is bit-identical.
    /// Prompt attention widens a layer's cached keys and values once and then runs every dot here.
    /// </summary>
    public static float DotWidened(float* a, float* b, int n)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var acc0 = Vector512<float>.Zero;
            var acc1 = Vector512<float>.Zero;
            int i = 0;
            for (; i + 32 <= n; i += 32)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), acc1);
            }
            for (; i + 16 <= n; i += 16)
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
            float sum = Vector512.Sum(acc0 + acc1);
            for (; i < n; i++) sum += a[i] * b[i];
            return sum;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int i = 0;
            for (; i + 16 <= n; i += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
            }
            for (; i + 8 <= n; i += 8)
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            float sum = Vector256.Sum(acc0 + acc1);
            for (; i < n; i++) sum += a[i] * b[i];
            return sum;
        }
        float s = 0;
        for (int i = 0; i < n; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>Exact f16 → f32 of <paramref name="n"/> values.</summary>
    public static void Widen(Half* src, float* dst, int n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, n), new Span<float>(dst, n));

    /// <summary>
    /// Exact f16 → f32 of 16 values: finite halves by <see cref="Quant.QuantMath.HalfBitsToSingle(Vector512{int})"/>
    /// (integer steps, no float operation on a subnormal operand, which would cost an x86 microcode
    /// assist per instruction); infinity and NaN (exponent 31) get the f32 all-ones exponent OR-ed in,
    /// their mantissa bits kept.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen512(Vector256<ushort> h)
    {
        var u = Vector512.WidenLower(h.ToVector512Unsafe()).AsUInt32();
        var infNan = Vector512.GreaterThanOrEqual(u & Vector512.Create(0x7fffu), Vector512.Create(0x7c00u)); // f16 exponent 31
        return (Quant.QuantMath.HalfBitsToSingle(u.AsInt32()).AsUInt32() | (infNan & Vector512.Create(0x7f800000u))).AsSingle();
    }

    /// <summary>8 values, as <see cref="Widen512"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(Vector128<ushort> h)
    {
        var u = Vector256.WidenLower(h.ToVector256Unsafe()).AsUInt32();
        var infNan = Vector256.GreaterThanOrEqual(u & Vector256.Create(0x7fffu), Vector256.Create(0x7c00u));
        return (Quant.QuantMath.HalfBitsToSingle(u.AsInt32()).AsUInt32() | (infNan & Vector256.Create(0x7f800000u))).AsSingle();
    }

    /// <summary>Rounds <paramref name="n"/> floats to the nearest f16 value in place, keeping them as f32 (nearest even, as ggml's fp32→fp16).</summary>
    public static void RoundInPlace(float* x, int n)
    {
        Half* h = stackalloc Half[Chunk];
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x + i, len), new Span<Half>(h, len));
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(h, len), new Span<float>(x + i, len));
        }
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
