namespace EdgeLlm.Synth;

/// <summary>The kind of vocabulary a synthetic model carries (how llama.cpp's converter lays it out).</summary>
public enum SynthVocabKind
{
    /// <summary>
    /// SentencePiece (tokenizer.ggml.model <c>llama</c>, pre <c>default</c>): &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;,
    /// the 256 byte tokens &lt;0x00&gt;..&lt;0xFF&gt;, then scored pieces (Llama 2, TinyLlama).
    /// </summary>
    SentencePiece,

    /// <summary>Byte-level BPE laid out as Llama 3's (pre <c>llama-bpe</c>): regular tokens, then 256 control tokens.</summary>
    Llama3Bpe,

    /// <summary>Byte-level BPE laid out as Qwen2's (pre <c>qwen2</c>): regular tokens, 22 special tokens, then [PADn] padding up to the embedding rows.</summary>
    Qwen2Bpe,

    /// <summary>Byte-level BPE laid out as SmolLM's (pre <c>smollm</c>): 17 special tokens first, then regular tokens.</summary>
    SmolLmBpe,
}

/// <summary>
/// Llama 3.1+ rotary frequency scaling ("rope_type": "llama3" in config.json), stored by
/// llama.cpp's converter as the per-frequency factors of <c>rope_freqs.weight</c>.
/// </summary>
public sealed record Llama3RopeScaling(float Factor, float LowFreqFactor, float HighFreqFactor, int OriginalContextLength);

/// <summary>
/// Phi-3 LongRoPE ("rope_scaling": {"type": "longrope"} in config.json), stored by llama.cpp's converter
/// as rope_factors_short / rope_factors_long and rope.scaling.attn_factor. The factors of a synthetic
/// file are made up (short rising from 1 to 2, long from 1 to 64 geometrically, about the spread of the
/// real Phi-3.5-mini's); the attention factor is the converter's √(1 + ln s / ln original), s = context
/// / original.
/// </summary>
public sealed record LongRopeScaling(int OriginalContextLength)
{
    /// <summary>rope.scaling.attn_factor for a model of <paramref name="contextLength"/> tokens.</summary>
    public float AttnFactor(int contextLength)
    {
        double scale = (double)contextLength / OriginalContextLength;
        return scale > 1 ? (float)Math.Sqrt(1 + Math.Log(scale) / Math.Log(OriginalContextLength)) : 1f;
    }

    /// <summary>rope_factors_short: 1 → 2 over the rotary pairs.</summary>
    public static float[] ShortFactors(int pairs) => Enumerable.Range(0, pairs).Select(i => 1f + (float)i / Math.Max(1, pairs - 1)).ToArray();

    /// <summary>rope_factors_long: 1 → 64 geometrically over the rotary pairs.</summary>
    public static float[] LongFactors(int pairs) => Enumerable.Range(0, pairs).Select(i => MathF.Pow(64f, (float)i / Math.Max(1, pairs - 1))).ToArray();
}

/// <summary>
/// YaRN rotary scaling ("rope_scaling": {"rope_type": "yarn"} in config.json: gpt-oss's factor 32 over an original
/// 4096 tokens), written as rope.scaling.type yarn, rope.scaling.factor and rope.scaling.original_context_length;
/// <paramref name="AttnFactor"/> (rope_scaling's attention_factor, which Olmo2Model writes as rope.scaling.attn_factor) when above 0.
/// </summary>
public sealed record YarnScaling(float Factor, int OriginalContextLength, float AttnFactor = 0);

/// <summary>
/// Granite's multipliers (config.json's embedding_multiplier, residual_multiplier, attention_multiplier and
/// logits_scaling), which llama.cpp's converter writes as granite.embedding_scale, residual_scale,
/// attention.scale and logit_scale.
/// </summary>
public sealed record GraniteMultipliers(float Embedding, float Residual, float Attention, float Logits);

/// <summary>
/// A mixture-of-experts feed-forward block (config.json's num_experts / num_local_experts, num_experts_per_tok and
/// moe_intermediate_size, or intermediate_size where that is the experts' width): <see cref="FeedForwardLength"/> is
/// one expert's hidden width; <see cref="SharedFeedForwardLength"/> the shared expert's (Granite MoE Shared's
/// shared_intermediate_size), 0 for none; <see cref="LeadingDenseBlocks"/> the first blocks that keep one dense
/// network (LFM2-MoE's num_dense_layers).
/// </summary>
public sealed class SynthExperts(int count, int used, int feedForwardLength, int sharedFeedForwardLength = 0, int leadingDenseBlocks = 0)
{
    /// <summary>Experts per block.</summary>
    public int Count => count;

    /// <summary>Experts each token is routed to.</summary>
    public int Used => used;

    /// <summary>One expert's hidden width.</summary>
    public int FeedForwardLength => feedForwardLength;

    /// <summary>The shared expert's hidden width, 0 for none.</summary>
    public int SharedFeedForwardLength => sharedFeedForwardLength;

