using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Xunit;

namespace EdgeLlm.Generators.Tests;

/// <summary>
/// How a build's list of specializations reaches the generators. MSBuild writes build properties
/// into a global .editorconfig for the compiler, and there ';' starts a comment: a ';'-separated
/// <c>EdgeLlmSpecializations</c> arrives cut after its first name (which once left every device
/// profile but its first model generic). The projects therefore also pass
/// <c>EdgeLlmSpecializationsList</c> (and <c>EdgeLlmVulkanSpecializationsList</c>) with ',' separators.
/// </summary>
public class SelectionPropertyTests
{
    /// <summary>Parses text as the compiler parses MSBuild's generated global config.</summary>
    private static Dictionary<string, string> GlobalConfig(string properties)
    {
        var config = AnalyzerConfig.Parse("is_global = true\n" + properties, "/build/EdgeLlm.GeneratedMSBuildEditorConfig.editorconfig");
        var set = AnalyzerConfigSet.Create(ImmutableArray.Create(config));
        // Keys are case-insensitive there (the compiler's AnalyzerConfigOptions.KeyComparer).
        return set.GlobalConfigOptions.AnalyzerOptions.ToDictionary(kv => kv.Key, kv => kv.Value, AnalyzerConfigOptions.KeyComparer);
    }

    [Fact]
    public void GlobalConfig_CutsASemicolonList_AndKeepsACommaList()
    {
        var g = GlobalConfig("build_property.EdgeLlmSpecializations = tinyllama-1.1b-q4_0;qwen2.5-0.5b-q4_0\n"
                             + "build_property.EdgeLlmSpecializationsList = tinyllama-1.1b-q4_0,qwen2.5-0.5b-q4_0\n");
        Assert.Equal("tinyllama-1.1b-q4_0", g["build_property.EdgeLlmSpecializations"]);
        Assert.Equal("tinyllama-1.1b-q4_0,qwen2.5-0.5b-q4_0", g["build_property.EdgeLlmSpecializationsList"]);
    }

    [Fact]
    public void Generator_SpecializesEveryNameOfTheList_ThroughARealGlobalConfig()
    {
        var globals = GlobalConfig("build_property.EdgeLlmSpecializations = tinyllama-1.1b-q4_0;qwen2.5-0.5b-q4_0\n"
                                   + "build_property.EdgeLlmSpecializationsList = tinyllama-1.1b-q4_0,qwen2.5-0.5b-q4_0\n");
        string[] configs = ["tinyllama-1.1b-q4_0", "qwen2.5-0.5b-q4_0", "smollm2-360m-q4_0"];
        var files = configs.Select(c => (AdditionalText)new GeneratorHarness.Config(GeneratorHarness.ConfigPath(c), File.ReadAllText(GeneratorHarness.ConfigPath(c))));
        var r = GeneratorHarness.Driver(files, globals).RunGenerators(GeneratorHarness.Compilation("class C { }")).GetRunResult().Results.Single();
        Assert.Null(r.Exception);
        Assert.Empty(r.Diagnostics);
        var names = r.GeneratedSources.Select(s => s.SourceText.ToString().Split('\n')[1]).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(2, names.Length);
        Assert.StartsWith("// EdgeLlm specialization 'qwen2.5-0.5b-q4_0'", names[0], StringComparison.Ordinal);
        Assert.StartsWith("// EdgeLlm specialization 'tinyllama-1.1b-q4_0'", names[1], StringComparison.Ordinal);
    }

    /// <summary>The projects turn the ';' list (as devices/build.sh passes it, escaped) into the ',' list.</summary>
    [Theory]
    [InlineData("src/EdgeLlm/EdgeLlm.csproj", "EdgeLlmSpecializationsList")]
    [InlineData("src/EdgeLlm.Vulkan/EdgeLlm.Vulkan.csproj", "EdgeLlmVulkanSpecializationsList")]
    public async Task Projects_PassTheListWithCommas(string project, string property)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "msbuild", Path.Combine(GeneratorHarness.RepoRoot, project), "-nologo", $"-getProperty:{property}",
                                  "-p:EdgeLlmSpecializations=tinyllama-1.1b-q4_0%3Bqwen2.5-0.5b-q4_0" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = (await p.StandardOutput.ReadToEndAsync()).Trim();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"dotnet msbuild failed: {output} {await err}");
        Assert.Equal("tinyllama-1.1b-q4_0,qwen2.5-0.5b-q4_0", output);
    }
}
