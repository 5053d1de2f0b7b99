using EdgeLlm.Chat;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// <see cref="ToolCallFormat"/>: which format each real template in ../shared/chat_templates writes, how Llama 3.x's
/// and Mistral's calls are read out of replies, their required-call grammars, and the templates rendering the
/// calls and results back.
/// </summary>
public sealed class ToolCallFormatTests
{
    private static readonly string[] Names = ["get_weather", "tell_story"];

    private static ChatTemplate Shared(string file) => ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, file)));

    [Theory]
    [InlineData("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes")]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3")]
    [InlineData("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral")]
    [InlineData("meta-llama-Llama-3-8B-Instruct.jinja", null)]     // Llama 3.0: no tool calls in its template
    [InlineData("google-gemma-2-2b-it.jinja", null)]
    [InlineData("microsoft-Phi-3.5-mini-instruct.jinja", null)]
    public void Of_PicksTheTemplatesFormat(string file, string? format)
    {
        Assert.Equal(format, ToolCallFormat.Of(Shared(file))?.Name);
        Assert.Equal(format is not null, ToolCalls.Supports(Shared(file)));
    }

    [Fact]
    public void Llama3_ReadsTheCallAtTheStart()
    {
        var f = ToolCallFormat.Llama3;
        var (content, calls) = f.Parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": [1, 2]}}", Names);
        Assert.Null(content);
        var call = Assert.Single(calls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("{\"city\":\"Paris\",\"days\":[1,2]}", call.Arguments);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);

        // "type": "function" first, "arguments" for "parameters", two calls with ';', text after them.
        (content, calls) = f.Parse(" \n{\"type\": \"function\", \"name\": \"tell_story\", \"parameters\": {}}; {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\nDone.", Names);
        Assert.Equal(["tell_story", "get_weather"], calls.Select(c => c.Name));
        Assert.Equal("{\"city\":\"Rome\"}", calls[1].Arguments);
        Assert.NotEqual(calls[0].Id, calls[1].Id);
        Assert.Equal("Done.", content);

        // Not a call: text first (llama.cpp reads calls at the start only), an unknown function, no parameters,
        // another type, JSON cut short, an answer that is just JSON.
        foreach (var text in new[]
        {
            "Sure: {\"name\": \"get_weather\", \"parameters\": {}}",
            "{\"name\": \"rm_rf\", \"parameters\": {}}",
            "{\"name\": \"get_weather\"}",
            "{\"type\": \"code\", \"name\": \"get_weather\", \"parameters\": {}}",
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": ",
            "{\"city\": \"Paris\"}",
            "Once upon a time",
        })
        {
            (content, calls) = f.Parse(text, Names);
            Assert.Empty(calls);
            Assert.Equal(text.Trim(), content);
        }
        Assert.Null(f.Parse("  ", Names).Content);
    }

    [Fact]
    public void Mistral_ReadsTheArray_WithNineCharacterIds()
    {
        var f = ToolCallFormat.Mistral;
        foreach (var text in new[]
        {
            "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"tell_story\", \"arguments\": {}}]",
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"tell_story\", \"arguments\": {}, \"id\": \"abc123XYZ\"}]",
        })
        {
            var (content, calls) = f.Parse(text, Names);
            Assert.Null(content);
            Assert.Equal(["get_weather", "tell_story"], calls.Select(c => c.Name));
            Assert.Equal("{\"city\":\"Paris\"}", calls[0].Arguments);
            Assert.All(calls, c => Assert.Matches("^[a-zA-Z0-9]{9}$", c.Id));
        }
        // Text before the marker stays content.
        var (before, one) = f.Parse("Let me check.[TOOL_CALLS][{\"name\": \"tell_story\", \"arguments\": {}}]", Names);
        Assert.Equal("Let me check.", before);
        Assert.Single(one);
        // One element not a known call: the whole array stays content.
        const string Mixed = "[{\"name\": \"tell_story\", \"arguments\": {}}, {\"name\": \"rm_rf\", \"arguments\": {}}]";
        Assert.Empty(f.Parse(Mixed, Names).Calls);
        Assert.Equal(Mixed, f.Parse(Mixed, Names).Content);
        Assert.Empty(f.Parse("[1, 2, 3]", Names).Calls);
        Assert.Empty(f.Parse("[]", Names).Calls);
    }

    [Fact]
    public void RequiredCallGrammars_AreEachFormatsCall()
    {
        (string, IReadOnlyList<string>?)[] functions = [("get_weather", ["city"]), ("tell_story", []), ("anything", null)];
        var llama = ToolCallFormat.Llama3.RequiredCallGrammar(functions);
        Assert.True(llama.IsMatch("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}"));
        Assert.True(llama.IsMatch("{\"name\": \"tell_story\", \"parameters\": {}}"));
        Assert.True(llama.IsMatch("{\"name\": \"anything\", \"parameters\": {\"x\": [1, null]}}"));
        Assert.False(llama.IsPrefix("{\"name\": \"get_weather\", \"arguments\""));
        Assert.False(llama.IsPrefix("{\"name\": \"get_weather\", \"parameters\": {\"town\""));
        Assert.False(llama.IsPrefix("<tool_call>"));
        Assert.Single(ToolCallFormat.Llama3.Parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", ["get_weather"]).Calls);

        var mistral = ToolCallFormat.Mistral.RequiredCallGrammar(functions);
        Assert.True(mistral.IsMatch("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]"));
        Assert.True(mistral.IsMatch("[{\"name\": \"tell_story\", \"arguments\": {}}]"));
        Assert.False(mistral.IsPrefix("{\"name\""));
        Assert.Single(ToolCallFormat.Mistral.Parse("[{\"name\": \"tell_story\", \"arguments\": {}}]", Names).Calls);

        var hermes = ToolCallFormat.Hermes.RequiredCallGrammar(functions);
        Assert.True(hermes.IsMatch("<tool_call>\n{\"name\": \"tell_story\", \"arguments\": {}}\n</tool_call>"));
        Assert.False(hermes.IsPrefix("{\"name\""));
    }

    /// <summary>
    /// The arguments follow the parameter schema as llama.cpp lays out objects: required properties first, all
    /// present, in declared order; then optional ones in declared order, each at most once; values by type and enum.
    /// </summary>
    [Fact]
    public void RequiredCallGrammar_FollowsTheParameterSchema()
    {
        using var schema = System.Text.Json.JsonDocument.Parse("""
            {"type": "object", "properties": {
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
               "city": {"type": "string"},
               "days": {"type": "integer"},
               "hourly": {"type": "boolean"},
               "note": {"type": ["string", "null"]}},
             "required": ["city"]}
            """);
        var g = ToolCallFormat.Llama3.RequiredCallGrammar([new ToolFunction("get_weather", schema.RootElement), new ToolFunction("tell_story", null)]);
        string Call(string args) => "{\"name\": \"get_weather\", \"parameters\": " + args + "}";
        foreach (var ok in new[]
        {
            "{\"city\": \"Paris\"}",
            "{\"city\": \"Paris\", \"unit\": \"celsius\"}",
            "{\"city\": \"Paris\", \"unit\": \"fahrenheit\", \"days\": 3, \"hourly\": true, \"note\": null}",
            "{\"city\": \"Paris\", \"days\": -2, \"note\": \"x\"}",
            "{\"city\": \"Paris\", \"hourly\": false}",
        })
            Assert.True(g.IsMatch(Call(ok)), ok);
        foreach (var bad in new[]
        {
            "{}",                                                  // city is required
            "{\"unit\": \"celsius\", \"city\": \"Paris\"}",          // required properties come first
            "{\"city\": \"Paris\", \"days\": 3, \"unit\": \"celsius\"}", // optional ones in declared order
            "{\"city\": \"Paris\", \"unit\": \"kelvin\"}",            // not in the enum
            "{\"city\": \"Paris\", \"days\": 2.5}",                   // not an integer
            "{\"city\": 7}",                                     // not a string
            "{\"city\": \"Paris\", \"city\": \"Rome\"}",              // at most once
            "{\"city\": \"Paris\", \"town\": \"Rome\"}",              // not declared
        })
            Assert.False(g.IsMatch(Call(bad)), bad);
        Assert.True(g.IsMatch("{\"name\": \"tell_story\", \"parameters\": {}}"));
        Assert.False(g.IsPrefix("{\"name\": \"tell_story\", \"parameters\": {\""));
    }

    /// <summary>
    /// <see cref="ToolCallStreamer"/>: text that cannot be part of a call is released as it comes (a plain answer
    /// streams even with tools offered); what may be a call is held, and Finish gives the rest and the calls.
    /// Released + rest is always the content <see cref="ToolCallFormat.Parse"/> gives for the whole reply.
    /// </summary>
    [Theory]
    [InlineData("hermes", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "Let me check.\n", 1)]
    [InlineData("hermes", "Once upon a time <tool there was a cat.", "Once upon a time <tool there was a cat.", 0)]
    [InlineData("hermes", "A <tool_call>{\"name\": \"rm_rf\"}</tool_call> B", "A ", 0)]
    [InlineData("llama3", "{\"name\": \"tell_story\", \"parameters\": {}}", "", 1)]
    [InlineData("llama3", "Sure, {\"name\": \"tell_story\", \"parameters\": {}}", "Sure, {\"name\": \"tell_story\", \"parameters\": {}}", 0)]
    [InlineData("llama3", "  {\"city\": 1} is JSON", "", 0)]
    [InlineData("mistral", "[{\"name\": \"tell_story\", \"arguments\": {}}]", "", 1)]
    [InlineData("mistral", "I will call.[TOOL_CALLS][{\"name\": \"tell_story\", \"arguments\": {}}]", "I will call.", 1)]
    [InlineData("mistral", "No calls [TOOL here.", "No calls [TOOL here.", 0)]
    public void Streamer_ReleasesWhatCannotBeACall(string format, string reply, string streamed, int calls)
    {
        var f = format switch { "hermes" => ToolCallFormat.Hermes, "llama3" => ToolCallFormat.Llama3, _ => ToolCallFormat.Mistral };
        var streamer = new ToolCallStreamer(f, Names);
        var released = new System.Text.StringBuilder();
        // Two characters at a time: markers and JSON arrive split across pieces.
        for (int i = 0; i < reply.Length; i += 2)
        {
            string piece = streamer.Push(reply.Substring(i, Math.Min(2, reply.Length - i)));
            released.Append(piece);
            Assert.True(reply.StartsWith(released.ToString(), StringComparison.Ordinal), "released text is the reply's start");
        }
        Assert.Equal(streamed, released.ToString());
        var (rest, made) = streamer.Finish();
        Assert.Equal(calls, made.Count);
        var (content, parsed) = f.Parse(reply, Names);
        Assert.Equal(parsed.Select(c => (c.Name, c.Arguments)), made.Select(c => (c.Name, c.Arguments)));
        string whole = released + (rest ?? "");
        Assert.Equal(calls > 0 ? content ?? "" : reply, calls > 0 ? whole.Trim() : whole);
    }

    [Fact]
    public void Llama31Template_RendersToolsCallsAndResults()
    {
        var template = Shared("meta-llama-Llama-3.1-8B-Instruct.jinja");
        var tool = TemplateVariables.FromJson(System.Text.Json.JsonDocument.Parse(
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}").RootElement);
        ChatTurn[] messages =
        [
            new("user", "Weather in Paris?"),
            new("assistant", "") { ToolCalls = [new ChatToolCall("call_1", "get_weather", "{\"city\": \"Paris\"}")] },
            new("tool", "sunny") { ToolCallId = "call_1" },
        ];
        string text = template.Render(messages, addGenerationPrompt: true, "<|begin_of_text|>", "<|eot_id|>", extra: new Dictionary<string, object?> { ["tools"] = new List<object?> { tool } });
        Assert.Contains("Environment: ipython\n", text);
        Assert.Contains("Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.", text);
        Assert.Contains("\"name\": \"get_weather\"", text);
        // The call renders as the JSON the format reads back.
        Assert.Contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>", text);
        // A string is iterable to Jinja, so the template writes the result as JSON (a quoted string), as Python's Jinja does.
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>\n\n\"sunny\"<|eot_id|>", text);
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", text);
        Assert.Single(ToolCallFormat.Llama3.Parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", ["get_weather"]).Calls);
    }

    [Fact]
    public void MistralNemoTemplate_RendersToolsCallsAndResults()
    {
        var template = Shared("mistralai-Mistral-Nemo-Instruct-2407.jinja");
        var tool = TemplateVariables.FromJson(System.Text.Json.JsonDocument.Parse(
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}").RootElement);
        // The id the format makes is one the template takes (it refuses any but nine letters and digits).
        string id = ToolCallFormat.Mistral.Parse("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", ["get_weather"]).Calls[0].Id;
        ChatTurn[] messages =
        [
            new("user", "Weather in Paris?"),
            new("assistant", "") { ToolCalls = [new ChatToolCall(id, "get_weather", "{\"city\": \"Paris\"}")] },
            new("tool", "sunny") { ToolCallId = id },
        ];
        string text = template.Render(messages, addGenerationPrompt: true, "<s>", "</s>", extra: new Dictionary<string, object?> { ["tools"] = new List<object?> { tool } });
        Assert.Contains("[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", text);
        Assert.Contains("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"" + id + "\"}]</s>", text);
        Assert.Contains("[TOOL_RESULTS]{\"content\": sunny, \"call_id\": \"" + id + "\"}[/TOOL_RESULTS]", text);
        Assert.EndsWith("[/TOOL_RESULTS]", text);   // Mistral's model answers after the results; no generation prompt
    }
}
