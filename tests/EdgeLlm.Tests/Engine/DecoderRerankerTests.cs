using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Synth;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// A decoder reranker (Qwen3-Reranker's layout: a qwen3 file with rank pooling, a two-row cls.output for "yes" and "no",
/// a rerank template) against llama.cpp itself (LLamaSharp 0.30.0 in the same process): the same tokens scored alike.
/// </summary>
public sealed class DecoderRerankerTests : IDisposable
{
    private const string Template = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query. Answer only \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n<Query>: {query}\n<Document>: {document}<|im_end|>\n<|im_start|>assistant\n";

    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-qwen3-rerank-" + Guid.NewGuid().ToString("N"));

    public DecoderRerankerTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write() => WriteTinyQwen3Reranker(_dir);

    /// <summary>A tiny qwen3 decoder made a reranker as llama.cpp's converter makes Qwen3-Reranker one, written in <paramref name="dir"/>.</summary>
    internal static string WriteTinyQwen3Reranker(string dir)
    {
        string plain = Path.Combine(dir, "qwen3.gguf"), path = Path.Combine(dir, "qwen3-reranker.gguf");
        var shape = new SynthShape("tiny-qwen3", "tiny qwen3", "qwen3", 128, 2, 4, 2, 384, 400, 256, 1e6f, 1e-6f, true, false, SynthVocabKind.Qwen2Bpe,
            WriteHeadLengths: true, HeadLength: 128);
        ModelSynthesizer.Synthesize(shape, "F32", plain, seed: 13);
        using var src = GgufFile.Open(plain);
        var w = new GgufWriter().CopyMetadata(src)
            .Set("qwen3.pooling_type", 4u)
            .Set("qwen3.classifier.output_labels", GgufValue.From(new[] { "yes", "no" }))
            .Set(TextReranker.TemplateKey, Template);
        foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
        // the converter's head: the output rows of the "yes" and "no" tokens (here two made-up rows)
        var head = new float[2 * 128];
        var rng = new Random(5);
        for (int i = 0; i < head.Length; i++) head[i] = (float)(rng.NextDouble() - 0.5) * 0.5f;
        w.AddTensor("cls.output.weight", GgmlType.F32, [128, 2], System.Runtime.InteropServices.MemoryMarshal.AsBytes(head.AsSpan()).ToArray());
        w.Write(path);
        return path;
    }

