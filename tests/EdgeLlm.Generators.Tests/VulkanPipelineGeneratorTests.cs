using EdgeLlm.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;
using Xunit;

namespace EdgeLlm.Generators.Tests;

/// <summary>
/// <see cref="VulkanPipelineGenerator"/>: the Vulkan pipeline table of a config (emitted-text
/// baseline, Baselines/*.vulkan-pipelines.txt; EDGELLM_UPDATE_BASELINES=1 rewrites it), its
/// entries, the selection property and the file marking that keeps it apart from
/// <see cref="TransformerGenerator"/>.
/// </summary>
public class VulkanPipelineGeneratorTests
{
    private const string Marker = "build_metadata.AdditionalFiles.EdgeLlmVulkanConfig";

    private static GeneratorRunResult Run(IIncrementalGenerator generator, string marker, string? selection, params string[] configs)
    {
        var globals = new Dictionary<string, string>();
        if (selection is not null) globals["build_property.EdgeLlmVulkanSpecializations"] = selection;
        var files = configs.Select(c => (AdditionalText)new GeneratorHarness.Config(GeneratorHarness.ConfigPath(c), File.ReadAllText(GeneratorHarness.ConfigPath(c))));
        GeneratorDriver driver = CSharpGeneratorDriver.Create([generator.AsSourceGenerator()], files,
            parseOptions: new CSharpParseOptions(LanguageVersion.Latest), optionsProvider: new Options(globals, marker));
        driver = driver.RunGenerators(GeneratorHarness.Compilation("class C { }"));
        return driver.GetRunResult().Results.Single();
    }

    private static string Emit(string config)
    {
        var r = Run(new VulkanPipelineGenerator(), Marker, null, config);
        Assert.Null(r.Exception);
        Assert.Empty(r.Diagnostics);
        return Assert.Single(r.GeneratedSources).SourceText.ToString();
    }

    [Fact]
    public void Emitted_MatchesBaseline()
    {
        const string config = "tinyllama-1.1b-q4_k_m";
        string actual = Emit(config);
        string baseline = Path.Combine(GeneratorHarness.RepoRoot, "tests", "EdgeLlm.Generators.Tests", "Baselines", config + ".vulkan-pipelines.txt");
        if (Environment.GetEnvironmentVariable("EDGELLM_UPDATE_BASELINES") == "1") File.WriteAllText(baseline, actual);
        Assert.True(File.Exists(baseline), $"no baseline {baseline}; run with EDGELLM_UPDATE_BASELINES=1 to create it");
        Assert.Equal(File.ReadAllText(baseline), actual);
    }

    /// <summary>The Q4_K_M mix (Q6_K attn_v / ffn_down in some layers) gets a pipeline pair per (tensor, type).</summary>
    [Fact]
    public void KQuantMix_HasOnePipelinePairPerTensorType()
    {
        string text = Emit("tinyllama-1.1b-q4_k_m");
        Assert.Contains("new(\"vec.attn_v.q4_k\", \"mul_mat_vec_q4_k\", [64u, 2048u, 1152u, 256u]),", text, StringComparison.Ordinal);
        Assert.Contains("new(\"vec.attn_v.q6_k\", \"mul_mat_vec_q6_k\", [64u, 2048u, 1680u, 256u]),", text, StringComparison.Ordinal);
        Assert.Contains("new(\"mat.ffn_down.q6_k\", \"mul_mat_q6_k\", [128u, 5632u, 4620u, 2048u]),", text, StringComparison.Ordinal);
        Assert.Contains("new(\"rope.k\", \"rope_norm\", [64u, 64u, 64u, 4u, Bits(MathF.Pow(10000f, -2.0f / 64)), Bits(1f), 0u]),", text, StringComparison.Ordinal);
        Assert.Contains("new(\"attention\", \"attention\", [64u, 64u, 32u, 4u, Bits(1.0f / MathF.Sqrt(64))]),", text, StringComparison.Ordinal);
        Assert.Contains("[ModuleInitializer]", text, StringComparison.Ordinal);
        // no role twice
        var roles = text.Split('\n').Where(l => l.TrimStart().StartsWith("new(\"", StringComparison.Ordinal)).Select(l => l.Split('"')[1]).ToList();
        Assert.Equal(roles.Count, roles.Distinct().Count());
    }

    [Fact]
    public void Qwen2_UsesNeoxRope_AndLlama3_HasFactors()
    {
        Assert.Contains("\"rope.q\", \"rope_neox\"", Emit("syn-qwen2-q4_0"), StringComparison.Ordinal);
        string llama3 = Emit("llama-3.2-1b-q4_0");
        Assert.Contains("RopeFactors = true", llama3, StringComparison.Ordinal);
        Assert.Contains("Bits(1f), 1u]),", llama3, StringComparison.Ordinal);
    }

    /// <summary>Qwen3's per-head Q/K norms add the rms_norm shader over one 128-wide head, after the shared element-wise pipelines (the backend's order).</summary>
    [Fact]
    public void Qwen3_HasTheHeadNormPipeline()
    {
        string text = Emit("qwen3-0.6b-q4_0");
        Assert.Contains("Architecture = \"qwen3\"", text, StringComparison.Ordinal);
        Assert.Contains("new(\"rms_norm.head\", \"rms_norm\", [64u, 128u, Bits(1E-06f)]),", text, StringComparison.Ordinal);
        Assert.Contains("new(\"vec.attn_output.q4_0\", \"mul_mat_vec_q4_0\", [64u, 2048u, 1152u, 1024u]),", text, StringComparison.Ordinal);
        var roles = text.Split('\n').Where(l => l.TrimStart().StartsWith("new(\"", StringComparison.Ordinal)).Select(l => l.Split('"')[1]).ToList();
        Assert.Equal(roles.IndexOf("add") + 1, roles.IndexOf("rms_norm.head"));
        Assert.DoesNotContain("rms_norm.head", Emit("syn-qwen2-q4_0"), StringComparison.Ordinal);
    }

    [Fact]
    public void Selection_PicksTables()
    {
        var r = Run(new VulkanPipelineGenerator(), Marker, "syn-llama-q4_0", "syn-llama-q4_0", "syn-qwen2-q4_0");
        Assert.Equal("Syn_llama_q4_0.VulkanPipelines.g.cs", Assert.Single(r.GeneratedSources).HintName);
        Assert.Equal(2, Run(new VulkanPipelineGenerator(), Marker, "*", "syn-llama-q4_0", "syn-qwen2-q4_0").GeneratedSources.Length);
    }

    /// <summary>Each generator reads only the files marked for it, so neither emits into the other's assembly.</summary>
    [Fact]
    public void Generators_ReadOnlyTheirOwnMarkedFiles()
    {
        Assert.Empty(Run(new VulkanPipelineGenerator(), "build_metadata.AdditionalFiles.EdgeLlmConfig", null, "syn-llama-q4_0").GeneratedSources);
        var cpu = Run(new TransformerGenerator(), Marker, null, "syn-llama-q4_0");
        Assert.Empty(cpu.GeneratedSources);
        Assert.Empty(cpu.Diagnostics);
    }

    private sealed class Options(Dictionary<string, string> globals, string marker) : AnalyzerConfigOptionsProvider
    {
        public override AnalyzerConfigOptions GlobalOptions { get; } = new Opts(globals);

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => new Opts([]);

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => new Opts(new() { [marker] = "true" });
    }

    private sealed class Opts(Dictionary<string, string> values) : AnalyzerConfigOptions
    {
        public override bool TryGetValue(string key, out string value) => values.TryGetValue(key, out value!);
    }
}
