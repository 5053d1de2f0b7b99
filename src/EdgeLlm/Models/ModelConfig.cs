using EdgeLlm.Gguf;

namespace EdgeLlm.Models;

/// <summary>
/// Hyperparameters of a decoder-only transformer, read from GGUF metadata
/// (<c>&lt;arch&gt;.embedding_length</c> etc., as llama.cpp's llama-hparams reads them) and checked
/// against the tensor shapes by the architecture's loader.
/// </summary>
/// <param name="Architecture">general.architecture, e.g. <c>llama</c>, <c>qwen2</c>, <c>qwen3</c> or <c>phi3</c>.</param>
/// <param name="VocabSize">Number of tokens (tokenizer.ggml.tokens length, else &lt;arch&gt;.vocab_size, else token_embd rows).</param>
/// <param name="EmbeddingLength">Width of the residual stream (n_embd).</param>
/// <param name="BlockCount">Number of transformer blocks (n_layer).</param>
/// <param name="FeedForwardLength">Hidden width of the SwiGLU feed-forward network (n_ff).</param>
/// <param name="HeadCount">Query heads (n_head).</param>
/// <param name="HeadCountKv">Key/value heads (n_head_kv; fewer than <paramref name="HeadCount"/> for grouped-query attention).</param>
/// <param name="HeadDim">Width of one head: attention.key_length, else embd / heads.</param>
/// <param name="RopeDimensionCount">Leading dimensions of each head that are rotated: rope.dimension_count, else <paramref name="HeadDim"/>.</param>
/// <param name="RopeFreqBase">rope.freq_base (default 10000).</param>
/// <param name="RopeFreqScale">1 / rope.scaling.factor for linear rope scaling, else 1.</param>
/// <param name="RmsEps">attention.layer_norm_rms_epsilon.</param>
/// <param name="TrainingContextLength">context_length: the context the model was trained with.</param>
/// <param name="TiedEmbeddings">No output.weight: the output projection reuses token_embd.weight.</param>
/// <param name="RopeNeox">NEOX rotary layout (rotate x[i] with x[i + n_dims/2]) instead of adjacent pairs.</param>
/// <param name="HasQkvBias">Q, K and V projections carry biases (Qwen2).</param>
/// <param name="HasRopeFrequencyFactors">A rope_freqs.weight tensor divides each rotary frequency (Llama 3.1+); LongRoPE's
/// rope_factors_long/short (Phi-3) are <see cref="Model"/>'s to choose per context and do not set it.</param>
public sealed record ModelConfig(
    string Architecture,
    int VocabSize,
    int EmbeddingLength,
    int BlockCount,
    int FeedForwardLength,
    int HeadCount,
    int HeadCountKv,
    int HeadDim,
    int RopeDimensionCount,
    float RopeFreqBase,
    float RopeFreqScale,
    float RmsEps,
    int TrainingContextLength,
    bool TiedEmbeddings,
    bool RopeNeox,
    bool HasQkvBias,
    bool HasRopeFrequencyFactors)
{
    /// <summary>
    /// Each head's queries and keys are RMS-normalized (over <see cref="HeadDim"/>, with the
    /// per-layer weights attn_q_norm / attn_k_norm) after the projections and before the rotary
    /// embedding (Qwen3).
    /// </summary>
    public bool HasQkNorm { get; init; }

    /// <summary>
    /// rope.scaling.attn_factor (default 1): both rotated halves of every query and key are scaled by
    /// it, as ggml's rope multiplies cos and sin (llama.cpp's <c>yarn_attn_factor *= rope_attn_factor</c>).
    /// LongRoPE files (Phi-3.5, Phi-4-mini) carry √(1 + ln(max / original context) / ln(original context)).
    /// </summary>
    public float RopeAttnFactor { get; init; } = 1f;

    /// <summary>
    /// YaRN rope scaling (rope.scaling.type yarn: gpt-oss, long-context Qwen2.5 files): the ramp between the scaled and
    /// unscaled angles and its magnitude correction (<see cref="Kernels.Rope.Angles"/>); default: none.
    /// </summary>
    public Kernels.YarnRope RopeYarn { get; init; }

    /// <summary>
    /// rope.scaling.original_context_length, else <see cref="TrainingContextLength"/>: a context longer
    /// than this takes the LongRoPE <c>rope_factors_long</c>, a shorter one <c>rope_factors_short</c>
    /// (llama.cpp's n_ctx_orig_yarn and get_rope_factors).
    /// </summary>
    public int RopeOriginalContextLength { get; init; }

    /// <summary>
    /// Sliding-window attention (Gemma 3): a query at position p of a layer <see cref="IsSlidingWindowLayer"/>
    /// sees the keys of positions p - window + 1 .. p (llama.cpp's LLAMA_SWA_TYPE_STANDARD); 0 for none.
    /// </summary>
    public int SlidingWindow { get; init; }

    /// <summary>
    /// Every this-many layers the last one attends globally, the others through the sliding window
    /// (llama.cpp's set_swa_pattern: Gemma 3's 6 gives five local layers, then one global).
    /// </summary>
    public int SlidingWindowPattern { get; init; }

    /// <summary>
    /// The sliding-window layers rotate with <see cref="RopeFreqScale"/> and <see cref="RopeYarn"/> like the others
    /// (gpt-oss: llama.cpp copies rope_freq_scale_train to its _swa twin), not with scale 1 (Gemma).
    /// </summary>
    public bool RopeSwaScaled { get; init; }

    /// <summary>
    /// The router's top-k is taken on its raw logits and the chosen experts' weights are the softmax of their logits
    /// alone (gpt-oss: llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX_WEIGHT), instead of a softmax over all experts first.
    /// </summary>
    public bool ExpertGatingSoftmaxWeight { get; init; }

    /// <summary>
    /// The experts' activation is gpt-oss's clamped SwiGLU (llama.cpp's LLM_FFN_SWIGLU_OAI_MOE: gate ≤ 7, up in [−7, 7],
    /// gate·σ(1.702·gate)·(up + 1)) and the router and experts carry biases.
    /// </summary>
    public bool ExpertSwiGluOai { get; init; }

    /// <summary>
    /// The attention factor the sliding-window layers' rope scales cos and sin by; null for <see cref="RopeAttnFactor"/>
    /// (OLMo 3: 1, as llama.cpp rotates its sliding-window layers with neither YaRN nor its magnitude correction).
    /// </summary>
    public float? RopeAttnFactorSwa { get; init; }

    /// <summary>
    /// Which layers attend through the <see cref="SlidingWindow"/>, one flag per layer, when the file lists them
    /// (&lt;arch&gt;.attention.sliding_window_pattern as an array, OLMo 3's layer_types); empty: <see cref="SlidingWindowPattern"/> decides.
    /// </summary>
    public IReadOnlyList<bool> SlidingWindowLayers { get; init; } = [];

    /// <summary>
    /// Llama 4's attention temperature (Ministral 3's llama_4_scaling_beta, &lt;arch&gt;.attention.temperature_scale): the
    /// queries of position p are multiplied by 1 + this · ln(⌊p / <see cref="AttnTemperatureFloor"/>⌋ + 1) after the rope,
    /// as llama.cpp's attn_temp input (offset 0); 0 for none.
    /// </summary>
    public float AttnTemperatureScale { get; init; }

    /// <summary>The position step of <see cref="AttnTemperatureScale"/> (llama.cpp's n_attn_temp_floor_scale: for Mistral 3, the original context).</summary>
    public int AttnTemperatureFloor { get; init; }

    /// <summary>Rope base of the sliding-window layers (Gemma 3: 10000, its global layers <see cref="RopeFreqBase"/>; Gemma 2: the same as the others); their frequency scale is 1.</summary>
    public float RopeFreqBaseSwa { get; init; } = 10000f;

    /// <summary>The attention scores' scale; 0 for 1 / √<see cref="HeadDim"/>.</summary>
    public float AttentionScale { get; init; }

    /// <summary>The token embeddings are multiplied by this before the first layer (Gemma: √embd).</summary>
    public float EmbeddingScale { get; init; } = 1f;

    /// <summary>Attention scores become c · tanh(score / c) before the softmax for c &gt; 0 (Gemma 2's attn_logit_softcapping); 0 for none.</summary>
    public float AttnLogitSoftcap { get; init; }

    /// <summary>Logits become c · tanh(logit / c) for c &gt; 0 (final_logit_softcapping); 0 for none.</summary>
    public float FinalLogitSoftcap { get; init; }

    /// <summary>
    /// The feed-forward network gates with GELU (tanh form, as ggml_geglu: GeGLU, Gemma) instead of SiLU.
    /// </summary>
    public bool GeluGate { get; init; }

    /// <summary>
    /// Every this-many layers the last one skips the rotary embedding ("NoPE": layer il rotates its
    /// queries and keys only when (il + 1) % step != 0, llama.cpp's n_no_rope_layer_step): SmolLM3's 4;
    /// 1 for a model that rotates in no layer (Granite with rope.scaling.finetuned = false); 0 when every
    /// layer rotates.
    /// </summary>
    public int NoRopeLayerStep { get; init; }

    /// <summary>
    /// The attention and feed-forward outputs are multiplied by this before each residual add (Granite's
    /// residual_scale, ggml_scale); 1 for none.
    /// </summary>
    public float ResidualScale { get; init; } = 1f;

    /// <summary>The logits are multiplied by 1 / this (Granite's logit_scale, as ggml_scale by 1.0f / scale); 1 for none.</summary>
    public float LogitScale { get; init; } = 1f;

    /// <summary>
    /// Taps of the short causal convolution in LFM2's convolution layers (lfm2.shortconv.l_cache, 3): a layer's
    /// output at position p reads its gated inputs of positions p − taps + 1 … p. 0 for a model without them.
    /// </summary>
    public int ShortConvTaps { get; init; }

    /// <summary>
    /// Which layers are LFM2 short-convolution layers instead of attention (those whose
    /// attention.head_count_kv entry is 0, as llama.cpp's recurrent_layer_arr); empty for other models.
    /// </summary>
    public IReadOnlyList<bool> ShortConvLayers { get; init; } = [];

    /// <summary>
    /// Experts of each mixture-of-experts feed-forward block (&lt;arch&gt;.expert_count: Qwen3-30B-A3B's 128, Granite 3.x
    /// MoE's 32 or 40, Mixtral's 8); 0 for a dense model, whose blocks have one feed-forward network.
    /// </summary>
    public int ExpertCount { get; init; }

    /// <summary>Experts each token is routed to (&lt;arch&gt;.expert_used_count, top-k of the router's probabilities).</summary>
    public int ExpertUsedCount { get; init; }

    /// <summary>
    /// Hidden width of one expert (&lt;arch&gt;.expert_feed_forward_length; Granite MoE and Mixtral files have only
    /// feed_forward_length, which then is the experts' width, as llama.cpp reads them).
    /// </summary>
    public int ExpertFeedForwardLength { get; init; }

    /// <summary>
    /// Hidden width of the shared expert every token also passes through (ffn_*_shexp; &lt;arch&gt;.expert_shared_feed_forward_length),
    /// 0 for none.
    /// </summary>
    public int ExpertSharedFeedForwardLength { get; init; }

    /// <summary>
    /// The chosen experts' router probabilities are divided by their sum before weighting the experts' outputs
    /// (Qwen3 MoE's norm_topk_prob, Mixtral and Granite MoE: llama.cpp's norm_w = true for these three; false for
    /// Qwen2 MoE and OLMoE, whose weights are the probabilities themselves).
    /// </summary>
    public bool ExpertWeightsNorm { get; init; }

    /// <summary>
    /// Each block RMS-normalizes its input before the attention and before the feed-forward network (attn_norm,
    /// ffn_norm: every architecture but EXAONE 4, whose blocks take the residual stream as it is and normalize only
    /// the two outputs, post_attention_norm and post_ffw_norm).
    /// </summary>
    public bool PreNorms { get; init; } = true;

    /// <summary>
    /// The router's probabilities are sigmoid(logit) each, not a softmax over the experts (&lt;arch&gt;.expert_gating_func
    /// = 2, llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID: LFM2-MoE).
    /// </summary>
    public bool ExpertGatingSigmoid { get; init; }

    /// <summary>
    /// Each mixture-of-experts block has a per-expert bias (exp_probs_b.bias) added to the probabilities to choose the
    /// experts but not to weigh them (LFM2-MoE, as llama.cpp's selection_probs).
    /// </summary>
    public bool ExpertSelectionBias { get; init; }

    /// <summary>
    /// The first blocks that have one dense SwiGLU network instead of the experts (&lt;arch&gt;.leading_dense_block_count:
    /// LFM2-8B-A1B's 2); 0 when every block of a mixture-of-experts model has experts.
    /// </summary>
    public int LeadingDenseBlocks { get; init; }

    /// <summary>True when block <paramref name="layer"/> has experts (a mixture-of-experts model past its leading dense blocks).</summary>
    public bool HasExperts(int layer) => IsMixtureOfExperts && layer >= LeadingDenseBlocks;

    /// <summary>
    /// The query and key RMSNorms (attn_q_norm / attn_k_norm) span the whole projection row, not each head (OLMoE:
    /// llama.cpp norms Qcur and Kcur before splitting them into heads); <see cref="HasQkNorm"/> says whether there are any.
    /// </summary>
    public bool QkNormFullWidth { get; init; }

    /// <summary>The per-head query and key RMSNorms come after the rotary embedding, not before (Hunyuan's dense models, as llama.cpp's llm_build_hunyuan_dense).</summary>
    public bool QkNormAfterRope { get; init; }

    /// <summary>True for a mixture-of-experts model (<see cref="ExpertCount"/> &gt; 0).</summary>
    public bool IsMixtureOfExperts => ExpertCount > 0;

    /// <summary>True when layer <paramref name="layer"/> is a short-convolution layer (no attention, no KV cache).</summary>
    public bool IsShortConvLayer(int layer) => (uint)layer < (uint)ShortConvLayers.Count && ShortConvLayers[layer];

    /// <summary>True when layer <paramref name="layer"/> rotates its queries and keys (see <see cref="NoRopeLayerStep"/>).</summary>
    public bool UsesRope(int layer) => NoRopeLayerStep == 0 || (layer + 1) % NoRopeLayerStep != 0;

    /// <summary>True when layer <paramref name="layer"/> attends through the <see cref="SlidingWindow"/>.</summary>
    public bool IsSlidingWindowLayer(int layer) =>
        SlidingWindow > 0 && (SlidingWindowLayers.Count > 0 ? (uint)layer < (uint)SlidingWindowLayers.Count && SlidingWindowLayers[layer]
            : SlidingWindowPattern == 0 || layer % SlidingWindowPattern < SlidingWindowPattern - 1);

    /// <summary>Width of the query projection output (HeadCount × HeadDim).</summary>
    public int QueryLength => HeadCount * HeadDim;

    /// <summary>Width of the key and value projection outputs (HeadCountKv × HeadDim).</summary>
    public int KvLength => HeadCountKv * HeadDim;

    /// <summary>
    /// Reads the hyperparameters of <paramref name="file"/> for architecture <paramref name="arch"/>.
    /// Architecture-specific flags (<paramref name="ropeNeox"/>, <paramref name="hasQkvBias"/>)
    /// come from the architecture's loader.
    /// </summary>
    /// <exception cref="ModelLoadException">a required key is missing or a value is out of range.</exception>
    /// <param name="headCountKv">the KV head count when the architecture reads it itself (LFM2's per-layer array), else null.</param>
    internal static ModelConfig Read(GgufFile file, string arch, bool ropeNeox, bool hasQkvBias, int? headCountKv = null)
    {
        int embd = RequiredInt(file, $"{arch}.embedding_length");
        int layers = RequiredInt(file, $"{arch}.block_count");
        int ff = RequiredInt(file, $"{arch}.feed_forward_length");
        int heads = RequiredInt(file, $"{arch}.attention.head_count");
        int headsKv = headCountKv ?? OptionalInt(file, $"{arch}.attention.head_count_kv") ?? heads;
        if (heads % headsKv != 0)
            throw new ModelLoadException($"{arch}.attention.head_count ({heads}) is not a multiple of {arch}.attention.head_count_kv ({headsKv})");
        int? keyLength = OptionalInt(file, $"{arch}.attention.key_length");
        if (keyLength is null && embd % heads != 0)
            throw new ModelLoadException($"{arch}.embedding_length ({embd}) is not a multiple of {arch}.attention.head_count ({heads}) and {arch}.attention.key_length is not set");
        int headDim = keyLength ?? embd / heads;
        int? valueLength = OptionalInt(file, $"{arch}.attention.value_length");
        if (valueLength is not null && valueLength != headDim)
            throw new ModelLoadException($"{arch}.attention.value_length ({valueLength}) differs from the key length ({headDim}); EdgeLlm does not support that");
        int ropeDims = OptionalInt(file, $"{arch}.rope.dimension_count") ?? headDim;
        if (ropeDims > headDim || ropeDims % 2 != 0)
            throw new ModelLoadException($"{arch}.rope.dimension_count ({ropeDims}) must be even and at most the head dimension ({headDim})");

        float freqBase = (float)(file.GetFloat($"{arch}.rope.freq_base") ?? 10000.0);
        float freqScale = 1f;
        string? scalingType = file.GetString($"{arch}.rope.scaling.type");
        double? scalingFactor = file.GetFloat($"{arch}.rope.scaling.factor") ?? file.GetFloat($"{arch}.rope.scale_linear");
        // "longrope" (Phi-3 128k): its scaling lives in the rope_factors_long/short tensors and attn_factor;
        // a scaling factor, if any, applies as for linear (llama.cpp's rope_freq_scale_train).
        if (scalingType is not null and not "none" and not "linear" and not "longrope" and not "yarn")
            throw new ModelLoadException($"{arch}.rope.scaling.type is '{scalingType}', which EdgeLlm does not support (only linear, yarn and longrope)");
        if (scalingType != "none" && scalingFactor is double f && f != 0 && f != 1)
            freqScale = (float)(1.0 / f);

        double? eps = file.GetFloat($"{arch}.attention.layer_norm_rms_epsilon");
        if (eps is null)
            throw new ModelLoadException($"metadata key {arch}.attention.layer_norm_rms_epsilon is missing");
        int ctxTrain = OptionalInt(file, $"{arch}.context_length") ?? 0;
        int ctxOrig = OptionalInt(file, $"{arch}.rope.scaling.original_context_length") ?? ctxTrain;
        double attnFactor = file.GetFloat($"{arch}.rope.scaling.attn_factor") ?? 1.0;
        if (!double.IsFinite(attnFactor) || attnFactor <= 0)
            throw new ModelLoadException($"metadata key {arch}.rope.scaling.attn_factor must be a positive number, found {attnFactor}");

        var tokEmbd = file.FindTensor("token_embd.weight");
        int vocab = file.TryGetValue("tokenizer.ggml.tokens", out var tokens) && tokens.IsArray
            ? tokens.ArrayLength
            : OptionalInt(file, $"{arch}.vocab_size") ?? (tokEmbd is not null ? (int)tokEmbd.RowCount : 0);
        if (vocab <= 0)
            throw new ModelLoadException("the vocabulary size is unknown: no tokenizer.ggml.tokens, no " + arch + ".vocab_size and no token_embd.weight");

        // YaRN (llama.cpp: a yarn file's ext_factor defaults to 1; beta_fast 32 and beta_slow 1 unless the file says).
        var yarn = default(Kernels.YarnRope);
        if (scalingType == "yarn" && freqScale != 1f)
        {
            float betaFast = (float)(file.GetFloat($"{arch}.rope.scaling.yarn_beta_fast") ?? 32.0);
            float betaSlow = (float)(file.GetFloat($"{arch}.rope.scaling.yarn_beta_slow") ?? 1.0);
            if (ctxOrig <= 0)
                throw new ModelLoadException($"{arch}.rope.scaling.type is yarn but neither {arch}.rope.scaling.original_context_length nor {arch}.context_length is set");
            yarn = Kernels.YarnRope.Create(1f, ropeDims, ctxOrig, freqBase, betaFast, betaSlow);
        }

        return new ModelConfig(arch, vocab, embd, layers, ff, heads, headsKv, headDim, ropeDims, freqBase, freqScale,
            (float)eps.Value, ctxTrain, TiedEmbeddings: file.FindTensor("output.weight") is null,
            ropeNeox, hasQkvBias, HasRopeFrequencyFactors: file.FindTensor("rope_freqs.weight") is not null)
        {
            RopeAttnFactor = (float)attnFactor,
            RopeOriginalContextLength = ctxOrig,
            RopeYarn = yarn,
        };
    }

    /// <summary>
    /// <paramref name="c"/> with the mixture-of-experts keys of <paramref name="arch"/>, as llama.cpp's load_hparams reads
    /// them: expert_count and expert_used_count (both required here, 1 ≤ used ≤ count ≤ 512, LLAMA_MAX_EXPERTS); the
    /// experts' width from expert_feed_forward_length when <paramref name="expertWidthKey"/> (qwen3moe: else
    /// feed_forward_length / expert_used_count), else feed_forward_length itself (llama, granitemoe); the shared expert's
    /// width from expert_shared_feed_forward_length when <paramref name="sharedExpert"/> (granitemoe: else 0; qwen2moe,
    /// <paramref name="sharedDefault"/>: else feed_forward_length); the weights divided by their sum when
    /// <paramref name="normalize"/>.
    /// </summary>
    /// <exception cref="ModelLoadException">a key is missing, not a positive integer, or more experts are used than exist.</exception>
    internal static ModelConfig ReadExperts(GgufFile file, string arch, ModelConfig c, bool expertWidthKey, bool sharedExpert,
        bool normalize = true, bool sharedDefault = false)
    {
        int count = RequiredInt(file, $"{arch}.expert_count");
        int used = RequiredInt(file, $"{arch}.expert_used_count");
        if (used > count)
            throw new ModelLoadException($"metadata key {arch}.expert_used_count ({used}) is larger than {arch}.expert_count ({count})");
        if (count > 512)
            throw new ModelLoadException($"metadata key {arch}.expert_count ({count}) is larger than 512 (llama.cpp's LLAMA_MAX_EXPERTS)");
        int width = expertWidthKey ? OptionalInt(file, $"{arch}.expert_feed_forward_length") ?? c.FeedForwardLength / used : c.FeedForwardLength;
        if (width <= 0)
            throw new ModelLoadException($"the experts' width is 0: {arch}.expert_feed_forward_length is missing and {arch}.feed_forward_length ({c.FeedForwardLength}) is below {arch}.expert_used_count ({used})");
        return c with
        {
            ExpertCount = count,
            ExpertUsedCount = used,
            ExpertFeedForwardLength = width,
            ExpertSharedFeedForwardLength = sharedExpert ? OptionalInt(file, $"{arch}.expert_shared_feed_forward_length") ?? (sharedDefault ? c.FeedForwardLength : 0) : 0,
            ExpertWeightsNorm = normalize,
        };
    }

    private static int RequiredInt(GgufFile file, string key) =>
        OptionalInt(file, key) ?? throw new ModelLoadException($"metadata key {key} is missing");

    private static int? OptionalInt(GgufFile file, string key)
    {
        if (!file.TryGetValue(key, out var v)) return null;
        long? l = v.AsInt64();
        if (l is null || l <= 0 || l > int.MaxValue)
            throw new ModelLoadException($"metadata key {key} must be a positive integer, found {v}");
        return (int)l.Value;
    }
}
