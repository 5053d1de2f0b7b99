using EdgeLlm.Chat;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;
using EdgeLlm.Tests.Engine;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// gpt-oss's harmony format: <see cref="HarmonySplitter"/> (reasoning, reply and calls out of the channels, in any
/// streamed pieces), <see cref="ToolCallFormat.Harmony"/>, and a <see cref="ChatSession"/> over a vocabulary with
/// harmony's control tokens whose "model" writes an analysis and a final message.
/// </summary>
public class HarmonyTests
{
    private const string Analysis = "<|channel|>analysis<|message|>The user greets. Answer briefly.<|end|>";

    [Theory]
    // The template's generation prompt ends with <|start|>assistant: analysis, then a final message.
    [InlineData("assistant", Analysis + "<|start|>assistant<|channel|>final<|message|>Hello there!", true,
        "The user greets. Answer briefly.", "Hello there!")]
    // Without <|end|> (control tokens not rendered): <|start|> ends the message too.
    [InlineData("assistant", "<|channel|>analysis<|message|>Think.<|start|>assistant<|channel|>final<|message|>Hi", true, "Think.", "Hi")]
    // A template that opens the final channel itself: everything is the reply.
    [InlineData("assistant<|channel|>final<|message|>", "Just the answer.", true, "", "Just the answer.")]
    // Preambles on the commentary channel are reply text.
    [InlineData("assistant", "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant<|channel|>final<|message|>Done", true, "", "Checking.Done")]
    // A model that ignores the format: its text is the reply.
    [InlineData("assistant", "Hello without headers", true, "", "Hello without headers")]
    // A reply cut inside the analysis: all reasoning.
    [InlineData("assistant", "<|channel|>analysis<|message|>cut <|en", true, "cut <|en", "")]
    // --reasoning-format none: the analysis stays in the reply as written.
    [InlineData("assistant", Analysis + "<|start|>assistant<|channel|>final<|message|>Hi", false, "",
        Analysis + "Hi")]
    [InlineData("", "", true, "", "")]
    public void Splits_AndStreamingInAnyPieces_GivesTheSame(string openHeader, string answer, bool split, string reasoning, string content)
    {
        Assert.Equal((reasoning, content), new HarmonySplitter(openHeader, split).SplitAll(answer));
        foreach (int size in new[] { 1, 2, 3, 7 })
        {
            var s = new HarmonySplitter(openHeader, split);
            string r = "", c = "";
            for (int i = 0; i < answer.Length; i += size)
            {
                var (pr, pc) = s.Push(answer.Substring(i, Math.Min(size, answer.Length - i)));
                if (split) Assert.DoesNotContain("<|", pr + pc, StringComparison.Ordinal);
                r += pr;
                c += pc;
            }
            var (fr, fc) = s.Flush();
            Assert.Equal((reasoning, content), (r + fr, c + fc));
        }
    }

    [Fact]
    public void Reply_StreamsAsItIsWritten_NotAtTheEnd()
    {
        var s = new HarmonySplitter("assistant");
        Assert.Equal(("", ""), s.Push("<|channel|>final<|mess"));
        Assert.Equal(("", "Hel"), s.Push("age|>Hel"));
        Assert.Equal(("", "lo"), s.Push("lo<|e"));   // "<|e" may begin <|end|>: held
        Assert.Equal(("", "<|e"), s.Flush());
        var plain = new HarmonySplitter("assistant");
        Assert.Equal(("", "Plain"), plain.Push("Plain")); // no header: released at once
    }

    [Theory]
    [InlineData("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}")]
    [InlineData(" to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Paris\"}")]
    public void Call_IsReadByTheHarmonyFormat(string callMessage)
    {
        string answer = "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant" + callMessage;
        var (reasoning, reply) = new HarmonySplitter("assistant").SplitAll(answer);
        Assert.Equal("Need the weather.", reasoning);
        var (text, calls) = ToolCallFormat.Harmony.Parse(reply, ["get_weather", "tell_story"]);
        Assert.Null(text);
        var call = Assert.Single(calls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("{\"city\":\"Paris\"}", call.Arguments);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);

        // A function nobody offered, or arguments that are not an object: the text stays content.
        Assert.Empty(ToolCallFormat.Harmony.Parse(reply, ["tell_story"]).Calls);
        var (_, broken) = new HarmonySplitter("assistant").SplitAll("<|channel|>commentary to=functions.get_weather<|message|>{\"city\":");
        Assert.Empty(ToolCallFormat.Harmony.Parse(broken, ["get_weather"]).Calls);

        // A prompt that opened the call itself (…to=functions.get_weather<|channel|>commentary json<|message|>).
        var (_, opened) = new HarmonySplitter("assistant to=functions.get_weather<|channel|>commentary json<|message|>").SplitAll("{\"city\": \"Paris\"}");
        Assert.Equal("get_weather", Assert.Single(ToolCallFormat.Harmony.Parse(opened, ["get_weather"]).Calls).Name);

        // Streamed through a ToolCallStreamer: a preamble is released, the call is held and comes whole at the end.
        var streamer = new ToolCallStreamer(ToolCallFormat.Harmony, ["get_weather"]);
        var (_, preambleAndCall) = new HarmonySplitter("assistant").SplitAll("<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant" + callMessage);
        string released = "";
        foreach (char ch in preambleAndCall) released += streamer.Push(ch.ToString());
        Assert.Equal("Let me check.", released);
        var (rest, made) = streamer.Finish();
        Assert.Null(rest);
        Assert.Equal("get_weather", Assert.Single(made).Name);
    }

