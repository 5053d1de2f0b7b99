using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace EdgeLlm.Generators.Tests;

/// <summary>The pipeline caches: edits that do not touch a config leave its outputs Cached.</summary>
public class TransformerGeneratorIncrementalTests
{
    private static (string, string) Config(string name) => (GeneratorHarness.ConfigPath(name), File.ReadAllText(GeneratorHarness.ConfigPath(name)));

    [Fact]
    public void UnrelatedCodeEdit_LeavesOutputsCached()
    {
        var files = new[] { Config("syn-llama-q4_0"), Config("tinyllama-1.1b-q4_0") }.Select(c => (AdditionalText)new GeneratorHarness.Config(c.Item1, c.Item2));
        var driver = GeneratorHarness.Driver(files);
        var compilation = GeneratorHarness.Compilation("class C { }");
        driver = driver.RunGenerators(compilation);

        // An unrelated edit: a comment and a new type in the C# code.
        var edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText("// a comment\nclass D { }"));
        driver = driver.RunGenerators(edited);
        var result = driver.GetRunResult().Results.Single();

        foreach (string step in new[] { TrackingNames.Execute, TrackingNames.Output, TrackingNames.Diagnostics })
        {
            var runs = result.TrackedSteps[step];
            Assert.NotEmpty(runs);
            Assert.All(runs.SelectMany(r => r.Outputs), o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
        }
        Assert.All(result.TrackedOutputSteps.SelectMany(kv => kv.Value).SelectMany(r => r.Outputs),
            o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"output step ran: {o.Reason}"));
    }

    [Fact]
    public void EditingOneConfig_RegeneratesOnlyThatOne()
    {
        var a = Config("syn-llama-q4_0");
        var b = Config("syn-qwen2-q4_0");
        var fileA = new GeneratorHarness.Config(a.Item1, a.Item2);
        var fileB = new GeneratorHarness.Config(b.Item1, b.Item2);
        var driver = GeneratorHarness.Driver([fileA, fileB]);
        var compilation = GeneratorHarness.Compilation("class C { }");
        driver = driver.RunGenerators(compilation);

        var fileB2 = new GeneratorHarness.Config(b.Item1, b.Item2.Replace("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 2e-06", StringComparison.Ordinal));
        driver = driver.ReplaceAdditionalText(fileB, fileB2).RunGenerators(compilation);
        var result = driver.GetRunResult().Results.Single();
        var reasons = result.TrackedSteps[TrackingNames.Output].SelectMany(r => r.Outputs).Select(o => o.Reason).ToArray();
        Assert.Contains(IncrementalStepRunReason.Cached, reasons);
        Assert.Contains(IncrementalStepRunReason.Modified, reasons);
        Assert.Contains("2E-06f", result.GeneratedSources.Single(s => s.HintName.StartsWith("Syn_qwen2", StringComparison.Ordinal)).SourceText.ToString(), StringComparison.Ordinal);
    }
}
