using System.Numerics.Tensors;

namespace EdgeLlm.Kernels;

/// <summary>f16 vector helpers for the attention, whose operands ggml keeps in f16.</summary>
internal static unsafe class HalfMath
{
    private const int Chunk = 256;

    /// <summary>Σ a[i]·b[i] with a already in f32 (an f16 vector widened once, for reuse across many dots).</summary>
    public static float Dot(float* a, Half* b, int n)
    {
        float* fb = stackalloc float[Chunk];
        float sum = 0;
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(b + i, len), new Span<float>(fb, len));
            sum += TensorPrimitives.Dot(new ReadOnlySpan<float>(a + i, len), new ReadOnlySpan<float>(fb, len));
        }
        return sum;
    }

    /// <summary>Rounds <paramref name="n"/> floats to the nearest f16 value in place, keeping them as f32.</summary>
    public static void RoundInPlace(float* x, int n)
    {
        for (int i = 0; i < n; i++) x[i] = (float)(Half)x[i];
    }

    /// <summary>Rounds <paramref name="n"/> floats to f16 (nearest even, as ggml's fp32→fp16).</summary>
    public static void Round(float* src, Half* dst, int n) =>
        TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(src, n), new Span<Half>(dst, n));
}
