using EdgeLlm.Engine;
using EdgeLlm.Kernels;

namespace EdgeLlm.Models.Blocks;

/// <summary>
/// The building blocks shared by the Llama-family architectures: the tensor mapping of one
/// pre-norm block (llama.cpp's LLM_TENSOR_* names), grouped-query self-attention with rotary
/// embeddings, and the SwiGLU feed-forward network.
/// </summary>
internal static unsafe class DecoderBlocks
{
    /// <summary>Maps blk.<paramref name="il"/>.* to a <see cref="LayerWeights"/>, checking each shape against <paramref name="c"/>.</summary>
    /// <param name="postNorms">The block RMS-normalizes its attention and feed-forward outputs (Gemma 3's
    /// post_attention_norm and post_ffw_norm).</param>
    public static LayerWeights LoadLayer(TensorLoader tensors, ModelConfig c, int il, bool qkvBias, bool postNorms = false)
    {
        var a = LoadAttention(tensors, c, il, qkvBias, postNorms);
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{c.Architecture}.embedding_length");
        var ff = new TensorLoader.Dim(c.FeedForwardLength, $"{c.Architecture}.feed_forward_length");
        string p = $"blk.{il}.";
        return new LayerWeights
        {
            AttnNorm = a.AttnNorm, Wq = a.Wq, Wk = a.Wk, Wv = a.Wv, Wo = a.Wo, Bq = a.Bq, Bk = a.Bk, Bv = a.Bv,
            QNorm = a.QNorm, KNorm = a.KNorm, AttnPostNorm = a.AttnPostNorm,
            FfnNorm = c.PreNorms ? tensors.Vector(p + "ffn_norm.weight", embd) : [],
            FfnPostNorm = postNorms ? tensors.Vector(p + "post_ffw_norm.weight", embd) : null,
            Gate = tensors.Matrix(p + "ffn_gate.weight", embd, ff),
            Up = tensors.Matrix(p + "ffn_up.weight", embd, ff),
            Down = tensors.Matrix(p + "ffn_down.weight", ff, embd),
        };
    }

    /// <summary>The attention half of blk.<paramref name="il"/>.* (norm, Q/K/V/output projections, biases, head norms).</summary>
    public static AttentionWeights LoadAttention(TensorLoader tensors, ModelConfig c, int il, bool qkvBias, bool postNorms = false)
    {
        string a = c.Architecture;
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{a}.embedding_length");
        var qLen = new TensorLoader.Dim(c.QueryLength, $"{a}.attention.head_count × head_dim ({c.HeadCount} × {c.HeadDim})");
        var kvLen = new TensorLoader.Dim(c.KvLength, $"{a}.attention.head_count_kv × head_dim ({c.HeadCountKv} × {c.HeadDim})");
        var headDim = new TensorLoader.Dim(c.HeadDim, $"head_dim ({a}.attention.key_length)");
        string p = $"blk.{il}.";
        // (OLMoE norms the whole query and key rows, the others each head)
        var qNormLen = c.QkNormFullWidth ? qLen : headDim;
        var kNormLen = c.QkNormFullWidth ? kvLen : headDim;
        return new AttentionWeights
        {
            AttnNorm = c.PreNorms ? tensors.Vector(p + "attn_norm.weight", embd) : [], // (EXAONE 4: none, never read)
            Wq = tensors.Matrix(p + "attn_q.weight", embd, qLen),
            Wk = tensors.Matrix(p + "attn_k.weight", embd, kvLen),
            Wv = tensors.Matrix(p + "attn_v.weight", embd, kvLen),
            Wo = tensors.Matrix(p + "attn_output.weight", qLen, embd),
            Bq = qkvBias ? tensors.Vector(p + "attn_q.bias", qLen) : tensors.OptionalVector(p + "attn_q.bias", qLen),
            Bk = qkvBias ? tensors.Vector(p + "attn_k.bias", kvLen) : tensors.OptionalVector(p + "attn_k.bias", kvLen),
            Bv = qkvBias ? tensors.Vector(p + "attn_v.bias", kvLen) : tensors.OptionalVector(p + "attn_v.bias", kvLen),
            QNorm = c.HasQkNorm ? tensors.Vector(p + "attn_q_norm.weight", qNormLen) : null,
            KNorm = c.HasQkNorm ? tensors.Vector(p + "attn_k_norm.weight", kNormLen) : null,
            AttnPostNorm = postNorms ? tensors.Vector(p + "post_attention_norm.weight", embd) : null,
            Bo = tensors.OptionalVector(p + "attn_output.bias", embd),
            Sinks = tensors.OptionalVector(p + "attn_sinks.weight", new TensorLoader.Dim(c.HeadCount, $"{a}.attention.head_count")),
        };
    }

