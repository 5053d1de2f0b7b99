using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

public class CliTests
{
    private readonly ITestOutputHelper _out;

    public CliTests(ITestOutputHelper output) => _out = output;

    private static string Stories => SharedData.Model("stories260K");

    private CliRunner.Result Run(params string[] args)
    {
        var r = CliRunner.Run(args);
        _out.WriteLine($"$ edgellm {string.Join(' ', args)}  => exit {r.ExitCode}");
        _out.WriteLine(r.Stderr.Length > 2000 ? r.Stderr[^2000..] : r.Stderr);
        return r;
    }

    [Fact]
    public void Run_GreedyStory_EqualsLlamaCpp()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.Golden, "stories260K.story.json")));
        string golden = doc.RootElement.GetProperty("greedy_text").GetString()!;
        var r = Run("run", "-m", Stories, "-p", "Once upon a time", "-n", "200", "--temp", "0");
        Assert.Equal(0, r.ExitCode);
        string expected = "Once upon a time" + golden + "\n";
        int match = 0;
        while (match < Math.Min(expected.Length, r.Stdout.Length) && expected[match] == r.Stdout[match]) match++;
        _out.WriteLine($"story: {match} of {expected.Length} characters match llama.cpp's 200-token greedy story");
        Assert.Equal(expected, r.Stdout);
        Assert.Contains("load time:", r.Stderr, StringComparison.Ordinal);
        Assert.Matches(@"prompt: 5 tokens in [0-9.]+ ms, [0-9.]+ tok/s", r.Stderr);
        Assert.Matches(@"generation: 200 tokens in [0-9.]+ ms, [0-9.]+ tok/s", r.Stderr);
        Assert.Contains("warning: context 4096 exceeds the model's training context (128)", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_SameSeed_SameOutput_DifferentSeed_DifferentOutput()
    {
        string[] Args(string seed) => ["run", "-m", Stories, "-p", "Once upon a time", "-n", "40", "--temp", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", seed];
        var a = Run(Args("42"));
        var b = Run(Args("42"));
        var c = Run(Args("7"));
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, b.Stdout);
        Assert.NotEqual(a.Stdout, c.Stdout);
    }

    [Fact]
    public void Run_ShowProbs_PrintsCandidatesOnStderr()
    {
        var r = Run("run", "-m", Stories, "-p", "Once upon a time", "-n", "3", "--temp", "0", "--show-probs", "3");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("Once upon a time,", r.Stdout, StringComparison.Ordinal);
        var lines = r.Stderr.Split('\n').Where(l => l.StartsWith('[')).ToList();
        Assert.Equal(3, lines.Count);
        Assert.Matches(@"^\[','\] ','=0\.[0-9]{4} '[^']*'=0\.[0-9]{4} '[^']*'=0\.[0-9]{4}$", lines[0]);
    }

    [Fact]
    public void Run_StopString_StopsAndIsNotPrinted()
    {
        var r = Run("run", "-m", Stories, "-p", "Once upon a time", "-n", "200", "--temp", "0", "--stop", "Lily");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("Once upon a time, there was a little girl named \n", r.Stdout);
        Assert.Contains("stopped: stop string", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_ContextFull_StopsAndSaysSo()
    {
        var r = Run("run", "-m", Stories, "-p", "Once upon a time", "-c", "12", "--temp", "0");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("context is full (12 tokens)", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_PromptLongerThanContext_IsInputError()
    {
        var r = Run("run", "-m", Stories, "-p", string.Join(' ', Enumerable.Repeat("Once upon a time", 20)), "-c", "16");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("context (-c) holds 16", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "-n", "abc" }, "edgellm: usage error: --n-predict takes a whole number, got 'abc'")]
    [InlineData(new[] { "--seed", "-5" }, "edgellm: usage error: --seed takes a whole number >= 0, got '-5'")]
    [InlineData(new[] { "--temp", "warm" }, "edgellm: usage error: --temp takes a number, got 'warm'")]
    [InlineData(new[] { "-c", "1.5" }, "edgellm: usage error: --ctx-size takes a whole number, got '1.5'")]
    [InlineData(new[] { "--bogus" }, "edgellm: usage error: Unrecognized command or argument '--bogus'.")]
    public void Run_UnparsableFlag_IsUsageErrorSayingWhatTheFlagTakes(string[] extra, string expected)
    {
        var r = Run(["run", "-m", Stories, "-p", "x", .. extra]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
        Assert.Contains("Run 'edgellm run --help' for the options.", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", r.Stderr, StringComparison.Ordinal); // no .NET type names
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void NoCommand_PrintsTheCommandsAndIsUsageError()
    {
        var r = Run();
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("Generate text from a prompt", r.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--temp", "NaN", "--temp")]
    [InlineData("--temp", "-1", "--temp")]
    [InlineData("--top-p", "1.5", "--top-p")]
    [InlineData("--min-p", "Infinity", "--min-p")]
    [InlineData("--repeat-penalty", "0", "--repeat-penalty")]
    [InlineData("-t", "0", "-t")]
    [InlineData("-c", "0", "-c")]
    public void Run_InvalidSamplerValue_IsUsageError(string flag, string value, string named)
    {
        var r = Run("run", "-m", Stories, "-p", "x", flag, value);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(named, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_CtrlC_StopsCleanly_AndStillPrintsStatistics()
    {
        // An unbounded generation (-n -1, 4096-token context) that only Ctrl-C ends in time.
        var r = CliRunner.Run(["run", "-m", Stories, "-p", "Once upon a time", "--temp", "0"], interruptAfterBytes: 60);
        _out.WriteLine(r.Stderr);
        Assert.Equal(130, r.ExitCode);
        Assert.StartsWith("Once upon a time", r.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("\n", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("stopped: interrupted", r.Stderr, StringComparison.Ordinal);
        Assert.Matches(@"generation: [0-9]+ tokens in [0-9.]+ ms, [0-9.]+ tok/s", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownOption_IsUsageError() => Assert.Equal(1, Run("run", "--no-such-flag").ExitCode);

    [Fact]
    public void MissingModelFile_IsModelError()
    {
        var r = Run("run", "-m", "/nonexistent/model.gguf", "-p", "x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("/nonexistent/model.gguf", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void NaNWeights_AreModelError_NotUsageError()
    {
        // A file that parses but holds NaN weights (output_norm, F32): the sampler sees NaN logits.
        var path = Path.Combine(Path.GetTempPath(), $"edgellm-nan-{Guid.NewGuid():N}.gguf");
        try
        {
            byte[] bytes = File.ReadAllBytes(Stories);
            long at;
            using (var gguf = EdgeLlm.Gguf.GgufFile.Open(Stories))
                at = gguf.DataOffset + gguf.Tensors.Single(t => t.Name == "output_norm.weight").DataOffset;
            BitConverter.GetBytes(float.NaN).CopyTo(bytes, at);
            File.WriteAllBytes(path, bytes);
            var r = Run("run", "-m", path, "-p", "Once upon a time", "-n", "4", "--temp", "0");
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("model error: logit 0 is NaN", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void CorruptModel_IsModelError_WithOffset()
    {
        var path = Path.Combine(Path.GetTempPath(), $"edgellm-corrupt-{Guid.NewGuid():N}.gguf");
        try
        {
            File.WriteAllBytes(path, File.ReadAllBytes(Stories).AsSpan(0, 5000).ToArray());
            var r = Run("run", "-m", path, "-p", "x");
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("byte offset", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Offline_WithoutModel_SaysSoAndSuggestsM()
    {
        var r = Run("tokenize", "-p", "hello");
        Assert.Equal(3, r.ExitCode);
        Assert.Contains("-m", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokenize_PrintsJsonIds()
    {
        var r = Run("tokenize", "-m", Stories, "-p", "Once upon a time");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[1, 403, 407, 261, 378]\n", r.Stdout);
        var noBos = Run("tokenize", "-m", Stories, "-p", "Once upon a time", "--no-bos");
        Assert.Equal("[403, 407, 261, 378]\n", noBos.Stdout);
    }

    [Fact]
    public void Tokenize_SpecialFlag_ParsesControlTokens()
    {
        var vocab = Path.Combine(SharedData.Tokenizer, "ggml-vocab-llama-bpe.gguf");
        var plain = Run("tokenize", "-m", vocab, "-p", "<|eot_id|>", "--no-bos");
        var special = Run("tokenize", "-m", vocab, "-p", "<|eot_id|>", "--no-bos", "--special");
        Assert.Equal(0, special.ExitCode);
        Assert.Equal("[128009]\n", special.Stdout);
        Assert.NotEqual(special.Stdout, plain.Stdout);
    }

    [Fact]
    public void Logits_WritesGoldenFormat_CloseToLlamaCpp()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.Golden, "stories260K.p1.json")));
        var ids = doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var outPath = Path.Combine(Path.GetTempPath(), $"edgellm-logits-{Guid.NewGuid():N}.f32");
        try
        {
            var r = Run("logits", "-m", Stories, "--ids", string.Join(',', ids), "-o", outPath);
            Assert.Equal(0, r.ExitCode);
            Assert.Empty(r.Stdout);
            var ours = ReadF32(outPath);
            var golden = ReadF32(Path.Combine(SharedData.Golden, "stories260K.p1.logits.f32"));
            Assert.Equal(golden.Length, ours.Length);
            double mean = golden.Average(x => (double)x);
            double std = Math.Sqrt(golden.Average(x => (x - mean) * (x - mean)));
            double maxDiff = ours.Zip(golden, (a, b) => Math.Abs((double)a - b)).Max();
            _out.WriteLine($"stories260K p1 via CLI: max|ours-golden|/std = {maxDiff / std:E3}");
            Assert.True(maxDiff / std <= 5e-3);
        }
        finally { File.Delete(outPath); }
    }

    [Fact]
    public void Logits_BadIds_IsUsageOrInputError()
    {
        Assert.Equal(1, Run("logits", "-m", Stories, "--ids", "1,x", "-o", "/tmp/x.f32").ExitCode);
        Assert.Equal(2, Run("logits", "-m", Stories, "--ids", "1,99999", "-o", "/tmp/x.f32").ExitCode);
    }

    [Fact]
    public void Info_SaysHowTheModelAttends_SlidingWindowsLongRopeSoftcaps()
    {
        Assert.Contains("attention: 8 query / 4 KV heads of 8; rope normal base 10000", Run("info", "-m", Stories).Stdout, StringComparison.Ordinal);
        string dir = Path.Combine(Path.GetTempPath(), $"edgellm-info-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string gemma2 = Path.Combine(dir, "gemma2.gguf"), phi3 = Path.Combine(dir, "phi3.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-gemma2", "tiny gemma2", "gemma2", 128, 4, 4, 2, 384, 400, 256,
                10000f, 1e-6f, true, false, EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 8,
                FinalLogitSoftcap: 30f, AttnLogitSoftcap: 50f), "F32", gemma2, seed: 1);
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-phi3", "tiny phi3", "phi3", 256, 2, 4, 2, 512, 300, 4096,
                10000f, 1e-5f, false, false, EdgeLlm.Synth.SynthVocabKind.SentencePiece, LongRope: new EdgeLlm.Synth.LongRopeScaling(512)), "F32", phi3, seed: 1);
            var r = Run("info", "-m", gemma2);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("attention: 4 query / 2 KV heads of 64; rope NEOX base 10000; sliding window 8 in 2 of 4 layers (rope base 10000 there); "
                + "scores soft-capped at 50; logits soft-capped at 30; embeddings × 11.313708", r.Stdout, StringComparison.Ordinal);
            r = Run("info", "-m", phi3);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("LongRoPE: short factors for a context up to 512 tokens, long beyond; attention factor 1.1", r.Stdout, StringComparison.Ordinal);
            string smollm3 = Path.Combine(dir, "smollm3.gguf"), granite = Path.Combine(dir, "granite.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-smollm3", "tiny smollm3", "smollm3", 128, 8, 4, 2, 256, 700, 256,
                5e6f, 1e-6f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe), "F32", smollm3, seed: 1);
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-granite", "tiny granite", "granite", 128, 2, 4, 2, 256, 320, 256,
                1e7f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.SmolLmBpe, Granite: new EdgeLlm.Synth.GraniteMultipliers(12f, 0.22f, 0.015625f, 8f)),
                "F32", granite, seed: 1);
            Assert.Contains("attention: 4 query / 2 KV heads of 32; rope normal base 5000000; no rope in 2 of 8 layers", Run("info", "-m", smollm3).Stdout, StringComparison.Ordinal);
            Assert.Contains("rope normal base 10000000; scores scaled by 0.015625; embeddings × 12; residual branches × 0.22; logits / 8",
                Run("info", "-m", granite).Stdout, StringComparison.Ordinal);
            string lfm2 = Path.Combine(dir, "lfm2.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-lfm2", "tiny lfm2", "lfm2", 128, 3, 4, 2, 256, 700, 256, 1e6f, 1e-5f,
                true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [1]), "F32", lfm2, seed: 1);
            r = Run("info", "-m", lfm2);
            Assert.Contains("attention: 4 query / 2 KV heads of 32; rope NEOX base 1000000; short convolutions of 3 taps instead in 2 of 3 layers", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("attention.head_count_kv: [0, 2, 0]", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("feed-forward: SwiGLU of 256", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("feed-forward: GeGLU of 384", Run("info", "-m", gemma2).Stdout, StringComparison.Ordinal);

            // A mixture of experts (Granite MoE Shared): the experts, the shared one, and the weights a token reads
            // (3 blocks × 3 tensors × 6 experts of 128 × 64 f32 = 884,736 bytes of experts, 4 of 6 unread).
            string moe = Path.Combine(dir, "granitemoe.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-granitemoe", "tiny granitemoe", "granitemoe", 128, 3, 4, 2, 64, 320, 256,
                100f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.SmolLmBpe, Granite: new EdgeLlm.Synth.GraniteMultipliers(2f, 0.5f, 0.25f, 3f),
                Experts: new EdgeLlm.Synth.SynthExperts(6, 2, 64, 96)), "F32", moe, seed: 1);
            r = Run("info", "-m", moe);
            Assert.Equal(0, r.ExitCode);
            using (var f = EdgeLlm.Gguf.GgufFile.Open(moe))
            {
                long all = f.Tensors.Sum(t => t.ByteSize), unread = 3 * 3 * 4 * 128 * 64 * 4;
                Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"feed-forward: mixture of 6 SwiGLU experts of 64, 2 per token (weights normalized), plus a shared expert of 96; a token reads {(all - unread) / 1048576.0:F1} of {all / 1048576.0:F1} MiB of weights"),
                    r.Stdout, StringComparison.Ordinal);
            }
            Assert.Contains("forward pass: generic", r.Stdout, StringComparison.Ordinal);
            // --backend auto runs it on the CPU (the Vulkan backend declines mixtures of experts, or there is no device).
            r = Run("run", "-m", moe, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"generation: [0-9]+ tokens in [0-9.]+ ms", r.Stderr);

            // EXAONE 4: post-norms only; it runs (on the CPU: the Vulkan backend declines it).
            string exaone = Path.Combine(dir, "exaone4.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-exaone4", "tiny exaone4", "exaone4", 128, 2, 4, 2, 256, 700, 256,
                1e6f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, WriteHeadLengths: true), "F32", exaone, seed: 1);
            r = Run("info", "-m", exaone);
            Assert.Contains("attention: 4 query / 2 KV heads of 32; rope NEOX base 1000000; no norm before attention or feed-forward, their outputs normed (post-norms only)", r.Stdout, StringComparison.Ordinal);
            r = Run("run", "-m", exaone, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);

            // OLMo 3: post-norms, whole-row Q/K norms, the window in three layers of four, YaRN on the global layers.
            string olmo = Path.Combine(dir, "olmo3.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-olmo3", "tiny olmo3", "olmo2", 128, 4, 4, 2, 256, 700, 256,
                500000f, 1e-6f, false, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, SlidingWindow: 8, Yarn: new EdgeLlm.Synth.YarnScaling(4f, 16, 1.1386294f)),
                "F32", olmo, seed: 1);
            r = Run("info", "-m", olmo);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("sliding window 8 in 3 of 4 layers (rope base 500000 there)", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("no norm before attention or feed-forward, their outputs normed (post-norms only); Q/K norms over whole rows", r.Stdout, StringComparison.Ordinal);
            r = Run("run", "-m", olmo, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"generation: [0-9]+ tokens in [0-9.]+ ms", r.Stderr);

            // Ministral 3: YaRN and the queries' temperature on info's attention line; it runs.
            string ministral = Path.Combine(dir, "mistral3.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-mistral3", "tiny mistral3", "mistral3", 128, 2, 4, 2, 256, 700, 256,
                1e6f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, WriteHeadLengths: true, HeadLength: 64,
                Yarn: new EdgeLlm.Synth.YarnScaling(4f, 16), AttnTemperatureScale: 0.1f), "F32", ministral, seed: 1);
            r = Run("info", "-m", ministral);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("YaRN over an original 16 tokens", r.Stdout, StringComparison.Ordinal);
            Assert.Contains("query temperature 1 + 0.1·ln(⌊pos / 16⌋ + 1)", r.Stdout, StringComparison.Ordinal);
            r = Run("run", "-m", ministral, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);

            // Hunyuan (dense): the head norms after the rope, on info's attention line; it runs.
            string hunyuan = Path.Combine(dir, "hunyuan.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-hunyuan", "tiny hunyuan", "hunyuan-dense", 128, 2, 4, 2, 384, 400, 256,
                1e6f, 1e-5f, false, false, EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128), "F32", hunyuan, seed: 1);
            r = Run("info", "-m", hunyuan);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("attention: 4 query / 2 KV heads of 128; rope NEOX base 1000000; Q/K head norms after the rope", r.Stdout, StringComparison.Ordinal);
            r = Run("run", "-m", hunyuan, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);

            // LFM2-MoE: the sigmoid router with its choice bias and the dense blocks before the experts.
            string lfm2moe = Path.Combine(dir, "lfm2moe.gguf");
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-lfm2moe", "tiny lfm2moe", "lfm2moe", 128, 4, 4, 2, 256, 700, 256,
                1e6f, 1e-5f, true, false, EdgeLlm.Synth.SynthVocabKind.Llama3Bpe, AttentionLayers: [1],
                Experts: new EdgeLlm.Synth.SynthExperts(8, 2, 64, leadingDenseBlocks: 1)), "F32", lfm2moe, seed: 1);
            r = Run("info", "-m", lfm2moe);
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"feed-forward: mixture of 8 SwiGLU experts of 64, 2 per token \(weights normalized\), sigmoid router with a per-expert choice bias, after 1 dense block \(SwiGLU of 256\); a token reads [0-9.]+ of [0-9.]+ MiB of weights", r.Stdout);
            Assert.Contains("short convolutions of 3 taps instead in 3 of 4 layers", r.Stdout, StringComparison.Ordinal);
            r = Run("run", "-m", lfm2moe, "-p", "hello", "-n", "4", "--backend", "auto", "--temp", "0");
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"generation: [0-9]+ tokens in [0-9.]+ ms", r.Stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Info_DescribesModel()
    {
        var r = Run("info", "-m", Stories);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("architecture: llama", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("embedding_length: 64", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("F32", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("512 tokens", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("chat template: none", r.Stdout, StringComparison.Ordinal);
        Assert.Matches("kernel path: (avx512|avx2|neon|neon-dotprod|sse|scalar)", r.Stdout);
        // The test build specializes every config (EdgeLlmSpecializations defaults to *): info lists them all.
        var names = EdgeLlm.Specialized.SpecializationRegistry.All.Select(s => s.Name).Order(StringComparer.Ordinal).ToArray();
        Assert.Contains("stories260k-f32", names);
        Assert.Contains($"specializations in this build: {names.Length} ({string.Join(", ", names)})", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_Json_HasTheIssueFields_AndTheWeightLayout()
    {
        string model = SharedData.Model("syn-llama-q4_0");
        bool repacks = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        // syn-llama-q4_0 (llama.cpp's Q4_0 file) keeps output.weight in Q6_K: repacked as q6_Kx8.
        foreach (var (env, layout) in new[] { ((string?)null, repacks ? "q6_Kx8+q4_0x8" : "file"), ("0", "file") })
        {
            var r = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "4", "-r", "2", "--json"],
                new Dictionary<string, string?> { ["EDGELLM_REPACK"] = env });
            Assert.True(r.ExitCode == 0, r.Stderr);
            _out.WriteLine($"EDGELLM_REPACK={env ?? "(unset)"}: {r.Stdout.Trim()}");
            using var doc = JsonDocument.Parse(r.Stdout);
            var o = doc.RootElement;
            Assert.Equal(model, o.GetProperty("model").GetString());
            Assert.Equal(1, o.GetProperty("threads").GetInt32());
            Assert.Equal(8, o.GetProperty("pp").GetInt32());
            Assert.Equal(4, o.GetProperty("tg").GetInt32());
            Assert.Equal(2, o.GetProperty("pp_all").GetArrayLength());
            Assert.Equal(2, o.GetProperty("tg_all").GetArrayLength());
            Assert.Equal(o.GetProperty("pp_all").EnumerateArray().Max(e => e.GetDouble()), o.GetProperty("pp_tps").GetDouble());
            Assert.True(o.GetProperty("tg_tps").GetDouble() > 0);
            Assert.Matches("^(avx512|avx2|neon|neon-dotprod|sse|scalar)$", o.GetProperty("kernel").GetString());
            Assert.Equal(layout, o.GetProperty("weight_layout").GetString());
            Assert.Contains("memory while generating: VmRSS", r.Stderr, StringComparison.Ordinal);
        }
    }

    [Theory]
    // The file type names the row, not the type with the most bytes: stories260K-q4_0 keeps
    // ffn_down (and most of its bytes) in F32, and syn-qwen2-q4_k_m is a Q4_K_M mix.
    [InlineData("stories260K-q4_0", "| llama 292.8K Q4_0 ")]
    [InlineData("syn-qwen2-q4_k_m", "| qwen2 2.5M Q4_K_M ")]
    public void Bench_Table_NamesTheModelByItsFileType(string name, string expected)
    {
        var r = CliRunner.Run(["bench", "-m", SharedData.Model(name), "-t", "1", "-p", "4", "-n", "0", "-r", "1"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains(expected, r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_Depth_MeasuresAfterFillingTheContext()
    {
        string model = SharedData.Model("syn-llama-q4_0");
        var r = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "4", "-r", "2", "-d", "40", "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        _out.WriteLine(r.Stdout.Trim());
        using var doc = JsonDocument.Parse(r.Stdout);
        var o = doc.RootElement;
        Assert.Equal(40, o.GetProperty("depth").GetInt32());
        Assert.Equal(2, o.GetProperty("pp_all").GetArrayLength());
        Assert.True(o.GetProperty("tg_tps").GetDouble() > 0);
        // The KV cache holds the depth as well as the test (45 positions of cache for tg4 after 40 tokens).
        Assert.Contains("KV cache", r.Stderr, StringComparison.Ordinal);

        var table = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "4", "-r", "1", "--n-depth", "16"]);
        Assert.True(table.ExitCode == 0, table.Stderr);
        Assert.Contains("|     pp8 @ d16 |", table.Stdout, StringComparison.Ordinal);
        Assert.Contains("|     tg4 @ d16 |", table.Stdout, StringComparison.Ordinal);

        var plain = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "0", "-r", "1", "--json"]);
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        using var plainDoc = JsonDocument.Parse(plain.Stdout);
        Assert.Equal(0, plainDoc.RootElement.GetProperty("depth").GetInt32());

        var bad = CliRunner.Run(["bench", "-m", model, "-p", "8", "-n", "0", "-d", "-1"]);
        Assert.Equal(1, bad.ExitCode); // usage error
        Assert.Contains("-d must be >= 0, got -1", bad.Stderr, StringComparison.Ordinal);
        var huge = CliRunner.Run(["bench", "-m", model, "-p", "8", "-n", "0", "-d", "2147483647"]);
        Assert.Equal(1, huge.ExitCode);
        Assert.Contains("more positions than a context can hold", huge.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_VsGeneric_AlternatesBothPaths_AndReportsTheRatios()
    {
        string model = SharedData.Model("syn-llama-q4_0");
        var r = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "4", "-r", "3", "--json", "--vs-generic"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        _out.WriteLine(r.Stdout.Trim());
        using var doc = JsonDocument.Parse(r.Stdout);
        var o = doc.RootElement;
        Assert.Equal("syn-llama-q4_0", o.GetProperty("specialization").GetString());
        var g = o.GetProperty("generic");
        Assert.Equal(3, o.GetProperty("pp_all").GetArrayLength());
        Assert.Equal(3, g.GetProperty("pp_all").GetArrayLength());
        Assert.Equal(3, g.GetProperty("tg_all").GetArrayLength());
        double gpp = g.GetProperty("pp_all").EnumerateArray().Max(e => e.GetDouble());
        Assert.Equal(gpp, g.GetProperty("pp_tps").GetDouble());
        Assert.Equal(o.GetProperty("pp_tps").GetDouble() / gpp, o.GetProperty("pp_ratio").GetDouble(), 12);
        Assert.Equal(o.GetProperty("tg_tps").GetDouble() / g.GetProperty("tg_tps").GetDouble(), o.GetProperty("tg_ratio").GetDouble(), 12);
        Assert.True(o.GetProperty("pp_ratio_paired_median").GetDouble() > 0);
        // Three pairs: the sign-test interval is their whole range, with 75% confidence, around the median.
        var iv = o.GetProperty("pp_ratio_paired_interval");
        Assert.Equal(0.75, iv.GetProperty("confidence").GetDouble(), 12);
        var ratios = o.GetProperty("pp_all").EnumerateArray().Zip(g.GetProperty("pp_all").EnumerateArray(), (a, b) => a.GetDouble() / b.GetDouble()).ToArray();
        Assert.Equal(ratios.Min(), iv.GetProperty("low").GetDouble(), 12);
        Assert.Equal(ratios.Max(), iv.GetProperty("high").GetDouble(), 12);
        Assert.InRange(o.GetProperty("pp_ratio_paired_median").GetDouble(), ratios.Min(), ratios.Max());
        // Eight pairs: the 2nd smallest and 2nd largest ratio, 1 - 2·9/256 = 93% (the 3rd would give 71%).
        var eight = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "0", "-r", "8", "--json", "--vs-generic"]);
        Assert.True(eight.ExitCode == 0, eight.Stderr);
        using (var doc8 = JsonDocument.Parse(eight.Stdout))
        {
            var o8 = doc8.RootElement;
            var r8 = o8.GetProperty("pp_all").EnumerateArray().Zip(o8.GetProperty("generic").GetProperty("pp_all").EnumerateArray(), (a, b) => a.GetDouble() / b.GetDouble()).Order().ToArray();
            var iv8 = o8.GetProperty("pp_ratio_paired_interval");
            Assert.Equal(1 - 2 * 9 / 256.0, iv8.GetProperty("confidence").GetDouble(), 12);
            Assert.Equal(r8[1], iv8.GetProperty("low").GetDouble(), 12);
            Assert.Equal(r8[6], iv8.GetProperty("high").GetDouble(), 12);
            Assert.Equal(JsonValueKind.Null, o8.GetProperty("tg_ratio_paired_interval").ValueKind); // -n 0: no generation test
        }

        var table = CliRunner.Run(["bench", "-m", model, "-t", "1", "-p", "8", "-n", "0", "-r", "2", "--vs-generic"]);
        Assert.True(table.ExitCode == 0, table.Stderr);
        Assert.Contains("|   pp8 generic |", table.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"specialized 'syn-llama-q4_0' / generic, alternating in one process: pp8 [0-9.]+× \(best of 2 each; median of pairs [0-9.]+×, 50% interval [0-9.]+–[0-9.]+×\)", table.Stdout);

        // Nothing to compare against: a file no config matches, or --generic as well.
        var none = CliRunner.Run(["bench", "-m", SharedData.Model("syn-llama-q5_0"), "-p", "8", "-n", "0", "--vs-generic"]);
        Assert.Equal(1, none.ExitCode); // usage error
        Assert.Contains("--vs-generic: no compile-time specialization matches", none.Stderr, StringComparison.Ordinal);
        var both = CliRunner.Run(["bench", "-m", model, "-p", "8", "-n", "0", "--vs-generic", "--generic"]);
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("--generic and --vs-generic exclude each other", both.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_NamesTheWeightLayout()
    {
        var r = Run("info", "-m", SharedData.Model("syn-llama-q4_0"));
        Assert.Equal(0, r.ExitCode);
        bool repacks = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        Assert.Contains(repacks ? "weight layout: q6_Kx8, q4_0x8 repacked at load" : "weight layout: as in the file", r.Stdout, StringComparison.Ordinal);
        var f32 = Run("info", "-m", Stories);
        Assert.Contains("weight layout: as in the file (memory-mapped)", f32.Stdout, StringComparison.Ordinal);
    }

    private static float[] ReadF32(string path)
    {
        var b = File.ReadAllBytes(path);
        var f = new float[b.Length / 4];
        Buffer.BlockCopy(b, 0, f, 0, b.Length);
        return f;
    }
}

public class CliQuantizeTests
{
    private readonly ITestOutputHelper _out;

    public CliQuantizeTests(ITestOutputHelper output) => _out = output;

    [Theory]
    [InlineData("q8_0", "syn-llama-q8_0")]
    [InlineData("Q4_K_M", "syn-llama-q4_k_m")]
    public void Quantize_MatchesLlamaCppTensorForTensor(string type, string reference)
    {
        var outPath = Path.Combine(Path.GetTempPath(), $"edgellm-q-{Guid.NewGuid():N}.gguf");
        try
        {
            var r = CliRunner.Run(["quantize", SharedData.Model("syn-llama-f32"), outPath, type, "-t", "2"]);
            _out.WriteLine(r.Stderr);
            Assert.Equal(0, r.ExitCode);
            using var ours = EdgeLlm.Gguf.GgufFile.Open(outPath);
            using var theirs = EdgeLlm.Gguf.GgufFile.Open(SharedData.Model(reference));
            Assert.Equal(theirs.Tensors.Count, ours.Tensors.Count);
            int identical = 0;
            foreach (var t in theirs.Tensors)
            {
                var o = ours.FindTensor(t.Name)!;
                Assert.Equal(t.Type, o.Type);
                if (ours.GetTensorData(o).SequenceEqual(theirs.GetTensorData(t))) identical++;
            }
            _out.WriteLine($"{type}: {identical}/{theirs.Tensors.Count} tensors byte-identical to llama.cpp's {reference}.gguf");
            Assert.Equal(theirs.Tensors.Count, identical);
            Assert.Equal(theirs.GetInt("general.file_type"), ours.GetInt("general.file_type"));

            var info = CliRunner.Run(["info", "-m", outPath]);
            Assert.Equal(0, info.ExitCode);
            Assert.Contains(type.ToUpperInvariant().StartsWith("Q8", StringComparison.Ordinal) ? "Q8_0" : "Q4_K", info.Stdout, StringComparison.Ordinal);

            var requant = CliRunner.Run(["quantize", outPath, outPath + ".2", "q4_0"]);
            Assert.Equal(2, requant.ExitCode);
            Assert.Contains("--allow-requantize", requant.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(outPath);
            File.Delete(outPath + ".2");
        }
    }

    [Fact]
    public void Quantize_UnknownType_IsUsageError()
    {
        var r = CliRunner.Run(["quantize", SharedData.Model("syn-llama-f32"), "/tmp/never.gguf", "q9_9"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("q9_9", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("(Parameter", r.Stderr, StringComparison.Ordinal); // a .NET parameter name means nothing on the command line
    }

    [Fact]
    public void Run_UnsupportedTensorType_NamesTensorAndType()
    {
        var path = Path.Combine(Path.GetTempPath(), $"edgellm-iq2-{Guid.NewGuid():N}.gguf");
        try
        {
            using (var src = EdgeLlm.Gguf.GgufFile.Open(SharedData.Model("syn-llama-f32")))
            {
                var w = new EdgeLlm.Gguf.GgufWriter().CopyMetadata(src);
                foreach (var t in src.Tensors)
                {
                    if (t.Name == "blk.0.attn_q.weight")
                    {
                        // Same shape [256, 256], stored as IQ2_XXS (66 bytes per 256 values), which EdgeLlm does not compute with.
                        w.AddTensor(t.Name, EdgeLlm.Gguf.GgmlType.IQ2_XXS, t.Dims, new byte[256 * 66]);
                    }
                    else w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
                }
                w.Write(path);
            }
            var r = CliRunner.Run(["run", "-m", path, "-p", "x", "-n", "1"]);
            _out.WriteLine(r.Stderr);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("blk.0.attn_q.weight", r.Stderr, StringComparison.Ordinal);
            Assert.Contains("IQ2_XXS", r.Stderr, StringComparison.Ordinal);
        }
        finally { File.Delete(path); }
    }
}
