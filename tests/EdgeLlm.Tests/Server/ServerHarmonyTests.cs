using System.Net;
using System.Text;
using System.Text.Json;
using EdgeLlm.Tests.Chat;
using Xunit;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// <c>serve</c> over a harmony (gpt-oss) chat template, with stories260K whose vocabulary carries harmony's
/// markers as control tokens (<see cref="HarmonyTests.WriteHarmonyVocabulary"/>). The template opens the
/// analysis channel at the generation prompt, so stories260K's greedy text is the analysis: it must come back
/// as <c>reasoning_content</c> (streamed or not), and as content under <c>--reasoning-format none</c>. A
/// required call cannot be forced in harmony: 400 naming tool_choice. An assistant turn's
/// <c>reasoning_content</c> reaches the template as <c>thinking</c>.
/// </summary>
public sealed class ServerHarmonyTests : IDisposable
{
    private const string Template =
        "<|start|>system<|message|>Test.<|end|>{% for m in messages %}"
        + "{% if m.role == 'assistant' %}<|start|>assistant<|channel|>analysis<|message|>{{ m.thinking }}<|end|>"
        + "<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>"
        + "{% else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}{% endfor %}"
        + "{% if add_generation_prompt %}<|start|>assistant<|channel|>analysis<|message|>{% endif %}";

    private const string Request = "{\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}], \"max_tokens\": 12, \"temperature\": 0";

    private readonly string _model = Path.Combine(Path.GetTempPath(), $"edgellm-harmony-serve-{Guid.NewGuid():N}.gguf");

    public ServerHarmonyTests()
    {
        HarmonyTests.WriteHarmonyVocabulary(_model, Template);
    }

    public void Dispose() => File.Delete(_model);

    private static async Task<JsonElement> MessageAsync(HttpClient client, string request)
    {
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", request + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        return json.GetProperty("choices")[0].GetProperty("message");
    }

    [Fact]
    public async Task Analysis_GoesToReasoningContent_AndStaysInContentUnderNone()
    {
        string reasoning;
        using (var server = ServerProcess.StartWith(_model))
        {
            using var client = server.Client(withKey: false);
            var message = await MessageAsync(client, Request);
            reasoning = message.GetProperty("reasoning_content").GetString()!;
            Assert.False(string.IsNullOrWhiteSpace(reasoning));
            Assert.DoesNotContain("<|", reasoning, StringComparison.Ordinal);
            Assert.Equal("", message.GetProperty("content").GetString());

            // Streamed: the same text in reasoning_content deltas.
            var (streamed, content) = await ServerHttpTests.StreamChatAsync(client, Request + ", \"stream\": true}");
            Assert.Equal(reasoning, streamed);
            Assert.Equal("", content);

            // Harmony calls cannot be forced by a grammar.
            const string Tools = ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}]";
            var (status, error, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", Request + Tools + ", \"tool_choice\": \"required\"}");
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("tool_choice", error.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains("harmony", error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            // tool_choice auto is accepted (the model calls nothing: no tool_calls).
            var auto = await MessageAsync(client, Request + Tools);
            Assert.False(auto.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array && calls.GetArrayLength() > 0);

            // An assistant turn with reasoning_content renders (the template writes m.thinking).
            var followUp = await MessageAsync(client, "{\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}, "
                + "{\"role\": \"assistant\", \"content\": \"there was\", \"reasoning_content\": \"a story\"}, {\"role\": \"user\", \"content\": \"go on\"}], \"max_tokens\": 4, \"temperature\": 0");
            Assert.True(followUp.TryGetProperty("reasoning_content", out _));
        }

        using var none = ServerProcess.StartWith(_model, "--reasoning-format", "none");
        using var c2 = none.Client(withKey: false);
        var plain = await MessageAsync(c2, Request);
        Assert.Equal(reasoning, plain.GetProperty("content").GetString());
        Assert.False(plain.TryGetProperty("reasoning_content", out _));
    }
}
