using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Synth;
using EdgeLlm.Tests.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Synth;

/// <summary>
/// llama.cpp itself (LLamaSharp 0.30.0's CPU backend) loads synthetic models and computes the same
/// logits as EdgeLlm: the metadata, vocabulary, tensor names and rope factors mean to llama.cpp
/// what they mean to us.
/// </summary>
public sealed class SynthLlamaCppTests : IDisposable
{
    /// <summary>max|ours - llama.cpp| / std(llama.cpp) on F32 weights: summation order only (0.0003–0.002 in shared/README.md).</summary>
    private const double F32Tolerance = 0.01;

    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-synth-llama-" + Guid.NewGuid().ToString("N"));

    public SynthLlamaCppTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    public static TheoryData<string> Shapes => new() { "llama", "qwen2", "llama3", "smollm", "qwen3", "phi3", "phi3-long", "phi3-split", "phi4", "phi4-long", "gemma3", "gemma3-softcap", "gemma3-long", "gemma3-ring", "gemma2", "gemma2-long", "smollm3", "granite", "granite-norope", "lfm2", "lfm2-long", "qwen3moe", "qwen3moe-long", "granitemoe", "granitemoe-shared", "mixtral", "qwen2moe", "olmoe", "lfm2moe", "lfm2moe-long", "ernie4_5", "exaone4", "olmo2", "olmo3-long", "mistral3", "mistral3-long", "hunyuan-dense", "gemma", "gpt-oss", "gpt-oss-long", "gpt-oss-mxfp4" };