    /// <summary>
    /// x += attn_output(attention(rope(x_norm·Wq + bq), rope(x_norm·Wk + bk), x_norm·Wv + bv)),
    /// x_norm = rmsnorm(x) ⊙ attn_norm. Stores this batch's K and V in the cache first. Keys and
    /// values are computed for every token; queries, attention and the output projection only for
    /// the last <paramref name="keep"/> tokens, the only rows of x updated.
    /// </summary>
    public static void SelfAttention(ModelConfig c, AttentionWeights w, int il, ForwardBatch b, bool neox, int keep)
    {
        int n = b.Count;
        int embd = c.EmbeddingLength;
        int first = n - keep;

        // attn_norm (every token: K and V need them all); EXAONE 4 projects the residual stream as it is
        if (c.PreNorms) Norm(b, w.AttnNorm, b.X, n, embd, c.RmsEps);
        else Copy(b, b.X, n, embd);

        // Qcur, Kcur, Vcur: projections of the tokens together (+ biases for Qwen2); Q rows 0..keep-1 are tokens first..n-1
        if (keep > 0) MatMul.Multiply(w.Wq, b.Norm + (long)first * embd, keep, b.Q, b.MatScratch, b.Pool);
        MatMul.Multiply(w.Wk, b.Norm, n, b.K, b.MatScratch, b.Pool);
        MatMul.Multiply(w.Wv, b.Norm, n, b.V, b.MatScratch, b.Pool);
        if (w.Bq is not null) Activations.AddBias(b.Q, w.Bq, keep);
        if (w.Bk is not null) Activations.AddBias(b.K, w.Bk, n);
        if (w.Bv is not null) Activations.AddBias(b.V, w.Bv, n);

        // Qwen3: RMSNorm of every query and key head (llama.cpp's attn_q_norm / attn_k_norm), before rope (Hunyuan: after it)
        if (w.QNorm is not null && w.KNorm is not null && !c.QkNormAfterRope) QkNorm(c, w, b, n, keep);

        // rotary embedding of Q and K at each token's position (Gemma 3's sliding-window layers: their own base)
        int pairs = c.RopeDimensionCount / 2;
        bool swa = c.IsSlidingWindowLayer(il);
        float* cosTable = swa && b.RopeCosSwa != null ? b.RopeCosSwa : b.RopeCos;
        float* sinTable = swa && b.RopeSinSwa != null ? b.RopeSinSwa : b.RopeSin;
        // (SmolLM3's every fourth layer, "NoPE", rotates nothing)
        if (c.UsesRope(il))
        using (Profiler.Section(Profiler.Op.Rope))
        for (int t = 0; t < n; t++)
        {
            float* cos = cosTable + (long)t * pairs;
            float* sin = sinTable + (long)t * pairs;
            if (t >= first) Rope.Apply(b.Q + (long)(t - first) * c.QueryLength, c.HeadCount, c.HeadDim, c.RopeDimensionCount, cos, sin, neox);
            Rope.Apply(b.K + (long)t * c.KvLength, c.HeadCountKv, c.HeadDim, c.RopeDimensionCount, cos, sin, neox);
        }

        // Ministral 3: the queries' temperature grows with the position (llama.cpp's attn_temp input; float rounding as its)
        if (c.AttnTemperatureScale != 0f)
            for (int t = first; t < n; t++)
            {
                float pos = b.StartPos + t;
                float scale = (float)(Math.Log(MathF.Floor(pos / c.AttnTemperatureFloor) + 1.0) * c.AttnTemperatureScale + 1.0);
                if (scale != 1f) Activations.Scale(b.Q + (long)(t - first) * c.QueryLength, c.QueryLength, scale);
            }

        if (w.QNorm is not null && w.KNorm is not null && c.QkNormAfterRope) QkNorm(c, w, b, n, keep);

        // K and V go to the f16 cache; attention reads this batch's tokens back from there
        using (Profiler.Section(Profiler.Op.KvStore))
            b.Kv.Store(il, b.StartPos, b.K, b.V, n);
        if (keep == 0) return;
        using (Profiler.Section(Profiler.Op.Attention))
        fixed (float* sinks = w.Sinks)
            Attention.Forward(b.Q, keep, b.StartPos + first, b.Kv, il,
            c.HeadCount, c.HeadCountKv, c.HeadDim, b.AttnOut, b.AttnScratch, b.Pool, swa ? c.SlidingWindow : 0, c.AttentionScale, c.AttnLogitSoftcap, sinks);

        // attn_output (+ its bias: gpt-oss; Gemma 3: RMS-normalized, attn_post_norm), then the residual add (ffn_inp)
        MatMul.Multiply(w.Wo, b.AttnOut, keep, b.Proj, b.MatScratch, b.Pool);
        if (w.Bo is not null) Activations.AddBias(b.Proj, w.Bo, keep);
        if (w.AttnPostNorm is not null) PostNorm(b.Proj, keep, w.AttnPostNorm, embd, c.RmsEps);
        if (c.ResidualScale != 1f) ScaleResidual(b.Proj, (long)keep * embd, c.ResidualScale);
        using (Profiler.Section(Profiler.Op.Add))
            Activations.Add(b.X + (long)first * embd, b.Proj, (long)keep * embd);
    }

