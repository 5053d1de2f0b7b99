using System.Net;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// llama-server's utility endpoints: <c>GET /props</c>, <c>POST /tokenize</c> (llama.cpp's ids for the golden prompt, pieces),
/// <c>POST /detokenize</c> (the inverse) and <c>POST /apply-template</c> (the prompt a chat request renders to,
/// as <c>/v1/chat/completions</c> evaluates it), with 400s naming the field.
/// </summary>
public sealed class ServerTokenizeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Tokenize_Detokenize_ApplyTemplate()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.Golden, "stories260K.story.json")));
        int[] golden = doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        using var server = ServerProcess.Start("-c", "256");
        using var client = server.Client(withKey: false);

        // llama.cpp's ids for "Once upon a time": with BOS when add_special is true, without by default.
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/tokenize", "{\"content\": \"Once upon a time\", \"add_special\": true}");
        Assert.Equal(HttpStatusCode.OK, status);
        int[] ids = json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(golden, ids);
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/tokenize", "{\"content\": \"Once upon a time\"}");
        Assert.Equal(golden[1..], json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));

        // with_pieces: each id with its text; "</s>" is parsed as the control token unless parse_special is false.
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/tokenize", "{\"content\": \"Once upon</s>\", \"with_pieces\": true}");
        output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        var pieces = json.GetProperty("tokens").EnumerateArray().ToList();
        Assert.Equal(2, pieces[^1].GetProperty("id").GetInt32());
        Assert.Equal("</s>", pieces[^1].GetProperty("piece").GetString());
        Assert.Equal("Once upon</s>", string.Concat(pieces.Select(p => p.GetProperty("piece").GetString())).TrimStart());
        (_, json, _) = await ServerHttpTests.PostAsync(client, "/tokenize", "{\"content\": \"</s>\", \"parse_special\": false}");
        Assert.DoesNotContain(2, json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));

        // /detokenize is the inverse (the control token as its text).
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/detokenize", "{\"tokens\": [" + string.Join(", ", golden) + "]}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("<s> Once upon a time", json.GetProperty("content").GetString());

        // /apply-template: the prompt text, as the chat endpoint renders it (stories260K has no template: the fallback).
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/apply-template", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}");
        output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(EdgeLlm.Chat.ChatTemplate.Fallback.Render([new("user", "Hi")], addGenerationPrompt: true, null, null), json.GetProperty("prompt").GetString());

        // Text goes out as UTF-8 with JSON's own escapes only (as llama-server writes it): "ö", "<" and "&" as they
        // are, the quotes escaped.
        var raw = await client.PostAsync("/apply-template", new StringContent("{\"messages\": [{\"role\": \"user\", \"content\": \"wörld <b> & \\\"q\\\"\"}]}", System.Text.Encoding.UTF8, "application/json"));
        string rawText = await raw.Content.ReadAsStringAsync();
        output.WriteLine(rawText);
        Assert.Contains("wörld <b> & \\\"q\\\"", rawText, StringComparison.Ordinal);

        // Bad requests name the field; other methods are 405.
        foreach (var (path, body, param) in new[]
        {
            ("/tokenize", "{}", "content"),
            ("/tokenize", "{\"content\": 5}", "content"),
            ("/tokenize", "{\"content\": \"x\", \"with_pieces\": \"yes\"}", "with_pieces"),
            ("/detokenize", "{}", "tokens"),
            ("/detokenize", "{\"tokens\": [1, -2]}", "tokens"),
            ("/detokenize", "{\"tokens\": [512]}", "tokens"),
            ("/apply-template", "{\"messages\": []}", "messages"),
        })
        {
            (status, json, _) = await ServerHttpTests.PostAsync(client, path, body);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(param, json.GetProperty("error").GetProperty("param").GetString());
        }
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await client.GetAsync("/tokenize")).StatusCode);

        // /props: the slots, their context, the sampling defaults (llama.cpp's), the template, the build.
        var props = JsonDocument.Parse(await client.GetStringAsync("/props")).RootElement;
        output.WriteLine(props.GetRawText());
        Assert.Equal(256, props.GetProperty("default_generation_settings").GetProperty("n_ctx").GetInt32());
        Assert.Equal(40, props.GetProperty("default_generation_settings").GetProperty("params").GetProperty("top_k").GetInt32());
        Assert.Equal(0.8f, props.GetProperty("default_generation_settings").GetProperty("params").GetProperty("temperature").GetSingle());
        Assert.Equal(1, props.GetProperty("total_slots").GetInt32());
        Assert.Equal("stories260K", props.GetProperty("model_alias").GetString());
        Assert.Equal(EdgeLlm.Chat.ChatTemplate.Fallback.Source, props.GetProperty("chat_template").GetString());
        Assert.StartsWith("edgellm ", props.GetProperty("build_info").GetString(), StringComparison.Ordinal);
        Assert.False(props.GetProperty("modalities").GetProperty("vision").GetBoolean());
    }
}