    [Fact]
    public void Format_IsFoundFromTheTemplate_AndCannotForceACall()
    {
        var template = ChatTemplate.Parse(HarmonyTemplate);
        Assert.True(Harmony.Writes(template));
        Assert.Same(ToolCallFormat.Harmony, ToolCallFormat.Of(template));
        Assert.False(ToolCallFormat.Harmony.CanRequireCall);
        Assert.True(ToolCallFormat.Hermes.CanRequireCall);
        Assert.False(Harmony.Writes(ChatTemplate.Parse("{{ messages[0].content }}<|im_start|>assistant")));

        Assert.Equal("assistant", Harmony.OpenHeader("<|start|>user<|message|>Hi<|end|><|start|>assistant"));
        Assert.Equal("assistant<|channel|>final<|message|>", Harmony.OpenHeader("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>"));
        Assert.Equal("", Harmony.OpenHeader("<|start|>user<|message|>Hi<|end|>"));
        Assert.Equal("", Harmony.OpenHeader("no markers"));
    }

    /// <summary>A harmony template of our own (the shape of gpt-oss's: earlier turns' analysis dropped, the final channel rendered).</summary>
    internal const string HarmonyTemplate =
        "<|start|>system<|message|>You are a test.<|end|>"
        + "{% for m in messages %}"
        + "{% if m.role == 'user' %}<|start|>user<|message|>{{ m.content }}<|end|>"
        + "{% elif m.role == 'assistant' %}<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>{% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}";

    [Fact]
    public void Reasoning_ReachesTheTemplate_AsThinkingAndReasoningContent()
    {
        var template = ChatTemplate.Parse("{% for m in messages %}[{{ m.thinking }}|{{ m.reasoning_content }}|{{ m.content }}]{% endfor %}");
        string text = template.Render([new ChatTurn("user", "Hi"), new ChatTurn("assistant", "Hello") { Reasoning = "greet" }], false, null, null);
        Assert.Equal("[||Hi][greet|greet|Hello]", text);
    }

    /// <summary>
    /// stories260K's vocabulary with its last seven pieces replaced by harmony's markers (control tokens): the
    /// markers are one token each, <c>&lt;|return|&gt;</c> and <c>&lt;|call|&gt;</c> end a generation and
    /// <c>&lt;|end|&gt;</c> does not (as in o200k_harmony).
    /// </summary>
    internal static string WriteHarmonyVocabulary(string path, string template = HarmonyTemplate)
    {
        using var src = GgufFile.Open(SharedData.Model("stories260K"));
        src.TryGetValue("tokenizer.ggml.tokens", out var tv);
        src.TryGetValue("tokenizer.ggml.token_type", out var tt);
        string[] tokens = (string[])tv.AsStringArray()!.Clone();
        int[] types = (int[])tt.AsInt32Array()!.Clone();
        string[] markers = [Harmony.Start, Harmony.End, Harmony.Message, Harmony.Channel, Harmony.Constrain, Harmony.Return, Harmony.Call];
        for (int i = 0; i < markers.Length; i++)
        {
            tokens[tokens.Length - 1 - i] = markers[i];
            types[tokens.Length - 1 - i] = 3; // CONTROL
        }
        var w = new GgufWriter().CopyMetadata(src)
            .Set("tokenizer.ggml.tokens", GgufValue.From(tokens))
            .Set("tokenizer.ggml.token_type", GgufValue.From(types))
            .Set(ChatTemplate.GgufKey, template);
        foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
        w.Write(path);
        return path;
    }

