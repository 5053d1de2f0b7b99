using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Kernels;

/// <summary>Element-wise operations of the forward pass.</summary>
internal static unsafe class Activations
{
    /// <summary>
    /// gate[i] = silu(gate[i]) · up[i], silu(x) = x / (1 + exp(-x)) as ggml_silu_f32. The vector
    /// paths use the runtime's vectorized exp (like ggml's own ggml_v_expf, within a few ulp of
    /// expf), so they agree with <see cref="SwiGluReference"/> to a few ulp, not bit for bit. Every
    /// value (tail included) takes the same path, so a value's result never depends on the call's length.
    /// </summary>
    public static void SwiGlu(float* gate, float* up, int n)
    {
        if (Vector512.IsHardwareAccelerated) SwiGluVector512(gate, up, n);
        else if (Vector256.IsHardwareAccelerated) SwiGluVector256(gate, up, n);
        else SwiGluReference(gate, up, n);
    }

    /// <summary>
    /// gpt-oss's clamped SwiGLU in place in <paramref name="gate"/> (ggml's swiglu_oai, alpha 1.702, limit 7):
    /// x = min(gate, 7), y = clamp(up, −7, 7), gate = x / (1 + e^(−1.702·x)) · (y + 1).
    /// </summary>
    public static void SwiGluOai(float* gate, float* up, int n)
    {
        const float Alpha = 1.702f, Limit = 7.0f;
        for (int i = 0; i < n; i++)
        {
            float x = MathF.Min(gate[i], Limit);
            float y = Math.Clamp(up[i], -Limit, Limit);
            gate[i] = x / (1f + MathF.Exp(Alpha * -x)) * (y + 1f);
        }
    }

    /// <summary>The scalar definition (MathF.Exp).</summary>
    public static void SwiGluReference(float* gate, float* up, int n) => SwiGluTail(gate, up, 0, n);

    /// <summary>16 lanes at a time.</summary>
    public static void SwiGluVector512(float* gate, float* up, int n)
    {
        int i = 0;
        var one = Vector512<float>.One;
        for (; i + 16 <= n; i += 16)
        {
            var g = Vector512.Load(gate + i);
            (g / (one + Vector512.Exp(-g)) * Vector512.Load(up + i)).Store(gate + i);
        }
        if (i == n) return;
        // The tail goes through the same vector exp (padded), so that a value's result does not
        // depend on where the call's vector/scalar boundary falls (callers pass tiles whose size
        // varies with the batch; a token's logits must not).
        var tg = stackalloc float[16];
        var tu = stackalloc float[16];
        int rest = n - i;
        new Span<float>(tg, 16).Clear();
        new Span<float>(tu, 16).Clear();
        Buffer.MemoryCopy(gate + i, tg, 64, rest * sizeof(float));
        Buffer.MemoryCopy(up + i, tu, 64, rest * sizeof(float));
        var gv = Vector512.Load(tg);
        (gv / (one + Vector512.Exp(-gv)) * Vector512.Load(tu)).Store(tg);
        Buffer.MemoryCopy(tg, gate + i, rest * sizeof(float), rest * sizeof(float));
    }

    /// <summary>8 lanes at a time.</summary>
    public static void SwiGluVector256(float* gate, float* up, int n)
    {
        int i = 0;
        var one = Vector256<float>.One;
        for (; i + 8 <= n; i += 8)
        {
            var g = Vector256.Load(gate + i);
            (g / (one + Vector256.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
        }
        if (i == n) return;
        // Padded tail through the vector exp, as in SwiGluVector512.
        var tg = stackalloc float[8];
        var tu = stackalloc float[8];
        int rest = n - i;
        new Span<float>(tg, 8).Clear();
        new Span<float>(tu, 8).Clear();
        Buffer.MemoryCopy(gate + i, tg, 32, rest * sizeof(float));
        Buffer.MemoryCopy(up + i, tu, 32, rest * sizeof(float));
        var gv = Vector256.Load(tg);
        (gv / (one + Vector256.Exp(-gv)) * Vector256.Load(tu)).Store(tg);
        Buffer.MemoryCopy(tg, gate + i, rest * sizeof(float), rest * sizeof(float));
    }

    private static void SwiGluTail(float* gate, float* up, int from, int n)
    {
        for (int i = from; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>x[i] += y[i] (every path is exact: one f32 add per element).</summary>
    public static void Add(float* x, float* y, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) (Vector512.Load(x + i) + Vector512.Load(y + i)).Store(x + i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        AddReference(x + i, y + i, n - i);
    }

    /// <summary>The scalar definition of <see cref="Add"/>.</summary>
    public static void AddReference(float* x, float* y, long n)
    {
        for (long i = 0; i < n; i++) x[i] += y[i];
    }

    /// <summary>Adds <paramref name="bias"/> to each of <paramref name="rows"/> rows of x.</summary>
    public static void AddBias(float* x, float[] bias, int rows)
    {
        int n = bias.Length;
        fixed (float* b = bias)
            for (int r = 0; r < rows; r++) Add(x + (long)r * n, b, n);
    }

    /// <summary>
    /// softmax(x) in place (ggml_soft_max without a mask: e^(x − max) in float, summed in double, then × the float 1/sum);
    /// the attention rows of the encoders and the experts' routers.
    /// </summary>
    public static void Softmax(float* x, int n)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, x[i]);
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            float e = MathF.Exp(x[i] - max);
            x[i] = e;
            sum += e;
        }
        float scale = (float)(1.0 / sum);
        for (int i = 0; i < n; i++) x[i] *= scale;
    }

    /// <summary>x[i] *= <paramref name="factor"/> (ggml_scale: one f32 multiply per element).</summary>
    public static void Scale(float* x, long n, float factor)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (var f = Vector256.Create(factor); i + 8 <= n; i += 8) (Vector256.Load(x + i) * f).Store(x + i);
        for (; i < n; i++) x[i] *= factor;
    }

