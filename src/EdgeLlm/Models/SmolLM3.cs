using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>smollm3</c> architecture (SmolLM3 3B): the <see cref="Llama"/> block ("normal" rope,
/// grouped-query attention, SwiGLU, tied embeddings in the released model), except that every fourth
/// layer (3, 7, 11, …) uses no positional encoding at all ("NoPE": its queries and keys are not
/// rotated). The step is not in the file: llama.cpp's smollm3 hard-codes n_no_rope_layer_step = 4
/// (config.json's no_rope_layer_interval), and so does EdgeLlm. Optional Q/K/V biases load as
/// llama.cpp's create_tensor_qkv allows them. Follows llama.cpp's llm_build_smollm3.
/// </summary>
internal sealed class SmolLM3 : Model
{
    /// <summary>llama.cpp's n_no_rope_layer_step for smollm3.</summary>
    internal const int NoRopeLayerStep = 4;

    private readonly LayerWeights[] _layers;

    internal SmolLM3(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false);
    }

    /// <summary>Hyperparameters under the <c>smollm3.</c> keys; normal rope, skipped in every fourth layer.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.Read(file, "smollm3", ropeNeox: false, hasQkvBias: false) with { NoRopeLayerStep = NoRopeLayerStep };

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: false, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
