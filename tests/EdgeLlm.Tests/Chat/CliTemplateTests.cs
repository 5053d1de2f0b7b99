using System.Text;
using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cli;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Chat;

/// <summary><c>edgellm template</c> run as a process.</summary>
public sealed class CliTemplateTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"edgellm-cli-template-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public CliTemplateTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CliRunner.Result Run(params string[] args)
    {
        var r = CliRunner.Run(args);
        _out.WriteLine($"$ edgellm {string.Join(' ', args)}  => exit {r.ExitCode}");
        _out.WriteLine(r.Stderr);
        return r;
    }

    private string WriteMessages(IEnumerable<ChatTurn> messages)
    {
        string path = Path.Combine(_dir, "messages.json");
        File.WriteAllText(path, JsonSerializer.Serialize(messages.Select(m => new Dictionary<string, string> { ["role"] = m.Role, ["content"] = m.Content })));
        return path;
    }

    [Fact]
    public void Template_SharedCase_StdoutBytesExact()
    {
        // Llama 3.1, non-ASCII and quotes, a newline in the content: stdout must be these UTF-8 bytes, no newline added.
        var c = ChatTemplateCasesTests.LoadCases().Single(x => x.Name == "meta-llama-Llama-3.1-8B-Instruct/unicode-and-quotes");
        var r = Run("template", "--template", Path.Combine(SharedData.ChatTemplates, c.Template), "--messages", WriteMessages(c.Messages), "--bos", c.Bos, "--eos", c.Eos);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(new UTF8Encoding(false).GetBytes(c.Expected!), r.StdoutBytes);
    }

    [Fact]
    public void Template_ReadsToolCallsAndReasoning_OfOpenAiMessages()
    {
        // The shape of gpt-oss's template: an assistant turn's thinking, its call (arguments as an object), the tool's answer.
        string template = Path.Combine(_dir, "calls.jinja");
        File.WriteAllText(template,
            "{% for m in messages %}{% if m.tool_calls %}[{{ m.thinking }}|{{ m.tool_calls[0].function.name }} {{ m.tool_calls[0].function.arguments | tojson }}]"
            + "{% elif m.role == 'tool' %}({{ m.tool_call_id }}: {{ m.content }}){% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}");
        string messages = Path.Combine(_dir, "calls.json");
        File.WriteAllText(messages, """
            [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "reasoning_content": "Need the weather.", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
             {"role": "tool", "tool_call_id": "c1", "content": "20 C"}]
            """);
        var r = Run("template", "--template", template, "--messages", messages);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("user: Weather in Paris?\n[Need the weather.|get_weather {\"city\": \"Paris\"}](c1: 20 C)", r.Stdout);

        File.WriteAllText(messages, """[{"role": "assistant", "content": "x", "tool_calls": {"name": "f"}}]""");
        var bad = Run("template", "--template", template, "--messages", messages);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("tool_calls", bad.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Template_NoGenerationPrompt_MatchesCase()
    {
        var c = ChatTemplateCasesTests.LoadCases().Single(x => x.Name == "microsoft-Phi-3.5-mini-instruct/no-generation-prompt");
        var r = Run("template", "--template", Path.Combine(SharedData.ChatTemplates, c.Template), "--messages", WriteMessages(c.Messages), "--bos", c.Bos, "--eos", c.Eos, "--no-generation-prompt");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(c.Expected, r.Stdout);
    }

    [Fact]
    public void Template_RaiseException_Exit2WithMessageAndLine()
    {
        var r = Run("template", "--template", Path.Combine(SharedData.ChatTemplates, "google-gemma-2-2b-it.jinja"),
            "--messages", WriteMessages([new("system", "s"), new("user", "u")]));
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Matches(@"input error: .*google-gemma-2-2b-it\.jinja: template line 1, column \d+: System role not supported", r.Stderr);
    }

    [Fact]
    public void Template_SyntaxError_Exit2NamesLine()
    {
        string t = Path.Combine(_dir, "bad.jinja");
        File.WriteAllText(t, "ok\n{% for m in messages %}\n{{ m.content }\n{% endfor %}");
        var r = Run("template", "--template", t, "--messages", WriteMessages([new("user", "u")]));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("template line 3", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Template_BadJson_Exit2_Usage_Exit1()
    {
        string bad = Path.Combine(_dir, "bad.json");
        File.WriteAllText(bad, "[{\"role\": \"user\", \"content\": ");
        string tpl = Path.Combine(SharedData.ChatTemplates, "google-gemma-2-2b-it.jinja");
        var r = Run("template", "--template", tpl, "--messages", bad);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("invalid JSON", r.Stderr, StringComparison.Ordinal);

        File.WriteAllText(bad, "[{\"role\": \"user\"}]");
        r = Run("template", "--template", tpl, "--messages", bad);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("message 0 needs a string \"content\"", r.Stderr, StringComparison.Ordinal);

        Assert.Equal(1, Run("template", "--messages", bad).ExitCode);
        Assert.Equal(1, Run("template", "--template", tpl).ExitCode);
        Assert.Equal(1, Run("template", "--template", tpl, "--messages", bad, "--date", "2024-13-01").ExitCode);
    }

    [Fact]
    public void Template_Date_FixesStrftimeNow()
    {
        string t = Path.Combine(_dir, "date.jinja");
        File.WriteAllText(t, "{{ strftime_now('%d %b %Y') }}|{{ messages|length }}");
        var r = Run("template", "--template", t, "--messages", WriteMessages([new("user", "u")]), "--date", "2024-02-29");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("29 Feb 2024|1", r.Stdout);
    }

    [Fact]
    public void Template_Model_UsesItsTemplateAndBosEos()
    {
        string model = Path.Combine(_dir, "with-template.gguf");
        using (var src = GgufFile.Open(SharedData.Model("stories260K")))
            new GgufWriter().CopyMetadata(src).Set(ChatTemplate.GgufKey, "{{ bos_token }}|{{ eos_token }}|{{ messages[0].content }}").Write(model);
        var r = Run("template", "-m", model, "--messages", WriteMessages([new("user", "Hi")]));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("<s>|</s>|Hi", r.Stdout);
        r = Run("template", "-m", model, "--messages", WriteMessages([new("user", "Hi")]), "--bos", "B");
        Assert.Equal("B|</s>|Hi", r.Stdout);
    }

    [Fact]
    public void Template_ChatTemplateKwargs_AreTemplateVariables()
    {
        // The construct of Qwen3's template: thinking is switched off by a variable the caller passes.
        string t = Path.Combine(_dir, "think.jinja");
        File.WriteAllText(t, "{{ messages[0].content }}|{% if enable_thinking is defined and enable_thinking is false %}no-think{% else %}think{% endif %}"
            + "|{{ extra.n + 1 if extra is defined else '' }}|{{ tags|join(',') if tags is defined else '' }}");
        string msgs = WriteMessages([new("user", "Hi")]);
        Assert.Equal("Hi|think||", Run("template", "--template", t, "--messages", msgs).Stdout);
        var r = Run("template", "--template", t, "--messages", msgs, "--chat-template-kwargs", "{\"enable_thinking\": false, \"extra\": {\"n\": 41}, \"tags\": [\"a\", \"b\"]}");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("Hi|no-think|42|a,b", r.Stdout);

        r = Run("template", "--template", t, "--messages", msgs, "--chat-template-kwargs", "{enable_thinking: false}");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--chat-template-kwargs is not valid JSON", r.Stderr, StringComparison.Ordinal);
        r = Run("template", "--template", t, "--messages", msgs, "--chat-template-kwargs", "[false]");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--chat-template-kwargs must be a JSON object", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Template_ModelWithoutTemplate_FallsBackAndSaysSo()
    {
        var r = Run("template", "-m", SharedData.Model("stories260K"), "--messages", WriteMessages([new("user", "Hi")]));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("user: Hi\nassistant: ", r.Stdout);
        Assert.Contains("has no chat template", r.Stderr, StringComparison.Ordinal);
    }
}
