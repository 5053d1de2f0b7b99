using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>The normalization step of ggml_soft_max_ext: e = exp(x − max) in f32, summed in double, scaled by 1/sum.</summary>
internal static unsafe class Softmax
{
    /// <summary>
    /// x[i] = exp(x[i] − max) / Σ exp(x[j] − max), the sum in double and 1/sum rounded to float,
    /// as ggml_vec_soft_max_f32 + the scale in ggml_compute_forward_soft_max_f32. The vector paths
    /// use the runtime's vectorized exp (ggml uses its own ggml_v_expf): within a few ulp of the
    /// reference's MathF.Exp.
    /// </summary>
    public static void ExpNormalize(float* x, int n, float max)
    {
        if (Vector512.IsHardwareAccelerated) ExpNormalizeVector512(x, n, max);
        else ExpNormalizeReference(x, n, max);
    }

    /// <summary>The scalar definition.</summary>
    public static void ExpNormalizeReference(float* x, int n, float max)
    {
        double sum = 0;
        for (int j = 0; j < n; j++)
        {
            float e = MathF.Exp(x[j] - max);
            x[j] = e;
            sum += e;
        }
        Scale(x, n, (float)(1.0 / sum));
    }

    /// <summary>16 lanes; the exponentials are widened and summed in two double accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ExpNormalizeVector512(float* x, int n, float max)
    {
        var m = Vector512.Create(max);
        var acc0 = Vector512<double>.Zero;
        var acc1 = Vector512<double>.Zero;
        int j = 0;
        for (; j + 16 <= n; j += 16)
        {
            var e = Vector512.Exp(Vector512.Load(x + j) - m);
            e.Store(x + j);
            acc0 += Vector512.WidenLower(e);
            acc1 += Vector512.WidenUpper(e);
        }
        double sum = Vector512.Sum(acc0 + acc1);
        for (; j < n; j++)
        {
            float e = MathF.Exp(x[j] - max);
            x[j] = e;
            sum += e;
        }
        Scale(x, n, (float)(1.0 / sum));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scale(float* x, int n, float inv)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var v = Vector512.Create(inv);
            for (; j + 16 <= n; j += 16) (Vector512.Load(x + j) * v).Store(x + j);
        }
        for (; j < n; j++) x[j] *= inv;
    }
}
