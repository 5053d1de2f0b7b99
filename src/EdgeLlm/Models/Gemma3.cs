using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>gemma3</c> architecture (Gemma 3 270M, 1B, 4B, 12B, 27B; text only): token embeddings
/// scaled by √embd; per-head Q/K RMSNorm before the NEOX rope (as Qwen3); sliding-window attention
/// (gemma3.attention.sliding_window, 512 or 1024) in five layers of every six, whose rope base is
/// 10000, the sixth attending globally with rope.freq_base (1M) and any linear rope scaling; the
/// attention and feed-forward outputs RMS-normalized again (post_attention_norm, post_ffw_norm)
/// before their residual adds; GeGLU (tanh GELU) feed-forward; tied output, optionally soft-capped
/// (final_logit_softcapping). Gemma's RMSNorm multiplies by 1 + w; the converter stores 1 + w, so
/// the norms are the plain ones. Follows llama.cpp's llm_build_gemma3 and its hyper-parameter rules
/// (the 27B model's query scale 1 / √(embd / heads) instead of 1 / √head_dim). Every layer keeps a
/// cache as long as the context (llama.cpp's iswa cache keeps only the window for the local layers):
/// the same results, more memory.
/// </summary>
internal sealed class Gemma3 : Model
{
    private readonly LayerWeights[] _layers;

    internal Gemma3(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false, postNorms: true);
    }

    /// <summary>Hyperparameters under the <c>gemma3.</c> keys, with llama.cpp's Gemma 3 rules.</summary>
    internal static ModelConfig ReadConfig(GgufFile file)
    {
        var c = ModelConfig.Read(file, "gemma3", ropeNeox: true, hasQkvBias: false);
        int window = file.TryGetValue("gemma3.attention.sliding_window", out var w) && w.AsInt64() is long v ? checked((int)v) : 0;
        if (window < 0) throw new ModelLoadException($"metadata key gemma3.attention.sliding_window must be >= 0, found {window}");
        double softcap = file.GetFloat("gemma3.final_logit_softcapping") ?? 0;
        if (!double.IsFinite(softcap) || softcap < 0)
            throw new ModelLoadException($"metadata key gemma3.final_logit_softcapping must be a number >= 0, found {softcap}");
        return c with
        {
            HasQkNorm = true,
            GeluGate = true,
            SlidingWindow = window,
            SlidingWindowPattern = 6,
            RopeFreqBaseSwa = 10000f, // llama.cpp's rope_freq_base_train_swa for gemma3
            EmbeddingScale = MathF.Sqrt(c.EmbeddingLength),
            FinalLogitSoftcap = (float)softcap,
            // llama.cpp: the 27B model (62 layers) scales queries by 1 / √(embd / heads), the others by 1 / √head_dim.
            AttentionScale = c.BlockCount == 62 ? 1.0f / MathF.Sqrt(c.EmbeddingLength / c.HeadCount) : 0f,
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
