using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// Runs the built <c>edgellm serve</c> (src/EdgeLlm.Cli/bin/&lt;config&gt;/net10.0/edgellm.dll) on a free
/// port (<c>--port 0</c>; the bound address is read from its "listening on" line) with stories260K.
/// </summary>
public sealed class ServerProcess : IDisposable
{
    public const string ApiKey = "test-key-123";
    private readonly Process _process;
    private readonly List<string> _log = [];
    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServerProcess(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardErrorEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(CliDll());
        psi.ArgumentList.Add("serve");
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["EDGELLM_MODEL"] = null;
        psi.Environment["EDGELLM_API_KEY"] = null;
        psi.Environment["EDGELLM_HF_ENDPOINT"] = "http://127.0.0.1:9";
        _process = Process.Start(psi)!;
        _process.StandardInput.Close();
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) { _listening.TrySetException(new InvalidOperationException("edgellm serve exited before listening:\n" + Log)); return; }
            lock (_log) _log.Add(e.Data);
            const string marker = "listening on ";
            int i = e.Data.IndexOf(marker, StringComparison.Ordinal);
            if (i >= 0) _listening.TrySetResult(new Uri(e.Data[(i + marker.Length)..].Trim()));
        };
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    /// <summary>The server's root URL, e.g. http://127.0.0.1:41234/.</summary>
    public Uri BaseUrl { get; private set; } = null!;

    /// <summary>Everything it printed on stderr so far.</summary>
    public string Log
    {
        get { lock (_log) return string.Join("\n", _log); }
    }

    /// <summary>Starts <c>edgellm serve -m stories260K --port 0 -t 1 ARGS</c> and waits until it listens.</summary>
    public static ServerProcess Start(params string[] args) => StartWith(SharedData.Model("stories260K"), args);

    /// <summary>Starts <c>edgellm serve -m MODEL --port 0 -t 1 ARGS</c> and waits until it listens.</summary>
    public static ServerProcess StartWith(string model, params string[] args)
    {
        var all = new List<string> { "-m", model, "--port", "0", "-t", "1" };
        all.AddRange(args);
        var server = new ServerProcess(all);
        if (!server._listening.Task.Wait(TimeSpan.FromSeconds(120)))
        {
            server.Dispose();
            throw new TimeoutException("edgellm serve did not listen within 120 s:\n" + server.Log);
        }
        server.BaseUrl = server._listening.Task.Result;
        return server;
    }

    /// <summary>An HttpClient for the server, with the API key unless <paramref name="withKey"/> is false.</summary>
    public HttpClient Client(bool withKey = true)
    {
        var client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromMinutes(3) };
        if (withKey) client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ApiKey);
        return client;
    }

    /// <summary>SIGTERM, then the exit code (killed after 30 s: -1).</summary>
    public int Stop()
    {
        if (_process.HasExited) return _process.ExitCode;
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])) kill.WaitForExit();
        if (_process.WaitForExit(30_000))
        {
            _process.WaitForExit();
            return _process.ExitCode;
        }
        _process.Kill(entireProcessTree: true);
        return -1;
    }

    public void Dispose()
    {
        if (!_process.HasExited) Stop();
        _process.Dispose();
    }

    private static string CliDll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        if (dir is null) throw new DirectoryNotFoundException("repository root (EdgeLlm.sln) not found above the test binary");
        var dll = Path.Combine(dir.FullName, "src", "EdgeLlm.Cli", "bin", config, "net10.0", "edgellm.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"the CLI was not built: {dll}");
        return dll;
    }

    /// <summary>The repository root.</summary>
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("repository root (EdgeLlm.sln) not found above the test binary");
    }
}
