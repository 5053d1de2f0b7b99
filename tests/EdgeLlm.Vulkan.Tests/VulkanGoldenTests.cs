using EdgeLlm.Models;
using EdgeLlm.Tests;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The whole forward pass on the Vulkan device against llama.cpp's logits (shared/golden), with
/// the bounds of the CPU golden tests: figure = max|ours − golden| / std(golden).
/// </summary>
public class VulkanGoldenTests(DeviceFixture fixture, ITestOutputHelper output) : IClassFixture<DeviceFixture>
{
    private const double TrainedF32Bound = 5e-3;
    private const double FloatBound = 0.02;
    private const double QuantBound = 0.10;

    [Theory]
    [InlineData("stories260K", "p1", TrainedF32Bound)]
    [InlineData("stories260K", "p2", TrainedF32Bound)]
    [InlineData("syn-llama-f32", "p2", FloatBound)]
    [InlineData("syn-llama-f16", "p2", FloatBound)]
    [InlineData("syn-llama-q8_0", "p2", QuantBound)]
    [InlineData("syn-llama-q4_0", "p2", QuantBound)]
    [InlineData("syn-llama-q4_k_m", "p2", QuantBound)]
    [InlineData("syn-llama3-f32", "p2", FloatBound)]
    [InlineData("syn-qwen2-f32", "p2", FloatBound)]
    [InlineData("syn-qwen2-q4_0", "p2", QuantBound)]
    [InlineData("syn-llama-bf16", "p2", FloatBound)]
    [InlineData("syn-llama-q4_1", "p2", QuantBound)]
    [InlineData("syn-llama-q5_0", "p2", QuantBound)]
    [InlineData("syn-llama-q5_1", "p2", QuantBound)]
    [InlineData("syn-llama-q5_k_m", "p2", QuantBound)]
    [InlineData("syn-llama-q6_k", "p2", QuantBound)]
    [InlineData("syn-llama3-q4_k_m", "p2", QuantBound)]
    [InlineData("syn-qwen2-q4_k_m", "p2", QuantBound)]
    [InlineData("syn-llama-q2_k", "p2", QuantBound)]
    [InlineData("syn-llama-q3_k_m", "p2", QuantBound)]
    [InlineData("syn-llama-iq4_nl", "p2", QuantBound)]
    public void BatchPrompt_MatchesLlamaCppLogits(string model, string prompt, double bound)
    {
        var golden = GoldenCase.Load(model, prompt);
        using var m = Model.Load(SharedData.Model(model));
        using var ctx = new VulkanInferenceContext(m, contextLength: 256, fixture.Device);
        float[] logits = ctx.Eval(golden.PromptIds, allLogits: true);
        double figure = GoldenCase.Figure(logits, golden.Logits);
        var (mm, mv) = ctx.RecordedProducts;
        output.WriteLine($"vulkan {model}.{prompt} ({golden.PromptIds.Length} tokens, pipelines {(ctx.PipelineTable is { } t ? "from table " + t.Name : "derived")}, "
            + $"{mm} mul_mat + {mv} mul_mat_vec products): figure {figure:G4} (bound {bound})");
        Assert.True(mm > 0, "a prompt batch of this length multiplies with the tiled mul_mat");
        Assert.True(figure <= bound, $"{model}.{prompt}: figure {figure:G4} exceeds {bound}");
    }