    /// <summary>The query and key RMSNorms of one batch, in place: per head (Qwen3), or over each token's whole rows (OLMoE, OLMo 2).</summary>
    private static void QkNorm(ModelConfig c, AttentionWeights w, ForwardBatch b, int n, int keep)
    {
        using (Profiler.Section(Profiler.Op.RmsNorm))
        {
            if (c.QkNormFullWidth)
            {
                // OLMoE: each token's whole query and key rows
                HeadNorm(b.Q, keep, w.QNorm!, c.QueryLength, c.RmsEps);
                HeadNorm(b.K, n, w.KNorm!, c.KvLength, c.RmsEps);
            }
            else
            {
                HeadNorm(b.Q, (long)keep * c.HeadCount, w.QNorm!, c.HeadDim, c.RmsEps);
                HeadNorm(b.K, (long)n * c.HeadCountKv, w.KNorm!, c.HeadDim, c.RmsEps);
            }
        }
    }

    /// <summary>
    /// x += ffn_down(silu(x_norm·Wgate) ⊙ (x_norm·Wup)), x_norm = rmsnorm(x) ⊙ ffn_norm, for the
    /// last <paramref name="keep"/> tokens of the batch; gelu instead of silu for <see cref="ModelConfig.GeluGate"/>,
    /// and the result RMS-normalized (ffn_post_norm) before the add where the layer has it (Gemma 3).
    /// </summary>
    public static void SwiGluFeedForward(ModelConfig c, LayerWeights w, ForwardBatch b, int keep) =>
        SwiGluFeedForward(c, w.FfnNorm, w.Gate, w.Up, w.Down, w.FfnPostNorm, b, keep);