    private static SynthShape Shape(string kind) => kind switch
    {
        "llama" => new("tiny-llama", "tiny llama", "llama", 256, 2, 4, 2, 512, 300, 128, 10000f, 1e-5f, false, false, SynthVocabKind.SentencePiece),
        "qwen2" => new("tiny-qwen2", "tiny qwen2", "qwen2", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, true, true, SynthVocabKind.Qwen2Bpe),
        // A short original context (64) so that the Llama 3 rope factors change positions < 32.
        "llama3" => new("tiny-llama3", "tiny llama3", "llama", 128, 2, 2, 1, 256, 700, 1024, 500000f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            new Llama3RopeScaling(32f, 1f, 4f, 64), WriteHeadLengths: true),
        // Qwen3: heads of 128 (as the real models) on a 128-wide stream with 4 heads (not 128 / 4 = 32), per-head Q/K norms, no biases.
        "qwen3" => new("tiny-qwen3", "tiny qwen3", "qwen3", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, true, false, SynthVocabKind.Qwen2Bpe,
            WriteHeadLengths: true, HeadLength: 128),
        // Phi-3: fused attn_qkv and gate/up, LongRoPE with its attn_factor. The tests' context (64) is within
        // the original 512, so both engines take rope_factors_short; a sliding window (16) shorter than the
        // 32 tokens, which llama.cpp ignores for phi3 and so must we.
        "phi3" => new("tiny-phi3", "tiny phi3", "phi3", 256, 2, 4, 2, 512, 300, 4096, 10000f, 1e-5f, false, false, SynthVocabKind.SentencePiece,
            LongRope: new LongRopeScaling(512), SlidingWindow: 16),
        // As "phi3", rewritten with separate attn_q/attn_k/attn_v (llama.cpp's create_tensor_qkv takes either).
        "phi3-split" => Shape("phi3"),
        // The original context (32) below the tests' 64: rope_factors_long.
        "phi3-long" => new("tiny-phi3", "tiny phi3", "phi3", 256, 2, 4, 2, 512, 300, 4096, 10000f, 1e-5f, false, false, SynthVocabKind.SentencePiece,
            LongRope: new LongRopeScaling(32)),
        // Phi-4-mini: phi3 with GQA, tied embeddings, a byte-level BPE vocabulary and three quarters of each
        // 64-wide head rotated (48 dimensions, 24 LongRoPE factors); short factors, then long (original 32 < 64).
        "phi4" => new("tiny-phi4", "tiny phi4", "phi3", 256, 2, 4, 2, 512, 400, 4096, 10000f, 1e-5f, true, false, SynthVocabKind.Qwen2Bpe,
            LongRope: new LongRopeScaling(512), RopeDimensionCount: 48),
        "phi4-long" => Shape("phi4") with { LongRope = new LongRopeScaling(32) },
        // Gemma 3: seven layers (five local, one global, one local), a window of 8 under the 32 tokens, 64-wide
        // heads on a 128-wide stream, one KV head, per-head norms, post-norms, GeGLU, √embd-scaled embeddings.
        "gemma3" => new("tiny-gemma3", "tiny gemma3", "gemma3", 128, 7, 4, 1, 384, 400, 256, 1e6f, 1e-6f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8),
        "gemma3-softcap" => Shape("gemma3") with { FinalLogitSoftcap = 5f },
        // 200 tokens through a window of 72 (Gemma 3 1B's 512 is 8 × 64): the windows start past whole
        // 64-key blocks, which the attention then skips.
        "gemma3-long" => Shape("gemma3") with { SlidingWindow = 72 },
        // 900 tokens in a context of 1024 through the same window: EdgeLlm's local layers keep a ring of 704
        // positions (window + batch), which wraps; llama.cpp keeps its own SWA cache.
        "gemma3-ring" => Shape("gemma3") with { SlidingWindow = 72 },
        // Gemma 2: every other layer local (window 8 under 32 tokens), scores soft-capped at 5 and logits at 8
        // (the real 50 and 30 would hardly bend this small model's values), four layers, no Q/K norms.
        "gemma2" => new("tiny-gemma2", "tiny gemma2", "gemma2", 128, 4, 4, 2, 384, 400, 256, 10000f, 1e-6f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8, FinalLogitSoftcap: 8f, AttnLogitSoftcap: 5f),
        "gemma2-long" => Shape("gemma2") with { SlidingWindow = 72 },
        // SmolLM3: five layers, so that layer 3 (the fourth) takes no rope; Llama 3's vocabulary.
        "smollm3" => new("tiny-smollm3", "tiny smollm3", "smollm3", 128, 5, 4, 2, 256, 700, 256, 5e6f, 1e-6f, true, false, SynthVocabKind.Llama3Bpe),
        // Granite: multipliers of the real models' kind (the 2B's are embedding × 12, scores × 1/64, residual branches × 0.22,
        // logits / 8), sized so that each one moves this small random model's logits: embedding × 2, scores × 1/4 (not the
        // default 1/√32), residual branches × 0.5, logits / 3; a rope base of 100 so that the rotation matters at 32 tokens.
        "granite" => new("tiny-granite", "tiny granite", "granite", 128, 3, 4, 2, 256, 320, 256, 100f, 1e-5f, true, false, SynthVocabKind.SmolLmBpe,
            Granite: new GraniteMultipliers(2f, 0.5f, 0.25f, 3f)),
        // LFM2: six layers, attention in 2 and 5 (per-head Q/K norms, NEOX rope), short convolutions of 3 taps in the others.
        "lfm2" => new("tiny-lfm2", "tiny lfm2", "lfm2", 128, 6, 4, 2, 256, 700, 256, 1e6f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            AttentionLayers: [2, 5]),
        // 200 tokens, the last 50 also one at a time (the convolution's inputs carried from call to call).
        "lfm2-long" => Shape("lfm2"),
        // As "granite", with granite.rope.scaling.finetuned = false: no layer rotates.
        "granite-norope" => Shape("granite"),
        // Qwen3 MoE: Qwen3's attention and 8 experts of 64, 3 used per token (weights normalized), untied output.
        "qwen3moe" => new("tiny-qwen3moe", "tiny qwen3moe", "qwen3moe", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, false, false, SynthVocabKind.Qwen2Bpe,
            WriteHeadLengths: true, HeadLength: 128, Experts: new SynthExperts(8, 3, 64)),
        // 200 tokens, the last 50 one at a time: an expert with one token (a matrix-vector product) against the grouped batch.
        "qwen3moe-long" => Shape("qwen3moe"),
        // Granite MoE: Granite's multipliers (as "granite") and 6 experts of feed_forward_length (64), 2 used per token.
        "granitemoe" => new("tiny-granitemoe", "tiny granitemoe", "granitemoe", 128, 3, 4, 2, 64, 320, 256, 100f, 1e-5f, true, false, SynthVocabKind.SmolLmBpe,
            Granite: new GraniteMultipliers(2f, 0.5f, 0.25f, 3f), Experts: new SynthExperts(6, 2, 64)),
        // Granite MoE Shared: every token also through a shared SwiGLU of 96, the residual scale over both.
        "granitemoe-shared" => Shape("granitemoe") with { Experts = new SynthExperts(6, 2, 64, 96) },
        // Mixtral's layout: a llama file with llama.expert_count (8 experts of feed_forward_length 96, 2 used).
        "mixtral" => new("tiny-mixtral", "tiny mixtral", "llama", 128, 2, 4, 2, 96, 300, 256, 10000f, 1e-5f, false, false, SynthVocabKind.SentencePiece,
            Experts: new SynthExperts(8, 2, 96)),
        // Qwen2 MoE: Qwen2's attention (biases), 8 experts of 64, 2 used, weights not normalized, a shared expert of 96 gated by sigmoid.
        "qwen2moe" => new("tiny-qwen2moe", "tiny qwen2moe", "qwen2moe", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, false, true, SynthVocabKind.Qwen2Bpe,
            Experts: new SynthExperts(8, 2, 64, 96)),
        // OLMoE: RMSNorm over whole query and key rows (4 heads, 4 KV heads as the real model's 16/16), 8 experts of 64, 3 used, weights not normalized.
        "olmoe" => new("tiny-olmoe", "tiny olmoe", "olmoe", 128, 2, 4, 4, 64, 700, 256, 10000f, 1e-5f, false, false, SynthVocabKind.Llama3Bpe,
            Experts: new SynthExperts(8, 3, 64)),
        // LFM2-MoE: "lfm2"'s six layers, the first with a dense SwiGLU of 256, the others 8 experts of 64, 3 used, chosen by
        // sigmoid(router) + exp_probs_b and weighted by the sigmoids normalized.
        "lfm2moe" => new("tiny-lfm2moe", "tiny lfm2moe", "lfm2moe", 128, 6, 4, 2, 256, 700, 256, 1e6f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            AttentionLayers: [2, 5], Experts: new SynthExperts(8, 3, 64, leadingDenseBlocks: 1)),
        // 200 tokens, the last 50 one at a time (experts with one token, the convolution's inputs carried over).
        "lfm2moe-long" => Shape("lfm2moe"),
        // ERNIE 4.5 (dense): Llama's block under ernie4_5 keys, heads of 64 on a 128-wide stream with 4 heads (key_length
        // written, as the 0.3B's 128 on 1024 with 16), normal rope.
        "ernie4_5" => new("tiny-ernie4_5", "tiny ernie4_5", "ernie4_5", 128, 2, 4, 2, 256, 300, 256, 10000f, 1e-5f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64),
        // EXAONE 4: no pre-norms, post-norms after the attention and the feed-forward network, per-head Q/K norms, NEOX rope,
        // and Llama 3 rope factors over a short original context (64) so that they change positions < 32 (as "llama3").
        "exaone4" => new("tiny-exaone4", "tiny exaone4", "exaone4", 128, 3, 4, 2, 256, 700, 256, 500000f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            new Llama3RopeScaling(32f, 1f, 4f, 64), WriteHeadLengths: true),
        // OLMo 2: EXAONE 4's post-norms only, but Q/K norms over each token's whole query and key rows (GQA here, which
        // llama.cpp's loader allows: k_norm spans n_head_kv × head_dim), NEOX rope, an untied output.
        "olmo2" => new("tiny-olmo2", "tiny olmo2", "olmo2", 128, 3, 4, 2, 256, 700, 256, 500000f, 1e-6f, false, false, SynthVocabKind.Llama3Bpe),
        // OLMo 3: olmo2 with a window of 8 in three layers of four (a per-layer flag array, as the converter writes it),
        // plain rope there and YaRN ×4 over an original 16 tokens with its attention_factor on the global layer; 200 tokens.
        "olmo3-long" => Shape("olmo2") with { Name = "tiny-olmo3", BlockCount = 4, SlidingWindow = 8, Yarn = new YarnScaling(4f, 16, 1.1386294f) },
        // Ministral 3: Llama's block under mistral3 keys, heads of 64 on a 128-wide stream, YaRN ×4 over an original 16
        // tokens (whose magnitude correction llama.cpp's graph cancels) and Llama 4's attention temperature 0.1, which
        // steps every 16 positions: 1 + 0.1·ln 2 from position 16 on; "-long" runs 200 tokens (up to 1 + 0.1·ln 13).
        "mistral3" => new("tiny-mistral3", "tiny mistral3", "mistral3", 128, 3, 4, 2, 256, 700, 256, 1e6f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            WriteHeadLengths: true, HeadLength: 64, Yarn: new YarnScaling(4f, 16), AttnTemperatureScale: 0.1f),
        "mistral3-long" => Shape("mistral3"),
        // Hunyuan (dense): Qwen3's block whose per-head Q/K norms follow the NEOX rope, heads of 128 on a 128-wide stream
        // with 4 heads, an untied output; a Qwen2-laid-out BPE vocabulary.
        "hunyuan-dense" => new("tiny-hunyuan", "tiny hunyuan", "hunyuan-dense", 128, 3, 4, 2, 384, 400, 256, 1e6f, 1e-5f, false, false,
            SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128),
        // The first Gemma: Gemma 2's block without post-norms, windows or soft-caps (√embd embeddings, GeGLU, NEOX rope, tied),
        // one KV head (as the 2B) of 64 on a 128-wide stream with 4 query heads (the 7B's heads are wider than embd / heads too).
        "gemma" => new("tiny-gemma", "tiny gemma", "gemma", 128, 3, 4, 1, 384, 400, 256, 10000f, 1e-6f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64),
        // gpt-oss: biases on Q/K/V/output, a sink logit per head, every even layer of four through a window of 8 (under
        // the 32 tokens), 8 experts of 64 with biases, 3 used (top-k of the raw logits, softmax of the chosen), the clamped
        // SwiGLU; YaRN ×4 over an original 16 tokens, so that the ramp spans rotary dims 0..4 (extrapolated below,
        // interpolated above) and positions past 16 are scaled.
        "gpt-oss" => new("tiny-gpt-oss", "tiny gpt-oss", "gpt-oss", 128, 4, 4, 2, 64, 700, 256, 10000f, 1e-5f, false, true, SynthVocabKind.Llama3Bpe,
            WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8, Experts: new SynthExperts(8, 3, 64), Yarn: new YarnScaling(4f, 16)),
        // 200 tokens through the window (the local layers' ring), the last 50 one at a time (experts with one token).
        "gpt-oss-long" => Shape("gpt-oss"),
        // The experts in MXFP4 (as the released files keep them), everything else F32: the MXFP4 × Q8_0 products of both engines.
        "gpt-oss-mxfp4" => Shape("gpt-oss"),
        "smollm" => new("tiny-smollm", "tiny smollm", "llama", 192, 2, 3, 1, 256, 320, 256, 100000f, 1e-5f, true, false, SynthVocabKind.SmolLmBpe),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>A copy of the F32 phi3 file at <paramref name="path"/> whose attn_qkv tensors are split into attn_q, attn_k and attn_v.</summary>
    private static string SplitQkv(string path, SynthShape shape)
    {
        string split = Path.ChangeExtension(path, ".split.gguf");
        long q = (long)shape.HeadCount * shape.HeadDim, kv = (long)shape.HeadCountKv * shape.HeadDim, embd = shape.EmbeddingLength;
        using (var f = EdgeLlm.Gguf.GgufFile.Open(path))
        {
            var w = new EdgeLlm.Gguf.GgufWriter().CopyMetadata(f);
            foreach (var t in f.Tensors)
            {
                byte[] data = f.GetTensorData(t).ToArray();
                if (!t.Name.EndsWith("attn_qkv.weight", StringComparison.Ordinal))
                {
                    w.AddTensor(t.Name, t.Type, t.Dims.ToArray(), data);
                    continue;
                }
                Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, t.Type);
                string p = t.Name[..^"attn_qkv.weight".Length];
                long rowBytes = embd * 4;
                w.AddTensor(p + "attn_q.weight", t.Type, [embd, q], data[..(int)(q * rowBytes)]);
                w.AddTensor(p + "attn_k.weight", t.Type, [embd, kv], data[(int)(q * rowBytes)..(int)((q + kv) * rowBytes)]);
                w.AddTensor(p + "attn_v.weight", t.Type, [embd, kv], data[(int)((q + kv) * rowBytes)..]);
            }
            w.Write(split);
        }
        return split;
    }

