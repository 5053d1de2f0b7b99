using System.Diagnostics;
using System.Text;

namespace EdgeLlm.Tests.Cli;

/// <summary>Runs the built <c>edgellm</c> (src/EdgeLlm.Cli/bin/&lt;config&gt;/net10.0/edgellm.dll) as a child process.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, byte[] StdoutBytes);

    private static readonly Lazy<string> s_dll = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        if (dir is null) throw new DirectoryNotFoundException("repository root (EdgeLlm.sln) not found above the test binary");
        var dll = Path.Combine(dir.FullName, "src", "EdgeLlm.Cli", "bin", config, "net10.0", "edgellm.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"the CLI was not built: {dll}");
        return dll;
    });

    public static Result Run(string[] args, IDictionary<string, string?>? env = null, int timeoutMs = 120_000, int interruptAfterBytes = -1)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardErrorEncoding = Encoding.UTF8,
        };
        if (interruptAfterBytes >= 0)
        {
            // SIGINT must reach the CLI even when the test run was started with it ignored (a
            // background job of a non-interactive shell): the disposition is inherited and .NET then
            // keeps ignoring it. env (which execs, keeping the pid) resets it to the default first.
            psi.FileName = "env";
            psi.ArgumentList.Add("--default-signal=INT");
            psi.ArgumentList.Add("dotnet");
        }
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(s_dll.Value);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Never let a test fall back to a real download or a model from the developer's environment.
        psi.Environment["EDGELLM_MODEL"] = null;
        psi.Environment["EDGELLM_HF_ENDPOINT"] = "http://127.0.0.1:9";
        psi.Environment["EDGELLM_CACHE"] = Path.Combine(Path.GetTempPath(), "edgellm-test-empty-cache-" + Environment.ProcessId);
        if (env is not null)
            foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;

        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdoutBuffer = new MemoryStream();
        var stdoutTask = Task.Run(() =>
        {
            var buf = new byte[4096];
            int n;
            while ((n = p.StandardOutput.BaseStream.Read(buf, 0, buf.Length)) > 0)
                lock (stdoutBuffer) stdoutBuffer.Write(buf, 0, n);
            lock (stdoutBuffer) return stdoutBuffer.ToArray();
        });
        var stderrTask = p.StandardError.ReadToEndAsync();
        if (interruptAfterBytes >= 0)
        {
            // Ctrl-C as a terminal sends it: SIGINT to the process, once it has printed that much.
            var wait = Stopwatch.StartNew();
            while (wait.ElapsedMilliseconds < timeoutMs && !p.HasExited)
            {
                lock (stdoutBuffer) if (stdoutBuffer.Length >= interruptAfterBytes) break;
                Thread.Sleep(5);
            }
            using var kill = Process.Start("kill", ["-INT", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"edgellm {string.Join(' ', args)} did not finish in {timeoutMs} ms");
        }
        var bytes = stdoutTask.Result;
        return new Result(p.ExitCode, new UTF8Encoding(false, false).GetString(bytes), stderrTask.Result, bytes);
    }
}
