using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// <c>serve --reasoning-format</c> (llama-server's): with a template that opens a &lt;think&gt; block
/// (as Qwen3's does unless enable_thinking is false), the answer is reasoning until &lt;/think&gt;, so
/// stories260K's greedy text goes to <c>reasoning_content</c> under auto (streamed or not), to
/// <c>content</c> under none, and to <c>content</c> again when the template closes the block itself.
/// </summary>
public sealed class ServerReasoningTests : IDisposable
{
    private const string Template =
        "{{ messages[0].content }}{% if add_generation_prompt %}"
        + "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}";

    private const string Request = "{\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}], \"max_tokens\": 12, \"temperature\": 0";

    private readonly string _model = Path.Combine(Path.GetTempPath(), $"edgellm-reasoning-{Guid.NewGuid():N}.gguf");

    public ServerReasoningTests()
    {
        Chat.TemplatedStoriesModel.Write(_model, Template);
    }

    public void Dispose() => File.Delete(_model);

    private static async Task<JsonElement> MessageAsync(HttpClient client, string extra = "")
    {
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", Request + extra + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        return json.GetProperty("choices")[0].GetProperty("message");
    }

    [Fact]
    public async Task Reasoning_GoesToReasoningContent_UnderAuto_AndStaysInContentUnderNone()
    {
        string reasoning;
        using (var auto = ServerProcess.StartWith(_model, "--api-key", ServerProcess.ApiKey))
        {
            Assert.Contains("reasoning_content", auto.Log, StringComparison.Ordinal);
            using var client = auto.Client();
            var message = await MessageAsync(client);
            reasoning = message.GetProperty("reasoning_content").GetString()!;
            Assert.NotEmpty(reasoning);
            Assert.Equal("", message.GetProperty("content").GetString());

            // Streamed: reasoning_content deltas, no content, the same text.
            var (streamed, content) = await ServerHttpTests.StreamChatAsync(client, Request + ", \"stream\": true}");
            Assert.Equal(reasoning, streamed);
            Assert.Equal("", content);

            // The template closes the block itself: the answer is content.
            var closed = await MessageAsync(client, ", \"chat_template_kwargs\": {\"enable_thinking\": false}");
            Assert.NotEmpty(closed.GetProperty("content").GetString()!);
            Assert.False(closed.TryGetProperty("reasoning_content", out _));
        }

        // Mistral's tags (Magistral, Ministral 3 Reasoning): a template that opens [THINK] sends the greedy text to
        // reasoning_content the same way (the tags are control tokens there, so the server renders them for the splitter).
        string mistralModel = _model + ".mistral.gguf";
        Chat.TemplatedStoriesModel.Write(mistralModel,
            "{{ messages[0].content }}{% if add_generation_prompt %}[THINK]{% endif %}{% if false %}[/THINK]{% endif %}");
        try
        {
            using var mistral = ServerProcess.StartWith(mistralModel, "--api-key", ServerProcess.ApiKey);
            using var cm = mistral.Client();
            var message = await MessageAsync(cm);
            Assert.NotEmpty(message.GetProperty("reasoning_content").GetString()!); // (another prompt: another story)
            Assert.Equal("", message.GetProperty("content").GetString());
        }
        finally
        {
            File.Delete(mistralModel);
        }

        using var none = ServerProcess.StartWith(_model, "--api-key", ServerProcess.ApiKey, "--reasoning-format", "none");
        using var c2 = none.Client();
        var plain = await MessageAsync(c2);
        Assert.Equal(reasoning, plain.GetProperty("content").GetString());
        Assert.False(plain.TryGetProperty("reasoning_content", out _));
    }
}
