using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace EdgeLlm.Benchmarks;

/// <summary>
/// EdgeLlm measured by its own CLI in a child process (<c>edgellm bench ... --json</c>), so that
/// it runs exactly as users run it and its JIT, threads and memory do not mix with llama.cpp's.
/// </summary>
internal static class EdgeLlmCliBench
{
    /// <summary>The built CLI: src/EdgeLlm.Cli/bin/Release/net10.0/edgellm.dll under the repository root.</summary>
    public static string CliPath(string repoRoot) => Path.Combine(repoRoot, "src", "EdgeLlm.Cli", "bin", "Release", "net10.0", "edgellm.dll");

    /// <summary>
    /// Runs the CLI (<paramref name="cli"/>: the built edgellm.dll, run through <c>dotnet</c>, or an
    /// edgellm executable such as a NativeAOT build); on any failure returns figures with no values
    /// and the reason in <see cref="BenchFigures.Note"/>.
    /// </summary>
    public static BenchFigures Measure(string cli, string model, int threads, int pp, int tg, int reps, int depth = 0, string cacheK = "f16", string cacheV = "f16")
    {
        BenchFigures Fail(string why) => new(threads, pp, tg, [], [], why);
        if (!File.Exists(cli)) return Fail($"EdgeLlm CLI not built ({cli} missing: run `dotnet build -c Release src/EdgeLlm.Cli`)");
        bool managed = cli.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);

        var psi = new ProcessStartInfo(managed ? "dotnet" : cli)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
                 {
                     "bench", "-m", model, "-t", threads.ToString(CultureInfo.InvariantCulture),
                     "-p", pp.ToString(CultureInfo.InvariantCulture), "-n", tg.ToString(CultureInfo.InvariantCulture),
                     "-r", reps.ToString(CultureInfo.InvariantCulture), "--json",
                 })
            psi.ArgumentList.Add(a);
        if (depth > 0)
        {
            psi.ArgumentList.Add("-d");
            psi.ArgumentList.Add(depth.ToString(CultureInfo.InvariantCulture));
        }
        foreach (var a in new[] { "-ctk", cacheK, "-ctv", cacheV }) psi.ArgumentList.Add(a);
        if (managed) psi.ArgumentList.Insert(0, cli);

        using var proc = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
        var stderrTask = proc.StandardError.ReadToEndAsync();
        string stdout = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        string stderr = stderrTask.Result.Trim();
        if (proc.ExitCode != 0)
        {
            string first = stderr.Split('\n').FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
            bool unknownCommand = stderr.Contains("bench", StringComparison.Ordinal) && stderr.Contains("Unrecognized", StringComparison.OrdinalIgnoreCase);
            return Fail($"`edgellm bench` failed (exit {proc.ExitCode}{(first.Length > 0 ? ": " + first : "")})"
                + (unknownCommand ? "; the bench command is not wired into this CLI build" : ""));
        }

        if (stdout.Trim().Length == 0)
            return Fail("`edgellm bench --json` printed nothing; is the bench command wired into the CLI?");
        try
        {
            using var doc = JsonDocument.Parse(stdout);
            var root = doc.RootElement;
            double[] Arr(string key) => root.TryGetProperty(key, out var a) && a.ValueKind == JsonValueKind.Array
                ? a.EnumerateArray().Select(e => e.GetDouble()).ToArray()
                : [];
            string kernel = root.TryGetProperty("kernel", out var k) ? k.GetString() ?? "" : "";
            string layout = root.TryGetProperty("weight_layout", out var l) ? l.GetString() ?? "" : "";
            string note = kernel.Length > 0 ? $"kernel {kernel}" : "";
            if (layout.Length > 0 && layout != "file") note += $", weights repacked as {layout}";
            return new BenchFigures(threads, pp, tg, Arr("pp_all"), Arr("tg_all"), note);
        }
        catch (JsonException ex)
        {
            return Fail($"`edgellm bench --json` printed no valid JSON ({ex.Message}): {stdout.Trim()}");
        }
    }
}
