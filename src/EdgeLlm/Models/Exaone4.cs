using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>exaone4</c> architecture (LG AI Research's EXAONE 4.0 1.2B, made for devices): Qwen3's attention (per-head
/// Q/K RMSNorm before the NEOX rope, grouped KV heads) and a SwiGLU network, but no norm before either: each block
/// takes the residual stream as it is and RMS-normalizes the attention's and the network's outputs
/// (post_attention_norm, post_ffw_norm) before their residual adds ("post-LN", <see cref="ModelConfig.PreNorms"/>
/// false); Llama 3 rope frequency factors (rope_freqs.weight) where the file has them; tied embeddings. Follows
/// llama.cpp's llm_build_exaone4. The 32B model's hybrid attention (llama.cpp gives 64-layer files a sliding window in
/// three layers of four and no rope in the fourth) is refused by name.
/// </summary>
internal sealed class Exaone4 : Model
{
    private readonly LayerWeights[] _layers;

    internal Exaone4(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false, postNorms: true);
    }

    /// <summary>Hyperparameters under the <c>exaone4.</c> keys: NEOX rope, head norms, post-norms only.</summary>
    internal static ModelConfig ReadConfig(GgufFile file)
    {
        var c = ModelConfig.Read(file, "exaone4", ropeNeox: true, hasQkvBias: false);
        long window = file.GetInt("exaone4.attention.sliding_window") ?? 0;
        if (c.BlockCount == 64 || window > 0)
            throw new ModelLoadException(
                $"this exaone4 file has {c.BlockCount} layers{(window > 0 ? $" and exaone4.attention.sliding_window {window}" : "")}: EXAONE 4.0 32B's hybrid attention (sliding windows in three layers of four, no rope in the fourth) is not supported; the 1.2B model (30 layers, global attention) is");
        return c with { HasQkNorm = true, PreNorms = false };
    }

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