    /// <summary>The first blocks with one dense SwiGLU network of the shape's feed_forward_length instead of experts (lfm2moe).</summary>
    public int LeadingDenseBlocks => leadingDenseBlocks;
}

/// <summary>
/// The exact shape of a decoder-only model (from its config.json): what <see cref="ModelSynthesizer"/>
/// reproduces with random weights.
/// </summary>
/// <param name="Name">Short name (<c>tinyllama-1.1b</c>).</param>
/// <param name="DisplayName">general.name written into the file.</param>
/// <param name="Architecture">general.architecture: <c>llama</c> or <c>qwen2</c>.</param>
/// <param name="EmbeddingLength">hidden_size.</param>
/// <param name="BlockCount">num_hidden_layers.</param>
/// <param name="HeadCount">num_attention_heads.</param>
/// <param name="HeadCountKv">num_key_value_heads.</param>
/// <param name="FeedForwardLength">intermediate_size.</param>
/// <param name="VocabSize">Rows of token_embd.weight = tokens in the vocabulary.</param>
/// <param name="ContextLength">max_position_embeddings.</param>
/// <param name="RopeFreqBase">rope_theta.</param>
/// <param name="RmsEps">rms_norm_eps.</param>
/// <param name="TiedEmbeddings">tie_word_embeddings: no output.weight.</param>
/// <param name="QkvBias">Q, K and V projections carry biases (Qwen2).</param>
/// <param name="Vocab">The vocabulary layout.</param>
/// <param name="RopeScaling">Llama 3 rope scaling (writes rope_freqs.weight), or null.</param>
/// <param name="WriteHeadLengths">config.json has <c>head_dim</c>: the converter writes attention.key_length / value_length.</param>
/// <param name="HeadLength">config.json's <c>head_dim</c> when it is not hidden_size / num_attention_heads (Qwen3: 128), else 0.</param>
/// <param name="LongRope">Phi-3 LongRoPE (writes rope_factors_long/short and attn_factor), or null.</param>
/// <param name="SlidingWindow">config.json's <c>sliding_window</c> (phi3 and gemma3 write it; 0 when none).</param>
/// <param name="FinalLogitSoftcap">config.json's <c>final_logit_softcapping</c> (gemma2 and gemma3 write it when set), else 0.</param>
/// <param name="AttnLogitSoftcap">config.json's <c>attn_logit_softcapping</c> (gemma2 writes it when set), else 0.</param>
/// <param name="Granite">Granite's multipliers (the <c>granite</c> architecture requires them), else null.</param>
/// <param name="AttentionLayers">LFM2: the layers that attend (config.json's full_attn_idxs); the others are short-convolution layers.</param>
/// <param name="Experts">qwen3moe, granitemoe, or llama as Mixtral: the experts that replace each block's feed-forward network, else null.</param>
/// <param name="AttnTemperatureScale">mistral3: rope_parameters' llama_4_scaling_beta, written as attention.temperature_scale (0: none).</param>
/// <param name="DenseProjection">gemma-embedding: the width between sentence-transformers' two dense layers after pooling
/// (dense_2: embd → width, dense_3: width → embd; the converter's --sentence-transformers-dense-modules), 0 for none.</param>
public sealed record SynthShape(
    string Name,
    string DisplayName,
    string Architecture,
    int EmbeddingLength,
    int BlockCount,
    int HeadCount,
    int HeadCountKv,
    int FeedForwardLength,
    int VocabSize,
    int ContextLength,
    float RopeFreqBase,
    float RmsEps,
    bool TiedEmbeddings,
    bool QkvBias,
    SynthVocabKind Vocab,
    Llama3RopeScaling? RopeScaling = null,
    bool WriteHeadLengths = false,
    int HeadLength = 0,
    LongRopeScaling? LongRope = null,
    int SlidingWindow = 0,
    float FinalLogitSoftcap = 0,
    float AttnLogitSoftcap = 0,
    GraniteMultipliers? Granite = null,
    int[]? AttentionLayers = null,
    SynthExperts? Experts = null,
    YarnScaling? Yarn = null,
    int RopeDimensionCount = 0,
    float AttnTemperatureScale = 0,
    int DenseProjection = 0)
{
    /// <summary>Leading dimensions of each head that rope rotates (config.json's partial_rotary_factor × head_dim; 0: all).</summary>
    public int RopeDims => RopeDimensionCount > 0 ? RopeDimensionCount : HeadDim;

    /// <summary>gpt-oss: biases on every projection, attention sinks, alternating sliding-window layers, biased experts.</summary>
    public bool IsGptOss => Architecture == "gpt-oss";

    /// <summary>Taps of LFM2's short convolutions (config.json's conv_L_cache).</summary>
    public const int ShortConvTaps = 3;

    /// <summary>True when layer <paramref name="layer"/> is an LFM2 short-convolution layer.</summary>
    public bool IsShortConvLayer(int layer) => IsLfm2 && AttentionLayers is { } a && Array.IndexOf(a, layer) < 0;

    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HeadLength > 0 ? HeadLength : EmbeddingLength / HeadCount;

    /// <summary>Each layer has per-head Q/K RMSNorm weights (attn_q_norm, attn_k_norm): the <c>qwen3</c> architecture.</summary>
    public bool QkNorm => Architecture is "qwen3" or "gemma3" or "lfm2" or "qwen3moe" or "olmoe" or "lfm2moe" or "exaone4" or "olmo2" or "hunyuan-dense" or "gemma-embedding";

    /// <summary>OLMoE and OLMo 2: the Q/K norms span each token's whole query and key rows, not each head.</summary>
    public bool QkNormFullWidth => Architecture is "olmoe" or "olmo2";

    /// <summary>EXAONE 4 and OLMo 2: no norm before the attention or the feed-forward network, only after each (post_attention_norm, post_ffw_norm).</summary>
    public bool PostNormsOnly => Architecture is "exaone4" or "olmo2";

    /// <summary>LFM2 or LFM2-MoE: attention and short-convolution layers, written as the converter's LFM2Model / LFM2MoeModel.</summary>
    public bool IsLfm2 => Architecture is "lfm2" or "lfm2moe";

    /// <summary>True when block <paramref name="layer"/> has experts rather than one dense network.</summary>
    public bool HasExperts(int layer) => Experts is { } x && layer >= x.LeadingDenseBlocks;

    /// <summary>Gemma 2 or 3: post-norms, GeGLU, chat tokens; written as the converter's Gemma2Model / Gemma3Model.</summary>
    public bool IsGemma => Architecture is "gemma" or "gemma2" or "gemma3" or "gemma-embedding";

    /// <summary>Gemma 2 and 3 normalize the attention and feed-forward outputs again (post_attention_norm, post_ffw_norm); the first Gemma does not.</summary>
    public bool GemmaPostNorms => Architecture is "gemma2" or "gemma3" or "gemma-embedding";

    /// <summary>EmbeddingGemma: Gemma 3's block as a bidirectional text encoder (no output projection; pooled embeddings).</summary>
    public bool IsEmbeddingGemma => Architecture == "gemma-embedding";

    /// <summary>Checks that the numbers describe a model llama.cpp can load.</summary>
    /// <exception cref="ArgumentException">a dimension is out of range or does not divide.</exception>
    public void Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new ArgumentException($"synthetic shape '{Name}': {what}");
        }
        Require(Architecture is "llama" or "qwen2" or "qwen3" or "phi3" or "gemma2" or "gemma3" or "smollm3" or "granite" or "lfm2" or "qwen3moe" or "granitemoe" or "qwen2moe" or "olmoe" or "lfm2moe" or "ernie4_5" or "exaone4" or "olmo2" or "mistral3" or "hunyuan-dense" or "gemma" or "gpt-oss" or "gemma-embedding",
            $"architecture '{Architecture}' is not llama, qwen2, qwen3, phi3, gemma, gemma2, gemma3, gemma-embedding, smollm3, granite, lfm2, qwen3moe, granitemoe, qwen2moe, olmoe, lfm2moe, ernie4_5, exaone4, olmo2, mistral3, hunyuan-dense or gpt-oss");
        Require(DenseProjection >= 0 && (DenseProjection == 0 || IsEmbeddingGemma), "dense projections after pooling are written for gemma-embedding only");
        Require(!IsEmbeddingGemma || SlidingWindow > 0 && FinalLogitSoftcap == 0, "a gemma-embedding model has a sliding window and no logit soft-cap");
        Require(AttnTemperatureScale == 0 || Architecture == "mistral3" && Yarn is not null, "an attention temperature is written for mistral3 with YaRN (its step is the original context) only");
        Require((Experts is not null) == (Architecture is "qwen3moe" or "granitemoe" or "qwen2moe" or "olmoe" or "lfm2moe" or "gpt-oss") || Experts is not null && Architecture == "llama",
            "qwen3moe, granitemoe, qwen2moe, olmoe, lfm2moe and gpt-oss models, and only they and llama (as Mixtral), have experts");
        Require(!IsGptOss || SlidingWindow > 0 && QkvBias && !TiedEmbeddings && WriteHeadLengths,
            "a gpt-oss model has a sliding window, Q/K/V biases, an untied output and writes its head lengths");
        Require(Yarn is null || Yarn.Factor > 1 && Yarn.OriginalContextLength > 0, "YaRN's factor must be above 1 and its original context positive");
        Require(Experts is null || Experts.LeadingDenseBlocks == 0 || Architecture == "lfm2moe" && Experts.LeadingDenseBlocks <= BlockCount,
            "only an lfm2moe model has leading dense blocks (no more than its blocks)");
        Require(Experts is null || Experts.Count > 0 && Experts.Used > 0 && Experts.Used <= Experts.Count && Experts.Count <= 512 && Experts.FeedForwardLength > 0,
            "the experts must number 1 to 512, use 1 to that many per token, and have a positive width");
        Require(Experts is null || (Architecture == "qwen2moe" ? Experts.SharedFeedForwardLength > 0
            : Experts.SharedFeedForwardLength == 0 || Architecture == "granitemoe" && Experts.SharedFeedForwardLength > 0),
            "a qwen2moe model has a shared expert, a granitemoe model may have one, no other has");
        Require((AttentionLayers is not null) == IsLfm2 && (AttentionLayers ?? []).All(l => l >= 0 && l < BlockCount),
            "an lfm2 or lfm2moe model, and only those, lists its attention layers (each below the layer count)");
        Require((Granite is not null) == (Architecture is "granite" or "granitemoe"), "a granite or granitemoe model, and only those, has Granite's multipliers");
        Require(Granite is null || Granite.Logits > 0 && Granite.Embedding >= 0 && Granite.Residual >= 0 && Granite.Attention >= 0,
            "Granite's logits scaling must be positive and the other multipliers non-negative");
        Require(!IsGemma || (WriteHeadLengths && TiedEmbeddings && Vocab == SynthVocabKind.SentencePiece),
            $"a {Architecture} model writes its head lengths, ties its embeddings and has a SentencePiece vocabulary");
        Require(FinalLogitSoftcap == 0 || GemmaPostNorms, "final logit soft-capping is written for gemma2 and gemma3 only");
        Require(SlidingWindow == 0 || Architecture != "gemma", "the first Gemma has no sliding window");
        Require(AttnLogitSoftcap == 0 || Architecture == "gemma2", "attention logit soft-capping is written for gemma2 only");
        Require(LongRope is null || Architecture == "phi3", "LongRoPE factors are written for phi3 only");
        Require(!QkvBias || Architecture is "qwen2" or "qwen2moe" or "gpt-oss", "Q/K/V biases are written for qwen2, qwen2moe and gpt-oss only");
        Require(EmbeddingLength > 0 && BlockCount > 0 && HeadCount > 0 && HeadCountKv > 0 && FeedForwardLength > 0 && ContextLength > 0,
            "every dimension must be positive");
        Require(HeadLength >= 0, $"head length {HeadLength} is negative");
        Require(HeadLength > 0 || EmbeddingLength % HeadCount == 0, $"embedding length {EmbeddingLength} is not a multiple of the head count {HeadCount}");
        Require(HeadLength == 0 || WriteHeadLengths, "a head length of its own must be written (WriteHeadLengths), or llama.cpp would take embd / heads");
        Require(HeadCount % HeadCountKv == 0, $"head count {HeadCount} is not a multiple of the KV head count {HeadCountKv}");
        Require(HeadDim % 2 == 0, $"head dimension {HeadDim} is odd (rope rotates pairs)");
        Require(RopeFreqBase > 0 && RmsEps > 0, "rope base and rms epsilon must be positive");
        int minVocab = SynthVocab.MinimumSize(Vocab) + SynthVocab.AddedTokens(Architecture).Length;
        Require(VocabSize >= minVocab, $"vocabulary size {VocabSize} is below the {minVocab} tokens a {Vocab} vocabulary{(Architecture is "phi3" or "gemma3" or "gemma-embedding" ? $" with {Architecture}'s added tokens" : "")} needs");
        Require(Architecture != "phi3" || Vocab is SynthVocabKind.SentencePiece or SynthVocabKind.Qwen2Bpe,
            "a phi3 model has a SentencePiece vocabulary (Phi-3) or a byte-level BPE one (Phi-4-mini)");
        Require(RopeDimensionCount >= 0 && RopeDims % 2 == 0 && RopeDims <= HeadDim, $"rope dimensions {RopeDims} must be even and at most the head dimension {HeadDim}");
        Require(RopeDimensionCount == 0 || Architecture is "phi3" or "llama", "partial rotary dimensions are written for phi3 and llama only");
    }
}

