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

    private static async Task<string> Complete(ServerProcess server)
    {
        using var client = server.Client(withKey: false);
        var (status, body, _) = await ServerHttpTests.PostAsync(client, "/v1/completions",
            JsonSerializer.Serialize(new Dictionary<string, object> { ["prompt"] = "Once upon a time", ["max_tokens"] = 24, ["temperature"] = 0 }));
        Assert.Equal(HttpStatusCode.OK, status);
        return body.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }
}
