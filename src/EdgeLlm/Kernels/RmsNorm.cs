using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>RMS normalization followed by the learned scale, as ggml computes it.</summary>
internal static unsafe class RmsNorm
{
    /// <summary>
    /// y = x / sqrt(mean(x²) + eps) ⊙ weight. As ggml_compute_forward_rms_norm_f32: each square
    /// is a float product summed in double, the mean is rounded to float, and the scale is
    /// 1.0f / sqrtf(mean + eps); the weight multiply is ggml_mul's separate f32 product.
    /// Dispatches to the widest vector path; all paths give the same squares and products, and
    /// the double sum differs from the sequential one only in the order of double additions
    /// (relative 1e-16 before the rounding to float).
    /// </summary>
    public static void Forward(float* x, float* weight, float* y, int n, float eps)
    {
        if (Vector512.IsHardwareAccelerated) ForwardVector512(x, weight, y, n, eps);
        else if (Vector256.IsHardwareAccelerated) ForwardVector256(x, weight, y, n, eps);
        else ForwardReference(x, weight, y, n, eps);
    }

    /// <summary>The scalar definition.</summary>
    public static void ForwardReference(float* x, float* weight, float* y, int n, float eps)
    {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
        Scale(x, weight, y, n, Finish(sum, n, eps), 0);
    }

    /// <summary>16 floats at a time: squares in float, widened and summed in two double accumulators.</summary>
    public static void ForwardVector512(float* x, float* weight, float* y, int n, float eps)
    {
        var acc0 = Vector512<double>.Zero;
        var acc1 = Vector512<double>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var v = Vector512.Load(x + i);
            var sq = v * v;
            acc0 += Vector512.WidenLower(sq);
            acc1 += Vector512.WidenUpper(sq);
        }
        double sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++) sum += (double)(x[i] * x[i]);
        float scale = Finish(sum, n, eps);
        var s = Vector512.Create(scale);
        int j = 0;
        for (; j + 16 <= n; j += 16)
            ((Vector512.Load(x + j) * s) * Vector512.Load(weight + j)).Store(y + j);
        Scale(x, weight, y, n, scale, j);
    }

    /// <summary>8 floats at a time, as <see cref="ForwardVector512"/>.</summary>
    public static void ForwardVector256(float* x, float* weight, float* y, int n, float eps)
    {
        var acc0 = Vector256<double>.Zero;
        var acc1 = Vector256<double>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var v = Vector256.Load(x + i);
            var sq = v * v;
            acc0 += Vector256.WidenLower(sq);
            acc1 += Vector256.WidenUpper(sq);
        }
        double sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++) sum += (double)(x[i] * x[i]);
        float scale = Finish(sum, n, eps);
        var s = Vector256.Create(scale);
        int j = 0;
        for (; j + 8 <= n; j += 8)
            ((Vector256.Load(x + j) * s) * Vector256.Load(weight + j)).Store(y + j);
        Scale(x, weight, y, n, scale, j);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(double sum, int n, float eps)
    {
        float mean = (float)(sum / n);
        return 1.0f / MathF.Sqrt(mean + eps);
    }

    private static void Scale(float* x, float* weight, float* y, int n, float scale, int from)
    {
        for (int i = from; i < n; i++) y[i] = (x[i] * scale) * weight[i];
    }
}
