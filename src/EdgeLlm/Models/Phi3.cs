using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>phi3</c> architecture (Phi-3-mini/medium, Phi-3.5-mini): the Llama block with NEOX rope,
/// whose converter fuses Q, K and V into one attn_qkv matrix and gate and up into one ffn_up of
/// 2 × n_ff rows (gate first). Each fused matrix is read as views of its rows, so the products,
/// the repacking and the KV cache are the ones every architecture uses. The 128k models carry
/// LongRoPE: rope_factors_short / rope_factors_long (chosen per context, see
/// <see cref="Model.RopeFactorsFor"/>) and rope.scaling.attn_factor. Files with separate
/// attn_q/attn_k/attn_v load too, as in llama.cpp. Sliding-window attention
/// (phi3.attention.sliding_window) is ignored, as llama.cpp ignores it for phi3 ("Phi SWA is
/// currently disabled", its PR 13676): the same file gives the same logits in both engines.
/// Follows llama.cpp's llm_build_phi3 (its Q pre-scaled by 1/√head_dim is the attention's scale here).
/// </summary>
internal sealed class Phi3 : Model
{
    private readonly LayerWeights[] _layers;

    internal Phi3(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = LoadLayer(tensors, config, il);
    }

    /// <summary>Hyperparameters under the <c>phi3.</c> keys; NEOX rope, no biases.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) => ModelConfig.Read(file, "phi3", ropeNeox: true, hasQkvBias: false);

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }

    /// <summary>blk.<paramref name="il"/>.*: attn_qkv (or attn_q/k/v) and the fused ffn_up split into views.</summary>
    private static LayerWeights LoadLayer(TensorLoader tensors, ModelConfig c, int il)
    {
        const string a = "phi3";
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{a}.embedding_length");
        var qLen = new TensorLoader.Dim(c.QueryLength, $"{a}.attention.head_count × head_dim ({c.HeadCount} × {c.HeadDim})");
        var kvLen = new TensorLoader.Dim(c.KvLength, $"{a}.attention.head_count_kv × head_dim ({c.HeadCountKv} × {c.HeadDim})");
        var ff = new TensorLoader.Dim(c.FeedForwardLength, $"{a}.feed_forward_length");
        string p = $"blk.{il}.";
        var qkv = tensors.OptionalFused(p + "attn_qkv.weight", embd, (qLen, "Q"), (kvLen, "K"), (kvLen, "V"))
            ?? (tensors.OptionalMatrix(p + "attn_q.weight", embd, qLen) is { } wq
                ? [wq, tensors.Matrix(p + "attn_k.weight", embd, kvLen), tensors.Matrix(p + "attn_v.weight", embd, kvLen)]
                : throw new ModelLoadException($"tensor {p}attn_qkv.weight is missing from the model file (nor are there separate {p}attn_q/attn_k/attn_v)"));
        var gateUp = tensors.OptionalFused(p + "ffn_up.weight", embd, (ff, "gate"), (ff, "up"))
            ?? throw new ModelLoadException($"tensor {p}ffn_up.weight is missing from the model file");
        return new LayerWeights
        {
            AttnNorm = tensors.Vector(p + "attn_norm.weight", embd),
            Wq = qkv[0],
            Wk = qkv[1],
            Wv = qkv[2],
            Wo = tensors.Matrix(p + "attn_output.weight", qLen, embd),
            FfnNorm = tensors.Vector(p + "ffn_norm.weight", embd),
            Gate = gateUp[0],
            Up = gateUp[1],
            Down = tensors.Matrix(p + "ffn_down.weight", ff, embd),
        };
    }
}
