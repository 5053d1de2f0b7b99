using System.Text.Json;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary>
/// <c>-ctk</c>/<c>-ctv</c> (<c>--cache-type-k</c>/<c>--cache-type-v</c>) from the CLI: they reach the engine (the
/// logits are the library's with that cache, not the f16 cache's), <c>bench</c> and <c>perplexity</c> take them,
/// and types the model or backend cannot hold are usage errors that say why.
/// </summary>
public sealed class CliKvCacheTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgellm-kv-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static string Qwen => SharedData.Model("syn-qwen2-q8_0"); // heads of 64

    [Fact]
    public void Logits_WithAQuantizedCache_AreTheLibrarys()
    {
        int[] ids = [1, 17, 230, 45, 99, 301, 7, 64, 128, 255, 12, 88];
        string file = Path.Combine(_dir, "q.f32"), f16File = Path.Combine(_dir, "f.f32");
        var r = CliRunner.Run(["logits", "-m", Qwen, "--ids", string.Join(',', ids), "-o", file, "-c", "64", "-t", "2", "-ctk", "q4_0", "--cache-type-v", "Q8_0"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(0, CliRunner.Run(["logits", "-m", Qwen, "--ids", string.Join(',', ids), "-o", f16File, "-c", "64", "-t", "2"]).ExitCode);
        float[] cli = Floats(file), f16 = Floats(f16File);
        float[] want;
        using (var model = Model.Load(Qwen))
        using (var ctx = new InferenceContext(model, 64, threads: 2, KvCacheType.Q4_0, KvCacheType.Q8_0))
            want = ctx.Eval(ids, allLogits: true);
        Assert.Equal(want, cli);
        double diff = cli.Zip(f16, (a, b) => Math.Abs((double)a - b)).Max();
        output.WriteLine($"q4_0/q8_0 cache against f16: max |diff| {diff}");
        Assert.True(diff > 0, "the quantized cache gave the f16 cache's logits: the flags did not reach the engine");
    }

    [Fact]
    public void Run_WithAQuantizedCache_Generates()
    {
        var r = CliRunner.Run(["run", "-m", Qwen, "-p", "Hello", "-n", "8", "--temp", "0", "-c", "128", "-t", "2", "-ctk", "q8_0", "-ctv", "q4_0"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith("Hello", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("generation:", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-ctk", "q5_1", "--cache-type-k takes f16, q8_0 or q4_0, got 'q5_1'")]
    [InlineData("--cache-type-v", "f32", "--cache-type-v takes f16, q8_0 or q4_0, got 'f32'")]
    public void UnknownCacheType_IsAUsageError(string flag, string value, string message)
    {
        var r = CliRunner.Run(["run", "-m", Qwen, "-p", "Hi", "-n", "1", flag, value]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void QuantizedCache_OnHeadsOf8_OrOnVulkan_IsAUsageErrorSayingWhy()
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "Once", "-n", "1", "-ctk", "q8_0"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("a q8_0 K cache quantizes each head in blocks of 32 values, but this model's heads have 8", r.Stderr, StringComparison.Ordinal);
        r = CliRunner.Run(["run", "-m", Qwen, "-p", "Hi", "-n", "1", "-ctv", "q8_0", "--backend", "vulkan"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("a quantized KV cache runs on the CPU backend only", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_GivesTheCacheSizePerType()
    {
        // syn-qwen2: 3 layers, 2 KV heads of 64: 3 × 2 × 128 values a token, 1.5 MiB in f16 for 1024 tokens; 34 and 18 bytes per 32 values.
        Assert.Contains("kv cache per 1024 tokens: f16 1.5 MiB, q8_0 0.8 MiB, q4_0 0.4 MiB (-ctk/-ctv)", CliRunner.Run(["info", "-m", Qwen]).Stdout, StringComparison.Ordinal);
        Assert.Contains("kv cache per 1024 tokens: f16 ", CliRunner.Run(["info", "-m", SharedData.Model("stories260K")]).Stdout, StringComparison.Ordinal);
        Assert.Contains("(f16 only: heads of 8 are no whole blocks of 32)", CliRunner.Run(["info", "-m", SharedData.Model("stories260K")]).Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_ReportsTheCacheTypes()
    {
        var r = CliRunner.Run(["bench", "-m", Qwen, "-t", "2", "-p", "16", "-n", "4", "-r", "1", "-ctk", "q8_0", "-ctv", "q8_0", "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal("q8_0", doc.RootElement.GetProperty("type_k").GetString());
        Assert.Equal("q8_0", doc.RootElement.GetProperty("type_v").GetString());
        Assert.Contains("(K q8_0, V q8_0)", r.Stderr, StringComparison.Ordinal);
        var table = CliRunner.Run(["bench", "-m", Qwen, "-t", "2", "-p", "0", "-n", "4", "-r", "1", "-ctk", "q4_0"]);
        Assert.Contains("tg4 K q4_0 V f16", table.Stdout, StringComparison.Ordinal);
    }

    /// <summary>
    /// Gemma's sliding-window layers keep a ring of their window (see SlidingWindowCacheTests) unless <c>--swa-full</c>:
    /// <c>info</c> says how long it is, <c>bench</c>'s memory line shows each, <c>logits</c> through the ring equal the full cache's.
    /// </summary>
    [Fact]
    public void SwaFull_KeepsEveryPosition_TheDefaultRingGivesTheSameLogits()
    {
        // Seven layers, six local (window 72: a ring of 704 positions), one global; one KV head of 64.
        string gemma = Path.Combine(_dir, "gemma3.gguf");
        EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("tiny-gemma3", "tiny gemma3", "gemma3", 128, 7, 4, 1, 384, 400, 4096, 1e6f, 1e-6f, true, false,
            EdgeLlm.Synth.SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 72), "Q8_0", gemma, seed: 2);
        Assert.Contains("its 6 sliding-window layers of 7 keep at most 704 positions at any context (--swa-full: all)", CliRunner.Run(["info", "-m", gemma]).Stdout, StringComparison.Ordinal);

        // 4,004 positions: 7 layers × 4,032 × 256 bytes (f16 K and V) = 6.9 MiB in full; 4,032 × 256 + 6 × 704 × 256 = 2.0 MiB with the rings.
        var ring = CliRunner.Run(["bench", "-m", gemma, "-t", "2", "-p", "0", "-n", "4", "-r", "1", "-d", "4000"]);
        var full = CliRunner.Run(["bench", "-m", gemma, "-t", "2", "-p", "0", "-n", "4", "-r", "1", "-d", "4000", "--swa-full"]);
        Assert.True(ring.ExitCode == 0 && full.ExitCode == 0, ring.Stderr + full.Stderr);
        Assert.Contains("KV cache 2 MiB", ring.Stderr, StringComparison.Ordinal);
        Assert.Contains("KV cache 6 MiB", full.Stderr, StringComparison.Ordinal);

        int[] ids = Enumerable.Range(0, 900).Select(i => (i * 37 + 11) % 400).ToArray();
        string a = Path.Combine(_dir, "ring.f32"), b = Path.Combine(_dir, "full.f32");
        Assert.Equal(0, CliRunner.Run(["logits", "-m", gemma, "--ids", string.Join(',', ids), "-o", a, "-c", "1024", "-t", "2"]).ExitCode);
        Assert.Equal(0, CliRunner.Run(["logits", "-m", gemma, "--ids", string.Join(',', ids), "-o", b, "-c", "1024", "-t", "2", "--swa-full"]).ExitCode);
        Assert.Equal(Floats(b), Floats(a));
    }

    /// <summary>perplexity -ctk/-ctv with --reference on the same file: the reference keeps an f16 cache, so the KL divergence is what the quantized cache costs.</summary>
    [Fact]
    public void Perplexity_AgainstItsF16Self_MeasuresWhatTheCacheCosts()
    {
        string text = Path.Combine(_dir, "story.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat(CliPerplexityTests.Story, 3)));
        double Kld(string type)
        {
            var r = CliRunner.Run(["perplexity", "-m", Qwen, "--reference", Qwen, "-f", text, "-c", "64", "-t", "2", "--chunks", "2", "-ctk", type, "-ctv", type, "--json"]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            using var doc = JsonDocument.Parse(r.Stdout);
            return doc.RootElement.GetProperty("kld").GetProperty("mean").GetDouble();
        }
        double f16 = Kld("f16"), q8 = Kld("q8_0"), q4 = Kld("q4_0");
        output.WriteLine($"mean KL divergence from the f16 cache: f16 {f16}, q8_0 {q8}, q4_0 {q4}");
        Assert.Equal(0, f16, 1e-9);
        Assert.True(q8 > 0 && q4 > q8, $"q8_0 {q8}, q4_0 {q4}");
    }

    private static float[] Floats(string path)
    {
        byte[] b = File.ReadAllBytes(path);
        var f = new float[b.Length / 4];
        Buffer.BlockCopy(b, 0, f, 0, b.Length);
        return f;
    }
}
