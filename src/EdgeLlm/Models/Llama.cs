using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>llama</c> architecture (Llama 2 and 3, TinyLlama, Mistral, SmolLM2 and others that
/// llama.cpp converts to it): pre-norm blocks of RMSNorm → grouped-query attention with "normal"
/// rope (adjacent pairs; the converter permutes Q/K rows for it) → RMSNorm → SwiGLU, no biases.
/// Llama 3.1+ files carry <c>rope_freqs.weight</c>, which divides each rotary frequency.
/// Follows llama.cpp's llm_build_llama. The <c>ernie4_5</c> architecture (Baidu's dense ERNIE 4.5, 0.3B) is the
/// same block under its own keys (llama.cpp's llm_build_ernie4_5: normal rope, optional Q/K/V biases, 128-wide heads
/// from attention.key_length), and runs here.
/// </summary>
internal sealed class Llama : Model
{
    private readonly LayerWeights[] _layers;

    internal Llama(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false);
    }

    /// <summary>
    /// Hyperparameters under the <c>llama.</c> keys; rope in normal (non-NEOX) mode. llama.expert_count &gt; 0 makes it a
    /// mixture of experts (<see cref="Mixtral"/>); 0 or no key, a dense model.
    /// </summary>
    internal static ModelConfig ReadConfig(GgufFile file, string arch = "llama")
    {
        var c = ModelConfig.Read(file, arch, ropeNeox: false, hasQkvBias: false);
        // (ERNIE 4.5's mixture of experts is another architecture, ernie4_5-moe, which EdgeLlm does not run)
        return arch == "llama" && file.TryGetValue("llama.expert_count", out var n) && n.AsInt64() is not 0
            ? ModelConfig.ReadExperts(file, "llama", c, expertWidthKey: false, sharedExpert: false)
            : c;
    }

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: false, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