/// <summary>The shapes of real models that <c>edgellm synth --like</c> knows (numbers from their config.json).</summary>
public static class SynthShapes
{
    /// <summary>TinyLlama-1.1B-Chat-v1.0: Llama 2 architecture, SentencePiece vocabulary, untied output.</summary>
    public static readonly SynthShape TinyLlama11B = new(
        "tinyllama-1.1b", "TinyLlama 1.1B (synthetic)", "llama", EmbeddingLength: 2048, BlockCount: 22, HeadCount: 32, HeadCountKv: 4,
        FeedForwardLength: 5632, VocabSize: 32000, ContextLength: 2048, RopeFreqBase: 10000f, RmsEps: 1e-5f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.SentencePiece);

    /// <summary>Llama-3.2-1B: Llama 3 rope scaling (rope_freqs.weight), tied embeddings, 128,256-token BPE vocabulary.</summary>
    public static readonly SynthShape Llama32_1B = new(
        "llama-3.2-1b", "Llama 3.2 1B (synthetic)", "llama", EmbeddingLength: 2048, BlockCount: 16, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 8192, VocabSize: 128256, ContextLength: 131072, RopeFreqBase: 500000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe,
        RopeScaling: new Llama3RopeScaling(32f, 1f, 4f, 8192), WriteHeadLengths: true);