    [Fact]
    public async Task Qwen3Reranker_MatchesLlamaCpp()
    {
        string path = Write();
        string[] docs = ["the quick brown fox", "hello world", "a lazy dog sleeps"];
        const string Query = "where does the dog sleep";
        float[] ours;
        List<int[]> pairs;
        using (var model = Model.Load(path))
        using (var context = new InferenceContext(model, 256, threads: 2))
        {
            var reranker = new TextReranker(context, Tokenizer.FromGguf(model.File));
            Assert.Equal(2, reranker.Outputs);
            pairs = docs.Select(d => reranker.Tokenize(Query, d)).ToList();
            Assert.Equal(reranker.Tokenizer.Encode(Template.Replace("{query}", Query).Replace("{document}", docs[0]), addSpecial: false, parseSpecial: true), pairs[0]);
            ours = reranker.Scores(pairs);
            Assert.All(ours, s => Assert.InRange(s, 0f, 1f)); // the softmax's "yes"
            Assert.Equal(ours[1], reranker.Score(Query, docs[1]));
            var ranked = reranker.Rank(Query, docs);
            Assert.Equal(ours.Max(), ranked[0].Score);
        }

        float[] theirs = await BertLlamaCppTests.LlamaCppScores(path, pairs, contextSize: 256);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"qwen3 reranker: ours [{string.Join(", ", ours.Select(x => x.ToString("F6")))}], llama.cpp [{string.Join(", ", theirs.Select(x => x.ToString("F6")))}], max diff {maxDiff:E2}");
        Assert.True(maxDiff < 1e-3, $"max |ours - llama.cpp| = {maxDiff}");
    }

    /// <summary>The CLI and the server rank with a decoder reranker as the library does.</summary>
    [Fact]
    public async Task Qwen3Reranker_FromTheCliAndTheServer()
    {
        string path = Write();
        string[] docs = ["the quick brown fox", "hello world", "a lazy dog sleeps"];
        const string Query = "where does the dog sleep";
        float[] want;
        using (var model = Model.Load(path))
        using (var context = new InferenceContext(model, 256, threads: 1))
            want = new TextReranker(context, Tokenizer.FromGguf(model.File)).Scores(Query, docs);
        var order = want.Select((s, i) => (s, i)).OrderByDescending(x => x.s).ThenBy(x => x.i).Select(x => x.i).ToArray();

        var r = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", Query, "-d", docs[0], "-d", docs[1], "-d", docs[2], "-c", "256", "-t", "2"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var json = System.Text.Json.JsonDocument.Parse(r.Stdout))
        {
            var results = json.RootElement.GetProperty("results");
            for (int k = 0; k < 3; k++)
            {
                Assert.Equal(order[k], results[k].GetProperty("index").GetInt32());
                Assert.Equal(want[order[k]], results[k].GetProperty("relevance_score").GetSingle(), 1e-5f);
            }
        }
        var info = EdgeLlm.Tests.Cli.CliRunner.Run(["info", "-m", path]);
        Assert.Contains("reranker: a decoder reranker, cls.output of 2 row(s) on the last token, a rerank template", info.Stdout, StringComparison.Ordinal);
        var tooLong = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", Query, "-d", string.Concat(Enumerable.Repeat("dog ", 200)), "-c", "64"]);
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("-c sets the context", tooLong.Stderr, StringComparison.Ordinal);

        using var server = EdgeLlm.Tests.Server.ServerProcess.StartWith(path, "-c", "256");
        using var client = server.Client();
        var (status, body, _) = await EdgeLlm.Tests.Server.ServerHttpTests.PostAsync(client, "/v1/rerank",
            System.Text.Json.JsonSerializer.Serialize(new { query = Query, documents = docs }));
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        var got = body.GetProperty("results");
        Assert.Equal(3, got.GetArrayLength());
        Assert.Equal(order[0], got[0].GetProperty("index").GetInt32());
        Assert.Equal(want[order[0]], got[0].GetProperty("relevance_score").GetSingle(), 1e-5f);
        // the slot's cache was forgotten: a completion afterwards still works
        var completion = await EdgeLlm.Tests.Server.ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"hello\", \"max_tokens\": 4, \"temperature\": 0}");
        Assert.Equal(System.Net.HttpStatusCode.OK, completion.Status);
    }

    /// <summary><see cref="RerankerSynthesizer.AddQwen3Head"/> (what <c>synth --like qwen3-reranker-0.6b</c> runs) makes a reranker of a qwen3 decoder.</summary>
    [Fact]
    public void RerankerSynthesizer_MakesAQwen3Reranker()
    {
        WriteTinyQwen3Reranker(_dir); // (writes the plain decoder qwen3.gguf too)
        string plain = Path.Combine(_dir, "qwen3.gguf"), made = Path.Combine(_dir, "made.gguf");
        RerankerSynthesizer.AddQwen3Head(plain, made);
        using var model = Model.Load(made);
        using var context = new InferenceContext(model, 512, threads: 1);
        var reranker = new TextReranker(context, Tokenizer.FromGguf(model.File));
        Assert.Equal(RerankerSynthesizer.Qwen3Template, reranker.Template);
        Assert.Equal(2, reranker.Outputs);
        float score = reranker.Score("where does the dog sleep", "a lazy dog sleeps");
        Assert.InRange(score, 0f, 1f);
        Assert.Throws<ArgumentException>(() => RerankerSynthesizer.AddQwen3Head(SharedData.Model("stories260K"), Path.Combine(_dir, "x.gguf")));
        using var plainModel = Model.Load(plain);
        using var plainContext = new InferenceContext(plainModel, 64, threads: 1);
        Assert.Contains("not a reranker", Assert.Throws<NotSupportedException>(() => new TextReranker(plainContext, Tokenizer.FromGguf(plainModel.File))).Message, StringComparison.Ordinal);
    }
}
