using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The CLI without a Vulkan driver (the ICD hidden by VK_ICD_FILENAMES / VK_DRIVER_FILES pointing
/// to a file that does not exist), in a child process: a clear error and exit 2 for the strict
/// backend and for <c>devices</c>, a note and a CPU run for <c>auto</c>; never a crash.
/// </summary>
public class NoDriverTests(ITestOutputHelper output)
{
    private static string Cli()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        string config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        string dll = Path.Combine(dir.FullName, "src", "EdgeLlm.Cli", "bin", config, "net10.0", "edgellm.dll");
        Assert.True(File.Exists(dll), $"the CLI is not built: {dll}");
        return dll;
    }

    private (int Code, string Out, string Err) RunHidden(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Cli());
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["VK_ICD_FILENAMES"] = "/nonexistent/edgellm-no-icd.json";
        psi.Environment["VK_DRIVER_FILES"] = "/nonexistent/edgellm-no-icd.json";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string err = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(120_000), "the CLI did not finish");
        output.WriteLine($"edgellm {string.Join(' ', args)} -> {p.ExitCode}\n{err}");
        return (p.ExitCode, stdout.Result, err);
    }

    [Fact]
    public void StrictVulkan_WithoutDriver_IsAClearErrorWithExit2()
    {
        string outFile = Path.GetTempFileName();
        var (code, _, err) = RunHidden("logits", "-m", global::EdgeLlm.Tests.SharedData.Model("stories260K"), "--ids", "1,2", "-o", outFile, "--backend", "vulkan");
        Assert.Equal(2, code);
        Assert.Contains("Vulkan is unavailable", err, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Devices_WithoutDriver_IsAClearError()
    {
        var (code, _, err) = RunHidden("devices");
        Assert.Equal(2, code);
        Assert.Contains("Vulkan is unavailable", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_WithoutDriver_SaysItRunsOnTheCpu()
    {
        string outFile = Path.GetTempFileName();
        var (code, _, err) = RunHidden("logits", "-m", global::EdgeLlm.Tests.SharedData.Model("stories260K"), "--ids", "1,2", "-o", outFile, "--backend", "auto");
        Assert.Equal(0, code);
        Assert.Contains("running on the CPU", err, StringComparison.Ordinal);
        Assert.Equal(2 * 512 * 4, new FileInfo(outFile).Length);
    }
}
