using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// A mixture-of-experts decoder: every block is attention as in the dense architectures, then
/// <see cref="MixtureOfExperts"/> instead of one SwiGLU network (<see cref="Qwen3Moe"/>, <see cref="GraniteMoe"/>,
/// <see cref="Mixtral"/>, <see cref="Qwen2Moe"/>, <see cref="OlMoe"/>). Only the chosen experts' weights are read for a token, so a 30B model with 3B active
/// parameters decodes at about the speed of a dense 3B model, while the whole file stays mapped.
/// The source generator and the Vulkan backend do not take these models: they run on the CPU's generic path.
/// </summary>
internal abstract class MoeModel : Model
{
    private readonly MoeLayerWeights[] _layers;
    private readonly bool _neox;

    private protected MoeModel(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options, bool neox)
        : base(file, config, tensors, ownsFile, options)
    {
        _neox = neox;
        _layers = new MoeLayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = MixtureOfExperts.LoadLayer(tensors, config, il);
    }

    /// <summary>The blocks' weights.</summary>
    internal IReadOnlyList<MoeLayerWeights> MoeLayers => _layers;

    /// <summary>Not the layer list of a dense model: the source generator and the Vulkan backend do not take mixtures of experts.</summary>
    internal override IReadOnlyList<LayerWeights> Layers => [];

    private protected override IEnumerable<WeightMatrix> AllMatrices()
    {
        yield return Output;
        foreach (var l in _layers)
            foreach (var m in l.Matrices())
                yield return m;
    }

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, _neox, keep);
        MixtureOfExperts.FeedForward(Config, w.Experts, b, keep);
    }
}

/// <summary>
/// The <c>qwen3moe</c> architecture (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B, Qwen3-235B-A22B): <see cref="Qwen3"/>'s attention
/// (per-head Q/K norms, NEOX rope, 128-wide heads) and a mixture of experts (128 of width 768, 8 used, weights
/// normalized) in every block. Follows llama.cpp's llm_build_qwen3moe.
/// </summary>
internal sealed class Qwen3Moe : MoeModel
{
    internal Qwen3Moe(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: true)
    {
    }

    /// <summary>Hyperparameters under the <c>qwen3moe.</c> keys; the experts' width from expert_feed_forward_length.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.ReadExperts(file, "qwen3moe", ModelConfig.Read(file, "qwen3moe", ropeNeox: true, hasQkvBias: false) with { HasQkNorm = true },
            expertWidthKey: true, sharedExpert: false);
}

/// <summary>
/// The <c>granitemoe</c> architecture (IBM Granite 3.x 1B-A400M and 3B-A800M): <see cref="Granite"/>'s block and
/// multipliers with a mixture of experts (32 or 40 of feed_forward_length's width, 8 used, weights normalized), and
/// the shared expert of Granite MoE Shared files (expert_shared_feed_forward_length). Granite's residual_scale
/// multiplies the whole feed-forward output, shared expert included. Follows llama.cpp's llm_build_granite.
/// </summary>
internal sealed class GraniteMoe : MoeModel
{
    internal GraniteMoe(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: false)
    {
    }

    /// <summary>Hyperparameters under the <c>granitemoe.</c> keys: Granite's multipliers and the experts.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.ReadExperts(file, "granitemoe", Granite.ReadConfig(file, "granitemoe"), expertWidthKey: false, sharedExpert: true);
}

/// <summary>
/// A <c>llama</c> file with llama.expert_count &gt; 0 (Mixtral 8x7B and 8x22B, and the small Llama-shaped MoE models
/// converted the same way): <see cref="Llama"/>'s attention and a mixture of experts of feed_forward_length's width
/// (weights normalized), as llama.cpp's llm_build_llama takes its MoE branch. Files with the pre-2024 per-expert
/// tensors (ffn_gate.0.weight …) are refused as llama.cpp refuses them now: the 3-D ffn_*_exps tensors are missing.
/// </summary>
internal sealed class Mixtral : MoeModel
{
    internal Mixtral(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: false)
    {
    }
}