    /// <summary>Qwen2.5-0.5B: Q/K/V biases, tied embeddings, 151,936 embedding rows.</summary>
    public static readonly SynthShape Qwen25_05B = new(
        "qwen2.5-0.5b", "Qwen2.5 0.5B (synthetic)", "qwen2", EmbeddingLength: 896, BlockCount: 24, HeadCount: 14, HeadCountKv: 2,
        FeedForwardLength: 4864, VocabSize: 151936, ContextLength: 32768, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: true, SynthVocabKind.Qwen2Bpe);

    /// <summary>SmolLM2-360M: Llama architecture, tied embeddings, 49,152-token BPE vocabulary.</summary>
    public static readonly SynthShape SmolLM2_360M = new(
        "smollm2-360m", "SmolLM2 360M (synthetic)", "llama", EmbeddingLength: 960, BlockCount: 32, HeadCount: 15, HeadCountKv: 5,
        FeedForwardLength: 2560, VocabSize: 49152, ContextLength: 8192, RopeFreqBase: 100000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SmolLmBpe);

    /// <summary>Qwen3-0.6B: per-head Q/K norms, 128-wide heads (16 × 128 = 2048 query width on a 1024 residual), tied embeddings.</summary>
    public static readonly SynthShape Qwen3_06B = new(
        "qwen3-0.6b", "Qwen3 0.6B (synthetic)", "qwen3", EmbeddingLength: 1024, BlockCount: 28, HeadCount: 16, HeadCountKv: 8,
        FeedForwardLength: 3072, VocabSize: 151936, ContextLength: 40960, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128);