    /// <summary>The same prompt with mul_mat_vec only (mul_mat disabled): the two matrix paths agree.</summary>
    [Theory]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("stories260K")]
    public void MatMul_EqualsMatVecOnAPrompt(string model)
    {
        var golden = GoldenCase.Load(model, "p2");
        using var m = Model.Load(SharedData.Model(model));
        using var tiled = new VulkanInferenceContext(m, contextLength: 256, fixture.Device);
        using var vec = new VulkanInferenceContext(m, contextLength: 256, fixture.Device, options: new VulkanContextOptions { MatMulMinTokens = int.MaxValue });
        float[] a = tiled.Eval(golden.PromptIds, allLogits: true);
        float[] b = vec.Eval(golden.PromptIds, allLogits: true);
        Assert.Equal(0, vec.RecordedProducts.MatMul);
        double figure = GoldenCase.Figure(a, b);
        output.WriteLine($"{model}: mul_mat vs mul_mat_vec figure {figure:G4}; vs llama.cpp {GoldenCase.Figure(a, golden.Logits):G4} / {GoldenCase.Figure(b, golden.Logits):G4}");
        Assert.True(figure <= MatMulAndVariantTests.PathBound, $"mul_mat and mul_mat_vec differ: figure {figure:G4}");
    }

    /// <summary>
    /// Token by token (the reused one-token command buffer, one submit each, mul_mat_vec) equals
    /// the batch (mul_mat) within the bound of two summation orders.
    /// </summary>
    [Fact]
    public void TokenByToken_EqualsBatch_WithOneRecordedGraph()
    {
        var golden = GoldenCase.Load("syn-qwen2-f32", "p1");
        using var m = Model.Load(SharedData.Model("syn-qwen2-f32"));
        using var batchCtx = new VulkanInferenceContext(m, contextLength: 64, fixture.Device);
        float[] batch = batchCtx.Eval(golden.PromptIds, allLogits: true);
        using var stepCtx = new VulkanInferenceContext(m, contextLength: 64, fixture.Device);
        int vocab = m.Config.VocabSize;
        var steps = new float[batch.Length];
        for (int i = 0; i < golden.PromptIds.Length; i++)
            stepCtx.Eval(golden.PromptIds.AsSpan(i, 1)).CopyTo(steps, i * vocab);
        double figure = GoldenCase.Figure(steps, batch);
        output.WriteLine($"token-by-token vs batch figure {figure:G4}, graphs recorded {stepCtx.RecordedGraphs}");
        Assert.Equal(1, stepCtx.RecordedGraphs);
        Assert.True(figure <= MatMulAndVariantTests.PathBound, $"token-by-token differs from batch: figure {figure:G4}");
    }

    /// <summary>
    /// Gemma 3 and Gemma 2 on the device against the CPU (which SynthLlamaCppTests holds to llama.cpp): the
    /// window (8, under the 28 tokens) in the attention and its layers' own rope, post-norms, GeGLU, the
    /// √embd embedding scale; Gemma 2's score and logit soft-caps.
    /// </summary>
    [Theory]
    [InlineData("gemma3", "F32", FloatBound)]
    [InlineData("gemma3", "Q8_0", QuantBound)]
    [InlineData("gemma2", "F32", FloatBound)]
    [InlineData("gemma2", "Q8_0", QuantBound)]
    public void Gemma_MatchesTheCpu(string arch, string type, double bound) =>
        MatchesTheCpu(arch == "gemma3"
            ? new EdgeLlm.Synth.SynthShape("tiny-gemma3", "tiny gemma3", "gemma3", 128, 7, 4, 1, 384, 400, 256, 1e6f, 1e-6f, true, false,
                EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8)
            : new EdgeLlm.Synth.SynthShape("tiny-gemma2", "tiny gemma2", "gemma2", 128, 4, 4, 2, 384, 400, 256, 10000f, 1e-6f, true, false,
                EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8, FinalLogitSoftcap: 8f, AttnLogitSoftcap: 5f),
            type, bound, ctx => Assert.True(ctx.Variants.ContainsKey("attention.swa"), "the sliding-window attention pipeline is built"));

    /// <summary>
    /// Gemma's sliding-window layers on the device keep a ring of window + batch − 1 rows (here 8 + 16 − 1 = 23 of a
    /// 256-token context): through prompts, single tokens and rewinds within the ring the logits are the full cache's
    /// bits; a rewind past the ring evaluates the tokens before again and then gives them too.
    /// </summary>
    [Fact]
    public void Gemma_SlidingWindowRing_GivesTheFullCachesLogits()
    {
        var shape = new EdgeLlm.Synth.SynthShape("tiny-gemma3", "tiny gemma3", "gemma3", 128, 7, 4, 1, 384, 400, 256, 1e6f, 1e-6f, true, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8);
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-vk-ring-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(shape, "F32", path, seed: 5);
            using var m = Model.Load(path);
            using var ring = new VulkanInferenceContext(m, 256, fixture.Device, maxBatch: 16);
            using var full = new VulkanInferenceContext(m, 256, fixture.Device, maxBatch: 16, new VulkanContextOptions { FullSlidingWindowCache = true });
            Assert.Equal(23, ring.SlidingWindowCacheRows);
            Assert.Equal(0, full.SlidingWindowCacheRows);
            Assert.Contains(ring.Pipelines, p => p.Role == "kv_store.swa" && p.Constants[2] == 23);
            Assert.DoesNotContain(full.Pipelines, p => p.Role == "kv_store.swa");
            var rng = new Random(4);
            int[] tokens = Enumerable.Range(0, 200).Select(_ => rng.Next(shape.VocabSize)).ToArray();
            void Same(int from, int count)
            {
                float[] a = ring.Eval(tokens.AsSpan(from, count), allLogits: true), b = full.Eval(tokens.AsSpan(from, count), allLogits: true);
                Assert.True(a.AsSpan().SequenceEqual(b), $"tokens {from}..{from + count}: the ring's logits differ from the full cache's");
            }
            Same(0, 100);                                   // batches of 16, the ring wrapping every 23 positions
            for (int i = 100; i < 130; i++) Same(i, 1);
            ring.Rewind(125); full.Rewind(125);             // within the ring (rows of 107..129 hold positions 107..129)
            Same(125, 5);
            Assert.Equal(0, ring.Reevaluations);
            ring.Rewind(40); full.Rewind(40);               // past it: 33..39 were overwritten long ago
            Same(40, 3);
            Assert.Equal(40, ring.Reevaluations);
            for (int i = 43; i < 60; i++) Same(i, 1);
            output.WriteLine($"vulkan ring of {ring.SlidingWindowCacheRows} rows: same bits as the full cache; {ring.Reevaluations} tokens evaluated again after the deep rewind");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Phi-3 on the device against the CPU (which SynthLlamaCppTests holds to llama.cpp): Q/K/V and
    /// gate/up uploaded as the parts of their fused tensors, LongRoPE's long factors (the 64-token
    /// context is past the original 32) and its attention factor in the rope pipeline.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Phi3_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-phi3", "tiny phi3", "phi3", 256, 2, 4, 2, 512, 300, 4096, 10000f, 1e-5f, false, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, LongRope: new EdgeLlm.Synth.LongRopeScaling(32)), type, bound);

    /// <summary>
    /// Phi-4-mini's shape (phi3 with GQA, tied embeddings and three quarters of each head rotated: 48 of 64
    /// dimensions, 24 LongRoPE factors) on the device against the CPU: the rope pipeline leaves the last
    /// quarter of each head as it is.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Phi4Mini_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-phi4", "tiny phi4", "phi3", 256, 2, 4, 2, 512, 400, 4096, 10000f, 1e-5f, true, false,
            EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, LongRope: new EdgeLlm.Synth.LongRopeScaling(32), RopeDimensionCount: 48), type, bound);

    /// <summary>
    /// Qwen3 (per-head Q/K norms, heads wider than embd / heads) on the device against the CPU
    /// forward pass, which SynthLlamaCppTests holds to llama.cpp: a prompt batch (mul_mat) and then
    /// tokens one at a time (mul_mat_vec), F32 and Q8_0 weights.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)] // the device multiplies float activations, the CPU Q8_0-quantized ones (as llama.cpp's CPU backend)
    public void Qwen3_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-qwen3", "tiny qwen3", "qwen3", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, true, false,
            EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128), type, bound,
            ctx => Assert.True(ctx.Variants.ContainsKey("rms_norm.head"), "the per-head norm pipeline is built"));

    /// <summary>
    /// SmolLM3 (no rope in layer 3 of 5) and Granite (embedding, score, residual and logit multipliers) on the
    /// device against the CPU, which SynthLlamaCppTests holds to llama.cpp.
    /// </summary>
    [Theory]
    [InlineData("smollm3", "F32", FloatBound)]
    [InlineData("smollm3", "Q8_0", QuantBound)]
    [InlineData("granite", "F32", FloatBound)]
    [InlineData("granite", "Q8_0", QuantBound)]
    public void SmolLM3AndGranite_MatchTheCpu(string arch, string type, double bound) =>
        MatchesTheCpu(arch == "smollm3"
            ? new EdgeLlm.Synth.SynthShape("tiny-smollm3", "tiny smollm3", "smollm3", 128, 5, 4, 2, 256, 700, 256, 100f, 1e-6f, true, false,
                EdgeLlm.Synth.SynthVocabKind.Llama3Bpe)
            : new EdgeLlm.Synth.SynthShape("tiny-granite", "tiny granite", "granite", 128, 3, 4, 2, 256, 320, 256, 100f, 1e-5f, true, false,
                EdgeLlm.Synth.SynthVocabKind.SmolLmBpe, Granite: new EdgeLlm.Synth.GraniteMultipliers(2f, 0.5f, 0.25f, 3f)), type, bound,
            ctx => Assert.Equal(arch == "granite", ctx.Variants.ContainsKey("mul")));

    /// <summary>ERNIE 4.5 (dense; Llama's block under its own keys, 64-wide heads on a 128-wide stream) on the device against the CPU.</summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Ernie45_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-ernie4_5", "tiny ernie4_5", "ernie4_5", 128, 2, 4, 2, 256, 300, 256, 10000f, 1e-5f, true, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64), type, bound, _ => { });

    /// <summary>
    /// EXAONE 4 (no pre-norms: the projections read x itself; post-norms; head norms; Llama 3 rope factors) on the device
    /// against the CPU, which SynthLlamaCppTests holds to llama.cpp.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Exaone4_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-exaone4", "tiny exaone4", "exaone4", 128, 3, 4, 2, 256, 700, 256, 500000f, 1e-5f, true, false,
            EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, new EdgeLlm.Synth.Llama3RopeScaling(32f, 1f, 4f, 64), WriteHeadLengths: true), type, bound, _ => { });

    private static EdgeLlm.Synth.SynthShape Olmo2Shape => new("tiny-olmo2", "tiny olmo2", "olmo2", 128, 4, 4, 2, 256, 700, 256, 500000f, 1e-6f,
        false, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe);

    /// <summary>
    /// OLMo 2 (no pre-norms, post-norms, Q/K norms over each token's whole rows: the device's rms_norm.q / rms_norm.k) and
    /// OLMo 3's sliding windows (8 tokens in three layers of four, under the 24-token prompt, from the file's per-layer
    /// flags) on the device against the CPU, which SynthLlamaCppTests holds to llama.cpp.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound, 0)]
    [InlineData("Q8_0", QuantBound, 0)]
    [InlineData("F32", FloatBound, 8)]
    public void Olmo2_MatchesTheCpu(string type, double bound, int window) =>
        MatchesTheCpu(Olmo2Shape with { SlidingWindow = window }, type, bound, ctx =>
        {
            Assert.Contains(ctx.Pipelines, p => p.Role == "rms_norm.q");
            Assert.Equal(window > 0 ? [true, true, true, false] : new bool[4], Enumerable.Range(0, 4).Select(ctx.Model.Config.IsSlidingWindowLayer));
            Assert.Equal(window > 0, ctx.Pipelines.Any(p => p.Role == "attention.swa"));
        });

    /// <summary>
    /// OLMo 3's YaRN (×4 over an original 16 tokens, with its attention_factor) on the global layer and plain rope on the
    /// sliding-window ones: the rope shader's ramp against the CPU, which SynthLlamaCppTests holds to llama.cpp.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Olmo3_YaRN_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(Olmo2Shape with { SlidingWindow = 8, Yarn = new EdgeLlm.Synth.YarnScaling(4f, 16, 1.1386294f) }, type, bound, ctx =>
            Assert.Equal(11, ctx.Pipelines.Single(p => p.Role == "rope.q").Constants.Count));

    /// <summary>Hunyuan (dense): the per-head Q/K norms after the rope on the device, against the CPU (which SynthLlamaCppTests holds to llama.cpp).</summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void HunyuanDense_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-hunyuan", "tiny hunyuan", "hunyuan-dense", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-5f,
            false, false, EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128), type, bound, _ => { });

    /// <summary>
    /// Ministral 3 (YaRN ×4 over 16 tokens, Llama 4's attention temperature stepping every 16 positions: the 24-token
    /// prompt and the 4 tokens after it cross one step) on the device against the CPU, which SynthLlamaCppTests holds to
    /// llama.cpp: the temperature rides on the query rope's cos and sin.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Ministral3_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-mistral3", "tiny mistral3", "mistral3", 128, 2, 4, 2, 256, 700, 256,
            1e6f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, WriteHeadLengths: true, HeadLength: 64,
            Yarn: new EdgeLlm.Synth.YarnScaling(4f, 16), AttnTemperatureScale: 0.1f), type, bound, ctx =>
        {
            Assert.Equal(13, ctx.Pipelines.Single(p => p.Role == "rope.q").Constants.Count);
            Assert.Equal(11, ctx.Pipelines.Single(p => p.Role == "rope.k").Constants.Count);
        });

    /// <summary>The first Gemma (Gemma 2's block without post-norms, windows or soft-caps; one KV head) on the device against the CPU.</summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void FirstGemma_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(new EdgeLlm.Synth.SynthShape("tiny-gemma", "tiny gemma", "gemma", 128, 3, 4, 1, 384, 400, 256, 10000f, 1e-6f, true, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64), type, bound, _ => { });

    private static EdgeLlm.Synth.SynthShape Lfm2Shape => new("tiny-lfm2", "tiny lfm2", "lfm2", 128, 6, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
        true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [2, 5]);

    /// <summary>
    /// LFM2 (attention in layers 2 and 5, short convolutions of 3 taps in the others) on the device against the CPU,
    /// which SynthLlamaCppTests holds to llama.cpp: the convolution's inputs carried in the device ring from the
    /// prompt batch into the tokens after it.
    /// </summary>
    [Theory]
    [InlineData("F32", FloatBound)]
    [InlineData("Q8_0", QuantBound)]
    public void Lfm2_MatchesTheCpu(string type, double bound) =>
        MatchesTheCpu(Lfm2Shape, type, bound, ctx =>
        {
            Assert.True(ctx.Variants.ContainsKey("shortconv") && ctx.Variants.ContainsKey("shortconv.store"), "the short-convolution pipelines are built");
            Assert.Equal(ctx.MaxBatch + 64, ctx.ShortConvRows);
        });

    /// <summary>
    /// A mixture of experts is declined with its reason before a device is even opened (AUTO then runs it on the CPU,
    /// as the CLI and the C ABI do), so this holds on a machine without Vulkan too.
    /// </summary>
    [Fact]
    public void MixtureOfExperts_IsDeclined_WithTheReason()
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-vk-moe-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-qwen3moe", "tiny qwen3moe", "qwen3moe", 128, 2, 4, 2, 384, 400, 256,
                1e6f, 1e-6f, false, false, EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128,
                Experts: new EdgeLlm.Synth.SynthExperts(8, 3, 64)), "F32", path, seed: 5);
            using var m = Model.Load(path);
            var e = Assert.Throws<VulkanUnavailableException>(() => new VulkanInferenceContext(m, 256).Dispose());
            Assert.Equal("the Vulkan backend does not run mixture-of-experts models (qwen3moe with 8 experts) yet; the CPU backend does", e.Message);
            Assert.Null(VulkanPipelineRegistry.Find(m));
            // LFM2-MoE too (its dense blocks and convolutions would run there; its experts would not)
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-lfm2moe", "tiny lfm2moe", "lfm2moe", 128, 4, 4, 2, 256, 700, 256,
                1e6f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [1],
                Experts: new EdgeLlm.Synth.SynthExperts(8, 2, 64, leadingDenseBlocks: 1)), "F32", path + ".lfm2moe", seed: 5);
            using var lfm = Model.Load(path + ".lfm2moe");
            e = Assert.Throws<VulkanUnavailableException>(() => new VulkanInferenceContext(lfm, 256).Dispose());
            Assert.Equal("the Vulkan backend does not run mixture-of-experts models (lfm2moe with 8 experts) yet; the CPU backend does", e.Message);
        }
        finally
        {
            File.Delete(path);
            File.Delete(path + ".lfm2moe");
        }
    }

    /// <summary>The device ring of convolution inputs through rewinds: within it no re-evaluation, past it the tokens before evaluated again.</summary>
    [Fact]
    public void Lfm2_Rewinds_AsOnTheCpu()
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-vk-lfm2-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(Lfm2Shape, "F32", path, seed: 5);
            using var m = Model.Load(path);
            int[] tokens = Enumerable.Range(0, 200).Select(i => (i * 37 + 11) % 700).ToArray();
            using var ctx = new VulkanInferenceContext(m, 256, fixture.Device, maxBatch: 16);
            Assert.Equal(80, ctx.ShortConvRows);
            ctx.Eval(tokens.AsSpan(0, 150));
            ctx.Rewind(140);                                    // within the ring
            float[] near = ctx.Eval(tokens.AsSpan(140, 4), allLogits: true);
            Assert.Equal(0, ctx.Reevaluations);
            Assert.False(ctx.CanResumeAt(60));
            ctx.Rewind(60);                                     // rows of 58 and 59 long overwritten
            float[] far = ctx.Eval(tokens.AsSpan(60, 4), allLogits: true);
            Assert.Equal(60, ctx.Reevaluations);
            float[] cpuNear, cpuFar;
            using (var cpu = new EdgeLlm.Engine.InferenceContext(m, 256, threads: 1))
            {
                cpu.Eval(tokens.AsSpan(0, 60));
                cpuFar = cpu.Eval(tokens.AsSpan(60, 4), allLogits: true);
                cpu.Eval(tokens.AsSpan(64, 76));
                cpuNear = cpu.Eval(tokens.AsSpan(140, 4), allLogits: true);
            }
            double a = GoldenCase.Figure(near, cpuNear), b = GoldenCase.Figure(far, cpuFar);
            output.WriteLine($"vulkan lfm2 rewinds: by 10 {a:G4}, by 90 {b:G4} against the CPU; {ctx.Reevaluations} evaluated again");
            Assert.True(a <= FloatBound && b <= FloatBound, $"after the rewinds: {a}, {b}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A synthetic file of <paramref name="shape"/> in <paramref name="type"/> on the device against the CPU:
    /// a 24-token prompt batch (mul_mat), then 4 tokens one at a time (mul_mat_vec).
    /// </summary>
    private void MatchesTheCpu(EdgeLlm.Synth.SynthShape shape, string type, double bound, Action<VulkanInferenceContext>? check = null)
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-vk-{shape.Name}-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(shape, type, path, seed: 5);
            using var m = Model.Load(path);
            var rng = new Random(9);
            int[] prompt = Enumerable.Range(0, 24).Select(_ => rng.Next(shape.VocabSize)).ToArray();
            int[] more = Enumerable.Range(0, 4).Select(_ => rng.Next(shape.VocabSize)).ToArray();
            float[] cpu;
            using (var cctx = new EdgeLlm.Engine.InferenceContext(m, 64, threads: 1))
            {
                cpu = cctx.Eval(prompt, allLogits: true);
                foreach (int t in more) cpu = [.. cpu, .. cctx.Eval([t])];
            }
            using var ctx = new VulkanInferenceContext(m, contextLength: 64, fixture.Device);
            check?.Invoke(ctx);
            float[] gpu = ctx.Eval(prompt, allLogits: true);
            foreach (int t in more) gpu = [.. gpu, .. ctx.Eval([t])];
            double figure = GoldenCase.Figure(gpu, cpu);
            string name = shape.Architecture;
            output.WriteLine($"vulkan {name} {type}: figure against the CPU {figure:G4} (bound {bound}), {ctx.RecordedProducts.MatMul} mul_mat + {ctx.RecordedProducts.MatVec} mul_mat_vec");
            Assert.True(ctx.RecordedProducts.MatMul > 0 && ctx.RecordedProducts.MatVec > 0, "both matrix paths ran");
            Assert.True(figure <= bound, $"{name} {type}: figure {figure:G4} exceeds {bound}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Perplexity (llama-perplexity's procedure, batches of 32 in chunks of 64) on the device equals the
    /// CPU's to float rounding: the backend-independent measurement runs on any IEvalContext.
    /// </summary>
    [Fact]
    public void Perplexity_MatchesTheCpu()
    {
        var golden = GoldenCase.Load("stories260K", "story");
        using var m = Model.Load(SharedData.Model("stories260K"));
        int[] tokens = [.. golden.PromptIds, .. golden.GreedyIds]; // the story: 205 tokens, 3 chunks of 64
        EdgeLlm.Engine.PerplexityResult cpu, gpu;
        using (var cctx = new EdgeLlm.Engine.InferenceContext(m, 64, threads: 2))
            cpu = EdgeLlm.Engine.Perplexity.Compute(cctx, tokens, 64, 32, bos: 1);
        using (var vctx = new VulkanInferenceContext(m, contextLength: 64, fixture.Device))
            gpu = EdgeLlm.Engine.Perplexity.Compute(vctx, tokens, 64, 32, bos: 1);
        output.WriteLine($"perplexity over {cpu.Chunks} chunks: cpu {cpu.Value:F6}, vulkan {gpu.Value:F6}");
        Assert.Equal(3, gpu.Chunks);
        Assert.Equal(cpu.Value, gpu.Value, cpu.Value * 1e-3);
    }

    /// <summary>stories260K's 200-token greedy story, token by token on the device, identical to llama.cpp's.</summary>
    [Fact]
    public void Stories260K_GreedyStory_MatchesLlamaCpp()
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var m = Model.Load(SharedData.Model("stories260K"));
        using var ctx = new VulkanInferenceContext(m, contextLength: 512, fixture.Device);
        float[] logits = ctx.Eval(story.PromptIds, allLogits: true);
        output.WriteLine($"story prompt logits figure {GoldenCase.Figure(logits, story.Logits):G4}");
        int vocab = m.Config.VocabSize;
        int next = GoldenCase.ArgMax(logits.AsSpan((story.PromptIds.Length - 1) * vocab, vocab));
        var generated = new List<int>();
        for (int i = 0; i < story.GreedyIds.Length; i++)
        {
            generated.Add(next);
            if (i + 1 < story.GreedyIds.Length) next = GoldenCase.ArgMax(ctx.Eval([next]));
        }
        int matching = 0;
        while (matching < generated.Count && generated[matching] == story.GreedyIds[matching]) matching++;
        output.WriteLine($"vulkan greedy story: {matching}/{story.GreedyIds.Length} tokens match llama.cpp");
        Assert.Equal(200, story.GreedyIds.Length);
        Assert.Equal(story.GreedyIds, generated);
    }

    /// <summary>Speculative decoding on the device (batches with every row's logits, rewinds): the greedy story is still llama.cpp's, with a draft model and with prompt lookup.</summary>
    [Fact]
    public void Stories260K_Speculative_GreedyStory_MatchesLlamaCpp()
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var m = Model.Load(SharedData.Model("stories260K"));
        using var d = Model.Load(SharedData.Model("stories260K-q8_0"));
        var tokenizer = EdgeLlm.Tokenizers.Tokenizer.FromGguf(m.File);
        var greedy = new EdgeLlm.Engine.GenerationOptions { MaxTokens = story.GreedyIds.Length, Sampling = new EdgeLlm.Sampling.SamplerOptions { Temperature = 0 } };
        using (var ctx = new VulkanInferenceContext(m, contextLength: 512, fixture.Device))
        using (var draftCtx = new VulkanInferenceContext(d, contextLength: 512, fixture.Device))
        {
            var gen = new EdgeLlm.Engine.TextGenerator(ctx, tokenizer);
            gen.UseDraft(draftCtx, EdgeLlm.Tokenizers.Tokenizer.FromGguf(d.File), 8, 0f);
            var r = gen.Generate(story.PromptIds, greedy);
            output.WriteLine($"draft: {r.DraftedTokens} proposed, {r.AcceptedDraftTokens} accepted");
            Assert.Equal(story.GreedyIds, r.Tokens);
            Assert.True(r.AcceptedDraftTokens > 100);
            Assert.Equal(gen.CachedTokens.Count, ctx.Position);
        }
        using (var ctx = new VulkanInferenceContext(m, contextLength: 512, fixture.Device))
        {
            var gen = new EdgeLlm.Engine.TextGenerator(ctx, tokenizer);
            gen.UseLookup(2, 8);
            var r = gen.Generate(story.PromptIds, greedy);
            output.WriteLine($"lookup: {r.DraftedTokens} proposed, {r.AcceptedDraftTokens} accepted");
            Assert.Equal(story.GreedyIds, r.Tokens);
        }
    }
}
