using System.Runtime.Intrinsics;

namespace EdgeLlm.Kernels;

/// <summary>
/// Rotary position embedding as ggml_rope_ext computes it (ggml-cpu ops: rope_yarn).
/// </summary>
internal static unsafe class Rope
{
    /// <summary>
    /// cos and sin of the n_dims/2 rotation angles at position <paramref name="pos"/>.
    /// Like ggml_rope_cache_init: theta starts at the position (as float) and is multiplied by
    /// theta_scale = powf(freq_base, -2/n_dims) once per pair in float, so the rounding of the
    /// running product matches; each angle is divided by its frequency factor when given
    /// (Llama 3 rope_freqs, Phi-3 LongRoPE) and scaled by <paramref name="freqScale"/>; cos and sin
    /// are then multiplied by <paramref name="attnFactor"/> (rope_yarn's mscale), which scales the
    /// rotated values. With YaRN (<paramref name="yarn"/>, ext_factor ≠ 0) each angle mixes the scaled
    /// (interpolated) and unscaled (extrapolated) one by rope_yarn_ramp over the correction dims, and the
    /// magnitude is further × (1 + 0.1·ln(1/freq_scale)), as ggml's rope_yarn.
    /// </summary>
    public static void Angles(int pos, int nDims, float freqBase, float freqScale, float[]? factors, float* cos, float* sin, float attnFactor = 1f, YarnRope yarn = default)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / nDims);
        float theta = pos;
        float mscale = attnFactor;
        if (yarn.ExtFactor != 0f) mscale *= 1.0f + 0.1f * MathF.Log(1.0f / freqScale);
        for (int i = 0; i < nDims / 2; i++)
        {
            float ff = factors is null ? 1.0f : factors[i];
            float extrap = theta / ff;
            float angle = freqScale * extrap;
            if (yarn.ExtFactor != 0f)
            {
                // rope_yarn_ramp(low, high, i0) with i0 = 2i: y = (i0/2 − low) / max(0.001, high − low)
                float y = (i - yarn.CorrLow) / MathF.Max(0.001f, yarn.CorrHigh - yarn.CorrLow);
                float mix = (1 - MathF.Min(1, MathF.Max(0, y))) * yarn.ExtFactor;
                angle = angle * (1 - mix) + extrap * mix;
            }
            cos[i] = MathF.Cos(angle) * mscale;
            sin[i] = MathF.Sin(angle) * mscale;
            theta *= thetaScale;
        }
    }

    /// <summary>
    /// Rotates the first <paramref name="nDims"/> values of each of <paramref name="nHeads"/> heads
    /// in place. Normal mode (Llama) rotates adjacent pairs (x[2i], x[2i+1]); NEOX mode (Qwen2)
    /// rotates (x[i], x[i + n_dims/2]). Values past n_dims are left as they are. The vector path
    /// computes the same two products and one add/subtract per value as the reference, so it is
    /// bit-identical to it.
    /// </summary>
    public static void Apply(float* x, int nHeads, int headDim, int nDims, float* cos, float* sin, bool neox)
    {
        if (Vector512.IsHardwareAccelerated && nDims % 32 == 0) ApplyVector512(x, nHeads, headDim, nDims, cos, sin, neox);
        else ApplyReference(x, nHeads, headDim, nDims, cos, sin, neox);
    }

    /// <summary>The scalar definition.</summary>
    public static void ApplyReference(float* x, int nHeads, int headDim, int nDims, float* cos, float* sin, bool neox)
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

    /// <summary>
    /// 16 lanes (needs <paramref name="nDims"/> % 32 == 0). Normal mode works on interleaved pairs:
    /// with c = (c0,c0,c1,c1,…), s = (−s0,s0,−s1,s1,…) and x̃ the pair-swapped x, out = x·c + x̃·s,
    /// i.e. x0·c − x1·s and x1·c + x0·s: the reference's products, and a + (−b) = a − b exactly.
    /// </summary>
    public static void ApplyVector512(float* x, int nHeads, int headDim, int nDims, float* cos, float* sin, bool neox)
    {
        int half = nDims / 2;
        if (neox)
        {
            for (int h = 0; h < nHeads; h++)
            {
                float* v = x + h * headDim;
                for (int i = 0; i < half; i += 16)
                {
                    var c = Vector512.Load(cos + i);
                    var s = Vector512.Load(sin + i);
                    var x0 = Vector512.Load(v + i);
                    var x1 = Vector512.Load(v + half + i);
                    (x0 * c - x1 * s).Store(v + i);
                    (x0 * s + x1 * c).Store(v + half + i);
                }
            }
            return;
        }
        // Duplicated angle tables once per call, shared by every head.
        float* cd = stackalloc float[nDims];
        float* sd = stackalloc float[nDims];
        for (int i = 0; i < half; i++)
        {
            cd[2 * i] = cos[i];
            cd[2 * i + 1] = cos[i];
            sd[2 * i] = -sin[i];
            sd[2 * i + 1] = sin[i];
        }
        var swap = Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
        for (int h = 0; h < nHeads; h++)
        {
            float* v = x + h * headDim;
            for (int i = 0; i < nDims; i += 16)
            {
                var xv = Vector512.Load(v + i);
                var xs = Vector512.Shuffle(xv, swap);
                (xv * Vector512.Load(cd + i) + xs * Vector512.Load(sd + i)).Store(v + i);
            }
        }
    }
}

/// <summary>
/// YaRN's part of a rope (llama.cpp's yarn_ext_factor and the correction dims of ggml_rope_yarn_corr_dims);
/// the default, ext_factor 0, is no YaRN.
/// </summary>
public readonly record struct YarnRope(float ExtFactor, float CorrLow, float CorrHigh)
{
    /// <summary>
    /// ggml_rope_yarn_corr_dims: the rotary dims (pairs) where the ramp from extrapolation to interpolation starts
    /// (floor of the dim whose wavelength fits <paramref name="betaFast"/> turns in the original context, at least 0)
    /// and ends (ceil for <paramref name="betaSlow"/>, at most n_dims − 1).
    /// </summary>
    public static YarnRope Create(float extFactor, int nDims, int nCtxOrig, float freqBase, float betaFast, float betaSlow)
    {
        static float CorrDim(int nDims, int nCtxOrig, float nRot, float b) =>
            nDims * MathF.Log(nCtxOrig / (nRot * 2 * MathF.PI)) / (2 * MathF.Log(b));
        float start = MathF.Floor(CorrDim(nDims, nCtxOrig, betaFast, freqBase));
        float end = MathF.Ceiling(CorrDim(nDims, nCtxOrig, betaSlow, freqBase));
        return new YarnRope(extFactor, MathF.Max(0, start), MathF.Min(nDims - 1, end));
    }
}
