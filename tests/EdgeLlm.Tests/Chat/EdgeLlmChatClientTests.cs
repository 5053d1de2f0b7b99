using System.Diagnostics;
using System.Text;
using EdgeLlm.Chat;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;
using Microsoft.Extensions.AI;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// A copy of stories260K with a chat template injected (tokenizer.chat_template), written with the
/// project's GgufWriter: the model has none of its own, and the client must use the file's.
/// </summary>
public sealed class TemplatedStoriesModel : IDisposable
{
    /// <summary>A Llama-2-like template with the vocabulary's &lt;s&gt; / &lt;/s&gt; (bos_token / eos_token).</summary>
    public const string Template =
        "{{ bos_token }}{% for m in messages %}" +
        "{% if m['role'] == 'system' %}{{ m['content'] }}\n" +
        "{% elif m['role'] == 'user' %}Q: {{ m['content'] }}\n" +
        "{% else %}A: {{ m['content'] }}{{ eos_token }}\n{% endif %}" +
        "{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

    public TemplatedStoriesModel()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"stories260K-chat-{Guid.NewGuid():N}.gguf");
        Write(Path, Template);
    }

    /// <summary>Writes stories260K with <paramref name="template"/> as its tokenizer.chat_template to <paramref name="path"/>.</summary>
    public static void Write(string path, string template)
    {
        using var src = GgufFile.Open(SharedData.Model("stories260K"));
        var w = new GgufWriter().CopyMetadata(src).Set(ChatTemplate.GgufKey, template);
        foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
        w.Write(path);
    }

    public string Path { get; }

    public void Dispose() => File.Delete(Path);
}

