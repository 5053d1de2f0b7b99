using System.Diagnostics;
using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Chat;

/// <summary>
/// The NuGet package end to end: tests/packaging/pack-and-run.sh packs src/EdgeLlm, checks the package's
/// metadata and contents, builds README's ".NET API" example against the package (restored from a local
/// feed) and runs it on stories260K. Takes a minute or more (pack, restore, build). Fails, never skips,
/// when ../shared is missing.
/// </summary>
public sealed class PackagingTests(ITestOutputHelper output)
{
    [Fact]
    public void Package_RunsTheReadmeExample()
    {
        string root = RepositoryRoot();
        string work = Path.Combine(root, "artifacts", "packaging-test");
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = root,
        };
        psi.ArgumentList.Add(Path.Combine(root, "tests", "packaging", "pack-and-run.sh"));
        psi.ArgumentList.Add(work);
        psi.Environment["EDGELLM_SHARED"] = SharedData.Root; // throws (fails the test) when ../shared is missing
        // Pack what this test run's build produced (src/EdgeLlm is a dependency of the tests) instead of building
        // again, which could race with the NativeAOT publish of NativeAbiTests running alongside.
        psi.Environment["EDGELLM_PACK_NO_BUILD"] = "1";
        psi.Environment["EDGELLM_PACK_CONFIGURATION"] = BuildConfiguration;

        var text = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("tests/packaging/pack-and-run.sh ran for more than 20 minutes:\n" + text);
        }
        p.WaitForExit();
        string log = text.ToString();
        output.WriteLine(log);

        Assert.True(p.ExitCode == 0, $"tests/packaging/pack-and-run.sh exited with {p.ExitCode}:\n{log}");
        Assert.Contains("pack-and-run.sh: the README example ran from the package", log, StringComparison.Ordinal);
        // The example's first answer (greedy, 40 tokens) ends by length, and reports its token counts.
        Assert.Matches(@"\[length: \d+ prompt \+ 40 generated tokens\]", log);
    }

#if DEBUG
    private const string BuildConfiguration = "Debug";
#else
    private const string BuildConfiguration = "Release";
#endif

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("EdgeLlm.sln not found above " + AppContext.BaseDirectory);
    }
}
