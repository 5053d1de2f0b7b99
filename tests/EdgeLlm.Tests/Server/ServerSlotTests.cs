using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>Slots, the queue, disconnects, concurrency and shutdown of <c>edgellm serve</c>, each on its own server.</summary>
public sealed class ServerSlotTests(ITestOutputHelper output)
{
    // Greedy and long: stories260K does not end a greedy story within 4000 tokens (measured), so this
    // holds its slot for tens of seconds unless cancelled.
    private const string LongStream = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 4000, \"temperature\": 0, \"stream\": true}";

    private static async Task<(HttpResponseMessage Response, StreamReader Reader)> OpenStreamAsync(HttpClient client, string path, string json)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        // Wait for the first event: the generation runs.
        while (await reader.ReadLineAsync() is { } line)
            if (line.StartsWith("data: {", StringComparison.Ordinal)) break;
        return (response, reader);
    }

    private static async Task<JsonElement> HealthAsync(HttpClient client)
    {
        using var doc = JsonDocument.Parse(await client.GetStringAsync(new Uri("/health", UriKind.Relative)));
        return doc.RootElement.Clone();
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what, int timeoutMs = 60_000)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task QueueFull_Gets503WithRetryAfter_AndADisconnectedClientFreesItsSlot()
    {
        using var server = ServerProcess.Start("--api-key", ServerProcess.ApiKey, "--parallel", "1", "--queue", "1", "-c", "4096");
        using var client = server.Client();

        var (longResponse, longReader) = await OpenStreamAsync(client, "/v1/completions", LongStream);
        var queued = ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"Lily\", \"max_tokens\": 5, \"temperature\": 0}");
        await WaitForAsync(async () => (await HealthAsync(client)).GetProperty("queued").GetInt32() == 1, "the second request to queue");

        var (status, body, response) = await ServerHttpTests.PostAsync(client, "/v1/completions", "{\"prompt\": \"Tom\", \"max_tokens\": 5}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("server_busy", ServerHttpTests.AssertError(body).GetProperty("code").GetString());
        Assert.NotNull(response.Headers.RetryAfter);
        output.WriteLine($"503, Retry-After: {response.Headers.RetryAfter}; {body.GetProperty("error").GetProperty("message").GetString()}");

        // The streaming client goes away mid-generation: its slot goes to the queued request.
        var watch = Stopwatch.StartNew();
        longReader.Dispose();
        longResponse.Dispose();
        var (queuedStatus, queuedBody, _) = await queued;
        output.WriteLine($"queued request served {watch.ElapsedMilliseconds} ms after the disconnect");
        Assert.Equal(HttpStatusCode.OK, queuedStatus);
        Assert.Equal(5, queuedBody.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed} (the abandoned generation was not stopped)");
        await WaitForAsync(async () => (await HealthAsync(client)).GetProperty("slots_idle").GetInt32() == 1, "the slot to be idle");
        Assert.Contains("client disconnected", server.Log, StringComparison.Ordinal);
        Assert.Equal(0, server.Stop());
    }

    [Fact]
    public async Task ClientDisconnectMidStream_StopsTheGeneration_AndTheNextRequestIsServed()
    {
        using var server = ServerProcess.Start("--parallel", "1", "-c", "4096");
        using var client = server.Client(withKey: false);
        var (response, reader) = await OpenStreamAsync(client, "/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Tell me a long story\"}], \"max_tokens\": 4000, \"temperature\": 0, \"stream\": true}");
        Assert.Equal(1, (await HealthAsync(client)).GetProperty("slots_processing").GetInt32());
        reader.Dispose();
        response.Dispose();
        var watch = Stopwatch.StartNew();
        await WaitForAsync(async () => (await HealthAsync(client)).GetProperty("slots_idle").GetInt32() == 1, "the slot to be freed", 30_000);
        output.WriteLine($"slot freed {watch.ElapsedMilliseconds} ms after the disconnect");
        var (status, body, _) = await ServerHttpTests.PostAsync(client, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 3}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ConcurrentRequests_AllSucceed_AndGreedyAnswersEqualTheSequentialOnes()
    {
        using var server = ServerProcess.Start("--parallel", "2", "--queue", "8", "-c", "256");
        using var client = server.Client(withKey: false);
        string[] prompts = ["Once upon a time", "Lily and Tom went to the park", "The big dog", "One day, a little bird", "Sam had a red ball"];
        string Body(string p) => JsonSerializer.Serialize(new Dictionary<string, object> { ["prompt"] = p, ["max_tokens"] = 20, ["temperature"] = 0 });

        var sequential = new List<string>();
        foreach (var p in prompts)
        {
            var (status, body, _) = await ServerHttpTests.PostAsync(client, "/v1/completions", Body(p));
            Assert.Equal(HttpStatusCode.OK, status);
            sequential.Add(body.GetProperty("choices")[0].GetProperty("text").GetString()!);
        }
        // Twice each prompt at once: 10 requests on 2 slots (8 queue), in an order the slots' caches did not see.
        var tasks = prompts.Concat(prompts.Reverse()).Select(p => ServerHttpTests.PostAsync(client, "/v1/completions", Body(p))).ToArray();
        var results = await Task.WhenAll(tasks);
        var order = prompts.Concat(prompts.Reverse()).ToArray();
        for (int i = 0; i < results.Length; i++)
        {
            Assert.Equal(HttpStatusCode.OK, results[i].Status);
            int k = Array.IndexOf(prompts, order[i]);
            Assert.Equal(sequential[k], results[i].Body.GetProperty("choices")[0].GetProperty("text").GetString());
        }
        output.WriteLine(string.Join("\n", sequential.Select((s, i) => $"{prompts[i]} → {JsonSerializer.Serialize(s)}")));
    }

    [Fact]
    public async Task EachRequest_GoesToTheSlotHoldingItsPrefix()
    {
        using var server = ServerProcess.Start("--parallel", "2", "-c", "256");
        using var client = server.Client(withKey: false);
        const string a = "Once upon a time there was a big brown dog named Max";
        const string b = "Lily liked to play with her red ball in the sunny park";
        async Task<(int Prompt, int Cached)> Send(string prompt)
        {
            var (status, body, _) = await ServerHttpTests.PostAsync(client, "/v1/completions",
                JsonSerializer.Serialize(new Dictionary<string, object> { ["prompt"] = prompt, ["max_tokens"] = 4, ["temperature"] = 0 }));
            Assert.Equal(HttpStatusCode.OK, status);
            var usage = body.GetProperty("usage");
            return (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        }
        var first = await Send(a);
        Assert.Equal(0, first.Cached);
        var second = await Send(b);
        // b shares only the BOS token with a: it takes the idle slot, so a's cache survives.
        Assert.True(second.Cached <= 1, $"b reused {second.Cached}");
        var third = await Send(a + " who liked to run");
        var fourth = await Send(b + " with her friend");
        output.WriteLine($"a: {first}, b: {second}, a+: {third}, b+: {fourth} (prompt tokens, cached tokens)");
        Assert.True(third.Cached >= first.Prompt - 1, $"a+ reused {third.Cached} of a's {first.Prompt} tokens");
        Assert.True(fourth.Cached >= second.Prompt - 1, $"b+ reused {fourth.Cached} of b's {second.Prompt} tokens");
    }

    [Fact]
    public async Task SigTerm_DuringAGeneration_ShutsDownCleanly()
    {
        var server = ServerProcess.Start("-c", "4096");
        using var client = server.Client(withKey: false);
        var (response, reader) = await OpenStreamAsync(client, "/v1/completions", LongStream);
        var watch = Stopwatch.StartNew();
        int code = server.Stop();
        output.WriteLine($"exit code {code} {watch.ElapsedMilliseconds} ms after SIGTERM\n{server.Log}");
        Assert.Equal(0, code);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"shutdown took {watch.Elapsed}");
        Assert.Contains("server stopped", server.Log, StringComparison.Ordinal);
        reader.Dispose();
        response.Dispose();
        server.Dispose();
    }
}
