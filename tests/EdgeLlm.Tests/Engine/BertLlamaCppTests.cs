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
/// BERT encoders (<see cref="BertModel"/>, architectures <c>bert</c> and <c>nomic-bert</c>) and their WordPiece
/// tokenizer against llama.cpp itself (LLamaSharp 0.30.0 in the same process) on small files from
/// <see cref="BertSynthesizer"/>: the same tokens, and the same pooled embeddings up to float order.
/// </summary>
public sealed class BertLlamaCppTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-bert-" + Guid.NewGuid().ToString("N"));

    public BertLlamaCppTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A tiny encoder of <paramref name="arch"/> ("jina-bert-v2+extras": separate gate, Q/K norms, attn_norm_2).</summary>
    private static BertShape Tiny(string arch, PoolingType pooling)
    {
        bool extras = arch.EndsWith("+extras", StringComparison.Ordinal);
        string a = extras ? arch[..^"+extras".Length] : arch;
        return new($"tiny-{a}", a, 128, 2, 4, 256, 64, 2000, 1e-12f, pooling, a == "nomic-bert" ? 1000f : 0f, extras);
    }

    private string Write(string arch, string type, PoolingType pooling)
    {
        string path = Path.Combine(_dir, $"{arch}-{type}-{pooling}.gguf");
        BertSynthesizer.Write(Tiny(arch, pooling), type, path, seed: 3);
        return path;
    }

    public static TheoryData<string> Texts() => new(
        "the quick brown fox jumps over the lazy dog",
        "Hello, World! The QUICK fox... (jumps) over 2 dogs?",
        "Café naïve résumé: ÀÉÎÕÜ ß Øre",
        "中文字 的一是 abc中def",
        "  leading\tand\ntrailing   whitespace  ",
        "unknownwordzzzq embed xyzzy ##able [CLS] [SEP] [MASK]",
        "emoji 🙂 and \u0000 control \u0007 chars \uFFFD done",
        "İstanbul ǅ Σίσυφος ΣΑΣ",
        "");

    [Theory]
    [MemberData(nameof(Texts))]
    public void WordPiece_MatchesLlamaCpp(string text)
    {
        string path = Write("bert", "F32", PoolingType.Mean);
        using var file = GgufFile.Open(path);
        var ours = Tokenizer.FromGguf(file);
        TokenizesAsLlamaCpp(path, ours, text);
    }

    /// <summary>Both flag pairs: the same ids as llama.cpp's on <paramref name="path"/>, and the same text back.</summary>
    private static void TokenizesAsLlamaCpp(string path, Tokenizer ours, string text)
    {
        using var llama = new LlamaCppOracle(path);
        foreach (bool addSpecial in new[] { true, false })
            foreach (bool parseSpecial in new[] { false, true })
            {
                int[] theirs = llama.Tokenize(text, addSpecial, parseSpecial);
                int[] mine = ours.Encode(text, addSpecial, parseSpecial);
                Assert.True(theirs.SequenceEqual(mine),
                    $"add {addSpecial} parse {parseSpecial}: llama.cpp [{string.Join(' ', theirs)}] ({string.Join('|', theirs.Select(ours.TokenText))}), EdgeLlm [{string.Join(' ', mine)}] ({string.Join('|', mine.Select(ours.TokenText))})");
                Assert.Equal(llama.Detokenize(theirs, false, false), ours.Detokenize(mine, false, false));
                Assert.Equal(llama.Detokenize(theirs, true, false), ours.Detokenize(mine, true, false));
            }
    }

    [Theory]
    [InlineData("bert", "F32", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("bert", "F32", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("bert", "F16", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("bert", "Q8_0", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("bert", "Q8_0", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("bert", "Q4_0", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("nomic-bert", "Q8_0", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("nomic-bert", "F32", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("nomic-bert", "Q4_0", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("jina-bert-v2", "F32", PoolingType.Mean, LLamaPoolingType.Mean)]
    [InlineData("jina-bert-v2", "Q8_0", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("jina-bert-v2+extras", "F32", PoolingType.Mean, LLamaPoolingType.Mean)]
    public async Task Embedding_MatchesLlamaCpp(string arch, string type, PoolingType pooling, LLamaPoolingType theirPooling)
    {
        string path = Write(arch, type, pooling);
        const string Text = "the quick brown fox jumps over the lazy dog, hello world";
        float[] ours;
        int tokens;
        using (var encoder = BertModel.Load(path, threads: 2))
        {
            var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
            Assert.Equal(pooling, embedder.Pooling); // read from the file
            ours = embedder.Embed(Text);
            tokens = embedder.Tokenize(Text).Length;
        }

        float[] theirs = await LlamaCppEmbedding(path, theirPooling, Text);

        Assert.Equal(ours.Length, theirs.Length);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        double cos = ours.Zip(theirs, (a, b) => (double)a * b).Sum();
        _out.WriteLine($"{arch} {type} {pooling}: {tokens} tokens, {ours.Length} dimensions, max |ours - llama.cpp| = {maxDiff:E2}, cosine {cos:F8}");
        // Float weights: the same products up to summation order. Quantized: int8 activations, where one rounding
        // that flips between the two engines' float orders moves a component by ~1e-3 (bert Q8_0: 1.5e-3 with [CLS]
        // pooling, 5e-4 with mean; the other quantized files agree to 1e-7).
        double tolerance = type is "F32" or "F16" ? 1e-4 : 5e-3;
        Assert.True(maxDiff < tolerance, $"max |ours - llama.cpp| = {maxDiff} (tolerance {tolerance})");
    }

    [Fact]
    public void Encoder_NamesWhatIsWrong()
    {
        string path = Write("bert", "F32", PoolingType.Mean);
        using var encoder = BertModel.Load(path, threads: 1);
        var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
        Assert.Equal(64, embedder.ContextLength);
        Assert.Contains("context holds 64", Assert.Throws<ArgumentException>(() => embedder.Embed(string.Concat(Enumerable.Repeat("hello world ", 40)))).Message, StringComparison.Ordinal);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => encoder.Encode([101, 5000, 102])).Message, StringComparison.Ordinal);
        Assert.Contains("not a BERT encoder", Assert.Throws<ModelLoadException>(() => BertModel.Load(SharedData.Model("stories260K"))).Message, StringComparison.Ordinal);
        Assert.Contains("bert", Assert.Throws<ModelLoadException>(() => Model.Load(path)).Message, StringComparison.Ordinal);

        // a file missing a tensor names it
        string broken = Path.Combine(_dir, "broken.gguf");
        using (var src = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(src);
            foreach (var t in src.Tensors.Where(t => t.Name != "blk.1.layer_output_norm.bias")) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
            w.Write(broken);
        }
        var e = Assert.Throws<ModelLoadException>(() => BertModel.Load(broken));
        Assert.Contains("blk.1.layer_output_norm.bias", e.Message, StringComparison.Ordinal);
    }

    /// <summary><c>edgellm embed</c> of two lines prints, for each, what <see cref="TextEmbedder"/> computes (<paramref name="dims"/> values).</summary>
    private static void EmbedsAsTextEmbedder(string path, int dims)
    {
        var r = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", path, "-p", "hello world\nthe quick brown fox", "-t", "2"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var data = doc.RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        using var encoder = BertModel.Load(path, threads: 1);
        var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
        string[] texts = ["hello world", "the quick brown fox"];
        for (int i = 0; i < 2; i++)
        {
            float[] printed = data[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            float[] expected = embedder.Embed(texts[i]);
            Assert.Equal(dims, printed.Length);
            for (int k = 0; k < expected.Length; k++) Assert.Equal(expected[k], printed[k], 1e-5f);
        }
    }

    [Fact]
    public void Cli_SynthInfoEmbed_RunTheEncoder()
    {
        string path = Path.Combine(_dir, "minilm.gguf");
        var synth = EdgeLlm.Tests.Cli.CliRunner.Run(["synth", "--like", "all-minilm-l6-v2", "--type", "Q8_0", "-o", path]);
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        var info = EdgeLlm.Tests.Cli.CliRunner.Run(["info", "-m", path]);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("encoder: bert, 6 blocks, 12 heads of 32", info.Stdout, StringComparison.Ordinal);
        Assert.Contains("embeddings: 384 dimensions, pooling mean", info.Stdout, StringComparison.Ordinal);

        EmbedsAsTextEmbedder(path, 384);

        // the encoder's own context (512 learned positions), not -c, bounds a text
        var tooLong = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", path, "-p", string.Concat(Enumerable.Repeat("hello world ", 300))]);
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("context holds 512", tooLong.Stderr, StringComparison.Ordinal);
        // bench: pp is one text encoded; nothing is generated
        var bench = EdgeLlm.Tests.Cli.CliRunner.Run(["bench", "-m", path, "-t", "1", "-p", "32", "-r", "1", "--json"]);
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        using (var b = System.Text.Json.JsonDocument.Parse(bench.Stdout))
        {
            Assert.True(b.RootElement.GetProperty("pp_tps").GetDouble() > 0);
            Assert.Equal(System.Text.Json.JsonValueKind.Null, b.RootElement.GetProperty("tg_tps").ValueKind);
        }
        Assert.Contains("text encoder", bench.Stderr, StringComparison.Ordinal);
        var benchLong = EdgeLlm.Tests.Cli.CliRunner.Run(["bench", "-m", path, "-p", "600"]);
        Assert.Equal(1, benchLong.ExitCode);
        Assert.Contains("at most 512 tokens", benchLong.Stderr, StringComparison.Ordinal);
        // a generation command names the model for what it is
        var run = EdgeLlm.Tests.Cli.CliRunner.Run(["run", "-m", path, "-p", "hi", "-n", "1"]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("edgellm embed", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmbeddingGenerator_LoadsAnEncoder()
    {
        string path = Write("nomic-bert", "Q8_0", PoolingType.Mean);
        using var generator = new EdgeLlm.Chat.EdgeLlmEmbeddingGenerator(path, new EdgeLlm.Chat.EdgeLlmEmbeddingGeneratorOptions { Threads = 1 });
        var got = await generator.GenerateAsync(["search_query: hello world", "search_document: the lazy dog"]);
        Assert.Equal(2, got.Count);
        Assert.Null(generator.Embedder.Context);
        using var encoder = BertModel.Load(path, threads: 1);
        var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
        Assert.Equal(embedder.Embed("search_document: the lazy dog"), got[1].Vector.ToArray());
        Assert.Equal(embedder.Tokenize("search_query: hello world").Length + embedder.Tokenize("search_document: the lazy dog").Length, got.Usage!.InputTokenCount);
        Assert.Contains("context holds 64", (await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync([string.Concat(Enumerable.Repeat("dog ", 80))]))).Message, StringComparison.Ordinal);
    }

    /// <summary>Texts run together (each attending only to itself, positions from 0) give each text's own vector, bit for bit.</summary>
    [Theory]
    [InlineData("bert", "Q8_0")]
    [InlineData("bert", "F16")]
    [InlineData("nomic-bert", "F32")]
    [InlineData("jina-bert-v2", "F16")]
    [InlineData("gemma-embedding", "Q8_0")]
    public void EmbedBatch_EqualsOneByOne(string arch, string type)
    {
        string path = arch == "gemma-embedding" ? WriteEmbeddingGemma(type) : Write(arch, type, PoolingType.Mean);
        using var encoder = BertModel.Load(path, threads: 2);
        var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
        // 64 tokens a pass (the tiny shape's context): these run as several batches, one text alone (the long one)
        string[] texts = ["hello", "the quick brown fox", string.Concat(Enumerable.Repeat("dog ", 50)), "world", "café naïve", "a b c d e f g", "lazy"];
        var batched = embedder.EmbedBatch(texts);
        Assert.Equal(texts.Length, batched.Count);
        for (int i = 0; i < texts.Length; i++)
            Assert.True(embedder.Embed(texts[i]).AsSpan().SequenceEqual(batched[i]), $"text {i} ('{texts[i]}') differs when batched");
        Assert.Contains("text 1 is", Assert.Throws<ArgumentException>(() => embedder.EmbedBatch(["hi", string.Concat(Enumerable.Repeat("dog ", 80))])).Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A tiny EmbeddingGemma (gemma-embedding): six blocks (five with the symmetric window of <paramref name="window"/>, the
    /// sixth global), 4 query and 2 KV heads of 32, mean pooling, and the dense layers 128 → 192 → 128 unless
    /// <paramref name="dense"/> is false.
    /// </summary>
    private string WriteEmbeddingGemma(string type, bool dense = true, int window = 8) => WriteTinyEmbeddingGemma(_dir, type, dense, window);

    /// <summary>The tiny EmbeddingGemma of <see cref="WriteEmbeddingGemma"/>, written into <paramref name="dir"/> (the server and C ABI tests use it too).</summary>
    internal static string WriteTinyEmbeddingGemma(string dir, string type, bool dense = true, int window = 8)
    {
        var shape = new SynthShape("tiny-embeddinggemma", "tiny embeddinggemma", "gemma-embedding", EmbeddingLength: 128, BlockCount: 6, HeadCount: 4, HeadCountKv: 2,
            FeedForwardLength: 256, VocabSize: 700, ContextLength: 128, RopeFreqBase: 1e6f, RmsEps: 1e-6f, TiedEmbeddings: true, QkvBias: false,
            SynthVocabKind.SentencePiece, WriteHeadLengths: true, HeadLength: 32, SlidingWindow: window, DenseProjection: dense ? 192 : 0);
        string path = Path.Combine(dir, $"embeddinggemma-{type}-{dense}-{window}.gguf");
        ModelSynthesizer.Synthesize(shape, type, path, seed: 7);
        return path;
    }

    /// <summary>
    /// EmbeddingGemma against llama.cpp: bidirectional attention with the symmetric window (a 20-token text over a window of
    /// 8: the sliding layers see 4 tokens either side), mean pooling, the dense layers, normalization.
    /// </summary>
    [Theory]
    [InlineData("F32", true)]
    [InlineData("F32", false)]
    [InlineData("Q8_0", true)]
    [InlineData("Q4_0", true)]
    public async Task EmbeddingGemma_MatchesLlamaCpp(string type, bool dense)
    {
        string path = WriteEmbeddingGemma(type, dense);
        const string Text = "the quick brown fox jumps over the lazy dog, hello world and more words";
        float[] ours;
        int tokens;
        using (var encoder = BertModel.Load(path, threads: 2))
        {
            Assert.Equal(dense ? 192 : 0, encoder.DenseWidth);
            var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
            Assert.Equal(PoolingType.Mean, embedder.Pooling); // read from the file
            var ids = embedder.Tokenize(Text);
            Assert.Equal(encoder.File.GetInt("tokenizer.ggml.eos_token_id"), ids[^1]); // <bos> … <eos>
            ours = embedder.Embed(Text);
            tokens = ids.Length;
        }

        float[] theirs = await LlamaCppEmbedding(path, LLamaPoolingType.Mean, Text);

        Assert.Equal(ours.Length, theirs.Length);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        double cos = ours.Zip(theirs, (a, b) => (double)a * b).Sum();
        _out.WriteLine($"gemma-embedding {type} dense {dense}: {tokens} tokens, {ours.Length} dimensions, max |ours - llama.cpp| = {maxDiff:E2}, cosine {cos:F8}");
        Assert.True(tokens > 12, "the text must be longer than the window for the window to matter");
        double tolerance = type == "F32" ? 1e-4 : 5e-3;
        Assert.True(maxDiff < tolerance, $"max |ours - llama.cpp| = {maxDiff} (tolerance {tolerance})");
    }

    /// <summary>EmbeddingGemma from the CLI: info names it, embed prints what <see cref="TextEmbedder"/> computes.</summary>
    [Fact]
    public void Cli_EmbeddingGemma_InfoEmbed()
    {
        string path = WriteEmbeddingGemma("Q8_0");
        var info = EdgeLlm.Tests.Cli.CliRunner.Run(["info", "-m", path]);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("encoder: gemma-embedding, 6 blocks, 4 query / 2 KV heads of 32", info.Stdout, StringComparison.Ordinal);
        Assert.Contains("embeddings: 128 dimensions, pooling mean, then dense layers 128 → 192 → 128", info.Stdout, StringComparison.Ordinal);
        EmbedsAsTextEmbedder(path, 128);
        // a generation command names the model for what it is
        var run = EdgeLlm.Tests.Cli.CliRunner.Run(["run", "-m", path, "-p", "hi", "-n", "1"]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("text encoder", run.Stderr, StringComparison.Ordinal);
        // per token (pooling none): every row through the dense layers too, as llama.cpp, then normalized
        using var encoder = BertModel.Load(path, threads: 1);
        var perToken = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File), PoolingType.None).EmbedTokens("hello");
        Assert.All(perToken, row => Assert.Equal(1.0, Math.Sqrt(row.Sum(x => (double)x * x)), 4));
    }

    /// <summary>EmbeddingGemma's window and dense layers change the vector (so the comparison above can fail on either).</summary>
    [Fact]
    public void EmbeddingGemma_WindowAndDenseLayersMatter()
    {
        const string Text = "the quick brown fox jumps over the lazy dog, hello world and more words";
        float[] Embed(string path)
        {
            using var encoder = BertModel.Load(path, threads: 1);
            return new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File)).Embed(Text);
        }
        float[] windowed = Embed(WriteEmbeddingGemma("F32", dense: false, window: 8));
        float[] wide = Embed(WriteEmbeddingGemma("F32", dense: false, window: 256));
        float[] projected = Embed(WriteEmbeddingGemma("F32", dense: true, window: 8));
        Assert.True(windowed.Zip(wide, (a, b) => Math.Abs(a - b)).Max() > 1e-3, "the symmetric window changed nothing");
        Assert.True(windowed.Zip(projected, (a, b) => Math.Abs(a - b)).Max() > 1e-2, "the dense layers changed nothing");
    }

    /// <summary>A tiny cross-encoder: rank pooling, cls (+ cls.output unless <paramref name="poolerOnly"/>), <paramref name="labels"/> labels.</summary>
    private string WriteReranker(string arch, string type, bool poolerOnly = false, int labels = 1)
    {
        string path = Path.Combine(_dir, $"rerank-{arch}-{type}-{poolerOnly}-{labels}.gguf");
        var shape = new BertShape($"tiny-rerank-{arch}", arch, 128, 2, 4, 256, 64, 2000, 1e-12f, PoolingType.Cls, Labels: labels, PoolerOnly: poolerOnly);
        BertSynthesizer.Write(shape, type, path, seed: 5);
        return path;
    }

    private static readonly string[] s_documents =
    [
        "the quick brown fox jumps over the lazy dog",
        "hello world",
        "a search model for edge devices",
        "café naïve résumé",
        "the lazy dog sleeps",
    ];

    /// <summary>llama.cpp's embedding of <paramref name="text"/> (LLamaEmbedder, 64-token context, one thread, flash attention off), normalized.</summary>
    private static async Task<float[]> LlamaCppEmbedding(string path, LLamaPoolingType pooling, string text)
    {
        _ = LlamaCppOracle.NativeLibrary;
        var p = new ModelParams(path) { Embeddings = true, PoolingType = pooling, ContextSize = 64, GpuLayerCount = 0, Threads = 1, FlashAttention = false };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var llama = new LLamaEmbedder(weights, p);
        float[] theirs = Assert.Single(await llama.GetEmbeddings(text));
        TextEmbedder.Normalize(theirs, 2);
        return theirs;
    }

    /// <summary>llama.cpp's rank pooling: the head's first value for each pair, read by llama_get_embeddings_seq.</summary>
    internal static async Task<float[]> LlamaCppScores(string path, IReadOnlyList<int[]> pairs, uint contextSize = 64)
    {
        _ = LlamaCppOracle.NativeLibrary;
        var p = new ModelParams(path) { Embeddings = true, PoolingType = LLamaPoolingType.Rank, ContextSize = contextSize, BatchSize = contextSize, UBatchSize = contextSize, GpuLayerCount = 0, Threads = 1, FlashAttention = false };
        using var weights = LLamaWeights.LoadFromFile(p);
        using var context = weights.CreateContext(p);
        var scores = new float[pairs.Count];
        for (int i = 0; i < pairs.Count; i++)
        {
            var batch = new LLamaBatch();
            for (int t = 0; t < pairs[i].Length; t++) batch.Add((LLamaToken)pairs[i][t], t, LLamaSeqId.Zero, true);
            context.NativeHandle.MemoryClear();
            var r = await context.DecodeAsync(batch);
            Assert.Equal(DecodeResult.Ok, r);
            scores[i] = context.NativeHandle.GetEmbeddingsSeq(LLamaSeqId.Zero)[0];
        }
        return scores;
    }

    [Theory]
    [InlineData("bert", "F32", false)]
    [InlineData("bert", "F16", false)]
    [InlineData("bert", "Q8_0", false)]
    [InlineData("bert", "Q4_0", false)]
    [InlineData("jina-bert-v2", "F32", true)]
    [InlineData("jina-bert-v2", "Q8_0", true)]
    public async Task Rerank_MatchesLlamaCpp(string arch, string type, bool poolerOnly)
    {
        string path = WriteReranker(arch, type, poolerOnly);
        const string Query = "where does the lazy dog sleep";
        float[] ours;
        List<int[]> pairs;
        using (var encoder = BertModel.Load(path, threads: 2))
        {
            Assert.True(encoder.IsReranker);
            Assert.Equal(1, encoder.ClassifierOutputs);
            var reranker = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File));
            pairs = s_documents.Select(d => reranker.Tokenize(Query, d)).ToList();
            // [CLS] query [SEP] document [SEP]: the vocabulary's add_eos with [SEP] as EOS, as converted cross-encoders read a pair
            var tok = reranker.Tokenizer;
            Assert.Equal([101, .. tok.Encode(Query, false), 102, .. tok.Encode(s_documents[0], false), 102], pairs[0]);
            ours = reranker.Scores(Query, s_documents);
            Assert.Equal(ours[3], reranker.Score(Query, s_documents[3]));
        }
        float[] theirs = await LlamaCppScores(path, pairs);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"{arch} {type} pooler-only {poolerOnly}: ours [{string.Join(", ", ours.Select(x => x.ToString("F5")))}], llama.cpp [{string.Join(", ", theirs.Select(x => x.ToString("F5")))}], max diff {maxDiff:E2}");
        Assert.True(theirs.Distinct().Count() == theirs.Length, "the documents should score differently");
        // F32: the same products up to summation order, but GELU goes through ggml's f16 table in both, so an input
        // that rounds to the other f16 neighbour moves one activation by ~1e-3 of itself (measured: bert 4e-5 on
        // scores ~9, jina 8.5e-5 on ~0.4). F16 and quantized: the [CLS] state is also rounded (f16, int8) before the
        // head, and a flipped rounding is multiplied up by it (bert F16 3e-3 on ~9; Q8_0 and Q4_0 agree to 2e-6).
        // A wrong head (no tanh, a bias left out, another token pooled) moves the scores by more than 0.05.
        double tolerance = type is "F32" ? 5e-4 : 5e-3;
        Assert.True(maxDiff < tolerance, $"max |ours - llama.cpp| = {maxDiff} (tolerance {tolerance})");
    }

    [Fact]
    public void Rerank_RanksInBatchesAsOneByOne()
    {
        string path = WriteReranker("bert", "Q8_0", labels: 2);
        using var encoder = BertModel.Load(path, threads: 2);
        Assert.Equal(2, encoder.ClassifierOutputs);
        Assert.Equal(["LABEL_0", "LABEL_1"], encoder.ClassifierLabels!);
        var reranker = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File));
        const string Query = "lazy dog";
        // several passes of up to 64 tokens, and one pair alone
        string[] docs = [.. s_documents, string.Concat(Enumerable.Repeat("dog ", 40)), .. s_documents];
        float[] batched = reranker.Scores(Query, docs);
        for (int i = 0; i < docs.Length; i++) Assert.Equal(reranker.Score(Query, docs[i]), batched[i]);
        var pair = reranker.Tokenize(Query, docs[1]);
        float[] both = encoder.Classify(pair, [0, pair.Length]);
        Assert.Equal(2, both.Length);
        Assert.Equal(batched[1], both[0]); // the score is the first label's value

        var ranked = reranker.Rank(Query, docs, topN: 3);
        Assert.Equal(3, ranked.Count);
        var order = batched.Select((s, i) => (s, i)).OrderByDescending(x => x.s).ThenBy(x => x.i).Take(3).Select(x => x.i);
        Assert.Equal(order, ranked.Select(r => r.Index));
        Assert.Equal(batched[ranked[0].Index], ranked[0].Score);
        Assert.Equal(reranker.Tokenize(Query, docs[ranked[0].Index]).Length, ranked[0].Tokens);
        Assert.True(ranked[0].Score >= ranked[1].Score && ranked[1].Score >= ranked[2].Score);
        Assert.Equal(0.5f, TextReranker.Sigmoid(0f));

        // what is wrong is named
        Assert.Contains("document 1", Assert.Throws<ArgumentException>(() => reranker.Scores(Query, ["hi", string.Concat(Enumerable.Repeat("dog ", 80))])).Message, StringComparison.Ordinal);
        Assert.Contains("no documents", Assert.Throws<ArgumentException>(() => reranker.Scores(Query, [])).Message, StringComparison.Ordinal);
        Assert.Contains("reranker", Assert.Throws<NotSupportedException>(() => new TextEmbedder(encoder, reranker.Tokenizer)).Message, StringComparison.Ordinal);
        // an embedding model is not a reranker
        string embedPath = Write("bert", "F32", PoolingType.Mean);
        using var embedder = BertModel.Load(embedPath, threads: 1);
        Assert.False(embedder.IsReranker);
        Assert.Contains("not a reranker", Assert.Throws<NotSupportedException>(() => new TextReranker(embedder, Tokenizer.FromGguf(embedder.File))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rerank_UsesTheFilesRerankTemplate()
    {
        string path = WriteReranker("bert", "F32");
        string templated = Path.Combine(_dir, "templated.gguf");
        using (var src = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(src).Set(TextReranker.TemplateKey, "[CLS] query: {query} [SEP] document: {document} [SEP]");
            foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
            w.Write(templated);
        }
        using var encoder = BertModel.Load(templated, threads: 1);
        var reranker = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File));
        var tok = reranker.Tokenizer;
        int[] expected = [101, .. tok.Encode("query: hello", false), 102, .. tok.Encode("document: the dog", false), 102];
        Assert.Equal(expected, reranker.Tokenize("hello", "the dog"));
    }

    [Fact]
    public void Reranker_WithoutAHead_IsRefusedAtLoad()
    {
        string path = WriteReranker("bert", "F32");
        string broken = Path.Combine(_dir, "headless.gguf");
        using (var src = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(src);
            foreach (var t in src.Tensors.Where(t => !t.Name.StartsWith("cls", StringComparison.Ordinal))) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
            w.Write(broken);
        }
        var e = Assert.Throws<ModelLoadException>(() => BertModel.Load(broken));
        Assert.Contains("no classification head", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_Rerank_RanksTheDocuments()
    {
        string path = Path.Combine(_dir, "ms-marco.gguf");
        var synth = EdgeLlm.Tests.Cli.CliRunner.Run(["synth", "--like", "ms-marco-minilm-l6-v2", "--type", "Q8_0", "-o", path]);
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        var info = EdgeLlm.Tests.Cli.CliRunner.Run(["info", "-m", path]);
        Assert.Contains("reranker: a classification head of 1 output(s) (LABEL_0)", info.Stdout, StringComparison.Ordinal);

        string[] docs = ["the quick brown fox", "the lazy dog sleeps", "hello wörld <b> & \"quoted\""];
        const string Query = "where does the dog sleep";
        string list = Path.Combine(_dir, "docs.txt");
        File.WriteAllText(list, string.Join("\n", docs.Skip(1)) + "\n");
        var r = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", Query, "-d", docs[0], "-f", list, "-t", "2"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("\"hello wörld <b> & \\\"quoted\\\"\"", r.Stdout, StringComparison.Ordinal); // UTF-8 as given, JSON's escapes only
        float[] want;
        using (var encoder = BertModel.Load(path, threads: 1))
            want = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File)).Scores(Query, docs);
        using (var doc = System.Text.Json.JsonDocument.Parse(r.Stdout))
        {
            var results = doc.RootElement.GetProperty("results");
            Assert.Equal(3, results.GetArrayLength());
            var order = want.Select((s, i) => (s, i)).OrderByDescending(x => x.s).Select(x => x.i).ToArray();
            for (int k = 0; k < 3; k++)
            {
                int index = results[k].GetProperty("index").GetInt32();
                Assert.Equal(order[k], index);
                Assert.Equal(want[index], results[k].GetProperty("relevance_score").GetSingle(), 1e-5f);
                Assert.Equal(docs[index], results[k].GetProperty("document").GetString());
            }
        }
        var top = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", Query, "-d", docs[0], "-d", docs[1], "--top-n", "1", "--sigmoid"]);
        Assert.True(top.ExitCode == 0, top.Stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(top.Stdout))
        {
            var only = Assert.Single(doc.RootElement.GetProperty("results").EnumerateArray());
            int index = only.GetProperty("index").GetInt32();
            Assert.Equal(TextReranker.Sigmoid(want[index]), only.GetProperty("relevance_score").GetSingle(), 1e-6f);
        }

        // a reranker does not embed (unless a pooling is given), an embedding model does not rerank
        var embed = EdgeLlm.Tests.Cli.CliRunner.Run(["embed", "-m", path, "-p", "hello"]);
        Assert.Equal(2, embed.ExitCode);
        Assert.Contains("edgellm rerank", embed.Stderr, StringComparison.Ordinal);
        string minilm = Write("bert", "F32", PoolingType.Mean);
        var notReranker = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", minilm, "-q", "x", "-d", "y"]);
        Assert.Equal(2, notReranker.ExitCode);
        Assert.Contains("not a reranker", notReranker.Stderr, StringComparison.Ordinal);
        var decoder = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", SharedData.Model("stories260K"), "-q", "x", "-d", "y"]);
        Assert.Equal(2, decoder.ExitCode);
        Assert.Contains("not a reranker", decoder.Stderr, StringComparison.Ordinal);
        // a decoder with rank pooling but no head (cls.output) is not a reranker either
        string decoderReranker = Path.Combine(_dir, "decoder-rank.gguf");
        using (var src = GgufFile.Open(SharedData.Model("stories260K")))
        {
            var w = new GgufWriter().CopyMetadata(src).Set("llama.pooling_type", 4u);
            foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
            w.Write(decoderReranker);
        }
        var decoderRank = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", decoderReranker, "-q", "x", "-d", "y"]);
        Assert.Equal(2, decoderRank.ExitCode);
        Assert.Contains("cls.output", decoderRank.Stderr, StringComparison.Ordinal);
        var none = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", "x"]);
        Assert.Equal(1, none.ExitCode);
        var tooLong = EdgeLlm.Tests.Cli.CliRunner.Run(["rerank", "-m", path, "-q", "x", "-d", string.Concat(Enumerable.Repeat("dog ", 600))]);
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("at most 512", tooLong.Stderr, StringComparison.Ordinal);
    }

    /// <summary>A tiny XLM-RoBERTa encoder: the unigram (t5) vocabulary with its character map; a reranker with <paramref name="labels"/>.</summary>
    private string WriteXlmR(string type, int labels = 0)
    {
        string path = Path.Combine(_dir, $"xlmr-{type}-{labels}.gguf");
        var shape = new BertShape("tiny-xlm-roberta", "bert", 128, 2, 4, 256, 64, 3000, 1e-5f, PoolingType.Cls, Labels: labels, Unigram: true);
        BertSynthesizer.Write(shape, type, path, seed: 7);
        return path;
    }

    public static TheoryData<string> UnigramTexts() => new(
        "the quick brown fox jumps over the lazy dog",
        "Hello world, where does the dog sleep?",
        "  multiple   spaces\tand\ttabs\nand newlines  ",
        "ﬁne Ａ１ ① … café cafe\u0301 ｶ ™ Ⅻ\u00A0nbsp",
        "[URL] and [URx partial [UR",
        "unknown ☃☃ chars 🙂 zzzq",
        "中文字 русский привет",
        "<s>special</s> <mask> <pad> <unk>",
        "e",
        "");

    /// <summary>The SentencePiece unigram tokenizer (t5: XLM-RoBERTa's) against llama.cpp's on the same file, both flag pairs, and back.</summary>
    [Theory]
    [MemberData(nameof(UnigramTexts))]
    public void Unigram_MatchesLlamaCpp(string text)
    {
        string path = WriteXlmR("F32");
        using var file = GgufFile.Open(path);
        var ours = Tokenizer.FromGguf(file);
        Assert.Equal("t5", ours.Model);
        TokenizesAsLlamaCpp(path, ours, text);
    }

    [Fact]
    public void Unigram_NormalizesByTheCharacterMap()
    {
        string path = WriteXlmR("F32");
        using var file = GgufFile.Open(path);
        var tok = Tokenizer.FromGguf(file);
        // ﬁ → fi, Ａ → A, … → ..., e + combining acute → é; spaces merged, one ▁ first; <s> ... </s> around
        Assert.Equal(tok.Encode("fine A ... café", addSpecial: false), tok.Encode("ﬁne  Ａ  …\u00A0cafe\u0301", addSpecial: false));
        int[] ids = tok.Encode("hello world");
        Assert.Equal(0, ids[0]);
        Assert.Equal(2, ids[^1]);
        Assert.Equal("hello world", tok.Detokenize(ids[1..^1], removeSpecial: false, unparseSpecial: false)); // the ▁ put first is taken off
        Assert.Equal(1, tok.Encode("☃☃", addSpecial: false).Count(i => i == 3)); // one <unk> for the run of unknown code points
    }

    [Theory]
    [InlineData("F32", PoolingType.Cls, LLamaPoolingType.CLS)]
    [InlineData("Q8_0", PoolingType.Mean, LLamaPoolingType.Mean)]
    public async Task XlmRoberta_Embedding_MatchesLlamaCpp(string type, PoolingType pooling, LLamaPoolingType theirPooling)
    {
        string path = WriteXlmR(type);
        const string Text = "the quick brown fox jumps over the lazy dog, hello world";
        float[] ours;
        using (var encoder = BertModel.Load(path, threads: 2))
            ours = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File), pooling).Embed(Text);

        float[] theirs = await LlamaCppEmbedding(path, theirPooling, Text);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"xlm-roberta {type} {pooling}: max |ours - llama.cpp| = {maxDiff:E2}");
        Assert.True(maxDiff < (type == "F32" ? 1e-4 : 5e-3), $"max |ours - llama.cpp| = {maxDiff}");
    }

    [Fact]
    public async Task XlmRoberta_Rerank_MatchesLlamaCpp()
    {
        string path = WriteXlmR("F32", labels: 1);
        const string Query = "where does the lazy dog sleep";
        float[] ours;
        List<int[]> pairs;
        using (var encoder = BertModel.Load(path, threads: 2))
        {
            var reranker = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File));
            var tok = reranker.Tokenizer;
            pairs = s_documents.Select(d => reranker.Tokenize(Query, d)).ToList();
            // RoBERTa's pair: <s> query </s></s> document </s>
            Assert.Equal([0, .. tok.Encode(Query, false), 2, 2, .. tok.Encode(s_documents[1], false), 2], pairs[1]);
            ours = reranker.Scores(pairs);
        }
        float[] theirs = await LlamaCppScores(path, pairs);
        double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"xlm-roberta reranker: ours [{string.Join(", ", ours.Select(x => x.ToString("F5")))}], llama.cpp [{string.Join(", ", theirs.Select(x => x.ToString("F5")))}], max diff {maxDiff:E2}");
        Assert.True(maxDiff < 5e-4, $"max |ours - llama.cpp| = {maxDiff}");
    }
}
