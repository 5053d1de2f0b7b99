using System.Net;
using System.Net.Sockets;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary>The default model (no -m, no $EDGELLM_MODEL) is downloaded once from the hub endpoint, here a loopback server.</summary>
public class CliDownloadTests
{
    private readonly ITestOutputHelper _out;

    public CliDownloadTests(ITestOutputHelper output) => _out = output;

    [Fact]
    public void NoModel_DownloadsDefaultOnce_ThenUsesCache()
    {
        int requests = 0;
        var bytes = File.ReadAllBytes(SharedData.Model("stories260K"));
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; probe.Stop(); }
        using var listener = new HttpListener();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        var cts = new CancellationTokenSource();
        var server = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                HttpListenerContext c;
                try { c = await listener.GetContextAsync(); }
                catch (Exception) { return; }
                Interlocked.Increment(ref requests);
                if (c.Request.Url!.AbsolutePath == "/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf")
                {
                    c.Response.ContentLength64 = bytes.Length;
                    if (c.Request.HttpMethod != "HEAD") await c.Response.OutputStream.WriteAsync(bytes);
                }
                else c.Response.StatusCode = 404;
                c.Response.Close();
            }
        });

        var cache = Path.Combine(Path.GetTempPath(), $"edgellm-cache-{Guid.NewGuid():N}");
        try
        {
            var env = new Dictionary<string, string?> { ["EDGELLM_HF_ENDPOINT"] = $"http://127.0.0.1:{port}", ["EDGELLM_CACHE"] = cache };
            var r1 = CliRunner.Run(["tokenize", "-p", "Once upon a time"], env);
            _out.WriteLine(r1.Stderr);
            Assert.Equal(0, r1.ExitCode);
            Assert.Equal("[1, 403, 407, 261, 378]\n", r1.Stdout);
            int afterFirst = requests;
            Assert.True(afterFirst >= 1);
            var r2 = CliRunner.Run(["tokenize", "-p", "Once upon a time"], env);
            Assert.Equal(0, r2.ExitCode);
            Assert.Equal(afterFirst, requests);
            var cached = Directory.GetFiles(cache, "*.gguf", SearchOption.AllDirectories);
            Assert.Single(cached);
            Assert.Equal(bytes, File.ReadAllBytes(cached[0]));
        }
        finally
        {
            cts.Cancel();
            listener.Stop();
            if (Directory.Exists(cache)) Directory.Delete(cache, true);
        }
    }
}
