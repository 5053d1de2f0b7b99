using System.Net;
using Xunit;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// <c>serve --chat-template-kwargs</c> and a request's <c>chat_template_kwargs</c> reach the chat
/// template (llama-server's names): a model whose template spells out extra words when
/// <c>enable_thinking</c> is false (the switch of Qwen3's template) has a longer prompt exactly then.
/// </summary>
public sealed class ServerTemplateKwargsTests : IDisposable
{
    private const string Template =
        "{% if enable_thinking is defined and enable_thinking is false %}{{ 'once upon a time there was a little girl ' }}{% endif %}"
        + "{{ messages[0].content }}";

    private readonly string _model = Path.Combine(Path.GetTempPath(), $"edgellm-kwargs-{Guid.NewGuid():N}.gguf");

    public ServerTemplateKwargsTests()
    {
        Chat.TemplatedStoriesModel.Write(_model, Template);
    }

    public void Dispose() => File.Delete(_model);

    private static async Task<int> PromptTokens(HttpClient client, string extra)
    {
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 1" + extra + "}");
        Assert.Equal(HttpStatusCode.OK, status);
        return json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
    }

    [Fact]
    public async Task RequestKwargs_ReachTheTemplate_AndOverrideTheServers()
    {
        using (var plain = ServerProcess.StartWith(_model, "--api-key", ServerProcess.ApiKey))
        {
            using var client = plain.Client();
            int without = await PromptTokens(client, "");
            int with = await PromptTokens(client, ", \"chat_template_kwargs\": {\"enable_thinking\": false}");
            int other = await PromptTokens(client, ", \"chat_template_kwargs\": {\"enable_thinking\": true}");
            Assert.True(with > without + 5, $"prompt tokens {with} with the variable, {without} without");
            Assert.Equal(without, other);
        }

        using var defaults = ServerProcess.StartWith(_model, "--api-key", ServerProcess.ApiKey, "--chat-template-kwargs", "{\"enable_thinking\": false}");
        using var c2 = defaults.Client();
        int serverDefault = await PromptTokens(c2, "");
        int overridden = await PromptTokens(c2, ", \"chat_template_kwargs\": {\"enable_thinking\": true}");
        Assert.True(serverDefault > overridden + 5, $"prompt tokens {serverDefault} with the server's default, {overridden} with the request's override");
    }
}
