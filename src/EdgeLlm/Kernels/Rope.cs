namespace EdgeLlm.Kernels;

/// <summary>
/// Rotary position embedding as ggml_rope_ext computes it (ggml-cpu ops: rope_yarn with
/// ext_factor 0 and attn_factor 1).
/// </summary>
internal static unsafe class Rope
{
    /// <summary>
    /// cos and sin of the n_dims/2 rotation angles at position <paramref name="pos"/>.
    /// Like ggml_rope_cache_init: theta starts at the position (as float) and is multiplied by
    /// theta_scale = powf(freq_base, -2/n_dims) once per pair in float, so the rounding of the
    /// running product matches; each angle is divided by its frequency factor when given
    /// (Llama 3 rope_freqs) and scaled by <paramref name="freqScale"/>.
    /// </summary>
    public static void Angles(int pos, int nDims, float freqBase, float freqScale, float[]? factors, float* cos, float* sin)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / nDims);
        float theta = pos;
        for (int i = 0; i < nDims / 2; i++)
        {
            float ff = factors is null ? 1.0f : factors[i];
            float angle = freqScale * (theta / ff);
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
            theta *= thetaScale;
        }
    }

    /// <summary>
    /// Rotates the first <paramref name="nDims"/> values of each of <paramref name="nHeads"/> heads
    /// in place. Normal mode (Llama) rotates adjacent pairs (x[2i], x[2i+1]); NEOX mode (Qwen2)
    /// rotates (x[i], x[i + n_dims/2]). Values past n_dims are left as they are.
    /// </summary>
    public static void Apply(float* x, int nHeads, int headDim, int nDims, float* cos, float* sin, bool neox)
    {
        int half = nDims / 2;
        for (int h = 0; h < nHeads; h++)
        {
            float* v = x + h * headDim;
            for (int i = 0; i < half; i++)
            {
                int i0 = neox ? i : 2 * i;
                int i1 = neox ? i + half : 2 * i + 1;
                float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * cos[i] - x1 * sin[i];
                v[i1] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}
