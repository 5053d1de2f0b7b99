using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// The real chat templates in ../shared/chat_templates against their renderings by jinja2 as
/// Hugging Face calls it (cases.json): every case must render byte for byte, or fail with the
/// template's own raise_exception message.
/// </summary>
public class ChatTemplateCasesTests
{
    private readonly ITestOutputHelper _out;

    public ChatTemplateCasesTests(ITestOutputHelper output) => _out = output;

    internal sealed record Case(string Name, string Template, List<ChatTurn> Messages, bool AddGenerationPrompt, string Bos, string Eos, string? Expected, string? Error);

    internal static List<Case> LoadCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "cases.json")));
        var cases = new List<Case>();
        foreach (var c in doc.RootElement.EnumerateArray())
        {
            var messages = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatTurn(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
            string template = c.GetProperty("template").GetString()!;
            cases.Add(new Case(
                template.Replace(".jinja", "", StringComparison.Ordinal) + "/" + c.GetProperty("case").GetString(),
                template,
                messages,
                c.GetProperty("add_generation_prompt").GetBoolean(),
                c.GetProperty("bos_token").GetString()!,
                c.GetProperty("eos_token").GetString()!,
                c.TryGetProperty("expected", out var e) ? e.GetString() : null,
                c.TryGetProperty("error", out var err) ? err.GetString() : null));
        }
        return cases;
    }

    [Fact]
    public void AllCases_RenderExactlyAsJinja2()
    {
        var cases = LoadCases();
        Assert.Equal(24, cases.Count);
        var failures = new List<string>();
        int pass = 0, errors = 0;
        foreach (var c in cases)
        {
            var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, c.Template)));
            try
            {
                string got = template.Render(c.Messages, c.AddGenerationPrompt, c.Bos, c.Eos);
                if (c.Error is not null) failures.Add($"{c.Name}: rendered, but jinja2 raised '{c.Error}'");
                else if (got != c.Expected) failures.Add($"{c.Name}: got {JsonSerializer.Serialize(got)}, expected {JsonSerializer.Serialize(c.Expected)}");
                else pass++;
            }
            catch (TemplateException e)
            {
                if (c.Error is not null && e.Reason == c.Error && e.RaisedByTemplate) { pass++; errors++; }
                else failures.Add($"{c.Name}: {e.Message}");
            }
        }
        foreach (var f in failures) _out.WriteLine("FAIL " + f);
        _out.WriteLine($"chat template cases: {pass} of {cases.Count} pass ({errors} expected raise_exception errors), {cases.Select(c => c.Template).Distinct().Count()} templates");
        Assert.Empty(failures);
    }

    [Fact]
    public void Gemma_SystemRole_RaisesTemplatesOwnMessage_WithLine()
    {
        var t = ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "google-gemma-2-2b-it.jinja")));
        var e = Assert.Throws<TemplateException>(() => t.Render([new("system", "s"), new("user", "u")], true, "<bos>", "<eos>"));
        Assert.Equal("System role not supported", e.Reason);
        Assert.True(e.RaisedByTemplate);
        Assert.Equal(1, e.Line);
        Assert.Contains("line 1, column", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Mistral_NonAlternatingRoles_Raise()
    {
        var t = ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "mistralai-Mistral-Nemo-Instruct-2407.jinja")));
        var e = Assert.Throws<TemplateException>(() => t.Render([new("user", "a"), new("user", "b")], true, "<s>", "</s>"));
        Assert.StartsWith("After the optional system message, conversation roles must alternate", e.Reason, StringComparison.Ordinal);
        Assert.Equal(18, e.Line);
    }

    [Fact]
    public void Llama31_ExtraVariables_DateStringAndTools()
    {
        var t = ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "meta-llama-Llama-3.1-8B-Instruct.jinja")));
        var tools = new List<object?>
        {
            new Dictionary<string, object?> { ["name"] = "get_time", ["parameters"] = new Dictionary<string, object?> { ["tz"] = "UTC" } },
        };
        string got = t.Render([new("user", "What time is it?")], true, "<|begin_of_text|>", "<|eot_id|>",
            extra: new Dictionary<string, object?> { ["date_string"] = "01 Jan 2025", ["tools"] = tools });
        Assert.Contains("Today Date: 01 Jan 2025\n\n", got, StringComparison.Ordinal);
        Assert.Contains("Environment: ipython\n", got, StringComparison.Ordinal);
        // tojson(indent=4): json.dumps layout.
        Assert.Contains("{\n    \"name\": \"get_time\",\n    \"parameters\": {\n        \"tz\": \"UTC\"\n    }\n}\n\nWhat time is it?<|eot_id|>", got, StringComparison.Ordinal);
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", got, StringComparison.Ordinal);
    }
}
