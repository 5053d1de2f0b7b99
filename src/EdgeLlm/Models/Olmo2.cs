using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>olmo2</c> architecture (AllenAI's fully open OLMo 2: 1B, 7B, 13B, 32B; and OLMo 3, whose files keep the
/// architecture name and add sliding windows). Like <see cref="Exaone4"/>, a block has no norm before the attention or
/// the feed-forward network and RMS-normalizes their outputs (post_attention_norm, post_ffw_norm) before the residual
/// adds; unlike it, the query and key RMSNorms span each token's whole projection row, as OLMoE's
/// (<see cref="ModelConfig.QkNormFullWidth"/>), before the rows are split into heads and NEOX-rotated. SwiGLU; untied
/// output. OLMo 3 files carry <c>olmo2.attention.sliding_window</c>: three layers of four attend through the window
/// (the pattern from <c>olmo2.attention.sliding_window_pattern</c>, a period or one flag per layer) and rotate with
/// plain rope (rope.freq_base_swa, else the base; no scaling, no YaRN, attention factor 1), the fourth attends
/// globally with the file's scaling (YaRN ×8 on OLMo 3). Follows llama.cpp's llm_build_olmo2.
/// </summary>
internal sealed class Olmo2 : Model
{
    private readonly LayerWeights[] _layers;

    internal Olmo2(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false, postNorms: true);
    }

    /// <summary>Hyperparameters under the <c>olmo2.</c> keys, with llama.cpp's rules for OLMo 3's sliding windows.</summary>
    internal static ModelConfig ReadConfig(GgufFile file)
    {
        const string a = "olmo2";
        var c = ModelConfig.Read(file, a, ropeNeox: true, hasQkvBias: false) with { HasQkNorm = true, QkNormFullWidth = true, PreNorms = false };
        if (!file.TryGetValue($"{a}.attention.sliding_window", out var w)) return c;
        if (w.AsInt64() is not long window || window < 0 || window > int.MaxValue)
            throw new ModelLoadException($"metadata key {a}.attention.sliding_window must be a whole number >= 0, found {w}");
        if (window == 0) return c;

        // The pattern: a period (llama.cpp's set_swa_pattern, 4 when absent: three sliding layers, then a global one),
        // or one flag per layer (true: sliding).
        int period = 4;
        bool[] layers = [];
        if (file.TryGetValue($"{a}.attention.sliding_window_pattern", out var pattern))
        {
            if (pattern.IsArray)
            {
                layers = pattern.Value is bool[] flags ? flags
                    : throw new ModelLoadException($"metadata key {a}.attention.sliding_window_pattern is an array but not of booleans (one per layer)");
                if (layers.Length != c.BlockCount)
                    throw new ModelLoadException($"metadata key {a}.attention.sliding_window_pattern has {layers.Length} entries for {c.BlockCount} layers");
            }
            else if (pattern.AsInt64() is long p && p >= 0 && p <= c.BlockCount) period = (int)p;
            else throw new ModelLoadException($"metadata key {a}.attention.sliding_window_pattern must be a period from 0 to the layer count ({c.BlockCount}) or one boolean per layer, found {pattern}");
        }
        double baseSwa = file.GetFloat($"{a}.rope.freq_base_swa") ?? c.RopeFreqBase;
        if (!double.IsFinite(baseSwa) || baseSwa <= 0)
            throw new ModelLoadException($"metadata key {a}.rope.freq_base_swa must be a positive number, found {baseSwa}");
        return c with
        {
            SlidingWindow = (int)window,
            SlidingWindowPattern = period,
            SlidingWindowLayers = layers,
            RopeFreqBaseSwa = (float)baseSwa,
            RopeAttnFactorSwa = 1f,
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