    /// <summary>
    /// x[i] = c · tanh(x[i] · (1 / c)): Gemma's logit soft-capping as llama.cpp builds it (ggml_scale,
    /// ggml_tanh, ggml_scale).
    /// </summary>
    public static void Softcap(float* x, long n, float c)
    {
        float inv = 1.0f / c;
        // TensorPrimitives' vector tanh (within an ulp or two of tanhf): a Gemma 2 token soft-caps 256,000
        // logits, where the scalar MathF.Tanh cost milliseconds.
        for (long done = 0; done < n; done += int.MaxValue / 2)
        {
            var span = new Span<float>(x + done, (int)Math.Min(n - done, int.MaxValue / 2));
            System.Numerics.Tensors.TensorPrimitives.Multiply(span, inv, span);
            System.Numerics.Tensors.TensorPrimitives.Tanh(span, span);
            System.Numerics.Tensors.TensorPrimitives.Multiply(span, c, span);
        }
    }

    /// <summary>
    /// gate[i] = gelu(gate[i]) · up[i] as ggml_vec_geglu_f32 computes it in llama.cpp's CPU build
    /// (GGML_GELU_FP16): below -10 it is 0, from 10 up the gate itself; between, gelu is read from a
    /// table indexed by the gate rounded to f16 and holding gelu's f16-rounded values (the tanh form
    /// 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))) in float). Bit-for-bit the same values as ggml's,
    /// which an exact gelu would miss by up to an f16 rounding (~5e-4 relative).
    /// </summary>
    public static void GeGlu(float* gate, float* up, int n)
    {
        var table = s_geluTable ??= BuildGeluTable();
        // The gates rounded to f16 a chunk at a time (TensorPrimitives' vector conversion, round to
        // nearest even as F16C), then the table read by their bits: 8 lanes with AVX2's gather.
        const int Chunk = 256;
        ushort* bits = stackalloc ushort[Chunk];
        fixed (float* t = table)
        {
            for (int i0 = 0; i0 < n; i0 += Chunk)
            {
                int len = Math.Min(Chunk, n - i0);
                float* x = gate + i0, u = up + i0;
                System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x, len), new Span<Half>(bits, len));
                int i = 0;
                if (Avx2.IsSupported)
                {
                    var lo = Vector256.Create(-10.0f);
                    var hi = Vector256.Create(10.0f);
                    for (; i + 8 <= len; i += 8)
                    {
                        var xv = Vector256.Load(x + i);
                        var g = Avx2.GatherVector256(t, Avx2.ConvertToVector256Int32(bits + i), 4);
                        g = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(xv, hi), xv, g);
                        var y = Vector256.ConditionalSelect(Vector256.LessThanOrEqual(xv, lo), Vector256<float>.Zero, g * Vector256.Load(u + i));
                        y.Store(x + i);
                    }
                }
                for (; i < len; i++)
                {
                    float xi = x[i];
                    x[i] = xi <= -10.0f ? 0.0f : xi >= 10.0f ? xi * u[i] : t[bits[i]] * u[i];
                }
            }
        }
    }

    /// <summary>
    /// x[i] = gelu(x[i]) as ggml_vec_gelu_f32 in llama.cpp's CPU build (GGML_GELU_FP16): 0 at or below -10, x at or
    /// above 10, else the f16 table of <see cref="GeGlu"/> indexed by x rounded to f16 (BERT's feed-forward).
    /// </summary>
    public static void Gelu(float* x, int n)
    {
        var table = s_geluTable ??= BuildGeluTable();
        // As GeGlu: a chunk rounded to f16 by TensorPrimitives' vector conversion, then the table read by the bits.
        const int Chunk = 256;
        ushort* bits = stackalloc ushort[Chunk];
        fixed (float* t = table)
        {
            for (int i0 = 0; i0 < n; i0 += Chunk)
            {
                int len = Math.Min(Chunk, n - i0);
                float* xc = x + i0;
                System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(xc, len), new Span<Half>(bits, len));
                for (int i = 0; i < len; i++)
                {
                    float xi = xc[i];
                    xc[i] = xi <= -10.0f ? 0.0f : xi >= 10.0f ? xi : t[bits[i]];
                }
            }
        }
    }

    private static float[]? s_geluTable;

    /// <summary>ggml_table_gelu_f16 as floats: for every f16 bit pattern, gelu of its value rounded to f16.</summary>
    private static float[] BuildGeluTable()
    {
        const float sqrt2OverPi = 0.79788456080286535587989211986876f, coefA = 0.044715f;
        var table = new float[65536];
        for (int i = 0; i < table.Length; i++)
        {
            float x = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            float g = 0.5f * x * (1.0f + MathF.Tanh(sqrt2OverPi * x * (1.0f + coefA * x * x)));
            table[i] = (float)(Half)g;
        }
        return table;
    }
}