    /// <summary>The feed-forward block of <see cref="SwiGluFeedForward(ModelConfig, LayerWeights, ForwardBatch, int)"/> from its parts.</summary>
    public static void SwiGluFeedForward(ModelConfig c, float[] ffnNorm, WeightMatrix gate, WeightMatrix up, WeightMatrix down, float[]? ffnPostNorm, ForwardBatch b, int keep)
    {
        if (keep == 0) return;
        int embd = c.EmbeddingLength;
        float* x = b.X + (long)(b.Count - keep) * embd;
        if (c.PreNorms) Norm(b, ffnNorm, x, keep, embd, c.RmsEps);
        else Copy(b, x, keep, embd);

        MatMul.Multiply(gate, b.Norm, keep, b.Gate, b.MatScratch, b.Pool);
        MatMul.Multiply(up, b.Norm, keep, b.Up, b.MatScratch, b.Pool);
        // Row by row: which elements take the vector exp and which the scalar tail must not
        // depend on the batch size, or a token's logits would change with its batch.
        int ff = c.FeedForwardLength;
        bool gelu = c.GeluGate;
        using (Profiler.Section(Profiler.Op.SwiGlu))
            b.Pool.For(keep, ff, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                {
                    if (gelu) Activations.GeGlu(b.Gate + (long)t * ff, b.Up + (long)t * ff, ff);
                    else Activations.SwiGlu(b.Gate + (long)t * ff, b.Up + (long)t * ff, ff);
                }
            }, minParallelWork: 1 << 16);
        MatMul.Multiply(down, b.Gate, keep, b.Proj, b.MatScratch, b.Pool);
        if (ffnPostNorm is not null) PostNorm(b.Proj, keep, ffnPostNorm, embd, c.RmsEps);
        if (c.ResidualScale != 1f) ScaleResidual(b.Proj, (long)keep * embd, c.ResidualScale);

        // l_out
        using (Profiler.Section(Profiler.Op.Add))
            Activations.Add(x, b.Proj, (long)keep * embd);
    }

    /// <summary>
    /// rmsnorm(h) ⊙ weight in place for each of <paramref name="heads"/> consecutive heads of
    /// <paramref name="headDim"/> floats at <paramref name="x"/> (ggml_rms_norm over a head's row, as
    /// llama.cpp's qwen3 graph applies it to the reshaped Q and K).
    /// </summary>
    internal static void HeadNorm(float* x, long heads, float[] weight, int headDim, float eps)
    {
        fixed (float* g = weight)
        {
            for (long h = 0; h < heads; h++)
            {
                float* row = x + h * headDim;
                RmsNorm.Forward(row, g, row, headDim, eps);
            }
        }
    }

    /// <summary>y ×= scale in place (Granite's residual_scale on a block output before its residual add).</summary>
    internal static void ScaleResidual(float* y, long count, float scale)
    {
        using var _ = Profiler.Section(Profiler.Op.Add);
        Activations.Scale(y, count, scale);
    }

    /// <summary>rmsnorm(y) ⊙ weight in place for <paramref name="n"/> rows of <paramref name="embd"/> (Gemma 3's post-norms).</summary>
    private static void PostNorm(float* y, int n, float[] weight, int embd, float eps)
    {
        using var _ = Profiler.Section(Profiler.Op.RmsNorm);
        fixed (float* g = weight)
            for (int t = 0; t < n; t++)
                RmsNorm.Forward(y + (long)t * embd, g, y + (long)t * embd, embd, eps);
    }

    /// <summary>b.Norm = rmsnorm(x) ⊙ weight for <paramref name="n"/> rows of x, row by row (tokens in parallel for a large batch).</summary>
    /// <summary>b.Norm's first <paramref name="n"/> rows = the rows at <paramref name="x"/> as they are (a block without a pre-norm).</summary>
    internal static void Copy(ForwardBatch b, float* x, int n, int embd)
    {
        long bytes = (long)n * embd * sizeof(float);
        Buffer.MemoryCopy(x, b.Norm, bytes, bytes);
    }

    internal static void Norm(ForwardBatch b, float[] weight, float* x, int n, int embd, float eps)
    {
        using var _ = Profiler.Section(Profiler.Op.RmsNorm);
        fixed (float* g = weight)
        {
            float* gp = g;
            b.Pool.For(n, embd, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                    RmsNorm.Forward(x + (long)t * embd, gp, b.Norm + (long)t * embd, embd, eps);
            }, minParallelWork: 1 << 16);
        }
    }
}
