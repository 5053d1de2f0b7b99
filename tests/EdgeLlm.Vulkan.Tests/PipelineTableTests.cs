using EdgeLlm.Models;
using EdgeLlm.Tests;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The generated Vulkan pipeline tables (VulkanPipelineGenerator, one per config in
/// src/EdgeLlm/Specialized/Configs): a matching model builds its pipelines from the table, the
/// table equals what the backend derives from the model itself, and the logits are unchanged.
/// </summary>
public class PipelineTableTests(DeviceFixture fixture, ITestOutputHelper output) : IClassFixture<DeviceFixture>
{
    [Fact]
    public void EveryConfig_HasARegisteredTable()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "EdgeLlm", "Specialized", "Configs");
        var configs = Directory.GetFiles(dir, "*.json").Select(Path.GetFileNameWithoutExtension).Order().ToArray();
        Assert.NotEmpty(configs);
        var tables = VulkanPipelineRegistry.All.Select(t => t.Name).Order().ToArray();
        output.WriteLine($"{tables.Length} tables: {string.Join(", ", tables)}");
        Assert.Equal(configs, tables);
    }

    [Theory]
    [InlineData("stories260K", "stories260k-f32")]
    [InlineData("syn-llama-q4_0", "syn-llama-q4_0")]
    [InlineData("syn-llama-q8_0", "syn-llama-q8_0")]
    [InlineData("syn-qwen2-f32", "syn-qwen2-f32")]
    [InlineData("syn-qwen2-q4_0", "syn-qwen2-q4_0")]
    public void MatchingModel_UsesTheGeneratedTable_AndLogitsAreUnchanged(string model, string table)
    {
        var golden = GoldenCase.Load(model, "p1");
        using var m = Model.Load(SharedData.Model(model));
        using var specialized = new VulkanInferenceContext(m, contextLength: 64, fixture.Device);
        using var generic = new VulkanInferenceContext(m, contextLength: 64, fixture.Device, options: new VulkanContextOptions { UseSpecialization = false });

        Assert.NotNull(specialized.PipelineTable);
        Assert.Equal(table, specialized.PipelineTable!.Name);
        Assert.Same(specialized.PipelineTable.Pipelines, specialized.Pipelines);
        Assert.Null(generic.PipelineTable);
        // the compile-time table and the run-time derivation agree constant for constant
        Assert.Equal(generic.Pipelines.Select(p => p.ToString()), specialized.Pipelines.Select(p => p.ToString()));
        output.WriteLine($"{model}: table {table}, {specialized.Pipelines.Count} pipelines:");
        foreach (var p in specialized.Pipelines) output.WriteLine("  " + p);

        float[] a = specialized.Eval(golden.PromptIds, allLogits: true);
        float[] b = generic.Eval(golden.PromptIds, allLogits: true);
        Assert.Equal(b, a); // same pipelines, same constants: bit-identical
        output.WriteLine($"figure vs llama.cpp {GoldenCase.Figure(a, golden.Logits):G4}");
    }

    /// <summary>
    /// A Qwen3 file of syn-qwen3-q4_0.json's shape (synthesized: no shared model is a Qwen3) takes
    /// the generated table, whose rms_norm.head pipeline (per-head Q/K norms) equals the derived one.
    /// </summary>
    [Fact]
    public void Qwen3_UsesTheGeneratedTable_WithTheHeadNorm()
    {
        var shape = new EdgeLlm.Synth.SynthShape("syn-qwen3", "syn qwen3", "qwen3", 128, 3, 4, 2, 256, 400, 256, 1e6f, 1e-6f, true, false,
            EdgeLlm.Synth.SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128);
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-vk-table-qwen3-{Guid.NewGuid():N}.gguf");
        try
        {
            EdgeLlm.Synth.ModelSynthesizer.Synthesize(shape, "Q4_0", path, seed: 3);
            using var m = Model.Load(path);
            using var specialized = new VulkanInferenceContext(m, contextLength: 32, fixture.Device);
            using var generic = new VulkanInferenceContext(m, contextLength: 32, fixture.Device, options: new VulkanContextOptions { UseSpecialization = false });
            Assert.Equal("syn-qwen3-q4_0", specialized.PipelineTable?.Name);
            Assert.Equal(generic.Pipelines.Select(p => p.ToString()), specialized.Pipelines.Select(p => p.ToString()));
            Assert.Contains(specialized.Pipelines, p => p.Role == "rms_norm.head");
            int[] prompt = [5, 77, 301, 12, 9];
            Assert.Equal(generic.Eval(prompt, allLogits: true), specialized.Eval(prompt, allLogits: true));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("syn-llama-f16")]
    [InlineData("syn-llama3-f32")]
    [InlineData("syn-llama-q4_k_m")]
    public void ModelWithoutConfig_DerivesItsPipelines(string model)
    {
        using var m = Model.Load(SharedData.Model(model));
        using var ctx = new VulkanInferenceContext(m, contextLength: 16, fixture.Device);
        Assert.Null(ctx.PipelineTable);
        Assert.Contains(ctx.Pipelines, p => p.Role == "get_rows");
        output.WriteLine($"{model}: derived {ctx.Pipelines.Count} pipelines");
    }
}
