using System.Net;
using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;
using Xunit;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// OpenAI's <c>POST /v1/embeddings</c> on <c>edgellm serve --pooling mean</c> (stories260K names no pooling): one unit
/// vector per input equal to <see cref="TextEmbedder"/>'s, as floats or base64, token-id inputs too, usage counted;
/// without a pooling the request is refused naming it; a completion after embeddings is unaffected (the slot's
/// cache was forgotten). And <see cref="EdgeLlmEmbeddingGenerator"/>, the .NET API, gives the same vectors.
/// </summary>
public sealed class ServerEmbeddingsTests
{
    private static readonly string Model = SharedData.Model("stories260K");

    private static float[] Expected(string text)
    {
        using var m = EdgeLlm.Models.Model.Load(Model);
        using var ctx = new InferenceContext(m, 2048, threads: 1);
        return new TextEmbedder(ctx, Tokenizer.FromGguf(m.File), PoolingType.Mean).Embed(text);
    }

    [Fact]
    public async Task Embeddings_AreTheLibrarys_AsFloatsOrBase64()
    {
        string[] texts = ["Once upon a time", "The cat sat on the mat"];
        using var server = ServerProcess.StartWith(Model, "--pooling", "mean");
        using var client = server.Client();
        var before = await ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"temperature\": 0}");
        Assert.Equal(HttpStatusCode.OK, before.Status);
        var rerank = await ServerHttpTests.PostAsync(client, "/v1/rerank", "{\"query\": \"q\", \"documents\": [\"a\"]}");
        Assert.Equal((HttpStatusCode)501, rerank.Status); // a generative model is not a reranker
        Assert.Equal("model_not_reranker", rerank.Body.GetProperty("error").GetProperty("code").GetString());

        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": [\"Once upon a time\", \"The cat sat on the mat\"], \"model\": \"stories260K\"}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("list", json.GetProperty("object").GetString());
        var data = json.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        int tokens = 0;
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(i, data[i].GetProperty("index").GetInt32());
            float[] got = data[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            float[] want = Expected(texts[i]);
            Assert.Equal(want.Length, got.Length);
            for (int k = 0; k < want.Length; k++) Assert.Equal(want[k], got[k], 1e-5f);
            using var m = EdgeLlm.Models.Model.Load(Model);
            tokens += Tokenizer.FromGguf(m.File).Encode(texts[i], addSpecial: true, parseSpecial: true).Length;
        }
        Assert.Equal(tokens, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // base64: the float32 values, little-endian; token ids as input.
        var b64 = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": \"Once upon a time\", \"encoding_format\": \"base64\"}");
        Assert.Equal(HttpStatusCode.OK, b64.Status);
        byte[] raw = Convert.FromBase64String(b64.Body.GetProperty("data")[0].GetProperty("embedding").GetString()!);
        float[] decoded = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, decoded, 0, raw.Length);
        Assert.Equal(Expected(texts[0]), decoded);
        var ids = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": [1, 403, 407, 261, 378]}");
        Assert.Equal(HttpStatusCode.OK, ids.Status);
        Assert.Equal(decoded, ids.Body.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray());

        // Bad input names its field; the completion after the embeddings is the one before.
        var bad = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": 5}");
        Assert.Equal(HttpStatusCode.BadRequest, bad.Status);
        Assert.Equal("input", bad.Body.GetProperty("error").GetProperty("param").GetString());
        var after = await ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"temperature\": 0}");
        Assert.Equal(before.Body.GetProperty("choices")[0].GetProperty("text").GetString(), after.Body.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task NoPooling_IsRefusedNamingIt()
    {
        using var server = ServerProcess.StartWith(Model);
        using var client = server.Client();
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": \"hello\"}");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("--pooling", json.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmbeddingGenerator_GivesTheSameVectors()
    {
        using var generator = new EdgeLlmEmbeddingGenerator(Model, new EdgeLlmEmbeddingGeneratorOptions { ContextLength = 256, Threads = 1 });
        Assert.Equal(PoolingType.Mean, generator.Embedder.Pooling); // stories names none: mean
        var result = await generator.GenerateAsync(["Once upon a time", "The cat sat on the mat"]);
        Assert.Equal(2, result.Count);
        Assert.Equal(Expected("Once upon a time"), result[0].Vector.ToArray());
        Assert.Equal("stories260K", result[0].ModelId);
        Assert.True(result.Usage!.InputTokenCount > 5);
        var meta = (Microsoft.Extensions.AI.EmbeddingGeneratorMetadata)generator.GetService(typeof(Microsoft.Extensions.AI.EmbeddingGeneratorMetadata))!;
        Assert.Equal(64, meta.DefaultModelDimensions);
        await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(["x"], new Microsoft.Extensions.AI.EmbeddingGenerationOptions { Dimensions = 32 }));
        await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync([""]));
        Assert.Throws<ArgumentException>(() => new EdgeLlmEmbeddingGenerator(Model, new EdgeLlmEmbeddingGeneratorOptions { Pooling = PoolingType.None }));
    }

    /// <summary>An embedding server: a BERT encoder (all-MiniLM's shape) serves /v1/embeddings, completions get 501.</summary>
    /// <summary>EmbeddingGemma served: /v1/embeddings gives TextEmbedder's vectors (pooled, through the dense layers, normalized).</summary>
    [Fact]
    public async Task EmbeddingGemma_ServesEmbeddings()
    {
        string dir = Path.Combine(Path.GetTempPath(), "edgellm-serve-gemma-embd-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = EdgeLlm.Tests.Engine.BertLlamaCppTests.WriteTinyEmbeddingGemma(dir, "Q8_0");
            using var server = ServerProcess.StartWith(path);
            using var client = server.Client();
            string[] texts = ["task: search result | query: hello world", "title: none | text: the lazy dog sleeps all day long"];
            var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": [\"" + texts[0] + "\", \"" + texts[1] + "\"]}");
            Assert.Equal(HttpStatusCode.OK, status);
            using var encoder = BertModel.Load(path, threads: 1);
            var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
            for (int i = 0; i < 2; i++)
            {
                float[] got = json.GetProperty("data")[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
                float[] want = embedder.Embed(texts[i]);
                Assert.Equal(128, got.Length);
                for (int k = 0; k < want.Length; k++) Assert.Equal(want[k], got[k], 1e-5f);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Encoder_ServesEmbeddings_AndRefusesCompletions()
    {
        string dir = Path.Combine(Path.GetTempPath(), "edgellm-serve-bert-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "minilm.gguf");
            EdgeLlm.Synth.BertSynthesizer.Write(EdgeLlm.Synth.BertSynthesizer.Find("all-minilm-l6-v2")!, "Q8_0", path);
            using var server = ServerProcess.StartWith(path);
            using var client = server.Client();
            var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": [\"hello world\", \"the lazy dog\"], \"model\": \"minilm\"}");
            Assert.Equal(HttpStatusCode.OK, status);
            using var encoder = BertModel.Load(path, threads: 1);
            var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File));
            Assert.Equal(PoolingType.Mean, embedder.Pooling);
            string[] texts = ["hello world", "the lazy dog"];
            for (int i = 0; i < 2; i++)
            {
                float[] got = json.GetProperty("data")[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
                float[] want = embedder.Embed(texts[i]);
                Assert.Equal(384, got.Length);
                for (int k = 0; k < want.Length; k++) Assert.Equal(want[k], got[k], 1e-5f);
            }
            Assert.Equal(embedder.Tokenize(texts[0]).Length + embedder.Tokenize(texts[1]).Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

            var chat = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
            Assert.Equal((HttpStatusCode)501, chat.Status);
            Assert.Equal("model_not_generative", chat.Body.GetProperty("error").GetProperty("code").GetString());
            var completion = await ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"hi\"}");
            Assert.Equal((HttpStatusCode)501, completion.Status);
            var tooLong = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": \"" + string.Concat(Enumerable.Repeat("dog ", 600)) + "\"}");
            Assert.Equal(HttpStatusCode.BadRequest, tooLong.Status);
            Assert.Contains("context holds 512", tooLong.Body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            var health = await client.GetAsync("/health");
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            // an embedding model is not a reranker
            var rerank = await ServerHttpTests.PostAsync(client, "/v1/rerank", "{\"query\": \"dog\", \"documents\": [\"a\", \"b\"]}");
            Assert.Equal((HttpStatusCode)501, rerank.Status);
            Assert.Equal("model_not_reranker", rerank.Body.GetProperty("error").GetProperty("code").GetString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A reranker server (ms-marco-MiniLM's shape): /v1/rerank ranks the documents as <see cref="TextReranker"/> does, in
    /// llama-server's shape (top_n, return_documents), TEI's /rerank with texts answers TEI's array; embeddings and
    /// completions are refused, bad requests named.
    /// </summary>
    [Fact]
    public async Task Reranker_ServesRerank()
    {
        string dir = Path.Combine(Path.GetTempPath(), "edgellm-serve-rerank-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "ms-marco.gguf");
            EdgeLlm.Synth.BertSynthesizer.Write(EdgeLlm.Synth.BertSynthesizer.Find("ms-marco-minilm-l6-v2")!, "Q8_0", path);
            string[] docs = ["the quick brown fox", "the lazy dog sleeps all day", "hello world", "a dog and a fox"];
            const string Query = "where does the lazy dog sleep";
            float[] want;
            int tokens;
            using (var encoder = BertModel.Load(path, threads: 1))
            {
                var reranker = new TextReranker(encoder, Tokenizer.FromGguf(encoder.File));
                want = reranker.Scores(Query, docs);
                tokens = docs.Sum(d => reranker.Tokenize(Query, d).Length);
            }
            var order = want.Select((s, i) => (s, i)).OrderByDescending(x => x.s).ThenBy(x => x.i).Select(x => x.i).ToArray();

            using var server = ServerProcess.StartWith(path);
            using var client = server.Client();
            string body = JsonSerializer.Serialize(new { model = "ms-marco", query = Query, documents = docs, top_n = 3, return_documents = true });
            var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/rerank", body);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("list", json.GetProperty("object").GetString());
            Assert.Equal(tokens, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            var results = json.GetProperty("results");
            Assert.Equal(3, results.GetArrayLength());
            for (int r = 0; r < 3; r++)
            {
                int index = results[r].GetProperty("index").GetInt32();
                Assert.Equal(order[r], index);
                Assert.Equal(want[index], results[r].GetProperty("relevance_score").GetSingle(), 1e-5f);
                Assert.Equal(docs[index], results[r].GetProperty("document").GetProperty("text").GetString());
            }

            // TEI: /rerank with texts answers a bare array of {index, score[, text]}
            var tei = await ServerHttpTests.PostAsync(client, "/rerank", JsonSerializer.Serialize(new { query = Query, texts = docs, return_text = true }));
            Assert.Equal(HttpStatusCode.OK, tei.Status);
            Assert.Equal(JsonValueKind.Array, tei.Body.ValueKind);
            Assert.Equal(docs.Length, tei.Body.GetArrayLength());
            Assert.Equal(order[0], tei.Body[0].GetProperty("index").GetInt32());
            Assert.Equal(want[order[0]], tei.Body[0].GetProperty("score").GetSingle(), 1e-5f);
            Assert.Equal(docs[order[0]], tei.Body[0].GetProperty("text").GetString());

            // what is wrong is named
            var noQuery = await ServerHttpTests.PostAsync(client, "/v1/rerank", "{\"documents\": [\"a\"]}");
            Assert.Equal(HttpStatusCode.BadRequest, noQuery.Status);
            Assert.Equal("query", noQuery.Body.GetProperty("error").GetProperty("param").GetString());
            var empty = await ServerHttpTests.PostAsync(client, "/v1/rerank", "{\"query\": \"q\", \"documents\": []}");
            Assert.Equal(HttpStatusCode.BadRequest, empty.Status);
            Assert.Equal("documents", empty.Body.GetProperty("error").GetProperty("param").GetString());
            var tooLong = await ServerHttpTests.PostAsync(client, "/v1/rerank", JsonSerializer.Serialize(new { query = "q", documents = new[] { "a", string.Concat(Enumerable.Repeat("dog ", 600)) } }));
            Assert.Equal(HttpStatusCode.BadRequest, tooLong.Status);
            Assert.Contains("documents[1]", tooLong.Body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            var badTop = await ServerHttpTests.PostAsync(client, "/v1/rerank", "{\"query\": \"q\", \"documents\": [\"a\"], \"top_n\": 0}");
            Assert.Equal("top_n", badTop.Body.GetProperty("error").GetProperty("param").GetString());
            var embeddings = await ServerHttpTests.PostAsync(client, "/v1/embeddings", "{\"input\": \"hello\"}");
            Assert.Equal(HttpStatusCode.BadRequest, embeddings.Status);
            Assert.Contains("reranker", embeddings.Body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            var chat = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
            Assert.Equal((HttpStatusCode)501, chat.Status);
            Assert.Contains("/v1/rerank", chat.Body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