    /// <summary>Qwen3-1.7B: as <see cref="Qwen3_06B"/>, 2048 wide.</summary>
    public static readonly SynthShape Qwen3_17B = new(
        "qwen3-1.7b", "Qwen3 1.7B (synthetic)", "qwen3", EmbeddingLength: 2048, BlockCount: 28, HeadCount: 16, HeadCountKv: 8,
        FeedForwardLength: 6144, VocabSize: 151936, ContextLength: 40960, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128);

    /// <summary>
    /// Phi-3.5-mini-instruct: phi3 architecture (fused attn_qkv and gate/up), 96-wide heads without GQA,
    /// LongRoPE from a 4096-token original context to 131072, SentencePiece vocabulary of 32,064, untied.
    /// </summary>
    public static readonly SynthShape Phi35Mini = new(
        "phi-3.5-mini", "Phi 3.5 mini (synthetic)", "phi3", EmbeddingLength: 3072, BlockCount: 32, HeadCount: 32, HeadCountKv: 32,
        FeedForwardLength: 8192, VocabSize: 32064, ContextLength: 131072, RopeFreqBase: 10000f, RmsEps: 1e-5f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.SentencePiece, LongRope: new LongRopeScaling(4096), SlidingWindow: 262144);

    /// <summary>
    /// Phi-4-mini-instruct: phi3 architecture with 24 query and 8 KV heads of 128, three quarters of each head rotated
    /// (partial_rotary_factor 0.75: 96 dimensions), LongRoPE from 4096 to 131072, tied embeddings of 200,064 rows.
    /// Its vocabulary is a padded byte-level BPE of that size, not o200k.
    /// </summary>
    public static readonly SynthShape Phi4Mini = new(
        "phi-4-mini", "Phi 4 mini (synthetic)", "phi3", EmbeddingLength: 3072, BlockCount: 32, HeadCount: 24, HeadCountKv: 8,
        FeedForwardLength: 8192, VocabSize: 200064, ContextLength: 131072, RopeFreqBase: 10000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Qwen2Bpe, LongRope: new LongRopeScaling(4096), SlidingWindow: 262144,
        RopeDimensionCount: 96);

    /// <summary>
    /// Gemma-3-1B: gemma3 architecture (256-wide heads, one KV head, per-head Q/K norms, post-norms, GeGLU),
    /// a 512-token sliding window in five layers of six, tied embeddings of 262,144 rows.
    /// </summary>
    public static readonly SynthShape Gemma3_1B = new(
        "gemma-3-1b", "Gemma 3 1B (synthetic)", "gemma3", EmbeddingLength: 1152, BlockCount: 26, HeadCount: 4, HeadCountKv: 1,
        FeedForwardLength: 6912, VocabSize: 262144, ContextLength: 32768, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 256, SlidingWindow: 512);

    /// <summary>
    /// EmbeddingGemma-300M: gemma-embedding architecture (Gemma 3's block with bidirectional attention: 3 query heads and
    /// one KV head of 256 on a 768-wide stream, a 512-token symmetric window in five layers of six, GeGLU 1152), mean
    /// pooling, then sentence-transformers' dense layers 768 → 3072 → 768; Gemma 3's 262,144-token vocabulary.
    /// </summary>
    public static readonly SynthShape EmbeddingGemma300M = new(
        "embeddinggemma-300m", "EmbeddingGemma 300M (synthetic)", "gemma-embedding", EmbeddingLength: 768, BlockCount: 24, HeadCount: 3, HeadCountKv: 1,
        FeedForwardLength: 1152, VocabSize: 262144, ContextLength: 2048, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 256, SlidingWindow: 512,
        DenseProjection: 3072);

