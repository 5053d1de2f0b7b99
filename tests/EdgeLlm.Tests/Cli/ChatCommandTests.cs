using System.Globalization;
using System.Text.RegularExpressions;
using EdgeLlm.Chat;
using EdgeLlm.Gguf;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary>
/// <c>edgellm chat</c> driven through a pseudo-terminal (<see cref="PtyChat"/>): answers on stdout,
/// prompt and status lines on stderr, the KV cache kept across turns, /reset, /system, Ctrl-C,
/// end-of-turn tokens and a full context. Expected answers come from <c>edgellm run</c> on the
/// prompt the template renders, so a wrong prompt or a wrong reuse of the cache shows.
/// </summary>
public sealed partial class ChatCommandTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-chat-tests-" + Guid.NewGuid().ToString("N"));

    public ChatCommandTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
    }

    private static string Stories => SharedData.Model("stories260K");

    private sealed record Status(int PromptTokens, int Reused, int AnswerTokens, string Stopped);

    [GeneratedRegex(@"\[prompt: (\d+) tokens, (\d+) reused; answer: (\d+) tokens, [0-9.]+ tok/s; stopped: ([^\];]+)")]
    private static partial Regex StatusRegex();

    private static List<Status> StatusLines(string stderr) =>
        StatusRegex().Matches(stderr).Select(m => new Status(
            int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
            int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), m.Groups[4].Value)).ToList();

    /// <summary>What <c>edgellm run</c> generates after <paramref name="prompt"/> (its stdout is the prompt, the text, a newline).</summary>
    private string RunAnswer(string model, string prompt, params string[] extra)
    {
        var r = CliRunner.Run(["run", "-m", model, "-p", prompt, "--temp", "0", .. extra]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith(prompt, r.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("\n", r.Stdout, StringComparison.Ordinal);
        string answer = r.Stdout[prompt.Length..^1];
        _out.WriteLine($"run -p {prompt.Replace("\n", "\\n", StringComparison.Ordinal)} => {answer.Replace("\n", "\\n", StringComparison.Ordinal)}");
        return answer;
    }

    private void Log(PtyChat chat, int exitCode)
    {
        _out.WriteLine($"exit {exitCode}");
        _out.WriteLine(chat.Transcript());
    }

    [Fact]
    public void Chat_Harmony_AnalysisGoesToStderr_StdoutKeepsTheReply()
    {
        // A harmony template (gpt-oss's shape) that opens the analysis channel: stories260K's greedy answer is all analysis.
        string model = Path.Combine(_dir, "harmony.gguf");
        Chat.TemplatedStoriesModel.Write(model, "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}"
            + "{% if add_generation_prompt %}<|start|>assistant<|channel|>analysis<|message|>{% endif %}");
        using var chat = new PtyChat(["chat", "-m", model, "-c", "256", "-n", "24", "--temp", "0"]);
        chat.WaitStderr("> ");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 1);
        chat.Send("/exit");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(0, code);
        string analysis = RunAnswer(Stories, "<|start|>user<|message|>Once upon a time<|end|><|start|>assistant<|channel|>analysis<|message|>", "-n", "24", "-c", "256");
        Assert.False(string.IsNullOrWhiteSpace(analysis));
        Assert.Contains(analysis + "\n", chat.Stderr, StringComparison.Ordinal);
        Assert.Equal("\n", chat.Stdout);
    }

    [Fact]
    public void Chat_Fallback_TwoTurnsResetSystem_DeterministicAndReusesTheCache()
    {
        using var chat = new PtyChat(["chat", "-m", Stories, "-c", "256", "-n", "40", "--temp", "0"]);
        chat.WaitStderr("> ");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 1);
        chat.Send("/reset");
        chat.WaitStderr("[conversation cleared]");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 2);
        chat.Send("She was happy");
        chat.WaitStderr("[prompt:", 3);
        chat.Send("/reset");
        chat.Send("/system Tell a story.");
        chat.WaitStderr("[system prompt set");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 4);
        chat.Send("/exit");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(0, code);
        Assert.Contains("has no chat template", chat.Stderr, StringComparison.Ordinal);

        var s = StatusLines(chat.Stderr);
        Assert.Equal(4, s.Count);
        foreach (var st in s) _out.WriteLine(st.ToString());
        // Turn 1 starts from an empty cache; after /reset the same prompt is all in the cache but
        // its last token, which is evaluated again for its logits.
        Assert.Equal(0, s[0].Reused);
        Assert.Equal(s[0].PromptTokens, s[1].PromptTokens);
        Assert.Equal(s[1].PromptTokens - 1, s[1].Reused);
        // The third turn keeps the KV entries of the second turn's prompt and (most of) its answer.
        Assert.True(s[2].Reused > s[1].PromptTokens, $"turn 3 reused {s[2].Reused} tokens; turn 2's prompt alone was {s[1].PromptTokens}");
        Assert.True(s[2].PromptTokens > s[1].PromptTokens + s[1].AnswerTokens);
        Assert.All(s, st => Assert.Equal("-n 40 reached", st.Stopped));

        string a = RunAnswer(Stories, "user: Once upon a time\nassistant: ", "-n", "40", "-c", "256");
        string withSystem = RunAnswer(Stories, "system: Tell a story.\nuser: Once upon a time\nassistant: ", "-n", "40", "-c", "256");
        // Answers only on stdout, one newline after each; turn 2 (after /reset) repeats turn 1.
        string stdout = chat.Stdout;
        Assert.StartsWith(a + "\n" + a + "\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("\n" + withSystem + "\n", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("[prompt:", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("> ", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_TemplateModel_StopsAtEndOfTurnToken_AndEvaluatesOnlyTheNewTurn()
    {
        // stories260K with a chat template whose assistant turns end with ".", declared as the
        // end-of-turn token (tokenizer.ggml.eot_token_id), like <|im_end|> in real templates.
        string model = Path.Combine(_dir, "stories-with-template.gguf");
        int dot;
        using (var src = GgufFile.Open(Stories))
        {
            dot = Tokenizer.FromGguf(src).TokenId(".") ?? throw new InvalidOperationException("stories260K has no \".\" token");
            var w = new GgufWriter().CopyMetadata(src)
                .Set(ChatTemplate.GgufKey, "{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}.{% endif %}{% endfor %}")
                .Set("tokenizer.ggml.eot_token_id", (uint)dot);
            foreach (var t in src.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, src.GetTensorData(t).ToArray());
            w.Write(model);
        }
        _out.WriteLine($"end-of-turn token: {dot} (\".\")");

        using var chat = new PtyChat(["chat", "-m", model, "-c", "128", "-n", "60", "--temp", "0"]);
        chat.WaitStderr("> ");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 1);
        chat.Send(" She");
        chat.WaitStderr("[prompt:", 2);
        chat.Type("\x04");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(0, code);
        Assert.DoesNotContain("no chat template", chat.Stderr, StringComparison.Ordinal);

        var s = StatusLines(chat.Stderr);
        Assert.Equal(2, s.Count);
        foreach (var st in s) _out.WriteLine(st.ToString());
        Assert.All(s, st => Assert.Equal("end of turn", st.Stopped));
        // Turn 2's prompt is turn 1's prompt + answer + "." + " She": everything up to the
        // end-of-turn token (never evaluated) comes from the cache.
        Assert.True(s[1].Reused >= s[0].PromptTokens + s[0].AnswerTokens - 1,
            $"turn 2 reused {s[1].Reused}; turn 1 left {s[0].PromptTokens + s[0].AnswerTokens} tokens in the cache");
        Assert.True(s[1].PromptTokens - s[1].Reused <= 4, $"turn 2 evaluated {s[1].PromptTokens - s[1].Reused} tokens");

        // `run` on the crafted model stops at the same token (end of generation, not printed).
        string a1 = RunAnswer(model, "Once upon a time", "-n", "60", "-c", "128");
        string a2 = RunAnswer(model, "Once upon a time" + a1 + ". She", "-n", "60", "-c", "128");
        Assert.Equal(a1 + "\n" + a2 + "\n", chat.Stdout);
        Assert.DoesNotContain(".", a1, StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_ChatTemplateKwargs_ReachTheTemplate()
    {
        // Qwen3's switch: the template adds words only when enable_thinking is false.
        string model = Path.Combine(_dir, "stories-kwargs.gguf");
        Chat.TemplatedStoriesModel.Write(model, "{% if enable_thinking is defined and enable_thinking is false %}once upon a time there was {% endif %}"
            + "{% for m in messages %}{{ m.content }}{% endfor %}");
        int PromptTokens(params string[] extra)
        {
            using var chat = new PtyChat(["chat", "-m", model, "-c", "128", "-n", "4", "--temp", "0", .. extra]);
            chat.WaitStderr("> ");
            chat.Send("Hi");
            chat.WaitStderr("[prompt:", 1);
            chat.Type("\x04");
            int code = chat.WaitExit();
            Log(chat, code);
            Assert.Equal(0, code);
            return StatusLines(chat.Stderr)[0].PromptTokens;
        }
        int plain = PromptTokens();
        int switched = PromptTokens("--chat-template-kwargs", "{\"enable_thinking\": false}");
        Assert.True(switched > plain + 3, $"prompt tokens {switched} with the variable, {plain} without");
    }

    [Fact]
    public void Chat_CtrlC_StopsTheAnswerAndGoesOn_CtrlCAtThePromptExits130()
    {
        // A long answer: no -n, a large context, a model that rambles.
        using var chat = new PtyChat(["chat", "-m", Stories, "-c", "16384", "--temp", "0"]);
        chat.WaitStderr("> ");
        chat.Send("Once upon a time");
        // The answer streams: text arrives while it is still being generated.
        chat.WaitStdout(300);
        Assert.Equal(0, PtyChat.Count(chat.Stderr, "[prompt:"));
        chat.Type("\x03");
        chat.WaitStderr("[prompt:", 1);
        chat.WaitStderr("> ", 2);
        int before = chat.Stdout.Length;
        chat.Send("/reset");
        chat.WaitStderr("[conversation cleared]");
        chat.Send("Once upon a time");
        chat.WaitStdout(before + 300);
        chat.Type("\x03");
        chat.WaitStderr("[prompt:", 2);
        chat.WaitStderr("> ", 4);
        chat.Type("\x03");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(130, code);
        Assert.Contains("edgellm: interrupted", chat.Stderr, StringComparison.Ordinal);

        var s = StatusLines(chat.Stderr);
        Assert.Equal(2, s.Count);
        foreach (var st in s) _out.WriteLine(st.ToString());
        Assert.All(s, st => Assert.Equal("interrupted", st.Stopped));
        Assert.All(s, st => Assert.InRange(st.AnswerTokens, 50, 16000));
        Assert.Equal(s[0].PromptTokens - 1, s[1].Reused);
        // Each interrupted answer still ends with one newline, and both start the same way (greedy).
        string stdout = chat.Stdout;
        Assert.EndsWith("\n", stdout, StringComparison.Ordinal);
        Assert.StartsWith(stdout[..200], stdout[before..], StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_ContextFull_SaysSoDropsOldTurnsAndGoesOn()
    {
        using var chat = new PtyChat(["chat", "-m", Stories, "-c", "48", "--temp", "0"]);
        chat.WaitStderr("> ");
        chat.Send("Once upon a time");
        chat.WaitStderr("[prompt:", 1);
        chat.Send("She was happy");
        chat.WaitStderr("[prompt:", 2);
        chat.Send(string.Join(' ', Enumerable.Repeat("The little dog ran to the park.", 12)));
        chat.WaitStderr("not sent");
        chat.Send("The end");
        chat.WaitStderr("[prompt:", 3);
        chat.Type("\x04");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(0, code);

        string err = chat.Stderr;
        var s = StatusLines(err);
        Assert.Equal(3, s.Count);
        foreach (var st in s) _out.WriteLine(st.ToString());
        Assert.Equal("context full", s[0].Stopped);
        // The last token sampled is printed but never evaluated: it needs no KV entry.
        Assert.Equal(48 + 1, s[0].PromptTokens + s[0].AnswerTokens);
        Assert.Contains("the context is full (48 tokens)", err, StringComparison.Ordinal);
        // Turn 2 does not fit after turn 1: the oldest turn goes, and stderr says so.
        Assert.Contains("outgrew the context (48 tokens): dropped the 1 oldest turn", err, StringComparison.Ordinal);
        Assert.Contains("not sent: with this message the prompt is", err, StringComparison.Ordinal);
        Assert.EndsWith("\n", chat.Stdout, StringComparison.Ordinal);
    }

    /// <summary><c>chat --grammar</c>: every answer is a sentence of the grammar, and finishing it ends the turn.</summary>
    [Fact]
    public void Chat_Grammar_ConstrainsEveryAnswer()
    {
        const string Grammar = "root ::= (\"yes\" | \"no\") \", \" [a-z]{1,8} \".\"";
        using var chat = new PtyChat(["chat", "-m", Stories, "-c", "256", "-n", "40", "--temp", "0.7", "--seed", "3", "--grammar", Grammar]);
        chat.WaitStderr("> ");
        chat.Send("Is the cat happy?");
        chat.WaitStderr("[prompt:", 1);
        chat.Send("And the dog?");
        chat.WaitStderr("[prompt:", 2);
        chat.Send("/exit");
        int code = chat.WaitExit();
        Log(chat, code);
        Assert.Equal(0, code);
        var g = EdgeLlm.Sampling.GbnfGrammar.Parse(Grammar);
        string[] answers = chat.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, answers.Length);
        Assert.All(answers, a => Assert.True(g.IsMatch(a.TrimEnd('\r')), a));
        Assert.All(StatusLines(chat.Stderr), st => Assert.Equal("end of turn", st.Stopped));
        var bad = CliRunner.Run(["chat", "-m", Stories, "--grammar", "root ::= (", "-c", "64"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--grammar: grammar line 1", bad.Stderr, StringComparison.Ordinal);
    }

    /// <summary><c>chat -md</c> and <c>chat --lookup-ngram</c>: speculative decoding gives the same answers, turn after turn.</summary>
    [Fact]
    public void Chat_Speculative_GivesTheSameAnswers()
    {
        string Answers(params string[] extra)
        {
            using var chat = new PtyChat(["chat", "-m", Stories, "-c", "256", "-n", "30", "--temp", "0", .. extra]);
            chat.WaitStderr("> ");
            chat.Send("Once upon a time");
            chat.WaitStderr("[prompt:", 1);
            chat.Send("She was happy");
            chat.WaitStderr("[prompt:", 2);
            chat.Send("/exit");
            int code = chat.WaitExit();
            Log(chat, code);
            Assert.Equal(0, code);
            return chat.Stdout;
        }
        string alone = Answers();
        Assert.Equal(alone, Answers("-md", SharedData.Model("stories260K-q8_0")));
        Assert.Equal(alone, Answers("--lookup-ngram", "2"));
        var both = CliRunner.Run(["chat", "-m", Stories, "-md", Stories, "--lookup-ngram", "2", "-c", "64"]);
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("give either --model-draft or --lookup-ngram", both.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_BadArguments_AndEndOfInputAtOnce()
    {
        var r = CliRunner.Run(["chat", "-m", Stories, "-n", "0"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("-n must be -1 (no limit) or >= 1", r.Stderr, StringComparison.Ordinal);
        r = CliRunner.Run(["chat", "-m", Stories, "--temp", "-1"]);
        Assert.Equal(1, r.ExitCode);
        r = CliRunner.Run(["chat", "-m", Stories, "--chat-template-kwargs", "[1]"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--chat-template-kwargs must be a JSON object", r.Stderr, StringComparison.Ordinal);
        // stdin closed at once (CliRunner): no question, no answer, exit 0.
        r = CliRunner.Run(["chat", "-m", Stories, "-c", "64"]);
        _out.WriteLine(r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("> ", r.Stderr, StringComparison.Ordinal);
    }
}
