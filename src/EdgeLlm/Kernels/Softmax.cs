using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>The normalization step of ggml_soft_max_ext: e = exp(x − max) in f32 (ggml's own exp, <see cref="ExpF"/>), summed in double, scaled by 1/sum.</summary>
internal static unsafe class Softmax
{
    /// <summary>
    /// x[i] = exp(x[i] − max) / Σ exp(x[j] − max), the sum in double and 1/sum rounded to float,
    /// as ggml_vec_soft_max_f32 + the scale in ggml_compute_forward_soft_max_f32, with the exp ggml
    /// uses there (<see cref="ExpF"/>; it used to be .NET's Vector256.Exp, which computes in double
    /// and took four times the instructions). The widest vectors the machine runs (16, 8 or 4 lanes;
    /// every exp has the same bits whichever width or the scalar tail computes it, the sum's order
    /// differs in the last bits of a double). <paramref name="extra"/> is added to the sum: an attention
    /// sink's exp(sink − max), a term in the denominator with no value of its own (ggml_soft_max_add_sinks).
    /// </summary>
    public static void ExpNormalize(float* x, int n, float max, double extra = 0)
    {
        if (Vector512.IsHardwareAccelerated) ExpNormalizeVector512(x, n, max, extra);
        else if (Vector256.IsHardwareAccelerated) ExpNormalizeVector256(x, n, max, extra);
        else if (Vector128.IsHardwareAccelerated) ExpNormalizeVector128(x, n, max, extra);
        else ExpNormalizeReference(x, n, max, extra);
    }

    /// <summary>The scalar definition.</summary>
    public static void ExpNormalizeReference(float* x, int n, float max, double extra = 0)
    {
        double sum = 0;
        for (int j = 0; j < n; j++)
        {
            float e = ExpF.Scalar(x[j] - max, ExpF.Fused);
            x[j] = e;
            sum += e;
        }
        Scale(x, n, (float)(1.0 / (sum + extra)));
    }

    /// <summary>16 lanes; the exponentials are widened and summed in two double accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ExpNormalizeVector512(float* x, int n, float max, double extra = 0)
    {
        var m = Vector512.Create(max);
        var acc0 = Vector512<double>.Zero;
        var acc1 = Vector512<double>.Zero;
        int j = 0;
        for (; j + 16 <= n; j += 16)
        {
            var e = ExpF.Exp(Vector512.Load(x + j) - m, ExpF.Fused);
            e.Store(x + j);
            acc0 += Vector512.WidenLower(e);
            acc1 += Vector512.WidenUpper(e);
        }
        Finish(x, j, n, max, Vector512.Sum(acc0 + acc1) + extra);
    }

    /// <summary>
    /// 8 lanes, as <see cref="ExpNormalizeVector512"/>. Before the vector paths, AVX2 and NEON machines ran
    /// one libm expf per score, 5% of a qwen2.5-0.5b decode step at 2048 positions (perf, AVX2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ExpNormalizeVector256(float* x, int n, float max, double extra = 0)
    {
        var m = Vector256.Create(max);
        var acc0 = Vector256<double>.Zero;
        var acc1 = Vector256<double>.Zero;
        int j = 0;
        for (; j + 8 <= n; j += 8)
        {
            var e = ExpF.Exp(Vector256.Load(x + j) - m, ExpF.Fused);
            e.Store(x + j);
            acc0 += Vector256.WidenLower(e);
            acc1 += Vector256.WidenUpper(e);
        }
        Finish(x, j, n, max, Vector256.Sum(acc0 + acc1) + extra);
    }

    /// <summary>4 lanes (NEON), as <see cref="ExpNormalizeVector512"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ExpNormalizeVector128(float* x, int n, float max, double extra = 0)
    {
        var m = Vector128.Create(max);
        var acc0 = Vector128<double>.Zero;
        var acc1 = Vector128<double>.Zero;
        int j = 0;
        for (; j + 4 <= n; j += 4)
        {
            var e = ExpF.Exp(Vector128.Load(x + j) - m, ExpF.Fused);
            e.Store(x + j);
            acc0 += Vector128.WidenLower(e);
            acc1 += Vector128.WidenUpper(e);
        }
        Finish(x, j, n, max, Vector128.Sum(acc0 + acc1) + extra);
    }

    /// <summary>The vector paths' end: values [j, n) by the scalar definition, added to <paramref name="sum"/>, then every value × 1/sum.</summary>
    private static void Finish(float* x, int j, int n, float max, double sum)
    {
        for (; j < n; j++)
        {
            float e = ExpF.Scalar(x[j] - max, ExpF.Fused);
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
        else if (Vector256.IsHardwareAccelerated)
        {
            var v = Vector256.Create(inv);
            for (; j + 8 <= n; j += 8) (Vector256.Load(x + j) * v).Store(x + j);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var v = Vector128.Create(inv);
            for (; j + 4 <= n; j += 4) (Vector128.Load(x + j) * v).Store(x + j);
        }
        for (; j < n; j++) x[j] *= inv;
    }
}