    /// <summary>
    /// Gemma-2B (the first Gemma): gemma architecture (Gemma 2's block without post-norms, windows or soft-caps), 18 layers
    /// of 8 query heads and one KV head of 256 on a 2048-wide stream, feed-forward 16384, tied embeddings of 256,000 rows.
    /// </summary>
    public static readonly SynthShape Gemma_2B = new(
        "gemma-2b", "Gemma 2B (synthetic)", "gemma", EmbeddingLength: 2048, BlockCount: 18, HeadCount: 8, HeadCountKv: 1,
        FeedForwardLength: 16384, VocabSize: 256000, ContextLength: 8192, RopeFreqBase: 10000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 256);

    /// <summary>
    /// Gemma-2-2B: gemma2 architecture (256-wide heads, 8 query and 4 KV heads, post-norms, GeGLU), a 4096-token
    /// sliding window in every other layer, attention and final logits soft-capped at 50 and 30, tied embeddings of 256,000 rows.
    /// </summary>
    public static readonly SynthShape Gemma2_2B = new(
        "gemma-2-2b", "Gemma 2 2B (synthetic)", "gemma2", EmbeddingLength: 2304, BlockCount: 26, HeadCount: 8, HeadCountKv: 4,
        FeedForwardLength: 9216, VocabSize: 256000, ContextLength: 8192, RopeFreqBase: 10000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 256, SlidingWindow: 4096,
        FinalLogitSoftcap: 30f, AttnLogitSoftcap: 50f);

    /// <summary>
    /// SmolLM3-3B: smollm3 architecture (Llama's block without rope in every fourth layer), 16 query and 4 KV heads,
    /// tied embeddings, Llama 3's 128,256-token BPE vocabulary.
    /// </summary>
    public static readonly SynthShape SmolLM3_3B = new(
        "smollm3-3b", "SmolLM3 3B (synthetic)", "smollm3", EmbeddingLength: 2048, BlockCount: 36, HeadCount: 16, HeadCountKv: 4,
        FeedForwardLength: 11008, VocabSize: 128256, ContextLength: 65536, RopeFreqBase: 5000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe);

    /// <summary>
    /// Granite-3.3-2B: granite architecture (Llama's block with embedding × 12, scores × 1/64, residual branches × 0.22,
    /// logits / 8), 32 query and 8 KV heads, tied embeddings, a 49,159-token BPE vocabulary.
    /// </summary>
    public static readonly SynthShape Granite33_2B = new(
        "granite-3.3-2b", "Granite 3.3 2B (synthetic)", "granite", EmbeddingLength: 2048, BlockCount: 40, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 8192, VocabSize: 49159, ContextLength: 131072, RopeFreqBase: 10000000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SmolLmBpe, Granite: new GraniteMultipliers(12f, 0.22f, 0.015625f, 8f));

    /// <summary>
    /// LFM2-1.2B: lfm2 architecture, 16 layers of which 6 attend (2, 5, 8, 10, 12, 14; 32 query and 8 KV heads of 64,
    /// per-head Q/K norms) and 10 are short convolutions of 3 taps; feed-forward 8192 (config.json's 12288 after
    /// block_auto_adjust_ff_dim), tied embeddings, a 65,536-token BPE vocabulary.
    /// </summary>
    public static readonly SynthShape Lfm2_12B = new(
        "lfm2-1.2b", "LFM2 1.2B (synthetic)", "lfm2", EmbeddingLength: 2048, BlockCount: 16, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 8192, VocabSize: 65536, ContextLength: 128000, RopeFreqBase: 1000000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe, AttentionLayers: [2, 5, 8, 10, 12, 14]);

    /// <summary>LFM2-350M: as <see cref="Lfm2_12B"/>, 1024 wide, 16 query heads, feed-forward 4608.</summary>
    public static readonly SynthShape Lfm2_350M = Lfm2_12B with
    {
        Name = "lfm2-350m", DisplayName = "LFM2 350M (synthetic)", EmbeddingLength = 1024, HeadCount = 16, FeedForwardLength = 4608,
    };

    /// <summary>
    /// Qwen3-30B-A3B: qwen3moe architecture, 48 blocks of Qwen3 attention (32 query and 4 KV heads of 128, per-head Q/K
    /// norms) and 128 experts of width 768, 8 used per token (3.3B of 30.5B parameters active), untied output.
    /// </summary>
    public static readonly SynthShape Qwen3_30B_A3B = new(
        "qwen3-30b-a3b", "Qwen3 30B A3B (synthetic)", "qwen3moe", EmbeddingLength: 2048, BlockCount: 48, HeadCount: 32, HeadCountKv: 4,
        FeedForwardLength: 6144, VocabSize: 151936, ContextLength: 40960, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128,
        Experts: new SynthExperts(128, 8, 768));

