using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// Function calling over <c>/v1/chat/completions</c> (OpenAI's <c>tools</c>, <c>tool_choice</c>,
/// <c>tool_calls</c>, <c>tool</c> messages), with Qwen2.5's real chat template (../shared/chat_templates)
/// injected into a copy of stories260K. stories260K never calls a function by itself, so
/// <c>tool_choice: "required"</c> (the grammar of one call in the template's format) makes it: the reply must come back as
/// a parsed call, streamed or not; the follow-up conversation with the call and its result must render.
/// </summary>
public sealed class ServerToolTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _model = Path.Combine(Path.GetTempPath(), $"edgellm-tools-{Guid.NewGuid():N}.gguf");

    private const string Tools = """
        [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "tell_story", "parameters": {"type": "object", "properties": {}}}}]
        """;

    private const string Messages = "\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}]";

    public ServerToolTests(ITestOutputHelper output)
    {
        _output = output;
        Chat.TemplatedStoriesModel.Write(_model, File.ReadAllText(Path.Combine(SharedData.ChatTemplates, "Qwen-Qwen2.5-7B-Instruct.jinja")));
    }

    public void Dispose() => File.Delete(_model);

    [Fact]
    public async Task RequiredCall_ComesBackAsToolCalls_StreamedOrNot()
    {
        using var server = ServerProcess.StartWith(_model, "-c", "1024");
        using var client = server.Client(withKey: false);

        // Not streamed: finish_reason tool_calls, content null, one call with JSON arguments.
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
            "{" + Messages + ", \"max_tokens\": 120, \"temperature\": 0, \"tools\": " + Tools + ", \"tool_choice\": \"required\"}");
        _output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = message.GetProperty("tool_calls")[0];
        Assert.StartsWith("call_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("function", call.GetProperty("type").GetString());
        string name = call.GetProperty("function").GetProperty("name").GetString()!;
        Assert.Contains(name, new[] { "get_weather", "tell_story" });
        using (var args = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!))
            Assert.Equal(JsonValueKind.Object, args.RootElement.ValueKind);

        // A named function: that one.
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
            "{" + Messages + ", \"max_tokens\": 120, \"temperature\": 0.7, \"seed\": 1, \"tools\": " + Tools
            + ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"tell_story\"}}}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("tell_story", json.GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function").GetProperty("name").GetString());

        // Streamed: the call comes as one tool_calls delta with index 0, then finish_reason tool_calls.
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("{" + Messages + ", \"max_tokens\": 120, \"temperature\": 0, \"stream\": true, \"tools\": " + Tools + ", \"tool_choice\": \"required\"}",
                Encoding.UTF8, "application/json"),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string body = await response.Content.ReadAsStringAsync();
        _output.WriteLine(body);
        string? streamedName = null, finish = null;
        foreach (var line in body.Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            using var chunk = JsonDocument.Parse(line["data: ".Length..]);
            foreach (var c in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (c.GetProperty("delta").TryGetProperty("tool_calls", out var calls))
                {
                    Assert.Equal(0, calls[0].GetProperty("index").GetInt32());
                    streamedName = calls[0].GetProperty("function").GetProperty("name").GetString();
                }
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = c.GetProperty("finish_reason").GetString();
            }
        }
        Assert.Equal(name, streamedName);
        Assert.Equal("tool_calls", finish);
    }

    [Fact]
    public async Task AutoChoice_AndTheFollowUpConversation()
    {
        using var server = ServerProcess.StartWith(_model, "-c", "1024");
        using var client = server.Client(withKey: false);
        // auto: stories260K writes a story, not a call: plain content, finish stop or length.
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
            "{" + Messages + ", \"max_tokens\": 20, \"temperature\": 0, \"tools\": " + Tools + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        Assert.NotEqual("tool_calls", choice.GetProperty("finish_reason").GetString());
        Assert.False(string.IsNullOrEmpty(choice.GetProperty("message").GetProperty("content").GetString()));

        // Streamed on auto: a reply that is not a call streams as it is written (several content deltas), not held to the end.
        var streamRequest = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("{" + Messages + ", \"max_tokens\": 20, \"temperature\": 0, \"stream\": true, \"tools\": " + Tools + "}", Encoding.UTF8, "application/json"),
        };
        using (var streamed = await client.SendAsync(streamRequest, HttpCompletionOption.ResponseHeadersRead))
        {
            string body = await streamed.Content.ReadAsStringAsync();
            int deltas = body.Split('\n').Count(l => l.StartsWith("data: {", StringComparison.Ordinal) && l.Contains("\"content\":\"", StringComparison.Ordinal) && !l.Contains("\"content\":\"\"", StringComparison.Ordinal));
            Assert.True(deltas > 3, $"{deltas} content deltas: {body}");
            Assert.DoesNotContain("tool_calls", body, StringComparison.Ordinal);
        }

        // The conversation after a call: the assistant's tool_calls and the tool's answer render through the template.
        const string FollowUp = """
            {"messages": [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}],
             "max_tokens": 8, "temperature": 0, "tools": 
            """;
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", FollowUp + Tools + "}");
        _output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        // The prompt held the call and the tool response: more tokens than the question alone.
        Assert.True(json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > 150);
    }

    /// <summary>
    /// Llama 3.1's and Mistral Nemo's real templates: a required call in their formats (Llama 3's bare JSON,
    /// Mistral's array) comes back as tool_calls, Mistral's id nine letters and digits, and the call and its
    /// result render back through the template in the next request.
    /// </summary>
    [Theory]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct.jinja", "^call_[0-9a-f]{24}$")]
    [InlineData("mistralai-Mistral-Nemo-Instruct-2407.jinja", "^[a-zA-Z0-9]{9}$")]
    public async Task RequiredCall_InLlama3AndMistralFormats(string templateFile, string idPattern)
    {
        string model = Path.Combine(Path.GetTempPath(), $"edgellm-tools-{Guid.NewGuid():N}.gguf");
        Chat.TemplatedStoriesModel.Write(model, File.ReadAllText(Path.Combine(SharedData.ChatTemplates, templateFile)));
        try
        {
            using var server = ServerProcess.StartWith(model, "-c", "1024");
            using var client = server.Client(withKey: false);
            var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
                "{" + Messages + ", \"max_tokens\": 120, \"temperature\": 0, \"tools\": " + Tools + ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}}");
            _output.WriteLine(json.GetRawText());
            Assert.Equal(HttpStatusCode.OK, status);
            var choice = json.GetProperty("choices")[0];
            Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
            var call = choice.GetProperty("message").GetProperty("tool_calls")[0];
            string id = call.GetProperty("id").GetString()!;
            Assert.Matches(idPattern, id);
            Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
            string arguments = call.GetProperty("function").GetProperty("arguments").GetString()!;
            // Held to the schema: an object with the required "city", a string, and nothing else declared.
            using (var args = JsonDocument.Parse(arguments))
                Assert.Equal(JsonValueKind.String, Assert.Single(args.RootElement.EnumerateObject(), p => p.Name == "city").Value.ValueKind);

            // The call and its result go back: the template renders them (Mistral's checks the id), the model answers.
            string followUp = "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": ["
                + call.GetRawText() + "]}, {\"role\": \"tool\", \"tool_call_id\": \"" + id + "\", \"content\": \"sunny\"}], \"max_tokens\": 4, \"temperature\": 0, \"tools\": " + Tools + "}";
            (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", followUp);
            _output.WriteLine(json.GetRawText());
            Assert.Equal(HttpStatusCode.OK, status);
        }
        finally
        {
            File.Delete(model);
        }
    }

    [Theory]
    [InlineData("\"tools\": [{\"type\": \"code\"}]", "tools")]
    [InlineData("\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"a b\"}}]", "tools")]
    [InlineData("\"tools\": " + "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]" + ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"g\"}}", "tool_choice")]
    [InlineData("\"tools\": " + "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]" + ", \"tool_choice\": \"always\"", "tool_choice")]
    [InlineData("\"tools\": " + "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]" + ", \"tool_choice\": \"required\", \"grammar\": \"root ::= \\\"x\\\"\"", "tool_choice")]
    public async Task BadTools_Get400_NamingTheField(string fields, string param)
    {
        using var server = ServerProcess.StartWith(_model, "-c", "256");
        using var client = server.Client(withKey: false);
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{" + Messages + ", " + fields + "}");
        _output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(param, json.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>A template without a tool-call format EdgeLlm reads (stories260K's fallback): tools are a 400, not calls lost in the text.</summary>
    [Fact]
    public async Task ToolsWithATemplateWithoutCalls_Get400()
    {
        using var server = ServerProcess.Start("-c", "256");
        using var client = server.Client(withKey: false);
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{" + Messages + ", \"tools\": " + Tools + "}");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("Hermes-style <tool_call>", json.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        // tool_choice none: the tools are ignored, the reply is plain.
        (status, _, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{" + Messages + ", \"max_tokens\": 4, \"tools\": " + Tools + ", \"tool_choice\": \"none\"}");
        Assert.Equal(HttpStatusCode.OK, status);
    }
}