    /// <summary>A copy of the granite file at <paramref name="path"/> with granite.rope.scaling.finetuned = false.</summary>
    private static string WithRopeOff(string path)
    {
        string copy = Path.ChangeExtension(path, ".norope.gguf");
        using (var f = EdgeLlm.Gguf.GgufFile.Open(path))
        {
            var w = new EdgeLlm.Gguf.GgufWriter().CopyMetadata(f);
            w.Set("granite.rope.scaling.finetuned", false);
            foreach (var t in f.Tensors) w.AddTensor(t.Name, t.Type, t.Dims.ToArray(), f.GetTensorData(t).ToArray());
            w.Write(copy);
        }
        return copy;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LlamaCpp_LoadsTheFile_AndAgreesWithEdgeLlm(string kind) =>
        Compare(kind, KvCacheType.F16, KvCacheType.F16, kind == "gpt-oss-mxfp4" ? QuantizedTolerance : F32Tolerance);

    /// <summary>
    /// The figure for a file with quantized weights (gpt-oss's MXFP4 experts): each product equals ggml's up to float order
    /// (<c>MXFP4Tests</c>: the same blocks, the same Q8_0 activations, the same sums), but a last-bit difference upstream
    /// moves some activations across a Q8_0 rounding step (1/127 of their block's largest), so the engines agree at the
    /// quantized types' level: 0.023 here (2026-12-02), against 0.0014 for the same model in F32.
    /// </summary>
    private const double QuantizedTolerance = 0.05;

    /// <summary>
    /// A quantized KV cache (llama.cpp's <c>-ctk</c>/<c>-ctv</c>, with flash attention, which llama.cpp needs for a
    /// quantized V cache): both engines rotate the same keys and values (Walsh-Hadamard, heads of 64 and 128)
    /// and quantize them to the same blocks, and the query to q8_0, so the logits agree as closely as with the
    /// f16 cache, while the cache's rounding itself moves them by far more (the second figure, against EdgeLlm's
    /// own f16 cache; the figure must stay under a third of it). Without the rotation the figures were
    /// 0.011–0.22, as large as the cache's own effect.
    /// </summary>
    [Theory]
    [InlineData("llama", KvCacheType.Q8_0, KvCacheType.Q8_0)]
    [InlineData("llama", KvCacheType.Q4_0, KvCacheType.Q4_0)]
    [InlineData("llama", KvCacheType.Q8_0, KvCacheType.F16)]
    [InlineData("qwen2", KvCacheType.F16, KvCacheType.Q8_0)]
    [InlineData("qwen3", KvCacheType.Q4_0, KvCacheType.Q8_0)]
    [InlineData("gemma3-long", KvCacheType.Q8_0, KvCacheType.Q8_0)]
    [InlineData("gemma3-ring", KvCacheType.Q8_0, KvCacheType.Q8_0)]
    public void LlamaCpp_AgreesWithEdgeLlm_OnAQuantizedCache(string kind, KvCacheType typeK, KvCacheType typeV) =>
        Compare(kind, typeK, typeV, 0.005);

    /// <summary>
    /// llama.cpp's own quantizer (llama_model_quantize) and <c>edgellm quantize</c> on an LFM2 file: the same type for
    /// every tensor (the convolution taps kept F32, the per-layer KV head array read) and the same bytes; and on an
    /// LFM2-MoE file (a dense block, then 8 experts: the router and exp_probs_b kept F32, the 8-expert rules).
    /// </summary>
    [Theory]
    [InlineData("Q8_0", LLamaFtype.MOSTLY_Q8_0, "lfm2")]
    [InlineData("Q4_K_M", LLamaFtype.MOSTLY_Q4_K_M, "lfm2")]
    [InlineData("Q4_0", LLamaFtype.MOSTLY_Q4_0, "lfm2moe")]
    [InlineData("Q4_K_M", LLamaFtype.MOSTLY_Q4_K_M, "lfm2moe")]
    public void LlamaQuantize_AndEdgeLlm_WriteTheSameLfm2File(string type, LLamaFtype ftype, string arch)
    {
        var shape = new SynthShape($"tiny-{arch}", $"tiny {arch}", arch, 256, 6, 4, 2, 512, 700, 256, 1e6f, 1e-5f, true, false, SynthVocabKind.Llama3Bpe,
            AttentionLayers: [2, 5], Experts: arch == "lfm2moe" ? new SynthExperts(8, 2, 256, leadingDenseBlocks: 1) : null);
        string f32 = Path.Combine(_dir, $"{arch}-f32.gguf"), theirsPath = Path.Combine(_dir, $"{arch}-{type}-llama.gguf"), oursPath = Path.Combine(_dir, $"{arch}-{type}-ours.gguf");
        ModelSynthesizer.Synthesize(shape, "F32", f32, seed: 11);
        _ = LlamaCppOracle.NativeLibrary;
        Assert.True(LLamaQuantizer.Quantize(f32, theirsPath, ftype, nthread: 1), "llama_model_quantize failed");
        EdgeLlm.Quant.ModelQuantizer.Quantize(f32, oursPath, type);
        using var theirs = EdgeLlm.Gguf.GgufFile.Open(theirsPath);
        using var ours = EdgeLlm.Gguf.GgufFile.Open(oursPath);
        Assert.Equal(theirs.Tensors.Select(t => t.Name), ours.Tensors.Select(t => t.Name));
        int same = 0;
        foreach (var t in theirs.Tensors)
        {
            var o = ours.FindTensor(t.Name)!;
            Assert.True(t.Type == o.Type, $"{t.Name}: llama.cpp {EdgeLlm.Gguf.GgmlTypes.Name(t.Type)}, EdgeLlm {EdgeLlm.Gguf.GgmlTypes.Name(o.Type)}");
            if (theirs.GetTensorData(t).SequenceEqual(ours.GetTensorData(o))) same++;
        }
        Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, ours.FindTensor("blk.0.shortconv.conv.weight")!.Type);
        if (arch == "lfm2moe")
        {
            Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, ours.FindTensor("blk.1.ffn_gate_inp.weight")!.Type);
            Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, ours.FindTensor("blk.1.exp_probs_b.bias")!.Type);
            using var model = Model.Load(oursPath);
            using var ctx = new InferenceContext(model, 64, threads: 2);
            Assert.All(ctx.Eval([1, 2, 3, 4], allLogits: false), x => Assert.True(float.IsFinite(x)));
        }
        _out.WriteLine($"{arch} {type}: {theirs.Tensors.Count} tensors, types all equal, {same} byte-identical");
        Assert.Equal(theirs.Tensors.Count, same);
    }

    /// <summary>
    /// llama.cpp's quantizer and <c>edgellm quantize</c> on a mixture of 8 experts: the 3-D expert tensors quantized row by
    /// row, the router kept F32, and llama-quantize's rules for 8-expert models (attn_v and attn_k Q8_0, attn_output
    /// Q5_K in Q4_K_M) and for ffn_down_exps by the layer in its name (Q6_K in the use_more_bits layers of Q4_K_M).
    /// </summary>
    [Theory]
    [InlineData("Q4_0", LLamaFtype.MOSTLY_Q4_0)]
    [InlineData("Q4_K_M", LLamaFtype.MOSTLY_Q4_K_M)]
    [InlineData("MXFP4_MOE", (LLamaFtype)38)] // LLAMA_FTYPE_MOSTLY_MXFP4_MOE: experts MXFP4, the rest Q8_0
    public void LlamaQuantize_AndEdgeLlm_WriteTheSameMoeFile(string type, LLamaFtype ftype)
    {
        var shape = new SynthShape("tiny-qwen3moe", "tiny qwen3moe", "qwen3moe", 256, 8, 4, 2, 768, 400, 256, 1e6f, 1e-6f, false, false, SynthVocabKind.Qwen2Bpe,
            WriteHeadLengths: true, HeadLength: 64, Experts: new SynthExperts(8, 2, 256));
        string f32 = Path.Combine(_dir, "moe-f32.gguf"), theirsPath = Path.Combine(_dir, $"moe-{type}-llama.gguf"), oursPath = Path.Combine(_dir, $"moe-{type}-ours.gguf");
        ModelSynthesizer.Synthesize(shape, "F32", f32, seed: 11);
        _ = LlamaCppOracle.NativeLibrary;
        // (LLamaSharp leaves output.weight unquantized unless asked; llama-quantize quantizes it by default)
        if ((int)ftype == 38)
        {
            // LLamaSharp's wrapper refuses file types it does not list (MXFP4_MOE): its native binding takes any.
            var p = LLamaModelQuantizeParams.Default();
            p.nthread = 1;
            p.ftype = ftype;
            p.quantize_output_tensor = true;
            Assert.Equal(0u, NativeApi.llama_model_quantize(f32, theirsPath, ref p));
        }
        else Assert.True(LLamaQuantizer.Quantize(f32, theirsPath, ftype, nthread: 1, quantizeOutputTensor: true), "llama_model_quantize failed");
        EdgeLlm.Quant.ModelQuantizer.Quantize(f32, oursPath, type);
        using var theirs = EdgeLlm.Gguf.GgufFile.Open(theirsPath);
        using var ours = EdgeLlm.Gguf.GgufFile.Open(oursPath);
        Assert.Equal(theirs.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), ours.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        int same = 0;
        var differ = new List<string>();
        foreach (var t in theirs.Tensors)
        {
            var o = ours.FindTensor(t.Name)!;
            if (t.Type != o.Type) differ.Add($"{t.Name}: llama.cpp {EdgeLlm.Gguf.GgmlTypes.Name(t.Type)}, EdgeLlm {EdgeLlm.Gguf.GgmlTypes.Name(o.Type)}");
            else if (theirs.GetTensorData(t).SequenceEqual(ours.GetTensorData(o))) same++;
        }
        Assert.True(differ.Count == 0, string.Join("\n", differ));
        Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, ours.FindTensor("blk.0.ffn_gate_inp.weight")!.Type);
        if (ftype == LLamaFtype.MOSTLY_Q4_K_M)
        {
            Assert.Equal(EdgeLlm.Gguf.GgmlType.Q8_0, ours.FindTensor("blk.1.attn_v.weight")!.Type);
            Assert.Equal(EdgeLlm.Gguf.GgmlType.Q6_K, ours.FindTensor("blk.0.ffn_down_exps.weight")!.Type);
            Assert.Equal(EdgeLlm.Gguf.GgmlType.Q4_K, ours.FindTensor("blk.1.ffn_down_exps.weight")!.Type);
        }
        if (type == "MXFP4_MOE")
        {
            Assert.Equal(EdgeLlm.Gguf.GgmlType.MXFP4, ours.FindTensor("blk.1.ffn_gate_exps.weight")!.Type);
            Assert.Equal(EdgeLlm.Gguf.GgmlType.Q8_0, ours.FindTensor("blk.1.attn_q.weight")!.Type);
            Assert.Equal(EdgeLlm.Gguf.GgmlType.Q8_0, ours.FindTensor("output.weight")!.Type);
            Assert.Equal(38L, ours.GetInt("general.file_type"));
        }
        _out.WriteLine($"qwen3moe {type}: {theirs.Tensors.Count} tensors, types all equal, {same} byte-identical");
        Assert.Equal(theirs.Tensors.Count, same);
        // and the quantized file runs
        using var model = Model.Load(oursPath);
        using var ctx = new InferenceContext(model, 64, threads: 2);
        Assert.All(ctx.Eval([1, 2, 3, 4], allLogits: false), x => Assert.True(float.IsFinite(x)));
    }

    private static GGMLType Ggml(KvCacheType t) => t switch
    {
        KvCacheType.Q8_0 => GGMLType.GGML_TYPE_Q8_0,
        KvCacheType.Q4_0 => GGMLType.GGML_TYPE_Q4_0,
        _ => GGMLType.GGML_TYPE_F16,
    };

    private void Compare(string kind, KvCacheType typeK, KvCacheType typeV, double tolerance)
    {
        var shape = Shape(kind);
        string path = Path.Combine(_dir, kind + ".gguf");
        if (kind == "gpt-oss-mxfp4")
            ModelSynthesizer.Synthesize(shape, (name, dims) => name.EndsWith("_exps.weight", StringComparison.Ordinal) ? EdgeLlm.Gguf.GgmlType.MXFP4 : EdgeLlm.Gguf.GgmlType.F32,
                fileType: 38, path, seed: 11);
        else ModelSynthesizer.Synthesize(shape, "F32", path, seed: 11);
        if (kind == "phi3-split") path = SplitQkv(path, shape);
        if (kind == "granite-norope") path = WithRopeOff(path);
        var rng = new Random(3);
        bool ringed = kind == "gemma3-ring";
        bool longer = ringed || kind.EndsWith("-long", StringComparison.Ordinal)
            && (kind.StartsWith("gemma", StringComparison.Ordinal) || kind.StartsWith("lfm2", StringComparison.Ordinal) || kind.StartsWith("qwen3moe", StringComparison.Ordinal)
            || kind.StartsWith("gpt-oss", StringComparison.Ordinal) || kind.StartsWith("olmo3", StringComparison.Ordinal) || kind.StartsWith("mistral3", StringComparison.Ordinal));
        int count = ringed ? 900 : longer ? 200 : 32, ctxLen = ringed ? 1024 : longer ? 256 : 64;
        int[] tokens = Enumerable.Range(0, count).Select(_ => rng.Next(shape.VocabSize)).ToArray();

        float[] ours, oursF16 = [];
        using (var model = Model.Load(path))
        using (var ctx = new InferenceContext(model, ctxLen, threads: 1, typeK, typeV))
        {
            Assert.Equal(ringed ? 704 : 0, ctx.SlidingWindowCachePositions);
            ours = ctx.Eval(tokens, allLogits: true);
            if (typeK != KvCacheType.F16 || typeV != KvCacheType.F16)
            {
                using var f16 = new InferenceContext(model, ctxLen, threads: 1);
                oursF16 = f16.Eval(tokens, allLogits: true);
            }
            if (longer)
            {
                // The decode path (one token, the f16 cache read in place) past the window agrees with the batch.
                using var one = new InferenceContext(model, ctxLen, threads: 2, typeK, typeV);
                int from = tokens.Length - 50;
                one.Eval(tokens.AsSpan(0, from), allLogits: false);
                int v = shape.VocabSize;
                for (int i = from; i < tokens.Length; i++)
                {
                    float[] row = one.Eval(tokens.AsSpan(i, 1), allLogits: false);
                    double diff = row.Select((x, j) => Math.Abs((double)x - ours[(long)i * v + j])).Max();
                    Assert.True(diff < 1e-2, $"token {i} one at a time differs from the batch by {diff}");
                }
            }
        }

        _ = LlamaCppOracle.NativeLibrary; // loads llama.cpp quietly
        var prm = new ModelParams(path) { GpuLayerCount = 0, ContextSize = (uint)ctxLen, BatchSize = (uint)ctxLen, UBatchSize = (uint)ctxLen, Threads = 1, BatchThreads = 1 };
        if (typeK != KvCacheType.F16 || typeV != KvCacheType.F16)
        {
            prm.TypeK = Ggml(typeK);
            prm.TypeV = Ggml(typeV);
            prm.FlashAttention = true;
        }
        using var weights = LLamaWeights.LoadFromFile(prm);
        Assert.Equal(shape.VocabSize, weights.Vocab.Count);
        using var lctx = weights.CreateContext(prm);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, true);
        Assert.Equal(DecodeResult.Ok, lctx.NativeHandle.Decode(batch));
        var theirs = new float[ours.Length];
        for (int i = 0; i < tokens.Length; i++)
            lctx.NativeHandle.GetLogitsIth(i).CopyTo(theirs.AsSpan(i * shape.VocabSize, shape.VocabSize));

        double mean = theirs.Average(x => (double)x);
        double std = Math.Sqrt(theirs.Average(x => (x - mean) * (x - mean)));
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs((double)a - b)).Max();
        string what = typeK == KvCacheType.F16 && typeV == KvCacheType.F16 ? kind : $"{kind}, cache K {typeK.Name()} V {typeV.Name()}";
        string cacheEffect = oursF16.Length == 0 ? "" : $" (EdgeLlm's f16 cache against this one: {ours.Zip(oursF16, (a, b) => Math.Abs((double)a - b)).Max() / std:E2})";
        _out.WriteLine($"{what}: llama.cpp logits std {std:F3}, max|EdgeLlm - llama.cpp| / std = {maxDiff / std:E2}{cacheEffect}");
        Assert.True(maxDiff / std < tolerance, $"{what}: figure {maxDiff / std:E3} exceeds {tolerance}");
        if (oursF16.Length > 0)
        {
            double effect = ours.Zip(oursF16, (a, b) => Math.Abs((double)a - b)).Max() / std;
            Assert.True(maxDiff / std < effect / 3, $"{what}: EdgeLlm is {maxDiff / std:E3} from llama.cpp, not well inside the cache's own rounding ({effect:E3}): the two quantize differently");
        }
    }
}