    /// <summary>
    /// Granite-3.0-1B-A400M: granitemoe architecture, 24 blocks of Granite attention (16 query and 8 KV heads of 64) and
    /// 32 experts of width 512, 8 used per token, Granite's multipliers (embedding × 12, scores × 1/64, residual branches
    /// × 0.22, logits / 6), tied embeddings, a 49,155-token BPE vocabulary.
    /// </summary>
    public static readonly SynthShape Granite30_1B_A400M = new(
        "granite-3.0-1b-a400m", "Granite 3.0 1B A400M (synthetic)", "granitemoe", EmbeddingLength: 1024, BlockCount: 24, HeadCount: 16, HeadCountKv: 8,
        FeedForwardLength: 512, VocabSize: 49155, ContextLength: 4096, RopeFreqBase: 10000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SmolLmBpe, Granite: new GraniteMultipliers(12f, 0.22f, 0.015625f, 6f),
        Experts: new SynthExperts(32, 8, 512));

    /// <summary>
    /// OLMoE-1B-7B-0924: olmoe architecture, 16 blocks of attention (16 query and 16 KV heads of 128, the query and key
    /// rows RMS-normed whole) and 64 experts of width 1024, 8 used per token (1.3B of 6.9B parameters active), untied
    /// output, a 50,304-token BPE vocabulary (laid out as Llama 3's here, not GPT-NeoX's).
    /// </summary>
    public static readonly SynthShape OlMoe_1B_7B = new(
        "olmoe-1b-7b", "OLMoE 1B 7B (synthetic)", "olmoe", EmbeddingLength: 2048, BlockCount: 16, HeadCount: 16, HeadCountKv: 16,
        FeedForwardLength: 1024, VocabSize: 50304, ContextLength: 4096, RopeFreqBase: 10000f, RmsEps: 1e-5f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.Llama3Bpe, Experts: new SynthExperts(64, 8, 1024));

    /// <summary>
    /// Qwen1.5-MoE-A2.7B: qwen2moe architecture, 24 blocks of Qwen2 attention (16 query and 16 KV heads of 128, Q/K/V
    /// biases) and 60 experts of width 1408, 4 used per token, plus a gated shared expert of 5632; untied output.
    /// </summary>
    public static readonly SynthShape Qwen15_MoE_A27B = new(
        "qwen1.5-moe-a2.7b", "Qwen1.5 MoE A2.7B (synthetic)", "qwen2moe", EmbeddingLength: 2048, BlockCount: 24, HeadCount: 16, HeadCountKv: 16,
        FeedForwardLength: 5632, VocabSize: 151936, ContextLength: 8192, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: false, QkvBias: true, SynthVocabKind.Qwen2Bpe, Experts: new SynthExperts(60, 4, 1408, 5632));

    /// <summary>
    /// LFM2-8B-A1B: lfm2moe architecture, 24 layers of which 6 attend (2, 6, 10, 14, 18, 21; 32 query and 8 KV heads
    /// of 64) and 18 are short convolutions; the first 2 blocks have a dense SwiGLU of 7168, the other 22 a mixture of
    /// 32 experts of 1792, 4 used per token (sigmoid router with a per-expert choice bias; 1.5B of 8.3B parameters
    /// active); tied embeddings, a 65,536-token BPE vocabulary.
    /// </summary>
    public static readonly SynthShape Lfm2_8B_A1B = new(
        "lfm2-8b-a1b", "LFM2 8B A1B (synthetic)", "lfm2moe", EmbeddingLength: 2048, BlockCount: 24, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 7168, VocabSize: 65536, ContextLength: 128000, RopeFreqBase: 1000000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe, AttentionLayers: [2, 6, 10, 14, 18, 21],
        Experts: new SynthExperts(32, 4, 1792, leadingDenseBlocks: 2));

    /// <summary>
    /// ERNIE-4.5-0.3B: ernie4_5 architecture (Llama's block), 18 layers, 16 query and 2 KV heads of 128 on a 1024-wide
    /// stream, feed-forward 3072, tied embeddings, a 103,424-token SentencePiece vocabulary (0.36B parameters).
    /// </summary>
    public static readonly SynthShape Ernie45_03B = new(
        "ernie-4.5-0.3b", "ERNIE 4.5 0.3B (synthetic)", "ernie4_5", EmbeddingLength: 1024, BlockCount: 18, HeadCount: 16, HeadCountKv: 2,
        FeedForwardLength: 3072, VocabSize: 103424, ContextLength: 131072, RopeFreqBase: 500000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 128);

    /// <summary>
    /// EXAONE-4.0-1.2B: exaone4 architecture (post-norms only, per-head Q/K norms, NEOX rope), 30 layers, 32 query and 8
    /// KV heads of 64, feed-forward 4096, Llama 3 rope scaling (factor 16 over an original 8192), tied embeddings, a
    /// 102,400-token BPE vocabulary (laid out as Llama 3's here).
    /// </summary>
    public static readonly SynthShape Exaone40_12B = new(
        "exaone-4.0-1.2b", "EXAONE 4.0 1.2B (synthetic)", "exaone4", EmbeddingLength: 2048, BlockCount: 30, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 4096, VocabSize: 102400, ContextLength: 65536, RopeFreqBase: 1000000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe, new Llama3RopeScaling(16f, 1f, 4f, 8192), WriteHeadLengths: true);

