using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The dense <c>granite</c> architecture (IBM Granite 3.x 2B and 8B): the <see cref="Llama"/> block
/// with four multipliers from the file: the token embeddings × granite.embedding_scale (12 for the 2B
/// models), attention scores × granite.attention.scale instead of 1 / √head_dim (0.015625), the
/// attention and feed-forward outputs × granite.residual_scale before each residual add (0.22), and
/// the logits × 1 / granite.logit_scale (8; required, as in llama.cpp). A scale of 0 or a missing
/// optional key means none, as llama.cpp reads them. granite.rope.scaling.finetuned = false turns the
/// rotary embedding off in every layer (llama.cpp's switch; default on). Follows llama.cpp's
/// llm_build_granite. The MoE (<c>granitemoe</c>) and hybrid Mamba (<c>granitehybrid</c>, Granite 4)
/// variants are other architectures; a granite file with biases on attn_output or the feed-forward
/// matrices is refused, since EdgeLlm's block has none there.
/// </summary>
internal sealed class Granite : Model
{
    private readonly LayerWeights[] _layers;

    internal Granite(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
        {
            foreach (string bias in (ReadOnlySpan<string>)["attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"])
                if (file.FindTensor($"blk.{il}.{bias}") is not null)
                    throw new ModelLoadException($"tensor blk.{il}.{bias}: granite blocks with output or feed-forward biases are not supported");
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false);
        }
    }

    /// <summary>Hyperparameters under the <c>granite.</c> keys (or <paramref name="arch"/>'s: granitemoe), with llama.cpp's rules for the four multipliers.</summary>
    internal static ModelConfig ReadConfig(GgufFile file, string arch = "granite")
    {
        var c = ModelConfig.Read(file, arch, ropeNeox: false, hasQkvBias: false);
        float Scale(string key, bool required)
        {
            if (!file.TryGetValue(key, out var raw))
                return required ? throw new ModelLoadException($"metadata key {key} is missing") : 0f;
            double? value = raw.AsDouble();
            if (value is null || !double.IsFinite(value.Value) || value.Value < 0 || (required && value.Value == 0))
                throw new ModelLoadException($"metadata key {key} must be a {(required ? "positive" : "non-negative")} number, found {raw}");
            return (float)value.Value;
        }
        float logit = Scale($"{arch}.logit_scale", required: true);
        float residual = Scale($"{arch}.residual_scale", required: false);
        float embedding = Scale($"{arch}.embedding_scale", required: false);
        float attention = Scale($"{arch}.attention.scale", required: false);
        bool rope = true;
        if (file.TryGetValue($"{arch}.rope.scaling.finetuned", out var finetuned))
            rope = finetuned.Value is bool on ? on : throw new ModelLoadException($"metadata key {arch}.rope.scaling.finetuned must be a boolean, found {finetuned}");
        return c with
        {
            LogitScale = logit,
            ResidualScale = residual == 0 ? 1f : residual,
            EmbeddingScale = embedding == 0 ? 1f : embedding,
            AttentionScale = attention,
            NoRopeLayerStep = rope ? 0 : 1,
        };
    }

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: false, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
