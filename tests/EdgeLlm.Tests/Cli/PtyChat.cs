using System.Diagnostics;
using System.Text;

namespace EdgeLlm.Tests.Cli;

/// <summary>
/// Drives the built <c>edgellm</c> through a pseudo-terminal (tests/EdgeLlm.Tests/Cli/pty_proxy.py):
/// what <see cref="Send"/> and <see cref="Type"/> write arrives as keys typed on the child's
/// terminal, so <c>\x03</c> is a real SIGINT from the line discipline and <c>\x04</c> at the start
/// of a line is end of input. The child's stdout and stderr stay separate.
/// </summary>
internal sealed class PtyChat : IDisposable
{
    private readonly Process _p;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Task _outTask, _errTask;
    private readonly string _commandLine;

    public PtyChat(IEnumerable<string> args)
    {
        string root = RepositoryRoot();
        string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string dll = Path.Combine(root, "src", "EdgeLlm.Cli", "bin", config, "net10.0", "edgellm.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"the CLI was not built: {dll}");
        var psi = new ProcessStartInfo("python3")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(root, "tests", "EdgeLlm.Tests", "Cli", "pty_proxy.py"));
        // Ctrl-C must reach the CLI even when the test run itself was started with SIGINT ignored
        // (a background job of a non-interactive shell): that disposition is inherited, and .NET
        // then keeps ignoring it. env resets it to the default before starting dotnet.
        psi.ArgumentList.Add("env");
        psi.ArgumentList.Add("--default-signal=INT");
        psi.ArgumentList.Add("dotnet");
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        _commandLine = "edgellm " + string.Join(' ', args);
        // As CliRunner: never a real download or a model from the developer's environment.
        psi.Environment["EDGELLM_MODEL"] = null;
        psi.Environment["EDGELLM_HF_ENDPOINT"] = "http://127.0.0.1:9";
        psi.Environment["EDGELLM_CACHE"] = Path.Combine(Path.GetTempPath(), "edgellm-test-empty-cache-" + Environment.ProcessId);
        _p = Process.Start(psi) ?? throw new InvalidOperationException("python3 did not start");
        _outTask = Pump(_p.StandardOutput.BaseStream, _stdout);
        _errTask = Pump(_p.StandardError.BaseStream, _stderr);
    }

    /// <summary>Generous: the test machine may be a loaded 2-core box.</summary>
    public static TimeSpan Timeout { get; } = TimeSpan.FromSeconds(180);

    public string Stdout
    {
        get { lock (_stdout) return _stdout.ToString(); }
    }

    public string Stderr
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    /// <summary>Types a line and Enter.</summary>
    public void Send(string line) => Type(line + "\n");

    /// <summary>Types raw keys, e.g. "\x03" (Ctrl-C) or "\x04" (Ctrl-D).</summary>
    public void Type(string keys)
    {
        _p.StandardInput.BaseStream.Write(Encoding.UTF8.GetBytes(keys));
        _p.StandardInput.BaseStream.Flush();
    }

    /// <summary>Waits until stderr holds <paramref name="count"/> occurrences of <paramref name="marker"/>; returns stderr.</summary>
    public string WaitStderr(string marker, int count = 1) => WaitFor(() => Count(Stderr, marker) >= count, $"{count} x \"{marker}\" on stderr");

    /// <summary>Waits until stdout holds at least <paramref name="length"/> characters; returns stdout.</summary>
    public string WaitStdout(int length)
    {
        WaitFor(() => Stdout.Length >= length, $"{length} characters on stdout");
        return Stdout;
    }

    /// <summary>Waits for the program to end (reading all its output); returns its exit code.</summary>
    public int WaitExit()
    {
        if (!_p.WaitForExit(Timeout)) throw new TimeoutException($"{_commandLine} did not exit in {Timeout.TotalSeconds} s\n{Transcript()}");
        Task.WaitAll([_outTask, _errTask], Timeout);
        _p.WaitForExit();
        return _p.ExitCode;
    }

    public string Transcript() => $"--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";

    public static int Count(string text, string marker)
    {
        int n = 0;
        for (int i = text.IndexOf(marker, StringComparison.Ordinal); i >= 0; i = text.IndexOf(marker, i + marker.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private string WaitFor(Func<bool> done, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!done())
        {
            if (_p.HasExited && _outTask.IsCompleted && _errTask.IsCompleted && !done())
                throw new InvalidOperationException($"{_commandLine} exited ({_p.ExitCode}) before {what}\n{Transcript()}");
            if (watch.Elapsed > Timeout) throw new TimeoutException($"no {what} after {Timeout.TotalSeconds} s\n{Transcript()}");
            Thread.Sleep(20);
        }
        return Stderr;
    }

    private static Task Pump(Stream stream, StringBuilder sink) => Task.Run(() =>
    {
        // Decode incrementally: a UTF-8 character split across two reads must not become U+FFFD.
        var decoder = new UTF8Encoding(false, false).GetDecoder();
        var bytes = new byte[4096];
        var chars = new char[4097];
        int n;
        while ((n = stream.Read(bytes, 0, bytes.Length)) > 0)
        {
            int c = decoder.GetChars(bytes, 0, n, chars, 0, flush: false);
            lock (sink) sink.Append(chars, 0, c);
        }
    });

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("repository root (EdgeLlm.sln) not found above the test binary");
    }

    public void Dispose()
    {
        if (!_p.HasExited)
        {
            try { _p.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { }
            _p.WaitForExit(10_000);
        }
        _p.Dispose();
    }
}