    /// <summary>
    /// OLMo-2-0425-1B: olmo2 architecture (post-norms only, Q/K norms over whole rows, NEOX rope), 16 layers, 16 query
    /// and 16 KV heads of 128, feed-forward 8192, rope base 500000, an untied output, a 100,352-token BPE vocabulary
    /// (laid out as Llama 3's here; OLMo 2's is cl100k-based).
    /// </summary>
    public static readonly SynthShape Olmo2_1B = new(
        "olmo-2-1b", "OLMo 2 1B (synthetic)", "olmo2", EmbeddingLength: 2048, BlockCount: 16, HeadCount: 16, HeadCountKv: 16,
        FeedForwardLength: 8192, VocabSize: 100352, ContextLength: 4096, RopeFreqBase: 500000f, RmsEps: 1e-6f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.Llama3Bpe);

    /// <summary>
    /// Olmo-3-7B: olmo2 architecture with OLMo 3's sliding windows (4096 tokens in three layers of four), 32 layers of 32
    /// heads of 128, feed-forward 11008, YaRN ×8 over 8192 tokens on the global layers (attention_factor 1.2079),
    /// 65,536 tokens of context, 100,278 tokens, untied.
    /// </summary>
    public static readonly SynthShape Olmo3_7B = new(
        "olmo-3-7b", "OLMo 3 7B (synthetic)", "olmo2", EmbeddingLength: 4096, BlockCount: 32, HeadCount: 32, HeadCountKv: 32,
        FeedForwardLength: 11008, VocabSize: 100278, ContextLength: 65536, RopeFreqBase: 500000f, RmsEps: 1e-6f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.Llama3Bpe, SlidingWindow: 4096,
        Yarn: new YarnScaling(8f, 8192, 1.2079441f));

    /// <summary>
    /// Ministral-3-3B (its text model): mistral3 architecture, Llama's block with 26 layers of 32 query and 8 KV heads of
    /// 128 on a 3072-wide stream, feed-forward 9216, rope base 1e6 with YaRN ×16 over 16384 tokens, Llama 4's attention
    /// temperature 0.1, tied embeddings, a 131,072-token vocabulary (laid out as Llama 3's here; Ministral's is Tekken).
    /// </summary>
    public static readonly SynthShape Ministral3_3B = new(
        "ministral-3-3b", "Ministral 3 3B (synthetic)", "mistral3", EmbeddingLength: 3072, BlockCount: 26, HeadCount: 32, HeadCountKv: 8,
        FeedForwardLength: 9216, VocabSize: 131072, ContextLength: 262144, RopeFreqBase: 1000000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe, WriteHeadLengths: true, HeadLength: 128,
        Yarn: new YarnScaling(16f, 16384), AttnTemperatureScale: 0.1f);

    /// <summary>Every known shape.</summary>
    /// <summary>
    /// gpt-oss-20b: 24 layers 2880 wide, 64 query and 8 KV heads of 64, every even layer through a 128-token window,
    /// 32 experts of 2880 (4 used) with biases, YaRN ×32 over 4096 tokens (rope base 150000), 201,088 tokens, untied
    /// (20.9B parameters, 3.6B active). The vocabulary is a Llama 3-style BPE of that size, not o200k_harmony.
    /// </summary>
    public static readonly SynthShape GptOss20B = new(
        "gpt-oss-20b", "gpt-oss 20b (synthetic)", "gpt-oss", EmbeddingLength: 2880, BlockCount: 24, HeadCount: 64, HeadCountKv: 8,
        FeedForwardLength: 2880, VocabSize: 201088, ContextLength: 131072, RopeFreqBase: 150000f, RmsEps: 1e-5f,
        TiedEmbeddings: false, QkvBias: true, SynthVocabKind.Llama3Bpe, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 128,
        Experts: new SynthExperts(32, 4, 2880), Yarn: new YarnScaling(32f, 4096));

    public static IReadOnlyList<SynthShape> All { get; } = [TinyLlama11B, Llama32_1B, Qwen25_05B, SmolLM2_360M, Qwen3_06B, Qwen3_17B, Phi35Mini, Phi4Mini, Gemma_2B, Gemma2_2B, Gemma3_1B, EmbeddingGemma300M, SmolLM3_3B, Granite33_2B, Lfm2_350M, Lfm2_12B, Qwen3_30B_A3B, Granite30_1B_A400M, OlMoe_1B_7B, Qwen15_MoE_A27B, Lfm2_8B_A1B, Ernie45_03B, Exaone40_12B, Olmo2_1B, Olmo3_7B, Ministral3_3B, GptOss20B];

    /// <summary>The names <see cref="Find"/> accepts.</summary>
    public static IEnumerable<string> Names => All.Select(s => s.Name);

    /// <summary>Finds a shape by name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">the name is unknown; the message lists the known names.</exception>
    public static SynthShape Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"unknown model shape '{name}'; expected one of {string.Join(", ", Names)}");
    }
}
