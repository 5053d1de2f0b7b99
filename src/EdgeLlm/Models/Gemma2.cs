using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>gemma2</c> architecture (Gemma 2 2B, 9B, 27B): token embeddings scaled by √embd; NEOX
/// rope; sliding-window attention (gemma2.attention.sliding_window, 4096) in every other layer
/// (0, 2, 4, …), the others global; attention scores soft-capped (c · tanh(score / c),
/// gemma2.attn_logit_softcapping, 50) before the softmax; attention and feed-forward outputs
/// RMS-normalized again (post_attention_norm, post_ffw_norm) before the residual adds; GeGLU
/// feed-forward; tied output soft-capped (gemma2.final_logit_softcapping, 30). Defaults and the 27B
/// model's query scale (1 / √(embd / heads), the others 1 / √head_dim) as llama.cpp's
/// llm_build_gemma2_iswa and its hyper-parameter rules. Every layer keeps a full-length cache. The first Gemma
/// (<c>gemma</c>) runs here too, without post-norms (<see cref="ReadGemmaConfig"/>).
/// </summary>
internal sealed class Gemma2 : Model
{
    private readonly LayerWeights[] _layers;

    internal Gemma2(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false, postNorms: config.Architecture != "gemma");
    }

    /// <summary>
    /// Hyperparameters of a <c>gemma</c> file (the first Gemma: 2B and 7B, CodeGemma, Gemma 1.1): the Gemma 2 block without its
    /// post-norms, sliding windows and soft-caps (llama.cpp's llm_build_gemma: √embd embedding scale, NEOX rope, queries
    /// scaled by 1 / √head_dim, GeGLU, tied output); the norms' 1 + w is stored by the converter, as for Gemma 2.
    /// </summary>
    internal static ModelConfig ReadGemmaConfig(GgufFile file)
    {
        var c = ModelConfig.Read(file, "gemma", ropeNeox: true, hasQkvBias: false);
        return c with { GeluGate = true, EmbeddingScale = MathF.Sqrt(c.EmbeddingLength) };
    }

    /// <summary>Hyperparameters under the <c>gemma2.</c> keys, with llama.cpp's Gemma 2 rules and defaults.</summary>
    internal static ModelConfig ReadConfig(GgufFile file)
    {
        var c = ModelConfig.Read(file, "gemma2", ropeNeox: true, hasQkvBias: false);
        int window = file.TryGetValue("gemma2.attention.sliding_window", out var w) && w.AsInt64() is long v ? checked((int)v) : 4096;
        if (window < 0) throw new ModelLoadException($"metadata key gemma2.attention.sliding_window must be >= 0, found {window}");
        float Cap(string key, double fallback)
        {
            double value = file.GetFloat(key) ?? fallback;
            return double.IsFinite(value) && value > 0 ? (float)value : throw new ModelLoadException($"metadata key {key} must be a positive number, found {value}");
        }
        return c with
        {
            GeluGate = true,
            SlidingWindow = window,
            SlidingWindowPattern = 2,
            RopeFreqBaseSwa = c.RopeFreqBase,
            EmbeddingScale = MathF.Sqrt(c.EmbeddingLength),
            AttnLogitSoftcap = Cap("gemma2.attn_logit_softcapping", 50),
            FinalLogitSoftcap = Cap("gemma2.final_logit_softcapping", 30),
            // llama.cpp: the 27B model (46 layers) scales queries by 1 / √(embd / heads), the others by 1 / √head_dim.
            AttentionScale = c.BlockCount == 46 ? 1.0f / MathF.Sqrt(c.EmbeddingLength / c.HeadCount) : 0f,
        };
    }

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
