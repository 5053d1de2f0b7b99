using System.Diagnostics;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Deployment;

/// <summary>
/// The NativeAOT deployment: device profiles are well formed, and tests/deployment/run.sh (x64 AOT
/// build, arm64 cross build, golden story under qemu as Raspberry Pi 5 and 4) passes. Missing tools
/// (clang, lld, the aarch64 cross libraries, qemu-user-static) make the script, and so the test, fail.
/// </summary>
public sealed partial class DeploymentTests(ITestOutputHelper output)
{
    private static readonly string[] s_profiles = ["raspberry-pi-5", "raspberry-pi-4", "x64-avx2", "x64-avx512", "x64-portable", "android-arm64"];

    private static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new DirectoryNotFoundException("repository root (EdgeLlm.sln) not found above " + AppContext.BaseDirectory);
        }
    }

    [Theory]
    [InlineData("raspberry-pi-5", "linux-arm64", null, "neon-dotprod")]
    [InlineData("raspberry-pi-4", "linux-arm64", null, "neon")]
    [InlineData("x64-avx2", "linux-x64", "x86-64-v3", "avx2")]
    [InlineData("x64-avx512", "linux-x64", "x86-64-v4", "avx512")]
    [InlineData("x64-portable", "linux-x64", "x86-64-v2", "sse")]
    [InlineData("android-arm64", "linux-bionic-arm64", null, "neon-dotprod")]
    public void Profile_HasRidInstructionSetBackendsModelsAndReadme(string profile, string rid, string? instructionSet, string kernelPath)
    {
        string dir = Path.Combine(RepoRoot, "devices", profile);
        var props = XDocument.Load(Path.Combine(dir, "device.props"));
        string? Prop(string name) => props.Descendants(name).SingleOrDefault()?.Value;

        Assert.Equal(rid, Prop("RuntimeIdentifier"));
        Assert.Equal(instructionSet, Prop("IlcInstructionSet"));
        Assert.Equal("true", Prop("PublishAot"));
        Assert.Equal(kernelPath, Prop("EdgeLlmExpectedKernelPath"));
        Assert.Equal(["cpu", "vulkan"], Prop("EdgeLlmBackends")!.Split(';')); // what every edgellm build carries (--backend)
        Assert.True(double.Parse(Prop("EdgeLlmMemoryBandwidthGBs")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
        var models = props.Descendants("EdgeLlmSpecializedModel").ToDictionary(e => e.Attribute("Include")!.Value, e => e.Attribute("Quantizations")!.Value);
        Assert.Equal(["llama-3.2-1b", "qwen2.5-0.5b", "qwen3-0.6b", "smollm2-360m", "tinyllama-1.1b"], models.Keys.Order(StringComparer.Ordinal));
        Assert.All(models.Values, q => Assert.Equal("Q4_0;Q8_0;Q4_K_M", q));

        string readme = File.ReadAllText(Path.Combine(dir, "README.md"));
        Assert.Contains($"./devices/build.sh {profile}", readme, StringComparison.Ordinal);
        Assert.Contains("tok/s", readme, StringComparison.Ordinal);
    }

    [Fact]
    public void Profiles_EveryFolderIsListed()
    {
        var folders = Directory.GetDirectories(Path.Combine(RepoRoot, "devices")).Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Assert.Equal(s_profiles.Order(StringComparer.Ordinal), folders);
    }

    [Fact]
    public void BuildScript_UnknownProfile_FailsNamingIt()
    {
        var (rc, text) = Run(Path.Combine(RepoRoot, "devices", "build.sh"), "no-such-device", TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, rc);
        Assert.Contains("no profile 'no-such-device'", text, StringComparison.Ordinal);
        Assert.Contains("raspberry-pi-5", text, StringComparison.Ordinal);
    }

    /// <summary>
    /// Runs the whole deployment script: two NativeAOT publishes (minutes each on a small machine)
    /// and the qemu runs. Every check must pass.
    /// </summary>
    [Fact]
    [Trait("Category", "Deployment")]
    public void DeploymentScript_AllChecksPass()
    {
        _ = SharedData.Root; // fails (not skips) when ../shared is missing
        var (rc, text) = Run(Path.Combine(RepoRoot, "tests", "deployment", "run.sh"), "", TimeSpan.FromMinutes(30));
        output.WriteLine(text);
        var summary = SummaryLine().Matches(text).LastOrDefault();
        Assert.True(summary is not null, "run.sh printed no 'N passed, N failed' line");
        Assert.Equal("0", summary.Groups[2].Value);
        Assert.True(int.Parse(summary.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 10, "too few checks ran");
        Assert.Equal(0, rc);
    }

    private static (int ExitCode, string Output) Run(string script, string args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        psi.Environment["EDGELLM_SHARED"] = SharedData.Root;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start bash");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} ran longer than {timeout}");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [GeneratedRegex(@"^(\d+) passed, (\d+) failed$", RegexOptions.Multiline)]
    private static partial Regex SummaryLine();
}
