namespace EdgeLlm.Kernels;

/// <summary>RMS normalization followed by the learned scale, as ggml computes it.</summary>
internal static unsafe class RmsNorm
{
    /// <summary>
    /// y = x / sqrt(mean(x²) + eps) ⊙ weight. As ggml_compute_forward_rms_norm_f32: each square
    /// is a float product summed in double, the mean is rounded to float, and the scale is
    /// 1.0f / sqrtf(mean + eps); the weight multiply is ggml_mul's separate f32 product.
    /// </summary>
    public static void Forward(float* x, float* weight, float* y, int n, float eps)
    {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
        float mean = (float)(sum / n);
        float scale = 1.0f / MathF.Sqrt(mean + eps);
        for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * weight[i];
    }
}
