using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The dense <c>qwen3</c> architecture (Qwen3 0.6B … 32B): the <see cref="Qwen2"/> block without
/// the Q/K/V biases, with an RMSNorm over each query head and each key head (the layer's
/// attn_q_norm / attn_k_norm weights, the model's rms epsilon) after the projections and before the
/// NEOX rope, and heads as wide as attention.key_length says (128), not embd / heads. Follows
/// llama.cpp's llm_build_qwen3. The MoE variant (<c>qwen3moe</c>) is a different architecture; <c>hunyuan-dense</c> runs here
/// (<see cref="ReadHunyuanDenseConfig"/>).
/// </summary>
internal sealed class Qwen3 : Model
{
    private readonly LayerWeights[] _layers;

    internal Qwen3(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false);
    }

    /// <summary>Hyperparameters under the <c>qwen3.</c> keys; NEOX rope, per-head Q/K norms.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.Read(file, "qwen3", ropeNeox: true, hasQkvBias: false) with { HasQkNorm = true };

    /// <summary>
    /// Hyperparameters of a <c>hunyuan-dense</c> file (Tencent's Hunyuan 0.5B, 1.8B, 4B and 7B): Qwen3's block under its own
    /// keys except that the per-head Q/K RMSNorms come after the NEOX rope (llama.cpp's llm_build_hunyuan_dense); the
    /// converter folds the models' NTK-alpha rope scaling into rope.freq_base, so the rotation is plain.
    /// </summary>
    internal static ModelConfig ReadHunyuanDenseConfig(GgufFile file) =>
        ModelConfig.Read(file, "hunyuan-dense", ropeNeox: true, hasQkvBias: false) with { HasQkNorm = true, QkNormAfterRope = true };

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
