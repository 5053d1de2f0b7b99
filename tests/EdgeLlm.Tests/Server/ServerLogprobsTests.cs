using System.Net;
using System.Text;
using System.Text.Json;
using EdgeLlm.Engine;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// OpenAI's <c>logprobs</c>: chat (<c>logprobs</c> + <c>top_logprobs</c>, streamed or not) and the legacy
/// completions' shape (<c>logprobs: N</c>), the values the model's log-softmax, and bad values refused naming the field.
/// </summary>
public sealed class ServerLogprobsTests(ITestOutputHelper output)
{
    [Fact]
    public void TokenLogProb_IsTheLogSoftmax_WithTheLikeliestFirst()
    {
        float[] logits = [1f, 3f, -2f, 3.5f, 0f];
        var lp = TokenLogProb.Of(logits, 1, 3);
        double z = logits.Sum(l => Math.Exp(l));
        Assert.Equal(Math.Log(Math.Exp(3) / z), lp.LogProb, 5);
        Assert.Equal([3, 1, 0], lp.Top.Select(t => t.Token));
        Assert.Equal(Math.Log(Math.Exp(3.5) / z), lp.Top[0].LogProb, 5);
        Assert.Empty(TokenLogProb.Of(logits, 2, 0).Top);
        Assert.Equal(5, TokenLogProb.Of(logits, 2, 20).Top.Count);
    }

    [Fact]
    public async Task Logprobs_ChatAndCompletions_StreamedOrNot()
    {
        using var server = ServerProcess.Start("-c", "256");
        using var client = server.Client(withKey: false);
        const string Messages = "\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}]";

        // Greedy: each token is the likeliest, so it heads its own top_logprobs, with the same value.
        var (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions",
            "{" + Messages + ", \"max_tokens\": 8, \"temperature\": 0, \"logprobs\": true, \"top_logprobs\": 3}");
        output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        var content = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(json.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), content.Count);
        var text = new StringBuilder();
        foreach (var t in content)
        {
            var top = t.GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(3, top.Count);
            Assert.Equal(t.GetProperty("token").GetString(), top[0].GetProperty("token").GetString());
            Assert.Equal(t.GetProperty("logprob").GetSingle(), top[0].GetProperty("logprob").GetSingle());
            Assert.True(t.GetProperty("logprob").GetSingle() <= 0);
            Assert.True(top[0].GetProperty("logprob").GetSingle() >= top[1].GetProperty("logprob").GetSingle());
            Assert.Equal(Encoding.UTF8.GetBytes(t.GetProperty("token").GetString()!), t.GetProperty("bytes").EnumerateArray().Select(b => (byte)b.GetInt32()));
            text.Append(t.GetProperty("token").GetString());
        }
        Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString()!.Trim(), text.ToString().Trim());

        // Without logprobs: null, as OpenAI.
        (_, json, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{" + Messages + ", \"max_tokens\": 2}");
        Assert.Equal(JsonValueKind.Null, json.GetProperty("choices")[0].GetProperty("logprobs").ValueKind);

        // Streamed: one chunk carries them all, after the text.
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("{" + Messages + ", \"max_tokens\": 8, \"temperature\": 0, \"stream\": true, \"logprobs\": true}", Encoding.UTF8, "application/json"),
        };
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            string body = await response.Content.ReadAsStringAsync();
            int entries = 0;
            foreach (var line in body.Split('\n'))
            {
                if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
                using var chunk = JsonDocument.Parse(line["data: ".Length..]);
                foreach (var c in chunk.RootElement.GetProperty("choices").EnumerateArray())
                    if (c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
                        entries += c.GetProperty("logprobs").GetProperty("content").GetArrayLength();
            }
            Assert.Equal(content.Count, entries);
        }

        // The legacy endpoint: tokens, token_logprobs, top_logprobs (a map per token), text_offset.
        (status, json, _) = await ServerHttpTests.PostAsync(client, "/v1/completions",
            "{\"prompt\": \"Once upon a time\", \"max_tokens\": 6, \"temperature\": 0, \"logprobs\": 2}");
        output.WriteLine(json.GetRawText());
        Assert.Equal(HttpStatusCode.OK, status);
        var lp = json.GetProperty("choices")[0].GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        Assert.Equal(6, tokens.Count);
        Assert.Equal(6, lp.GetProperty("token_logprobs").GetArrayLength());
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), m => Assert.Equal(2, m.EnumerateObject().Count()));
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToList();
        for (int i = 1; i < offsets.Count; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);

        foreach (var (path, body, param) in new[]
        {
            ("/v1/chat/completions", "{" + Messages + ", \"logprobs\": true, \"top_logprobs\": 21}", "top_logprobs"),
            ("/v1/chat/completions", "{" + Messages + ", \"top_logprobs\": 2}", "top_logprobs"),
            ("/v1/chat/completions", "{" + Messages + ", \"logprobs\": 3}", "logprobs"),
            ("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 6}", "logprobs"),
            ("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": true}", "logprobs"),
        })
        {
            (status, json, _) = await ServerHttpTests.PostAsync(client, path, body);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(param, json.GetProperty("error").GetProperty("param").GetString());
        }
    }
}
