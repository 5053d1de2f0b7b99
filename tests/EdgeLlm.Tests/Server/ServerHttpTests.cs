using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>One <c>edgellm serve --api-key … --parallel 2</c> shared by the request-validation tests.</summary>
public sealed class SharedServer : IDisposable
{
    public ServerProcess Server { get; } = ServerProcess.Start("--api-key", ServerProcess.ApiKey, "--parallel", "2", "-c", "256");

    public void Dispose() => Server.Dispose();
}

/// <summary>Raw HTTP against the server: every bad request gets its status and OpenAI's error object; the server stays up.</summary>
public sealed class ServerHttpTests(SharedServer fixture, ITestOutputHelper output) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    internal static async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> PostAsync(HttpClient client, string path, string json)
    {
        var response = await client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(text);
        return (response.StatusCode, doc.RootElement.Clone(), response);
    }

    /// <summary>A streamed chat completion (<paramref name="json"/> must ask for it): its reasoning_content and content deltas, joined.</summary>
    internal static async Task<(string Reasoning, string Content)> StreamChatAsync(HttpClient client, string json)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            using var doc = JsonDocument.Parse(line["data: ".Length..]);
            var delta = doc.RootElement.GetProperty("choices")[0].GetProperty("delta");
            if (delta.TryGetProperty("reasoning_content", out var r)) reasoning.Append(r.GetString());
            if (delta.TryGetProperty("content", out var c)) content.Append(c.GetString());
        }
        return (reasoning.ToString(), content.ToString());
    }

    /// <summary>Asserts OpenAI's error shape: {"error": {"message", "type", "param", "code"}}; returns the error object.</summary>
    internal static JsonElement AssertError(JsonElement body)
    {
        var error = body.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("param", out _), "error.param is missing");
        Assert.True(error.TryGetProperty("code", out _), "error.code is missing");
        return error;
    }

    private const string Chat = "/v1/chat/completions";
    private const string Messages = "\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]";

    [Theory]
    [InlineData("{")]
    [InlineData("{\"messages\": [}")]
    [InlineData("[]")]
    [InlineData("\"just a string\"")]
    [InlineData("")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 5,}")]
    public async Task MalformedJson_Gets400(string body)
    {
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, Chat, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = AssertError(json);
        Assert.Equal("invalid_json", error.GetProperty("code").GetString());
        output.WriteLine(error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData(Chat, "{" + Messages + ", \"max_tokens\": \"5\"}", "max_tokens")]
    [InlineData(Chat, "{" + Messages + ", \"max_tokens\": 2.5}", "max_tokens")]
    [InlineData(Chat, "{" + Messages + ", \"max_completion_tokens\": -3}", "max_completion_tokens")]
    [InlineData(Chat, "{" + Messages + ", \"temperature\": \"hot\"}", "temperature")]
    [InlineData(Chat, "{" + Messages + ", \"temperature\": -1}", "temperature")]
    [InlineData(Chat, "{" + Messages + ", \"top_p\": 1.5}", "top_p")]
    [InlineData(Chat, "{" + Messages + ", \"seed\": \"x\"}", "seed")]
    [InlineData(Chat, "{" + Messages + ", \"stream\": \"yes\"}", "stream")]
    [InlineData(Chat, "{" + Messages + ", \"stop\": 5}", "stop")]
    [InlineData(Chat, "{" + Messages + ", \"stop\": [\"a\", 1]}", "stop")]
    [InlineData(Chat, "{" + Messages + ", \"model\": 7}", "model")]
    [InlineData(Chat, "{\"messages\": \"Hi\"}", "messages")]
    [InlineData(Chat, "{\"messages\": []}", "messages")]
    [InlineData(Chat, "{}", "messages")]
    [InlineData(Chat, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content")]
    [InlineData(Chat, "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "messages[0].role")]
    [InlineData(Chat, "{\"messages\": [{\"content\": \"x\"}]}", "messages[0].role")]
    [InlineData(Chat, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}", "messages[0].content[0].type")]
    [InlineData(Chat, "{" + Messages + ", \"n\": 2}", "n")]
    [InlineData(Chat, "{" + Messages + ", \"tools\": [{\"type\": \"function\"}]}", "tools")]
    [InlineData(Chat, "{" + Messages + ", \"stream_options\": 1}", "stream_options")]
    [InlineData(Chat, "{" + Messages + ", \"chat_template_kwargs\": [true]}", "chat_template_kwargs")]
    [InlineData(Chat, "{" + Messages + ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", \"schema\": {}}}}", "response_format")]
    [InlineData(Chat, "{" + Messages + ", \"response_format\": {\"type\": \"yaml\"}}", "response_format")]
    [InlineData(Chat, "{" + Messages + ", \"json_schema\": [1]}", "json_schema")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"json_schema\": {\"type\": \"object\", \"allOf\": []}}", "json_schema")]
    [InlineData(Chat, "{" + Messages + ", \"json_schema\": {}, \"response_format\": {\"type\": \"json_object\"}}", "json_schema")]
    [InlineData(Chat, "{" + Messages + ", \"grammar\": 5}", "grammar")]
    [InlineData(Chat, "{" + Messages + ", \"grammar\": \"root ::= x\"}", "grammar")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"grammar\": \"root ::= \\\"a\", \"json_schema\": {}}", "grammar")]
    [InlineData("/v1/completions", "{\"prompt\": 5}", "prompt")]
    [InlineData("/v1/completions", "{}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": [1, 99999]}", "prompt")]
    [InlineData("/v1/completions", "{\"prompt\": \"x\", \"n\": 3}", "n")]
    public async Task WrongFields_Get400_NamingTheField(string path, string body, string param)
    {
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, path, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = AssertError(json);
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        output.WriteLine($"{param}: {error.GetProperty("message").GetString()}");
    }

    /// <summary>response_format json_object: the reply is JSON as far as it goes and opens an object; a closed object ends it with "stop".</summary>
    [Fact]
    public async Task JsonObjectFormat_ConstrainsTheReply()
    {
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, Chat,
            "{" + Messages + ", \"max_tokens\": 40, \"temperature\": 0, \"response_format\": {\"type\": \"json_object\"}}");
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        string content = choice.GetProperty("message").GetProperty("content").GetString()!;
        string finish = choice.GetProperty("finish_reason").GetString()!;
        output.WriteLine($"{finish}: {content}");
        Assert.StartsWith("{", content.TrimStart(), StringComparison.Ordinal);
        byte[] bytes = Encoding.UTF8.GetBytes(content);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(bytes), content);
        if (finish == "stop") Assert.True(EdgeLlm.Sampling.JsonConstraint.IsCompleteObject(bytes), content);
        else Assert.Equal("length", finish);
    }

    /// <summary>response_format json_schema: the reply follows the schema as far as it goes; an unsupported keyword is a 400 naming it.</summary>
    [Fact]
    public async Task JsonSchemaFormat_ConstrainsTheReply()
    {
        const string Schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"mood\": {\"enum\": [\"happy\", \"sad\"]}, " +
            "\"toys\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}, \"required\": [\"name\", \"mood\", \"toys\"], \"additionalProperties\": false}";
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, Chat,
            "{" + Messages + ", \"max_tokens\": 60, \"temperature\": 0, \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"girl\", \"strict\": true, \"schema\": " + Schema + "}}}");
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        string content = choice.GetProperty("message").GetProperty("content").GetString()!;
        string finish = choice.GetProperty("finish_reason").GetString()!;
        output.WriteLine($"{finish}: {content}");
        var node = EdgeLlm.Sampling.JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        byte[] bytes = Encoding.UTF8.GetBytes(content);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(bytes, node), content);
        if (finish == "stop") Assert.True(EdgeLlm.Sampling.JsonConstraint.IsCompleteObject(bytes, node), content);

        var (bad, error, _) = await PostAsync(client, Chat,
            "{" + Messages + ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", \"schema\": {\"type\": \"object\", \"allOf\": []}}}}");
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("response_format", AssertError(error).GetProperty("param").GetString());
        Assert.Contains("allOf", error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    /// <summary>llama-server's grammar field (GBNF), on both endpoints: the reply is a sentence of the grammar, and finishing it ends the reply with "stop".</summary>
    [Theory]
    [InlineData(Chat)]
    [InlineData("/v1/completions")]
    public async Task GrammarField_ConstrainsTheReply(string path)
    {
        const string Grammar = "root ::= item{1,3} \"done\"\nitem ::= \"- \" [a-z]{1,8} (\" \" [a-z]{1,8})? \"\\n\"";
        string grammarJson = JsonSerializer.Serialize(Grammar);
        string body = path == Chat
            ? "{" + Messages + ", \"max_tokens\": 80, \"temperature\": 0, \"grammar\": " + grammarJson + "}"
            : "{\"prompt\": \"Once upon a time\", \"max_tokens\": 80, \"temperature\": 0.8, \"seed\": 3, \"grammar\": " + grammarJson + "}";
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, path, body);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        string content = path == Chat ? choice.GetProperty("message").GetProperty("content").GetString()! : choice.GetProperty("text").GetString()!;
        string finish = choice.GetProperty("finish_reason").GetString()!;
        output.WriteLine($"{finish}: {content}");
        var g = EdgeLlm.Sampling.GbnfGrammar.Parse(Grammar);
        Assert.Equal("stop", finish);
        Assert.True(g.IsMatch(content), content);
    }

    /// <summary>llama-server's top-level json_schema field works on text completions too.</summary>
    [Fact]
    public async Task JsonSchemaField_OnCompletions_ConstrainsTheText()
    {
        const string Schema = "{\"type\": \"object\", \"properties\": {\"tale\": {\"type\": \"string\"}}, \"required\": [\"tale\"]}";
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, "/v1/completions",
            "{\"prompt\": \"Once upon a time\", \"max_tokens\": 30, \"temperature\": 0, \"json_schema\": " + Schema + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        string text = json.GetProperty("choices")[0].GetProperty("text").GetString()!;
        output.WriteLine(text);
        Assert.StartsWith("{", text, StringComparison.Ordinal);
        var node = EdgeLlm.Sampling.JsonSchemaNode.Parse(JsonDocument.Parse(Schema).RootElement);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(text), node), text);
    }

    [Fact]
    public async Task UnknownModel_Gets404_ModelNotFound()
    {
        using var client = Server.Client();
        var (status, json, _) = await PostAsync(client, Chat, "{\"model\": \"gpt-4o\", " + Messages + "}");
        Assert.Equal(HttpStatusCode.NotFound, status);
        var error = AssertError(json);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("model", error.GetProperty("param").GetString());
        var models = await client.GetAsync(new Uri("/v1/models/gpt-4o", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, models.StatusCode);
        var own = await client.GetStringAsync(new Uri("/v1/models/stories260K", UriKind.Relative));
        Assert.Contains("\"id\":\"stories260K\"", own, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingOrWrongKey_Gets401_ButHealthIsOpen()
    {
        using var anonymous = Server.Client(withKey: false);
        foreach (var (key, what) in new[] { ((string?)null, "no key"), ("wrong", "wrong key"), (ServerProcess.ApiKey + "x", "longer key") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = new StringContent("{" + Messages + "}") };
            if (key is not null) request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            var response = await anonymous.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{what}: {response.StatusCode}");
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("invalid_api_key", AssertError(doc.RootElement).GetProperty("code").GetString());
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(new Uri("/v1/models", UriKind.Relative))).StatusCode);
        var health = await anonymous.GetAsync(new Uri("/health", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Contains("\"status\":\"ok\"", await health.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task BodyOverOneMiB_Gets413()
    {
        using var client = Server.Client();
        string big = "{\"prompt\": \"" + new string('a', 2 << 20) + "\"}";
        var (status, json, _) = await PostAsync(client, "/v1/completions", big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request_too_large", AssertError(json).GetProperty("code").GetString());

        // Without Content-Length (chunked), Kestrel's limit stops the read.
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big))) };
        chunked.Headers.TransferEncodingChunked = true;
        var response = await client.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task UnknownEndpoint_Gets404()
    {
        using var client = Server.Client();
        var response = await client.GetAsync(new Uri("/v1/images/generations", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        AssertError(doc.RootElement);
    }

    [Fact]
    public async Task PromptLongerThanTheContext_Gets400_ContextLengthExceeded()
    {
        using var client = Server.Client();
        string prompt = string.Concat(Enumerable.Repeat("the cat sat on the mat. ", 100));
        var (status, json, _) = await PostAsync(client, "/v1/completions", JsonSerializer.Serialize(new Dictionary<string, object> { ["prompt"] = prompt }));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("context_length_exceeded", AssertError(json).GetProperty("code").GetString());
    }

    [Fact]
    public async Task ChatAndCompletion_AnswerWithUsageAndFinishReasons()
    {
        using var client = Server.Client();
        var (status, chat, _) = await PostAsync(client, Chat,
            "{\"model\": \"stories260K\", \"messages\": [{\"role\": \"developer\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"A story\"}]}], \"max_completion_tokens\": 7, \"temperature\": 0, \"seed\": -5}");
        Assert.Equal(HttpStatusCode.OK, status);
        var usage = chat.GetProperty("usage");
        Assert.Equal(7, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + 7, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal("length", chat.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        // A stop string that the greedy text contains: it ends the answer ("stop") and is not returned.
        var (_, full, _) = await PostAsync(client, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 30, \"temperature\": 0}");
        string text = full.GetProperty("choices")[0].GetProperty("text").GetString()!;
        string stop = text.Substring(10, 3);
        var (_, cut, _) = await PostAsync(client, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 30, \"temperature\": 0, \"stop\": " + JsonSerializer.Serialize(stop) + "}");
        var choice = cut.GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], choice.GetProperty("text").GetString());
        output.WriteLine($"full: {JsonSerializer.Serialize(text)}; stop {JsonSerializer.Serialize(stop)}: {choice.GetProperty("text")}");
    }
}