/// <summary>
/// The <c>qwen2moe</c> architecture (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): <see cref="Qwen2"/>'s attention (Q/K/V biases,
/// NEOX rope) and a mixture of experts whose weights are the router's probabilities themselves (not normalized),
/// plus a shared expert (expert_shared_feed_forward_length, else feed_forward_length) whose output is scaled by
/// sigmoid(ffn_gate_inp_shexp · x). Follows llama.cpp's llm_build_qwen2moe.
/// </summary>
internal sealed class Qwen2Moe : MoeModel
{
    internal Qwen2Moe(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: true)
    {
    }

    /// <summary>Hyperparameters under the <c>qwen2moe.</c> keys.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.ReadExperts(file, "qwen2moe", ModelConfig.Read(file, "qwen2moe", ropeNeox: true, hasQkvBias: true),
            expertWidthKey: true, sharedExpert: true, normalize: false, sharedDefault: true);
}

/// <summary>
/// The <c>olmoe</c> architecture (AllenAI's OLMoE-1B-7B: 64 experts of 1024, 8 used, 1.3B of 6.9B parameters active):
/// attention with an RMSNorm over each token's whole query and key rows (not per head) before the NEOX rope, and a
/// mixture of experts whose weights are the router's probabilities themselves. Follows llama.cpp's llm_build_olmoe.
/// </summary>
internal sealed class OlMoe : MoeModel
{
    internal OlMoe(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: true)
    {
    }

    /// <summary>Hyperparameters under the <c>olmoe.</c> keys; the experts as wide as feed_forward_length.</summary>
    internal static ModelConfig ReadConfig(GgufFile file) =>
        ModelConfig.ReadExperts(file, "olmoe", ModelConfig.Read(file, "olmoe", ropeNeox: true, hasQkvBias: false) with { HasQkNorm = true, QkNormFullWidth = true },
            expertWidthKey: false, sharedExpert: false, normalize: false);
}

/// <summary>
/// The <c>gpt-oss</c> architecture (OpenAI's gpt-oss-20b and -120b, llama.cpp's LLM_ARCH_OPENAI_MOE): attention with
/// Q/K/V and output biases, NEOX rope with YaRN scaling, 64-wide heads scaled by 1/√n_rot, a learned sink logit per head
/// in every softmax (attn_sinks), and every even layer attending through a sliding window (set_swa_pattern(2)); then
/// post_attention_norm and a mixture of experts (32 or 128 of expert_feed_forward_length, 4 used) whose router and experts
/// carry biases, chosen by top-k on the raw logits and weighted by the softmax of the chosen logits, with the clamped
/// SwiGLU (<see cref="Kernels.Activations.SwiGluOai"/>). The released files keep the experts in MXFP4. Follows
/// llama.cpp's llm_build_openai_moe_iswa.
/// </summary>
internal sealed class GptOss : MoeModel
{
    internal GptOss(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options, neox: true)
    {
    }

    /// <summary>Hyperparameters under the <c>gpt-oss.</c> keys; attention.sliding_window and expert_feed_forward_length are required, as in llama.cpp.</summary>
    internal static ModelConfig ReadConfig(GgufFile file)
    {
        const string a = "gpt-oss";
        if (!file.TryGetValue($"{a}.attention.sliding_window", out var w) || w.AsInt64() is not long window || window <= 0 || window > int.MaxValue)
            throw new ModelLoadException($"metadata key {a}.attention.sliding_window is missing or not a positive integer");
        if (!file.TryGetValue($"{a}.expert_feed_forward_length", out _))
            throw new ModelLoadException($"metadata key {a}.expert_feed_forward_length is missing");
        var c = ModelConfig.ReadExperts(file, a, ModelConfig.Read(file, a, ropeNeox: true, hasQkvBias: true),
            expertWidthKey: true, sharedExpert: false, normalize: false);
        return c with
        {
            SlidingWindow = (int)window,
            SlidingWindowPattern = 2,        // even layers local, odd layers global
            RopeFreqBaseSwa = c.RopeFreqBase, // the local layers rotate as the global ones
            RopeSwaScaled = true,
            AttentionScale = 1f / MathF.Sqrt(c.RopeDimensionCount),
            ExpertGatingSoftmaxWeight = true,
            ExpertSwiGluOai = true,
        };
    }
}
