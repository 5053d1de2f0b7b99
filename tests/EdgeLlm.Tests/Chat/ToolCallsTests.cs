using EdgeLlm.Chat;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary><see cref="ToolCalls"/>: Hermes blocks read out of replies, the grammar of a required call, and rendering calls through Qwen2.5's template.</summary>
public sealed class ToolCallsTests
{
    private static readonly string[] Names = ["get_weather", "tell_story"];

    [Fact]
    public void Parse_ReadsCalls_AndLeavesTheRest()
    {
        var (content, calls) = ToolCalls.Parse("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>", Names);
        Assert.Null(content);
        var call = Assert.Single(calls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("{\"city\":\"Paris\",\"days\":[1,2]}", call.Arguments);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);

        // Text around two calls; a block naming an unknown function, or not JSON, stays text.
        (content, calls) = ToolCalls.Parse("Let me check.\n<tool_call>{\"name\": \"tell_story\"}</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}</tool_call>"
            + "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call><tool_call>oops</tool_call>", Names);
        Assert.Equal(2, calls.Count);
        Assert.Equal("{}", calls[0].Arguments);
        Assert.Equal("{\"city\": \"Rome\"}", calls[1].Arguments);   // arguments given as a string stay that string
        Assert.NotEqual(calls[0].Id, calls[1].Id);
        Assert.Equal("Let me check.\n\n<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call><tool_call>oops</tool_call>", content);

        // No block, or an unterminated one: all content.
        Assert.Empty(ToolCalls.Parse("Once upon a time", Names).Calls);
        Assert.Equal("<tool_call>{\"name\": \"tell_story\"", ToolCalls.Parse("<tool_call>{\"name\": \"tell_story\"", Names).Content);
    }

    [Fact]
    public void RequiredCallGrammar_AllowsOneCall_WithTheDeclaredKeys()
    {
        var g = ToolCalls.RequiredCallGrammar([("get_weather", ["city", "unit"]), ("tell_story", []), ("anything", null)]);
        Assert.True(g.IsMatch("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"C\"}}\n</tool_call>"));
        Assert.True(g.IsMatch("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
        Assert.False(g.IsPrefix("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\""));   // not a declared key
        Assert.True(g.IsMatch("<tool_call>\n{\"name\": \"tell_story\", \"arguments\": {}}\n</tool_call>"));
        Assert.False(g.IsPrefix("<tool_call>\n{\"name\": \"tell_story\", \"arguments\": {\""));         // no parameters: {}
        Assert.True(g.IsMatch("<tool_call>\n{\"name\": \"anything\", \"arguments\": {\"x\": [1, {\"y\": null}]}}\n</tool_call>"));
        Assert.False(g.IsPrefix("<tool_call>\n{\"name\": \"other"));
        Assert.False(g.IsPrefix("Sure! <tool_call>"));
        foreach (var text in new[] { "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>" })
            Assert.Single(ToolCalls.Parse(text, ["get_weather"]).Calls);
    }

    [Fact]
    public void Qwen25Template_RendersToolsCallsAndResults()
    {
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "Qwen-Qwen2.5-7B-Instruct.jinja")));
        Assert.True(ToolCalls.Supports(template));
        Assert.False(ToolCalls.Supports(ChatTemplate.Fallback));
        var tool = TemplateVariables.FromJson(System.Text.Json.JsonDocument.Parse(
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}").RootElement);
        ChatTurn[] messages =
        [
            new("user", "Weather in Paris?"),
            new("assistant", "") { ToolCalls = [new ChatToolCall("call_1", "get_weather", "{\"city\": \"Paris\"}")] },
            new("tool", "sunny") { ToolCallId = "call_1" },
        ];
        string text = template.Render(messages, addGenerationPrompt: true, null, "<|im_end|>", extra: new Dictionary<string, object?> { ["tools"] = new List<object?> { tool } });
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n</tools>", text);
        Assert.Contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>", text);
        Assert.Contains("<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>", text);
        Assert.EndsWith("<|im_start|>assistant\n", text);
    }

    /// <summary>EdgeLlmChatClient with tools: a required call comes back as FunctionCallContent (streamed or not), and the conversation carries on with the result.</summary>
    [Fact]
    public async Task ChatClient_RequiredCall_AndTheResult()
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-client-tools-{Guid.NewGuid():N}.gguf");
        TemplatedStoriesModel.Write(path, File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "Qwen-Qwen2.5-7B-Instruct.jinja")));
        try
        {
            using var client = new EdgeLlmChatClient(path, new EdgeLlmChatClientOptions { ContextLength = 1024, Threads = 1 });
            var story = Microsoft.Extensions.AI.AIFunctionFactory.Create(() => "Once upon a time there was a cat.", "tell_story", "Tells a story");
            var options = new Microsoft.Extensions.AI.ChatOptions
            {
                Temperature = 0, MaxOutputTokens = 80, Tools = [story], ToolMode = Microsoft.Extensions.AI.ChatToolMode.RequireSpecific("tell_story"),
            };
            List<Microsoft.Extensions.AI.ChatMessage> messages = [new(Microsoft.Extensions.AI.ChatRole.User, "Tell me a story")];
            var r = await client.GetResponseAsync(messages, options);
            Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, r.FinishReason);
            var call = Assert.Single(r.Messages[0].Contents.OfType<Microsoft.Extensions.AI.FunctionCallContent>());
            Assert.Equal("tell_story", call.Name);

            // Streamed: the same call, in one update.
            var updates = new List<Microsoft.Extensions.AI.ChatResponseUpdate>();
            await foreach (var u in client.GetStreamingResponseAsync(messages, options)) updates.Add(u);
            Assert.Equal("tell_story", Assert.Single(updates.SelectMany(u => u.Contents).OfType<Microsoft.Extensions.AI.FunctionCallContent>()).Name);
            Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, updates[^1].FinishReason);

            // The call and its result go back in; with tools on auto the model answers in text.
            messages.Add(r.Messages[0]);
            messages.Add(new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.Tool, [new Microsoft.Extensions.AI.FunctionResultContent(call.CallId, "Once upon a time there was a cat.")]));
            var after = await client.GetResponseAsync(messages, new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 10, Tools = [story] });
            Assert.NotEqual(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, after.FinishReason);
            Assert.True(after.Usage!.InputTokenCount > r.Usage!.InputTokenCount);

            // Streamed with tools on auto, a reply that is no call streams piece by piece (ToolCallStreamer), not held to the end.
            int texts = 0;
            await foreach (var u in client.GetStreamingResponseAsync(messages, new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 12, Tools = [story] }))
                texts += u.Contents.OfType<Microsoft.Extensions.AI.TextContent>().Count(t => t.Text.Length > 0);
            Assert.True(texts > 3, $"{texts} text updates");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
