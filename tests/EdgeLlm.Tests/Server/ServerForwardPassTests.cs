using System.Net;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// <c>edgellm serve</c> says which forward pass its CPU slots run (stories260K has a compile-time
/// specialization), <c>--generic</c> forces the generic one, and both answer a greedy request with
/// the same text.
/// </summary>
public sealed class ServerForwardPassTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Serve_ReportsTheForwardPass_AndGenericForcesIt()
    {
        string specialized, generic;
        using (var server = ServerProcess.Start("-c", "256"))
        {
            Assert.Contains("edgellm: forward pass: specialized: stories260k-f32", server.Log);
            specialized = await Complete(server);
        }
        using (var server = ServerProcess.Start("-c", "256", "--generic"))
        {
            Assert.Contains("edgellm: forward pass: generic (forced; specialized: stories260k-f32 available)", server.Log);
            generic = await Complete(server);
        }
        output.WriteLine($"specialized: {specialized}\ngeneric: {generic}");
        Assert.False(string.IsNullOrEmpty(specialized));
        Assert.Equal(specialized, generic);
    }

    /// <summary><c>serve --model-draft</c>: every slot decodes speculatively, and the text is the model's own (greedy and seeded).</summary>
    [Fact]
    public async Task Serve_WithADraft_AnswersAsWithout()
    {
        string alone, aloneSeeded, drafted, draftedSeeded;
        using (var server = ServerProcess.Start("-c", "256", "--parallel", "2"))
        {
            alone = await Complete(server, 60);
            aloneSeeded = await Complete(server, 60, 0.8, 5);
            var timings = (await CompleteBody(server, 20)).GetProperty("timings");
            Assert.Equal(20, timings.GetProperty("predicted_n").GetInt32());
            Assert.True(timings.GetProperty("predicted_per_second").GetDouble() > 0);
            Assert.False(timings.TryGetProperty("draft_n", out _));
        }
        using (var server = ServerProcess.Start("-c", "256", "--parallel", "2", "-md", SharedData.Model("stories260K-q8_0"), "--draft-max", "8"))
        {
            Assert.Contains("edgellm: speculative decoding with stories260K-q8_0 (up to 8 tokens, p-min 0.75)", server.Log);
            drafted = await Complete(server, 60);
            draftedSeeded = await Complete(server, 60, 0.8, 5);
            // llama-server's timings: how many proposals there were and how many were kept.
            var timings = (await CompleteBody(server, 40)).GetProperty("timings");
            output.WriteLine(timings.GetRawText());
            int n = timings.GetProperty("draft_n").GetInt32(), kept = timings.GetProperty("draft_n_accepted").GetInt32();
            Assert.True(n > 0 && kept > 0 && kept <= n, timings.GetRawText());
        }
        string lookedUp;
        using (var server = ServerProcess.Start("-c", "256", "--lookup-ngram", "2"))
        {
            Assert.Contains("edgellm: speculative decoding by prompt lookup (2-token matches, up to 16 tokens)", server.Log);
            lookedUp = await Complete(server, 60);
        }
        output.WriteLine($"alone: {alone}\ndrafted: {drafted}\nseeded: {draftedSeeded}");
        Assert.Equal(alone, drafted);
        Assert.Equal(aloneSeeded, draftedSeeded);
        Assert.Equal(alone, lookedUp);
    }

    private static async Task<string> Complete(ServerProcess server, int maxTokens = 24, double temperature = 0, int seed = 0) =>
        (await CompleteBody(server, maxTokens, temperature, seed)).GetProperty("choices")[0].GetProperty("text").GetString()!;

    private static async Task<JsonElement> CompleteBody(ServerProcess server, int maxTokens = 24, double temperature = 0, int seed = 0)
    {
        using var client = server.Client(withKey: false);
        var (status, body, _) = await ServerHttpTests.PostAsync(client, "/v1/completions",
            JsonSerializer.Serialize(new Dictionary<string, object> { ["prompt"] = "Once upon a time", ["max_tokens"] = maxTokens, ["temperature"] = temperature, ["seed"] = seed }));
        Assert.Equal(HttpStatusCode.OK, status);
        return body;
    }
}