public sealed class EdgeLlmChatClientTests(TemplatedStoriesModel model, ITestOutputHelper output) : IClassFixture<TemplatedStoriesModel>
{
    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 48 };

    private EdgeLlmChatClient NewClient(int contextLength = 512) =>
        new(model.Path, new EdgeLlmChatClientOptions { ContextLength = contextLength, Threads = 1 });

    private static List<ChatMessage> Ask(string question) => [new(ChatRole.User, question)];

    [Fact]
    public async Task Streaming_Greedy_EqualsTheNonStreamedAnswer_WithUsage()
    {
        using var client = NewClient();
        Assert.False(client.Template.IsFallback);
        Assert.Equal(TemplatedStoriesModel.Template, client.Template.Source);

        var response = await client.GetResponseAsync(Ask("Tell me about a cat."), Greedy);
        output.WriteLine($"non-streamed: {response.Text.Length} chars, finish {response.FinishReason}, usage {response.Usage!.InputTokenCount}+{response.Usage.OutputTokenCount}={response.Usage.TotalTokenCount}, cached {response.Usage.CachedInputTokenCount}");
        output.WriteLine(response.Text);
        Assert.NotEmpty(response.Text.Trim());

        // The prompt the template gives, tokenized independently of the client.
        var tokenizer = Tokenizer.FromGguf(client.Model.File);
        int[] prompt = ChatPrompt.Tokenize(ChatTemplate.Parse(TemplatedStoriesModel.Template), tokenizer,
            [new EdgeLlm.Chat.ChatTurn("user", "Tell me about a cat.")], addGenerationPrompt: true);
        Assert.Equal(tokenizer.Encode("Q: Tell me about a cat.\nA:", addSpecial: true, parseSpecial: true), prompt);
        Assert.Equal(prompt.Length, response.Usage.InputTokenCount);
        Assert.Equal(0, response.Usage.CachedInputTokenCount);

        // The same generation straight through TextGenerator, on a fresh context: same text, same token count.
        using (var ctx = new InferenceContext(client.Model, 512, 1))
        {
            var direct = new TextGenerator(ctx, tokenizer).Generate(prompt, new GenerationOptions { Sampling = new SamplerOptions { Temperature = 0 }, MaxTokens = 48 });
            Assert.Equal(direct.Text, response.Text);
            Assert.Equal(direct.CompletionTokens, response.Usage.OutputTokenCount);
            Assert.Equal(direct.Reason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        }
        Assert.Equal(response.Usage.InputTokenCount + response.Usage.OutputTokenCount, response.Usage.TotalTokenCount);
        Assert.Equal("stories260K-chat-" , client.ModelId[..17]);
        Assert.Equal(client.ModelId, response.ModelId);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);

        // Streamed. The generation runs on a worker thread: while this thread holds on to the first piece
        // without asking for more, the context keeps evaluating tokens.
        var updates = new List<ChatResponseUpdate>();
        var watch = Stopwatch.StartNew();
        var stream = client.GetStreamingResponseAsync(Ask("Tell me about a cat."), Greedy);
        await using (var e = stream.GetAsyncEnumerator())
        {
            Assert.True(await e.MoveNextAsync());
            double firstMs = watch.Elapsed.TotalMilliseconds;
            updates.Add(e.Current);
            int atFirst = client.Generator.Context.Position;
            // Ten tokens on, or the end of the answer (the last token is sampled, not evaluated): on a fast
            // machine this small model may finish before the first piece is read, which also shows the
            // generation ran ahead of its consumer.
            int end = prompt.Length + (int)response.Usage.OutputTokenCount!.Value - 1;
            Assert.True(end >= prompt.Length + 10, $"the answer is too short ({response.Usage.OutputTokenCount} tokens) to show the generation running ahead");
            bool advanced = SpinWait.SpinUntil(() => client.Generator.Context.Position >= Math.Min(atFirst + 10, end), TimeSpan.FromSeconds(30));
            int meanwhile = client.Generator.Context.Position;
            while (await e.MoveNextAsync()) updates.Add(e.Current);
            output.WriteLine($"streamed: {updates.Count} updates, first after {firstMs:F1} ms, all after {watch.Elapsed.TotalMilliseconds:F1} ms; " +
                $"position {atFirst} at the first piece, {meanwhile} while the consumer waited");
            Assert.True(advanced, "the generation did not go on while the consumer held the first piece: it runs on the consumer's thread");
        }
        string streamed = string.Concat(updates.Select(u => u.Text));
        Assert.Equal(response.Text, streamed);
        Assert.True(updates.Count(u => u.Text.Length > 0) > 5, "the answer came in fewer than 6 pieces");
        Assert.All(updates, u => Assert.Equal(client.ModelId, u.ModelId));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        var last = updates[^1];
        Assert.Equal(response.FinishReason, last.FinishReason);
        var usage = Assert.Single(last.Contents.OfType<UsageContent>()).Details;
        Assert.Equal(response.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(response.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(response.Usage.TotalTokenCount, usage.TotalTokenCount);
        // The same prompt again: the KV cache of all but its last token is kept.
        Assert.Equal(prompt.Length - 1, usage.CachedInputTokenCount);

        // Microsoft.Extensions.AI's own aggregation of the updates agrees.
        var combined = updates.ToChatResponse();
        Assert.Equal(response.Text, combined.Text);
        Assert.Equal(response.FinishReason, combined.FinishReason);
        Assert.Equal(response.Usage.TotalTokenCount, combined.Usage!.TotalTokenCount);
    }

    /// <summary>ChatResponseFormat.Json constrains the answer to JSON (an object so far), ForJsonSchema to the schema; an unsupported keyword is refused.</summary>
    [Fact]
    public async Task ResponseFormatJson_AndSchema_ConstrainTheAnswer()
    {
        using var client = NewClient();
        var r = await client.GetResponseAsync(Ask("Tell me about a cat."), new ChatOptions { Temperature = 0, MaxOutputTokens = 40, ResponseFormat = ChatResponseFormat.Json });
        output.WriteLine($"{r.FinishReason}: {r.Text}");
        Assert.StartsWith("{", r.Text.TrimStart(), StringComparison.Ordinal);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(System.Text.Encoding.UTF8.GetBytes(r.Text)), r.Text);
        var plain = await client.GetResponseAsync(Ask("Tell me about a cat."), new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });
        Assert.NotEqual(plain.Text, r.Text);

        // A schema: the answer holds to it (here, a closed set of keys and values).
        const string SchemaText = "{\"type\": \"object\", \"properties\": {\"animal\": {\"type\": \"string\", \"enum\": [\"cat\", \"dog\"]}, " +
            "\"age\": {\"type\": \"integer\"}}, \"required\": [\"animal\", \"age\"], \"additionalProperties\": false}";
        var schemaElement = System.Text.Json.JsonDocument.Parse(SchemaText).RootElement;
        var withSchema = await client.GetResponseAsync(Ask("Tell me about a cat."),
            new ChatOptions { Temperature = 0, MaxOutputTokens = 60, ResponseFormat = ChatResponseFormat.ForJsonSchema(schemaElement, "pet") });
        output.WriteLine($"{withSchema.FinishReason}: {withSchema.Text}");
        var node = EdgeLlm.Sampling.JsonSchemaNode.Parse(schemaElement);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(System.Text.Encoding.UTF8.GetBytes(withSchema.Text), node), withSchema.Text);
        if (withSchema.FinishReason == ChatFinishReason.Stop)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(withSchema.Text);
            Assert.Contains(doc.RootElement.GetProperty("animal").GetString(), new[] { "cat", "dog" });
            Assert.True(doc.RootElement.GetProperty("age").TryGetInt64(out _));
        }

        // A keyword it cannot enforce is refused, named.
        var not = ChatResponseFormat.ForJsonSchema(System.Text.Json.JsonDocument.Parse("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"not\": {\"maxLength\": 2}}}}").RootElement, "x");
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Ask("Hi"), new ChatOptions { ResponseFormat = not }));
        Assert.Contains("schema.properties.a.not is not supported", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>AdditionalProperties["grammar"] (GBNF text or a parsed GbnfGrammar) constrains the answer; a bad grammar is refused by position.</summary>
    [Fact]
    public async Task GrammarProperty_ConstrainsTheAnswer()
    {
        const string Grammar = "root ::= (\"yes\" | \"no\") \", because \" [a-z ]{1,40} \".\"";
        var g = EdgeLlm.Sampling.GbnfGrammar.Parse(Grammar);
        using var client = NewClient();
        foreach (object grammar in new object[] { Grammar, g })
        {
            var r = await client.GetResponseAsync(Ask("Is the cat happy?"),
                new ChatOptions { Temperature = 0, MaxOutputTokens = 80, AdditionalProperties = new() { ["grammar"] = grammar } });
            output.WriteLine($"{r.FinishReason}: {r.Text}");
            Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
            Assert.True(g.IsMatch(r.Text), r.Text);
        }
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Ask("Hi"),
            new ChatOptions { AdditionalProperties = new() { ["grammar"] = "root ::= (\"a\"" } }));
        Assert.Contains("AdditionalProperties[\"grammar\"]: grammar line 1, column", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Ask("Hi"),
            new ChatOptions { ResponseFormat = ChatResponseFormat.Json, AdditionalProperties = new() { ["grammar"] = Grammar } }));
    }

    /// <summary>EdgeLlmChatClientOptions.DraftModel: speculative decoding gives the same answers; a draft of another vocabulary is refused.</summary>
    [Fact]
    public async Task DraftModel_GivesTheSameAnswers()
    {
        using var draft = EdgeLlm.Models.Model.Load(SharedData.Model("stories260K-q8_0"));
        using var plain = NewClient();
        using var drafted = new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 512, Threads = 1, DraftModel = draft, DraftMax = 6 });
        foreach (var options in new[] { new ChatOptions { Temperature = 0, MaxOutputTokens = 50 }, new ChatOptions { Temperature = 0.9f, Seed = 4, MaxOutputTokens = 50 } })
        {
            var a = await plain.GetResponseAsync(Ask("Tell me about a cat."), options);
            var b = await drafted.GetResponseAsync(Ask("Tell me about a cat."), options);
            output.WriteLine(b.Text);
            Assert.Equal(a.Text, b.Text);
        }
        Assert.Throws<ArgumentException>(() => new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 64, DraftModel = draft, DraftMax = 0 }));
    }

    [Fact]
    public async Task MaxOutputTokens_EndsWithLength()
    {
        using var client = NewClient();
        foreach (int n in new[] { 0, 1, 7 })
        {
            var r = await client.GetResponseAsync(Ask("Tell me about a dog."), new ChatOptions { Temperature = 0, MaxOutputTokens = n });
            output.WriteLine($"MaxOutputTokens {n}: {r.Usage!.OutputTokenCount} tokens, {r.FinishReason}, '{r.Text}'");
            Assert.Equal(ChatFinishReason.Length, r.FinishReason);
            Assert.Equal(n, r.Usage.OutputTokenCount);
            if (n == 0) Assert.Equal("", r.Text);
        }
        var streamed = await client.GetStreamingResponseAsync(Ask("Tell me about a dog."), new ChatOptions { Temperature = 0, MaxOutputTokens = 7 }).ToListAsync();
        Assert.Equal(ChatFinishReason.Length, streamed[^1].FinishReason);
    }

    [Fact]
    public async Task StopSequences_CutTheAnswer_AndEndWithStop()
    {
        using var client = NewClient();
        var full = await client.GetResponseAsync(Ask("Tell me about a bird."), Greedy);
        // A stop sequence taken from the middle of the greedy answer: the answer ends just before its first occurrence.
        string stop = full.Text.Substring(full.Text.Length / 2, 4);
        string expected = full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)];
        output.WriteLine($"stop '{stop}': expect {expected.Length} of {full.Text.Length} chars");
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 48, StopSequences = ["never appears", stop] };

        var cut = await client.GetResponseAsync(Ask("Tell me about a bird."), options);
        Assert.Equal(expected, cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.True(cut.Usage!.OutputTokenCount < full.Usage!.OutputTokenCount);

        var streamed = await client.GetStreamingResponseAsync(Ask("Tell me about a bird."), options).ToListAsync();
        Assert.Equal(expected, string.Concat(streamed.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, streamed[^1].FinishReason);
    }

    [Fact]
    public async Task Cancellation_StopsTheGeneration_AndTheClientStaysUsable()
    {
        using var client = NewClient(contextLength: 4096);
        // Before the call: nothing runs.
        using (var cancelled = new CancellationTokenSource())
        {
            cancelled.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(Ask("Hi."), Greedy, cancelled.Token));
        }

        // During streaming: cancel after the first piece of an unlimited generation.
        using var cts = new CancellationTokenSource();
        int pieces = 0;
        var watch = Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync(Ask("Tell me a long story."), new ChatOptions { Temperature = 0 }, cts.Token))
            {
                pieces++;
                cts.Cancel();
            }
        });
        output.WriteLine($"cancelled after {pieces} piece(s), {watch.Elapsed.TotalMilliseconds:F1} ms");
        Assert.InRange(pieces, 1, 3);

        // During a non-streamed generation: a watcher cancels as soon as the context holds a generated token.
        using var cts2 = new CancellationTokenSource();
        using var freshForCancel = NewClient(contextLength: 4096); // position 0: no earlier request's tokens to mistake for progress
        int promptTokens = client.Tokenizer.Encode("Q: Tell me a long story.\nA:", addSpecial: true, parseSpecial: true).Length;
        var call = freshForCancel.GetResponseAsync(Ask("Tell me a long story."), new ChatOptions { Temperature = 0 }, cts2.Token);
        var watcher = Task.Run(() =>
        {
            var spin = Stopwatch.StartNew();
            while (freshForCancel.Generator.Context.Position <= promptTokens && !call.IsCompleted && spin.Elapsed < TimeSpan.FromSeconds(30)) Thread.SpinWait(20);
            int seen = freshForCancel.Generator.Context.Position;
            cts2.Cancel();
            return seen;
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        int positionAtCancel = await watcher;
        output.WriteLine($"non-streamed: cancelled at position {positionAtCancel} (prompt {promptTokens} tokens), stopped at {freshForCancel.Generator.Context.Position}");
        Assert.True(positionAtCancel > promptTokens, "the watcher saw no generated token");
        Assert.True(freshForCancel.Generator.Context.Position < positionAtCancel + 8, "the generation went on after the cancellation");

        // Abandoning an enumeration early (break) also stops the worker and frees the client.
        await foreach (var u in client.GetStreamingResponseAsync(Ask("Tell me a long story."), new ChatOptions { Temperature = 0 }))
            break;

        var after = await client.GetResponseAsync(Ask("Tell me about a cat."), Greedy);
        using var fresh = NewClient();
        Assert.Equal((await fresh.GetResponseAsync(Ask("Tell me about a cat."), Greedy)).Text, after.Text);
    }

    [Theory]
    [InlineData("Temperature")]
    [InlineData("NegativeTemperature")]
    [InlineData("TopP")]
    [InlineData("TopK")]
    [InlineData("MaxOutputTokens")]
    [InlineData("StopSequences")]
    [InlineData("ModelId")]
    [InlineData("min_p")]
    [InlineData("chat_template_kwargs")]
    public void BadOptions_ThrowArgumentException_NamingTheOption(string which)
    {
        using var client = NewClient();
        var (options, name) = which switch
        {
            "Temperature" => (new ChatOptions { Temperature = float.NaN }, "Temperature"),
            "NegativeTemperature" => (new ChatOptions { Temperature = -0.5f }, "Temperature"),
            "TopP" => (new ChatOptions { TopP = 1.5f }, "TopP"),
            "TopK" => (new ChatOptions { TopK = -1 }, "TopK"),
            "MaxOutputTokens" => (new ChatOptions { MaxOutputTokens = -1 }, "MaxOutputTokens"),
            "StopSequences" => (new ChatOptions { StopSequences = ["ok", ""] }, "StopSequences[1]"),
            "ModelId" => (new ChatOptions { ModelId = "gpt-4o" }, "ModelId"),
            "chat_template_kwargs" => (new ChatOptions { AdditionalProperties = new() { ["chat_template_kwargs"] = "enable_thinking=false" } }, "chat_template_kwargs"),
            _ => (new ChatOptions { AdditionalProperties = new() { ["min_p"] = 2.0f } }, "min_p"),
        };
        var e1 = Assert.ThrowsAny<ArgumentException>(() => client.GetResponseAsync(Ask("Hi."), options).GetAwaiter().GetResult());
        // Streaming checks the request when called, before any enumeration.
        var e2 = Assert.ThrowsAny<ArgumentException>(() => client.GetStreamingResponseAsync(Ask("Hi."), options));
        output.WriteLine(e1.Message);
        Assert.Contains(name, e1.Message, StringComparison.Ordinal);
        Assert.Contains(name, e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChatTemplateKwargs_ReachTheTemplate()
    {
        // Qwen3's switch: extra text only when the caller sets enable_thinking to false.
        var template = ChatTemplate.Parse("{% if enable_thinking is defined and enable_thinking is false %}{{ 'once upon a time there was a girl ' }}{% endif %}"
            + "{{ messages[0].content }}");
        using var client = new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 128, Threads = 1, Template = template });
        var plain = await client.GetResponseAsync(Ask("Hi"), new ChatOptions { Temperature = 0, MaxOutputTokens = 1 });
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 1, AdditionalProperties = new() { ["chat_template_kwargs"] = new Dictionary<string, object?> { ["enable_thinking"] = false } } };
        var switched = await client.GetResponseAsync(Ask("Hi"), options);
        output.WriteLine($"prompt tokens: {plain.Usage!.InputTokenCount} plain, {switched.Usage!.InputTokenCount} with enable_thinking = false");
        Assert.True(switched.Usage.InputTokenCount > plain.Usage.InputTokenCount + 5);
    }

    [Fact]
    public async Task Reasoning_ComesBackAsTextReasoningContent_WhenTheTemplateOpensABlock()
    {
        // As Qwen3's template: the prompt ends inside <think> (unless enable_thinking is false), so
        // stories260K's answer is all reasoning (it never writes </think>).
        var template = ChatTemplate.Parse("{{ messages[0].content }}{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
            + "{% else %}<think>\n{% endif %}");
        var greedy = new ChatOptions { Temperature = 0, MaxOutputTokens = 12 };
        string plainText;
        using (var plain = new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 128, Threads = 1, Template = template, ReasoningFormat = ReasoningFormat.None }))
            plainText = (await plain.GetResponseAsync(Ask("Once upon a time"), greedy)).Text;
        Assert.NotEmpty(plainText);

        using var client = new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 128, Threads = 1, Template = template });
        var response = await client.GetResponseAsync(Ask("Once upon a time"), greedy);
        Assert.Equal("", response.Text);
        Assert.Equal(plainText, Assert.Single(response.Messages[0].Contents.OfType<TextReasoningContent>()).Text);

        var streamed = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync(Ask("Once upon a time"), greedy))
        {
            Assert.Empty(update.Contents.OfType<TextContent>());
            foreach (var r in update.Contents.OfType<TextReasoningContent>()) streamed.Append(r.Text);
        }
        Assert.Equal(plainText, streamed.ToString());

        var off = new ChatOptions { Temperature = 0, MaxOutputTokens = 12, AdditionalProperties = new() { ["chat_template_kwargs"] = new Dictionary<string, object?> { ["enable_thinking"] = false } } };
        var reply = await client.GetResponseAsync(Ask("Once upon a time"), off);
        Assert.NotEmpty(reply.Text);
        Assert.Empty(reply.Messages[0].Contents.OfType<TextReasoningContent>());
    }

    [Fact]
    public void BadRequests_ThrowClearly()
    {
        using var client = NewClient(contextLength: 32);
        Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync([], Greedy));
        var tooLong = Assert.Throws<PromptTooLongException>(() => client.GetStreamingResponseAsync(Ask(string.Concat(Enumerable.Repeat("a long question ", 20))), Greedy));
        output.WriteLine(tooLong.Message);
        var image = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        Assert.Contains("DataContent", Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync([image], Greedy)).Message, StringComparison.Ordinal);
        Assert.Contains("ContextLength", Assert.Throws<ArgumentException>(() => new EdgeLlmChatClient(model.Path, new EdgeLlmChatClientOptions { ContextLength = 0 })).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NextTurn_ReusesTheKvCache_AndMatchesAFreshClient()
    {
        using var client = NewClient();
        var first = await client.GetResponseAsync(Ask("Tell me about a cat."), Greedy);
        List<ChatMessage> conversation = [.. Ask("Tell me about a cat."), .. first.Messages, new(ChatRole.User, "And a dog?")];
        var second = await client.GetResponseAsync(conversation, Greedy);
        output.WriteLine($"turn 1: {first.Usage!.InputTokenCount} prompt tokens; turn 2: {second.Usage!.InputTokenCount} prompt tokens, {second.Usage.CachedInputTokenCount} from the cache");
        Assert.True(second.Usage.CachedInputTokenCount >= first.Usage.InputTokenCount, "the first turn's prompt was evaluated again");

        using var fresh = NewClient();
        var again = await fresh.GetResponseAsync(conversation, Greedy);
        Assert.Equal(0, again.Usage!.CachedInputTokenCount);
        Assert.Equal(second.Text, again.Text);
        Assert.Equal(second.Usage.InputTokenCount, again.Usage.InputTokenCount);
    }

    [Fact]
    public async Task ConcurrentRequests_AreSerialized()
    {
        using var client = NewClient();
        string[] questions = ["Tell me about a cat.", "Tell me about a dog.", "Tell me about a bird."];
        var expected = new List<string>();
        foreach (var q in questions)
        {
            using var alone = NewClient();
            expected.Add((await alone.GetResponseAsync(Ask(q), Greedy)).Text);
        }
        // Six requests at once on one client (one context): each must get the answer it gets alone.
        var tasks = Enumerable.Range(0, 6).Select(i => i % 2 == 0
            ? client.GetResponseAsync(Ask(questions[i % 3]), Greedy)
            : client.GetStreamingResponseAsync(Ask(questions[i % 3]), Greedy).ToChatResponseAsync()).ToArray();
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < results.Length; i++) Assert.Equal(expected[i % 3], results[i].Text);
    }

    [Fact]
    public async Task Metadata_Instructions_AndFallbackTemplate()
    {
        using (var client = NewClient())
        {
            var meta = client.GetService<ChatClientMetadata>();
            Assert.NotNull(meta);
            Assert.Equal("edgellm", meta.ProviderName);
            Assert.Equal(client.ModelId, meta.DefaultModelId);
            Assert.Equal(new Uri(model.Path), meta.ProviderUri);
            Assert.Same(client, client.GetService<EdgeLlmChatClient>());
            Assert.Same(client.Model, client.GetService<Model>());
            Assert.Null(client.GetService<ChatClientMetadata>("some key"));
            Assert.Null(client.GetService<string>());

            // ModelId may name the client's own model.
            var named = await client.GetResponseAsync(Ask("Hi."), new ChatOptions { ModelId = client.ModelId, Temperature = 0, MaxOutputTokens = 4 });
            Assert.Equal(client.ModelId, named.ModelId);

            // Instructions become the system message, merged with a leading one.
            var tokenizer = client.Tokenizer;
            var plain = await client.GetResponseAsync(Ask("Hi."), new ChatOptions { Temperature = 0, MaxOutputTokens = 1 });
            var instructed = await client.GetResponseAsync(Ask("Hi."), new ChatOptions { Temperature = 0, MaxOutputTokens = 1, Instructions = "Be brief." });
            int system = tokenizer.Encode("Be brief.\n", addSpecial: false, parseSpecial: true).Length;
            output.WriteLine($"prompt {plain.Usage!.InputTokenCount} tokens, with instructions {instructed.Usage!.InputTokenCount}");
            Assert.InRange(instructed.Usage.InputTokenCount!.Value - plain.Usage.InputTokenCount!.Value, system - 1, system + 1);
        }

        // stories260K itself has no template: the fallback renders "user: ...\nassistant: ".
        using var model260K = Model.Load(SharedData.Model("stories260K"));
        using var fallback = new EdgeLlmChatClient(model260K, new EdgeLlmChatClientOptions { ContextLength = 256, Threads = 1, ModelId = "stories" });
        Assert.True(fallback.Template.IsFallback);
        var r = await fallback.GetResponseAsync(Ask("Hi."), new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });
        int expectedPrompt = fallback.Tokenizer.Encode("user: Hi.\nassistant: ", addSpecial: true, parseSpecial: true).Length;
        Assert.Equal(expectedPrompt, r.Usage!.InputTokenCount);
        Assert.Equal("stories", r.ModelId);
        Assert.Equal(8, r.Usage.OutputTokenCount);
    }
}
