using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using Xunit;

namespace EdgeLlm.Tests.Models;

public class ModelLoadTests
{
    private static ModelLoadException LoadFails(TinyModelFile spec, ModelLoadOptions? options = null)
    {
        using var f = spec.Write();
        return Assert.Throws<ModelLoadException>(() => Model.Load(f.Path, options).Dispose());
    }

    [Fact]
    public void Stories260K_ConfigReadFromMetadata()
    {
        using var m = Model.Load(SharedData.Model("stories260K"));
        var c = m.Config;
        Assert.Equal("llama", c.Architecture);
        Assert.Equal((512, 64, 5, 172, 8, 4, 8, 8), (c.VocabSize, c.EmbeddingLength, c.BlockCount, c.FeedForwardLength, c.HeadCount, c.HeadCountKv, c.HeadDim, c.RopeDimensionCount));
        Assert.Equal(10000f, c.RopeFreqBase);
        Assert.Equal(1e-5f, c.RmsEps);
        Assert.Equal(128, c.TrainingContextLength);
        Assert.False(c.TiedEmbeddings);
        Assert.False(c.RopeNeox);
        Assert.False(c.HasQkvBias);
        Assert.False(c.HasRopeFrequencyFactors);
    }

    [Fact]
    public void Qwen2_ConfigHasNeoxRopeBiasesAndTiedEmbeddings()
    {
        using var m = Model.Load(SharedData.Model("syn-qwen2-f32"));
        var c = m.Config;
        Assert.Equal("qwen2", c.Architecture);
        Assert.Equal((4, 2, 64), (c.HeadCount, c.HeadCountKv, c.HeadDim));
        Assert.Equal(1e6f, c.RopeFreqBase);
        Assert.True(c.TiedEmbeddings);
        Assert.True(c.RopeNeox);
        Assert.True(c.HasQkvBias);
    }

    [Fact]
    public void CraftedModel_LoadsAndEvaluates()
    {
        foreach (var arch in new[] { "llama", "qwen2" })
        {
            using var f = new TinyModelFile { Architecture = arch }.Write();
            using var m = Model.Load(f.Path);
            using var ctx = new EdgeLlm.Engine.InferenceContext(m, 16, threads: 2);
            float[] logits = ctx.Eval([1, 2, 3]);
            Assert.Equal(TinyModelFile.Vocab, logits.Length);
            Assert.All(logits, x => Assert.True(float.IsFinite(x)));
        }
    }

