using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>qwen2</c> architecture (Qwen2, Qwen2.5): the Llama block with biases on the Q, K and V
/// projections and NEOX-style rope (rotating x[i] with x[i + n_dims/2]); small models tie the
/// output projection to the token embeddings. Follows llama.cpp's llm_build_qwen2.
/// </summary>
internal sealed class Qwen2 : Model
{
    private readonly LayerWeights[] _layers;

    internal Qwen2(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: true);
    }

    /// <summary>Hyperparameters under the <c>qwen2.</c> keys; NEOX rope, Q/K/V biases.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) => ModelConfig.Read(file, "qwen2", ropeNeox: true, hasQkvBias: true);

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