    [Fact]
    public void ChatSession_YieldsTheReply_SendsTheAnalysisToReasoning_AndKeepsBoth()
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-harmony-{Guid.NewGuid():N}.gguf");
        try
        {
            WriteHarmonyVocabulary(path);
            using var file = GgufFile.Open(path);
            var tok = Tokenizer.FromGguf(file);
            int ret = tok.Encode(Harmony.Return, addSpecial: false, parseSpecial: true).Single();
            Assert.True(tok.IsEndOfGeneration(ret));
            Assert.False(tok.IsEndOfGeneration(tok.Encode(Harmony.End, addSpecial: false, parseSpecial: true).Single()));

            int[] script = Script(tok, Analysis + "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>");
            var session = new ChatSession(new TextGenerator(new ScriptedContext(script, tok.VocabSize, 512), tok), ChatTemplate.FromGguf(file)!);
            var reasoning = new List<string>();
            session.Reasoning = reasoning.Add;
            var options = new GenerationOptions { Sampling = new SamplerOptions { Temperature = 0f }, MaxTokens = 200 };
            string reply = string.Concat(session.Stream("Hi", options));

            Assert.Equal("Hello there!", reply);
            Assert.Equal("The user greets. Answer briefly.", string.Concat(reasoning));
            Assert.Equal(FinishReason.EndOfGeneration, session.LastResult!.Reason);
            var turn = session.Messages[^1];
            Assert.Equal(("assistant", "Hello there!", "The user greets. Answer briefly."), (turn.Role, turn.Content, turn.Reasoning));
            // The generation itself rendered the markers (they are control tokens).
            Assert.Contains("<|channel|>final<|message|>Hello there!", session.LastResult.Text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task ChatClient_AnswersWithTheAnalysisAsReasoning_StreamedOrNot()
    {
        // The prompt opens the analysis channel: stories260K's greedy answer (no markers) is all analysis.
        const string OpensAnalysis =
            "{% for m in messages %}{% if m.role == 'assistant' %}<|start|>assistant<|channel|>analysis<|message|>{{ m.thinking }}<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>"
            + "{% else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}{% endfor %}"
            + "{% if add_generation_prompt %}<|start|>assistant<|channel|>analysis<|message|>{% endif %}";
        var template = ChatTemplate.Parse(OpensAnalysis);
        var greedy = new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 12 };
        List<Microsoft.Extensions.AI.ChatMessage> ask = [new(Microsoft.Extensions.AI.ChatRole.User, "Once upon a time")];
        using var client = new EdgeLlmChatClient(SharedData.Model("stories260K"), new EdgeLlmChatClientOptions { ContextLength = 256, Threads = 1, Template = template });
        var response = await client.GetResponseAsync(ask, greedy);
        string reasoning = Assert.Single(response.Messages[0].Contents.OfType<Microsoft.Extensions.AI.TextReasoningContent>()).Text;
        Assert.False(string.IsNullOrWhiteSpace(reasoning));
        Assert.Equal("", response.Text);

        var streamed = new System.Text.StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync(ask, greedy))
        {
            Assert.Empty(update.Contents.OfType<Microsoft.Extensions.AI.TextContent>());
            foreach (var r in update.Contents.OfType<Microsoft.Extensions.AI.TextReasoningContent>()) streamed.Append(r.Text);
        }
        Assert.Equal(reasoning, streamed.ToString());

        // An earlier reply's reasoning is rendered back as its thinking.
        Microsoft.Extensions.AI.ChatMessage Reply(bool withReasoning) => new(Microsoft.Extensions.AI.ChatRole.Assistant,
            withReasoning ? [new Microsoft.Extensions.AI.TextReasoningContent("the cat sat on the mat and the dog ran"), new Microsoft.Extensions.AI.TextContent("there was")]
                          : [new Microsoft.Extensions.AI.TextContent("there was")]);
        var one = new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 1 };
        var bare = await client.GetResponseAsync([.. ask, Reply(false), new(Microsoft.Extensions.AI.ChatRole.User, "go on")], one);
        var full = await client.GetResponseAsync([.. ask, Reply(true), new(Microsoft.Extensions.AI.ChatRole.User, "go on")], one);
        Assert.True(full.Usage!.InputTokenCount > bare.Usage!.InputTokenCount + 5);

        // A required call cannot be forced in harmony.
        var tool = Microsoft.Extensions.AI.AIFunctionFactory.Create((string city) => "20 C", "get_weather");
        var required = new Microsoft.Extensions.AI.ChatOptions { Tools = [tool], ToolMode = Microsoft.Extensions.AI.ChatToolMode.RequireAny };
        Assert.Contains("harmony", Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(ask, required)).Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The tokens a harmony model writes for <paramref name="text"/>: a token per marker, the text between as byte
    /// tokens (SentencePiece's encoder would put its dummy-prefix space before each piece after a marker).
    /// </summary>
    private static int[] Script(Tokenizer tok, string text)
    {
        var ids = new List<int>();
        int pos = 0;
        while (pos < text.Length)
        {
            int next = text.IndexOf("<|", pos, StringComparison.Ordinal);
            if (next == pos)
            {
                int close = text.IndexOf("|>", pos, StringComparison.Ordinal) + 2;
                ids.Add(tok.TokenId(text[pos..close])!.Value);
                pos = close;
                continue;
            }
            int end = next < 0 ? text.Length : next;
            foreach (byte b in System.Text.Encoding.UTF8.GetBytes(text[pos..end])) ids.Add(tok.TokenId($"<0x{b:X2}>")!.Value);
            pos = end;
        }
        return [.. ids];
    }

}