    [Fact]
    public void UnknownArchitecture_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Architecture = "mamba9" });
        Assert.Contains("architecture 'mamba9' is not supported", e.Message);
    }

    [Fact]
    public void MissingTensor_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Omit = "blk.1.ffn_up.weight" });
        Assert.Equal("tensor blk.1.ffn_up.weight is missing from the model file", e.Message);
    }

    [Fact]
    public void Qwen2_MissingBias_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Architecture = "qwen2", Omit = "blk.0.attn_k.bias" });
        Assert.Contains("blk.0.attn_k.bias", e.Message);
    }

    [Fact]
    public void Qwen3_LoadsWithItsHeadNorms_AndNamesAMissingOrWrongOne()
    {
        using (var f = new TinyModelFile { Architecture = "qwen3" }.Write())
        using (var m = Model.Load(f.Path))
        {
            Assert.Equal("qwen3", m.Config.Architecture);
            Assert.True(m.Config.HasQkNorm && m.Config.RopeNeox && !m.Config.HasQkvBias);
        }
        var e = LoadFails(new TinyModelFile { Architecture = "qwen3", Omit = "blk.1.attn_k_norm.weight" });
        Assert.Equal("tensor blk.1.attn_k_norm.weight is missing from the model file", e.Message);
        e = LoadFails(new TinyModelFile { Architecture = "qwen3", Reshape = ("blk.0.attn_q_norm.weight", [32]) });
        Assert.Contains("blk.0.attn_q_norm.weight", e.Message);
        Assert.Contains("key_length", e.Message);
    }

    [Fact]
    public unsafe void Phi3_LoadsItsFusedMatrices_AsViews_AndNamesAMissingOrWrongOne()
    {
        using (var f = new TinyModelFile { Architecture = "phi3" }.Write())
        using (var m = Model.Load(f.Path, new ModelLoadOptions { RepackWeights = false }))
        {
            Assert.Equal("phi3", m.Config.Architecture);
            Assert.True(m.Config.RopeNeox && !m.Config.HasQkvBias && !m.Config.HasQkNorm);
            var l = m.Layers[1];
            int q = TinyModelFile.Heads * TinyModelFile.HeadDim, kv = TinyModelFile.HeadsKv * TinyModelFile.HeadDim;
            Assert.Equal([q, kv, kv], new[] { l.Wq.Rows, l.Wk.Rows, l.Wv.Rows });
            // Views of one tensor: K starts where Q ends, V where K ends; up where gate ends.
            Assert.True(l.Wk.FileData == l.Wq.FileData + q * l.Wq.RowBytes && l.Wv.FileData == l.Wk.FileData + kv * l.Wk.RowBytes);
            Assert.True(l.Up.FileData == l.Gate.FileData + TinyModelFile.Ff * l.Gate.RowBytes);
            Assert.Equal(l.Wq.FileOffset + q * l.Wq.RowBytes, l.Wk.FileOffset);
            Assert.StartsWith("blk.1.attn_qkv.weight (K, rows 256..383)", l.Wk.Name);
            using var ctx = new InferenceContext(m, 16, threads: 1);
            Assert.All(ctx.Eval([1, 2, 3]), x => Assert.True(float.IsFinite(x)));
        }
        var e = LoadFails(new TinyModelFile { Architecture = "phi3", Omit = "blk.1.attn_qkv.weight" });
        Assert.Contains("blk.1.attn_qkv.weight is missing", e.Message);
        e = LoadFails(new TinyModelFile { Architecture = "phi3", Reshape = ("blk.0.ffn_up.weight", [256, 256]) });
        Assert.Contains("tensor blk.0.ffn_up.weight has shape [256, 256], but the metadata implies [256, 512]", e.Message);
        Assert.Contains("gate: phi3.feed_forward_length = 256 + up: phi3.feed_forward_length = 256", e.Message);
        e = LoadFails(new TinyModelFile { Architecture = "phi3", Reshape = ("blk.0.attn_qkv.weight", [256, 256]) });
        Assert.Contains("the metadata implies [256, 512]", e.Message);
    }

    [Fact]
    public void Phi3_RepackedViews_GiveTheLogitsOfThePlainOnes()
    {
        // Q4_0 parts of fused tensors are repacked one by one (q4_0x8), each from its own rows of the file.
        var shape = new EdgeLlm.Synth.SynthShape("tiny-phi3", "tiny phi3", "phi3", 256, 2, 4, 2, 512, 300, 4096, 10000f, 1e-5f, false, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, LongRope: new EdgeLlm.Synth.LongRopeScaling(512));
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-phi3-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(shape, "Q4_0", path, seed: 5);
            float[] Logits(bool repack)
            {
                using var m = Model.Load(path, new ModelLoadOptions { RepackWeights = repack });
                Assert.Equal(repack, m.RepackedLayouts.Contains("q4_0x8"));
                if (repack) Assert.True(m.Layers[0].Wk.IsRepacked && m.Layers[0].Up.IsRepacked);
                using var ctx = new InferenceContext(m, 16, threads: 1);
                return ctx.Eval([1, 2, 3, 4, 5], allLogits: true);
            }
            float[] plain = Logits(false), packed = Logits(true);
            double std = Math.Sqrt(plain.Average(x => (double)x * x));
            double maxDiff = plain.Zip(packed, (a, b) => Math.Abs((double)a - b)).Max();
            Assert.True(maxDiff / std < 1e-3, $"repacked phi3 differs from plain by {maxDiff / std:E2} of the logits' rms");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Gemma3_ReadsItsRules_AndNamesAMissingPostNorm()
    {
        using (var f = new TinyModelFile { Architecture = "gemma3" }.Write())
        using (var m = Model.Load(f.Path))
        {
            var c = m.Config;
            Assert.True(c.HasQkNorm && c.RopeNeox && c.GeluGate);
            Assert.Equal(4, c.SlidingWindow);
            Assert.Equal(MathF.Sqrt(TinyModelFile.Embd), c.EmbeddingScale);
            Assert.Equal(10000f, c.RopeFreqBaseSwa);
            // Five local layers, then a global one (llama.cpp's set_swa_pattern(6)).
            Assert.Equal([true, true, true, true, true, false, true], Enumerable.Range(0, 7).Select(c.IsSlidingWindowLayer));
            Assert.NotNull(m.Layers[1].AttnPostNorm);
            Assert.NotNull(m.Layers[1].FfnPostNorm);
            using var ctx = new InferenceContext(m, 16, threads: 1);
            Assert.All(ctx.Eval([1, 2, 3, 4, 5, 6, 7]), x => Assert.True(float.IsFinite(x)));
        }
        var e = LoadFails(new TinyModelFile { Architecture = "gemma3", Omit = "blk.1.post_ffw_norm.weight" });
        Assert.Equal("tensor blk.1.post_ffw_norm.weight is missing from the model file", e.Message);
    }

    [Fact]
    public void Gemma2_TakesLlamaCppsDefaults_WhereTheFileIsSilent()
    {
        // No sliding_window, attn_logit_softcapping or final_logit_softcapping keys: llama.cpp's 4096, 50 and 30.
        using (var f = new TinyModelFile { Architecture = "gemma2" }.Write())
        using (var m = Model.Load(f.Path))
        {
            var c = m.Config;
            Assert.True(c.GeluGate && c.RopeNeox && !c.HasQkNorm);
            Assert.Equal((4096, 50f, 30f), (c.SlidingWindow, c.AttnLogitSoftcap, c.FinalLogitSoftcap));
            Assert.Equal([true, false, true, false], Enumerable.Range(0, 4).Select(c.IsSlidingWindowLayer));
            using var ctx = new InferenceContext(m, 16, threads: 1);
            Assert.All(ctx.Eval([1, 2, 3]), x => Assert.True(float.IsFinite(x) && MathF.Abs(x) <= 30f));
        }
        var e = LoadFails(new TinyModelFile { Architecture = "gemma2", Omit = "blk.0.post_attention_norm.weight" });
        Assert.Equal("tensor blk.0.post_attention_norm.weight is missing from the model file", e.Message);
    }

    [Fact]
    public void SmolLM3_SkipsRopeInEveryFourthLayer()
    {
        using var f = new TinyModelFile { Architecture = "smollm3" }.Write();
        using var m = Model.Load(f.Path);
        var c = m.Config;
        Assert.False(c.RopeNeox);
        Assert.Equal(4, c.NoRopeLayerStep);
        Assert.Equal([true, true, true, false, true, true, true, false], Enumerable.Range(0, 8).Select(c.UsesRope));
        using var ctx = new InferenceContext(m, 16, threads: 1);
        Assert.All(ctx.Eval([1, 2, 3]), x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void Granite_ReadsItsMultipliers_AndNamesWhatIsWrong()
    {
        using (var f = new TinyModelFile { Architecture = "granite" }.Write())
        using (var m = Model.Load(f.Path))
        {
            var c = m.Config;
            Assert.Equal((8f, 0.22f, 12f, 0.015625f, 0), (c.LogitScale, c.ResidualScale, c.EmbeddingScale, c.AttentionScale, c.NoRopeLayerStep));
            Assert.True(c.UsesRope(0) && c.UsesRope(3));
            using var ctx = new InferenceContext(m, 16, threads: 1);
            Assert.All(ctx.Eval([1, 2, 3]), x => Assert.True(float.IsFinite(x)));
        }
        // Optional multipliers absent or 0: none (llama.cpp's "if (f_residual_scale)"); rope switched off by the file.
        using (var f = new TinyModelFile
        {
            Architecture = "granite",
            OmitKey = "granite.embedding_scale",
            EditMetadata = w => w.Set("granite.residual_scale", 0f).Set("granite.rope.scaling.finetuned", false),
        }.Write())
        using (var m = Model.Load(f.Path))
        {
            var c = m.Config;
            Assert.Equal((1f, 1f, 1), (c.ResidualScale, c.EmbeddingScale, c.NoRopeLayerStep));
            Assert.False(c.UsesRope(0) || c.UsesRope(1));
        }
        Assert.Equal("metadata key granite.logit_scale is missing",
            LoadFails(new TinyModelFile { Architecture = "granite", OmitKey = "granite.logit_scale" }).Message);
        Assert.Equal("metadata key granite.logit_scale must be a positive number, found 0",
            LoadFails(new TinyModelFile { Architecture = "granite", EditMetadata = w => w.Set("granite.logit_scale", 0f) }).Message);
        Assert.Contains("metadata key granite.residual_scale must be a non-negative number, found",
            LoadFails(new TinyModelFile { Architecture = "granite", EditMetadata = w => w.Set("granite.residual_scale", "big") }).Message);
        Assert.Contains("metadata key granite.rope.scaling.finetuned must be a boolean",
            LoadFails(new TinyModelFile { Architecture = "granite", EditMetadata = w => w.Set("granite.rope.scaling.finetuned", 1u) }).Message);
        Assert.Equal("tensor blk.1.ffn_down.bias: granite blocks with output or feed-forward biases are not supported",
            LoadFails(new TinyModelFile { Architecture = "granite", Extra = ("blk.1.ffn_down.bias", [TinyModelFile.Embd]) }).Message);
    }

    [Fact]
    public void Lfm2_NamesWhatIsWrong()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-lfm2-load-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string good = Path.Combine(dir, "lfm2.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-lfm2", "tiny lfm2", "lfm2", 128, 3, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
                true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [1]), "F32", good, seed: 1);
            using (var m = Model.Load(good))
                Assert.Equal([true, false, true], Enumerable.Range(0, 3).Select(m.Config.IsShortConvLayer));
            // A copy of the good file with metadata set, a tensor dropped or one replaced by zeros of another type and shape.
            string Edited(string name, Action<GgufWriter>? metadata = null, string? drop = null, (string Name, GgmlType Type, long[] Dims)? replace = null) =>
                EditedCopy(good, Path.Combine(dir, name + ".gguf"), metadata, drop, replace);
            string Fails(string path) => Assert.Throws<ModelLoadException>(() => Model.Load(path).Dispose()).Message;

            Assert.Equal("metadata key lfm2.attention.head_count_kv has 2 entries for 3 layers (lfm2.block_count)",
                Fails(Edited("short", w => w.Set("lfm2.attention.head_count_kv", GgufValue.From(new[] { 0, 2 })))));
            Assert.Equal("metadata key lfm2.attention.head_count_kv: the attention layers have different KV head counts (2, 4); EdgeLlm needs one",
                Fails(Edited("mixed", w => w.Set("lfm2.attention.head_count_kv", GgufValue.From(new[] { 2, 4, 0 })))));
            Assert.Equal("metadata key lfm2.shortconv.l_cache must be 2..64 for the convolution layers, found 1",
                Fails(Edited("taps", w => w.Set("lfm2.shortconv.l_cache", 1u))));
            Assert.Equal("tensor blk.0.shortconv.in_proj.weight is missing from the model file",
                Fails(Edited("noinproj", drop: "blk.0.shortconv.in_proj.weight")));
            Assert.Equal("tensor blk.2.shortconv.conv.weight has shape [4, 128], but the metadata implies [3, 128] (ne[0] = lfm2.shortconv.l_cache, ne[1] = lfm2.embedding_length)",
                Fails(Edited("wide", replace: ("blk.2.shortconv.conv.weight", GgmlType.F32, [4, 128]))));
            Assert.Equal("tensor blk.2.shortconv.conv.weight has type Q8_0; a convolution's taps must be F32, F16 or BF16 (llama-quantize keeps them)",
                Fails(Edited("q8taps", replace: ("blk.2.shortconv.conv.weight", GgmlType.Q8_0, [32, 12]))));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Mixture-of-experts files: the routing keys and the 3-D expert tensors are checked with names, shapes and sources,
    /// a dense llama file stays a Llama, and the source generator and the Vulkan backend decline the model by saying why.
    /// </summary>
    [Fact]
    public void MixtureOfExperts_NamesWhatIsWrong()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-moe-load-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string good = Path.Combine(dir, "qwen3moe.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-qwen3moe", "tiny qwen3moe", "qwen3moe", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f,
                false, false, EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128, Experts: new EdgeLlm.Synth.SynthExperts(8, 3, 64)), "F32", good, seed: 1);
            using (var m = Model.Load(good))
            {
                Assert.True(m.Config.IsMixtureOfExperts);
                Assert.Equal((8, 3, 64, 0, true), (m.Config.ExpertCount, m.Config.ExpertUsedCount, m.Config.ExpertFeedForwardLength, m.Config.ExpertSharedFeedForwardLength, m.Config.ExpertWeightsNorm));
                Assert.Equal("generic", EdgeLlm.Specialized.SpecializationRegistry.Describe(m));
            }
            string Edited(string name, Action<GgufWriter>? metadata = null, string? drop = null, (string Name, GgmlType Type, long[] Dims)? replace = null) =>
                EditedCopy(good, Path.Combine(dir, name + ".gguf"), metadata, drop, replace);
            string Fails(string path) => Assert.Throws<ModelLoadException>(() => Model.Load(path).Dispose()).Message;

            Assert.Equal("metadata key qwen3moe.expert_used_count (9) is larger than qwen3moe.expert_count (8)",
                Fails(Edited("used", w => w.Set("qwen3moe.expert_used_count", 9u))));
            Assert.Equal("metadata key qwen3moe.expert_count is missing",
                Fails(Edited("nocount", w => w.Remove("qwen3moe.expert_count"))));
            Assert.Equal("metadata key qwen3moe.expert_used_count must be a positive integer, found 0",
                Fails(Edited("zero", w => w.Set("qwen3moe.expert_used_count", 0u))));
            Assert.Equal("metadata key qwen3moe.expert_count (600) is larger than 512 (llama.cpp's LLAMA_MAX_EXPERTS)",
                Fails(Edited("many", w => w.Set("qwen3moe.expert_count", 600u))));
            Assert.Equal("tensor blk.1.ffn_up_exps.weight is missing from the model file",
                Fails(Edited("noup", drop: "blk.1.ffn_up_exps.weight")));
            Assert.Equal("tensor blk.0.ffn_gate_exps.weight is missing: experts without a gate (silu of up alone) are not supported",
                Fails(Edited("nogate", drop: "blk.0.ffn_gate_exps.weight")));
            Assert.Equal("tensor blk.0.ffn_down_exps.weight has shape [64, 128, 7], but the metadata implies [64, 128, 8] (ne[0] = qwen3moe.expert_feed_forward_length = 64; ne[1] = qwen3moe.embedding_length = 128; ne[2] = qwen3moe.expert_count = 8)",
                Fails(Edited("seven", replace: ("blk.0.ffn_down_exps.weight", GgmlType.F32, [64, 128, 7]))));
            Assert.Equal("tensor blk.0.ffn_gate_inp.weight has shape [128, 4], but the metadata implies [128, 8] (ne[0] = qwen3moe.embedding_length = 128; ne[1] = qwen3moe.expert_count = 8)",
                Fails(Edited("router", replace: ("blk.0.ffn_gate_inp.weight", GgmlType.F32, [128, 4]))));

            // A llama file: experts when llama.expert_count > 0 (Mixtral), a dense block when the key is 0 or absent.
            string mixtral = Path.Combine(dir, "mixtral.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-mixtral", "tiny mixtral", "llama", 128, 2, 4, 2, 96, 300, 256, 10000f, 1e-5f,
                false, false, EdgeLlm.Synth.SynthVocabKind.SentencePiece, Experts: new EdgeLlm.Synth.SynthExperts(8, 2, 96)), "F32", mixtral, seed: 1);
            using (var m = Model.Load(mixtral))
                Assert.Equal((8, 2, 96), (m.Config.ExpertCount, m.Config.ExpertUsedCount, m.Config.ExpertFeedForwardLength));
            good = mixtral;
            Assert.Equal("tensor blk.0.ffn_gate.weight is missing from the model file",
                Fails(Edited("dense", w => w.Set("llama.expert_count", 0u))));

            // LFM2-MoE: the leading dense blocks, the sigmoid router and the choice bias, each required as llama.cpp requires them.
            string lfm2moe = Path.Combine(dir, "lfm2moe.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-lfm2moe", "tiny lfm2moe", "lfm2moe", 128, 4, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
                true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [1], Experts: new EdgeLlm.Synth.SynthExperts(8, 2, 64, leadingDenseBlocks: 2)), "F32", lfm2moe, seed: 1);
            using (var m = Model.Load(lfm2moe))
            {
                var c = m.Config;
                Assert.Equal((8, 2, 64, 2, true, true, true), (c.ExpertCount, c.ExpertUsedCount, c.ExpertFeedForwardLength, c.LeadingDenseBlocks, c.ExpertGatingSigmoid, c.ExpertSelectionBias, c.ExpertWeightsNorm));
                Assert.Equal([false, false, true, true], Enumerable.Range(0, 4).Select(c.HasExperts));
                Assert.Equal([true, false, true, true], Enumerable.Range(0, 4).Select(c.IsShortConvLayer));
            }
            good = lfm2moe;
            Assert.Equal("metadata key lfm2moe.expert_gating_func is missing (1 = softmax, 2 = sigmoid)",
                Fails(Edited("nogating", w => w.Remove("lfm2moe.expert_gating_func"))));
            Assert.Equal("metadata key lfm2moe.expert_gating_func is 3; EdgeLlm knows 1 (softmax) and 2 (sigmoid)",
                Fails(Edited("gating3", w => w.Set("lfm2moe.expert_gating_func", 3u))));
            Assert.Equal("metadata key lfm2moe.leading_dense_block_count is missing",
                Fails(Edited("nodense", w => w.Remove("lfm2moe.leading_dense_block_count"))));
            Assert.Equal("metadata key lfm2moe.leading_dense_block_count (5) is larger than lfm2moe.block_count (4)",
                Fails(Edited("dense5", w => w.Set("lfm2moe.leading_dense_block_count", 5u))));
            Assert.Equal("metadata key lfm2moe.expert_feed_forward_length is missing",
                Fails(Edited("nowidth", w => w.Remove("lfm2moe.expert_feed_forward_length"))));
            Assert.Equal("tensor blk.3.exp_probs_b.bias is missing from the model file",
                Fails(Edited("nobias", drop: "blk.3.exp_probs_b.bias")));
            // one dense block fewer: block 1 then needs experts, and the file has a dense network there
            Assert.Equal("tensor blk.1.ffn_gate_inp.weight is missing from the model file",
                Fails(Edited("dense1", w => w.Set("lfm2moe.leading_dense_block_count", 1u))));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>EXAONE 4: post-norms only (no attn_norm / ffn_norm needed); the 32B model's hybrid attention is refused by name.</summary>
    [Fact]
    public void Exaone4_LoadsWithoutPreNorms_AndRefusesTheHybridAttention()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-exaone4-load-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string good = Path.Combine(dir, "exaone4.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-exaone4", "tiny exaone4", "exaone4", 128, 2, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
                true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, WriteHeadLengths: true), "F32", good, seed: 1);
            using (var f = GgufFile.Open(good))
            {
                Assert.Null(f.FindTensor("blk.0.attn_norm.weight"));
                Assert.NotNull(f.FindTensor("blk.0.post_ffw_norm.weight"));
            }
            using (var m = Model.Load(good))
            {
                Assert.False(m.Config.PreNorms);
                Assert.True(m.Config.HasQkNorm && m.Config.RopeNeox);
                Assert.StartsWith("generic", EdgeLlm.Specialized.SpecializationRegistry.Describe(m), StringComparison.Ordinal);
            }
            string Fails(string path) => Assert.Throws<ModelLoadException>(() => Model.Load(path).Dispose()).Message;
            Assert.Equal("this exaone4 file has 2 layers and exaone4.attention.sliding_window 16: EXAONE 4.0 32B's hybrid attention (sliding windows in three layers of four, no rope in the fourth) is not supported; the 1.2B model (30 layers, global attention) is",
                Fails(EditedCopy(good, Path.Combine(dir, "swa.gguf"), w => w.Set("exaone4.attention.sliding_window", 16u), null, null)));
            Assert.Equal("tensor blk.1.post_attention_norm.weight is missing from the model file",
                Fails(EditedCopy(good, Path.Combine(dir, "nopost.gguf"), null, "blk.1.post_attention_norm.weight", null)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// OLMo 2 and 3: post-norms only, Q/K norms over whole rows (a per-head-sized norm is refused naming the tensor);
    /// OLMo 3's sliding-window pattern as the converter's per-layer flags, as a period, or as neither (refused by name).
    /// </summary>
    [Fact]
    public void Olmo2_ReadsItsNormsAndSlidingWindowPatterns()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-olmo2-load-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var shape = new EdgeLlm.Synth.SynthShape("tiny-olmo2", "tiny olmo2", "olmo2", 128, 4, 4, 2, 256, 700, 256, 500000f, 1e-6f,
                false, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, SlidingWindow: 16);
            string good = Path.Combine(dir, "olmo3.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(shape, "F32", good, seed: 1);
            using (var m = Model.Load(good))
            {
                var c = m.Config;
                Assert.True(!c.PreNorms && c.HasQkNorm && c.QkNormFullWidth && c.RopeNeox && !c.TiedEmbeddings);
                Assert.Equal(16, c.SlidingWindow);
                Assert.Equal([true, true, true, false], Enumerable.Range(0, 4).Select(c.IsSlidingWindowLayer));
                Assert.Equal(1f, c.RopeAttnFactorSwa);
                Assert.Equal(c.RopeFreqBase, c.RopeFreqBaseSwa);
            }
            string Fails(string path) => Assert.Throws<ModelLoadException>(() => Model.Load(path).Dispose()).Message;
            // A period instead of flags (llama.cpp's set_swa_pattern): 2 makes layers 0 and 2 sliding.
            using (var m = Model.Load(EditedCopy(good, Path.Combine(dir, "period.gguf"), w => w.Set("olmo2.attention.sliding_window_pattern", 2u), null, null)))
                Assert.Equal([true, false, true, false], Enumerable.Range(0, 4).Select(m.Config.IsSlidingWindowLayer));
            Assert.Equal("metadata key olmo2.attention.sliding_window_pattern has 3 entries for 4 layers",
                Fails(EditedCopy(good, Path.Combine(dir, "short.gguf"),
                    w => w.Set("olmo2.attention.sliding_window_pattern", new GgufValue(GgufValueType.Array, new[] { true, true, false }, GgufValueType.Bool)), null, null)));
            Assert.Equal("metadata key olmo2.attention.sliding_window_pattern is an array but not of booleans (one per layer)",
                Fails(EditedCopy(good, Path.Combine(dir, "ints.gguf"), w => w.Set("olmo2.attention.sliding_window_pattern", GgufValue.From(new[] { 1, 1, 1, 0 })), null, null)));
            Assert.Equal("tensor blk.0.attn_q_norm.weight has shape [32], but the metadata implies [128] (ne[0] = olmo2.attention.head_count × head_dim (4 × 32) = 128)",
                Fails(EditedCopy(good, Path.Combine(dir, "headnorm.gguf"), null, null, ("blk.0.attn_q_norm.weight", GgmlType.F32, [32]))));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Ministral 3 (mistral3): Llama's block with YaRN and Llama 4's attention temperature; its mixtures of experts are refused by name.</summary>
    [Fact]
    public void Mistral3_ReadsYarnAndTheTemperature_AndRefusesExperts()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-mistral3-load-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string good = Path.Combine(dir, "mistral3.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-mistral3", "tiny mistral3", "mistral3", 128, 2, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
                true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, WriteHeadLengths: true, HeadLength: 64, Yarn: new EdgeLlm.Synth.YarnScaling(4f, 16),
                AttnTemperatureScale: 0.1f), "F32", good, seed: 1);
            using (var m = Model.Load(good))
            {
                var c = m.Config;
                Assert.False(c.RopeNeox);
                Assert.Equal(0.25f, c.RopeFreqScale);
                Assert.NotEqual(0f, c.RopeYarn.ExtFactor);
                Assert.Equal(0.1f, c.AttnTemperatureScale);
                Assert.Equal(16, c.AttnTemperatureFloor);
                Assert.StartsWith("generic", EdgeLlm.Specialized.SpecializationRegistry.Describe(m), StringComparison.Ordinal);
            }
            Assert.Equal("this mistral3 file has mistral3.expert_count 8: mistral3 mixtures of experts are not supported; the dense Ministral 3 models are",
                Assert.Throws<ModelLoadException>(() => Model.Load(EditedCopy(good, Path.Combine(dir, "moe.gguf"), w => w.Set("mistral3.expert_count", 8u), null, null)).Dispose()).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A copy of <paramref name="good"/> at <paramref name="path"/> with metadata set, a tensor dropped or one replaced by zeros of another type and shape.</summary>
    private static string EditedCopy(string good, string path, Action<GgufWriter>? metadata, string? drop, (string Name, GgmlType Type, long[] Dims)? replace)
    {
        using var f = GgufFile.Open(good);
        var w = new GgufWriter().CopyMetadata(f);
        metadata?.Invoke(w);
        foreach (var t in f.Tensors)
        {
            if (t.Name == drop) continue;
            if (replace is { } r && r.Name == t.Name)
                w.AddTensor(t.Name, r.Type, r.Dims, new byte[GgmlTypes.Info(r.Type).RowBytes(r.Dims.Aggregate(1L, (a, b) => a * b))]);
            else
                w.AddTensor(t.Name, t.Type, t.Dims.ToArray(), f.GetTensorData(t).ToArray());
        }
        w.Write(path);
        return path;
    }

    [Fact]
    public void WrongShape_NamesTensorAndBothShapes()
    {
        var e = LoadFails(new TinyModelFile { Reshape = ("blk.0.attn_k.weight", [256, 64]) });
        Assert.Contains("tensor blk.0.attn_k.weight has shape [256, 64], but the metadata implies [256, 128]", e.Message);
        Assert.Contains("head_count_kv", e.Message);
    }

    [Fact]
    public void UnsupportedType_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Retype = ("blk.0.attn_q.weight", GgmlType.IQ2_XXS) });
        Assert.Equal("tensor blk.0.attn_q.weight has type IQ2_XXS, which EdgeLlm does not support", e.Message);
    }

    [Fact]
    public void MissingMetadataKey_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { OmitKey = "llama.block_count" });
        Assert.Equal("metadata key llama.block_count is missing", e.Message);
    }

    [Fact]
    public void ModelThatCannotFit_IsRefusedBeforeLoading()
    {
        // A KV cache for 2^30 tokens (2 layers × 128 values × f16 × K and V = 1 TiB) fits nowhere.
        var e = LoadFails(new TinyModelFile(), new ModelLoadOptions { ContextLength = 1 << 30 });
        Assert.Contains("does not fit in memory", e.Message);
    }

    [Fact]
    public void LoadFromGgufFile_LeavesFileOpen()
    {
        using var f = new TinyModelFile().Write();
        using var file = GgufFile.Open(f.Path);
        Model.Load(file).Dispose();
        Assert.NotNull(file.FindTensor("token_embd.weight"));
        Assert.Equal(TinyModelFile.Embd * 4, file.GetTensorData(file.FindTensor("output_norm.weight")!).Length);
    }

    [Fact]
    public void VocabularyMismatch_NamesTheKey()
    {
        var e = LoadFails(new TinyModelFile { Reshape = ("token_embd.weight", [256, 40]) });
        Assert.Contains("tensor token_embd.weight has shape [256, 40], but the metadata implies [256, 32]", e.Message);
        Assert.Contains("llama.vocab_size", e.Message);
    }
}
