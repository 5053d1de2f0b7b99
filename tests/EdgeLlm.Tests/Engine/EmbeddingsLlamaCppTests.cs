using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Synth;
using EdgeLlm.Tests.Tokenizers;
using EdgeLlm.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// Text embeddings (<see cref="TextEmbedder"/>, <c>edgellm embed</c>) against llama.cpp's own (LLamaSharp 0.30.0's
/// <c>LLamaEmbedder</c> in the same process) on a small Qwen3 file (Qwen3-Embedding's architecture) that names its
/// pooling in <c>qwen3.pooling_type</c>: the same vector, up to float order, for last, mean and first-token pooling.
/// </summary>
public sealed class EmbeddingsLlamaCppTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-embed-" + Guid.NewGuid().ToString("N"));

    public EmbeddingsLlamaCppTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A Qwen3 file of tiny shape whose metadata names <paramref name="pooling"/>.</summary>
    private string Write(PoolingType pooling)
    {
        var shape = new SynthShape("tiny-qwen3", "tiny qwen3", "qwen3", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, true, false, SynthVocabKind.Qwen2Bpe,
            WriteHeadLengths: true, HeadLength: 128);
        string plain = Path.Combine(_dir, "plain.gguf"), path = Path.Combine(_dir, $"qwen3-{pooling}.gguf");
        ModelSynthesizer.Synthesize(shape, "F32", plain, seed: 5);
        using var src = GgufFile.Open(plain);
        var w = new GgufWriter().CopyMetadata(src).Set("qwen3.pooling_type", (uint)pooling);
        foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
        w.Write(path);
        return path;
    }

    [Theory]
    [InlineData(PoolingType.Last, LLamaPoolingType.Last)]
    [InlineData(PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData(PoolingType.Cls, LLamaPoolingType.CLS)]
    public async Task Embedding_MatchesLlamaCpp(PoolingType pooling, LLamaPoolingType theirPooling)
    {
        string path = Write(pooling);
        const string Text = "the quick brown fox jumps over the lazy dog";
        float[] ours;
        int tokens;
        using (var model = Model.Load(path))
        using (var ctx = new InferenceContext(model, 64, threads: 1))
        {
            var embedder = new TextEmbedder(ctx, Tokenizer.FromGguf(model.File));
            Assert.Equal(pooling, embedder.Pooling); // read from the file
            ours = embedder.Embed(Text);
            tokens = embedder.Tokenize(Text).Length;
        }

        _ = LlamaCppOracle.NativeLibrary;
        var p = new ModelParams(path) { Embeddings = true, PoolingType = theirPooling, ContextSize = 64, GpuLayerCount = 0, Threads = 1 };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var llama = new LLamaEmbedder(weights, p);
        var got = await llama.GetEmbeddings(Text);
        float[] theirs = Assert.Single(got);
        TextEmbedder.Normalize(theirs, 2); // whatever LLamaSharp returns, compare directions at unit length

        Assert.Equal(ours.Length, theirs.Length);
        double norm = Math.Sqrt(ours.Sum(x => (double)x * x));
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"{pooling}: {tokens} tokens, {ours.Length} dimensions, |ours| = {norm:F6}, max |ours - llama.cpp| = {maxDiff:E2}");
        Assert.InRange(norm, 0.99999, 1.00001);
        Assert.True(maxDiff < 1e-3, $"max |ours - llama.cpp| = {maxDiff}");
    }

    [Fact]
    public void Pooling_NamesWhatIsWrong()
    {
        string path = Write(PoolingType.None);
        using var model = Model.Load(path);
        using var ctx = new InferenceContext(model, 16, threads: 1);
        var embedder = new TextEmbedder(ctx, Tokenizer.FromGguf(model.File));
        Assert.Equal(PoolingType.None, embedder.Pooling);
        Assert.Contains("pooling is none", Assert.Throws<InvalidOperationException>(() => embedder.Embed("hello")).Message, StringComparison.Ordinal);
        Assert.Equal(embedder.Tokenize("hello world").Length, embedder.EmbedTokens("hello world").Length);
        var mean = new TextEmbedder(ctx, Tokenizer.FromGguf(model.File), PoolingType.Mean);
        Assert.Contains("context holds 16", Assert.Throws<ArgumentException>(() => mean.Embed(string.Concat(Enumerable.Repeat("hello world ", 20)))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TextEmbedder(ctx, Tokenizer.FromGguf(model.File), PoolingType.Mean, normalize: -2));
    }
}

/// <summary><c>edgellm embed</c> as a process: OpenAI's list shape, one entry per line (or per token with pooling none), the library's numbers.</summary>
public sealed class EmbedCommandTests
{
    [Fact]
    public void Embed_PrintsOneUnitVectorPerLine_AsTheLibraryComputesThem()
    {
        string model = SharedData.Model("stories260K");
        var r = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", model, "-p", "Once upon a time\nThe cat sat", "--pooling", "mean"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.Equal("list", doc.RootElement.GetProperty("object").GetString());
        var data = doc.RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        using var m = Model.Load(model);
        using var ctx = new InferenceContext(m, 4096, threads: 1);
        var embedder = new TextEmbedder(ctx, Tokenizer.FromGguf(m.File), PoolingType.Mean);
        string[] texts = ["Once upon a time", "The cat sat"];
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(i, data[i].GetProperty("index").GetInt32());
            float[] printed = data[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            float[] expected = embedder.Embed(texts[i]);
            Assert.Equal(expected.Length, printed.Length);
            for (int k = 0; k < expected.Length; k++) Assert.Equal(expected[k], printed[k], 1e-5f);
        }

        var none = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", model, "-p", "Once upon a time", "--pooling", "none", "--embd-normalize", "-1"]);
        Assert.True(none.ExitCode == 0, none.Stderr);
        using var perToken = System.Text.Json.JsonDocument.Parse(none.Stdout);
        Assert.Equal(embedder.Tokenize("Once upon a time").Length, perToken.RootElement.GetProperty("data").GetArrayLength());

        var bad = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", model, "-p", "x", "--pooling", "max"]);
        Assert.Equal(1, bad.ExitCode); // a usage error
        Assert.Contains("--pooling", bad.Stderr, StringComparison.Ordinal);
        var nothing = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", model, "-p", "x"]); // stories names no pooling: one vector per token
        Assert.True(nothing.ExitCode == 0, nothing.Stderr);
    }
}
