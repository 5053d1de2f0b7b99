using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Specialized;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Specialized;

/// <summary>
/// The compile-time specialized forward passes (Specialized/Configs/*.json) against the generic
/// path on every shared model that has a config. The generated code keeps the generic path's
/// arithmetic per value (same kernels, same summation order), so the logits must be identical on
/// every file; the float bound is the 1e-4 by the golden figure, the quantized one exact.
/// </summary>
public class SpecializedEquivalenceTests(ITestOutputHelper output)
{
    /// <summary>Float files: max|specialized − generic| / std(generic).</summary>
    private const double FloatBound = 1e-4;

    /// <summary>(shared model, config name, float file).</summary>
    public static TheoryData<string, string, bool> Cases() => new()
    {
        { "stories260K", "stories260k-f32", true },
        { "stories260K-q8_0", "stories260k-q8_0", false },
        { "stories260K-q4_0", "stories260k-q4_0", false },
        { "syn-llama-f32", "syn-llama-f32", true },
        { "syn-llama-q8_0", "syn-llama-q8_0", false },
        { "syn-llama-q4_0", "syn-llama-q4_0", false },
        { "syn-qwen2-f32", "syn-qwen2-f32", true },
        { "syn-qwen2-q4_0", "syn-qwen2-q4_0", false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Specialized_MatchesGeneric(string model, string config, bool isFloat)
    {
        using var file = GgufFile.Open(SharedData.Model(model));
        using var spec = Model.Load(file);
        using var generic = Model.Load(file, new ModelLoadOptions { Generic = true });
        Assert.NotNull(spec.Specialization);
        Assert.Equal(config, spec.Specialization!.Name);
        Assert.Null(generic.Specialization);
        Assert.Equal($"specialized: {config}", SpecializationRegistry.Describe(file));

        foreach (string prompt in new[] { "p1", "p2" })
        {
            var golden = GoldenCase.Load(model, prompt);
            long before = spec.Specialization.Runs;
            // Whole prompt as one batch, then three single tokens (the decode path, n = 1).
            float[] a = RunBatchThenSteps(spec, golden.PromptIds);
            Assert.True(spec.Specialization.Runs >= before + 4, "the specialized forward pass did not run");
            float[] b = RunBatchThenSteps(generic, golden.PromptIds);

            double figure = GoldenCase.Figure(a, b);
            int differing = a.Zip(b).Count(p => p.First != p.Second);
            output.WriteLine($"{model}.{prompt}: specialized vs generic figure {figure:G4}, {differing}/{a.Length} logits differ; vs llama.cpp {GoldenCase.Figure(a.AsSpan(0, golden.Logits.Length).ToArray(), golden.Logits):G4}");
            if (isFloat) Assert.True(figure <= FloatBound, $"figure {figure:G4} exceeds {FloatBound}");
            else Assert.Equal(b, a);
        }
    }

    /// <summary>Logits of the whole prompt as one batch, then of three greedy single tokens (the decode path, n = 1).</summary>
    internal static float[] RunBatchThenSteps(Model m, int[] prompt)
    {
        using var ctx = new InferenceContext(m, contextLength: 128, threads: 2);
        var all = new List<float>(ctx.Eval(prompt, allLogits: true));
        int next = GoldenCase.ArgMax(all.ToArray().AsSpan(all.Count - m.Config.VocabSize));
        for (int i = 0; i < 3; i++)
        {
            float[] row = ctx.Eval([next]);
            all.AddRange(row);
            next = GoldenCase.ArgMax(row);
        }
        return all.ToArray();
    }

    /// <summary>The 200-token greedy story of stories260K on the specialized path is still llama.cpp's, token for token.</summary>
    [Fact]
    public void Stories260K_GreedyStory_Specialized_IsIdentical()
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var m = Model.Load(SharedData.Model("stories260K"));
        Assert.Equal("stories260k-f32", m.Specialization?.Name);
        long before = m.Specialization!.Runs;
        using var ctx = new InferenceContext(m, contextLength: 4096);
        float[] logits = ctx.Eval(story.PromptIds, allLogits: true);
        int vocab = m.Config.VocabSize;
        int next = GoldenCase.ArgMax(logits.AsSpan((story.PromptIds.Length - 1) * vocab, vocab));
        var generated = new List<int>();
        for (int i = 0; i < story.GreedyIds.Length; i++)
        {
            generated.Add(next);
            if (i + 1 < story.GreedyIds.Length) next = GoldenCase.ArgMax(ctx.Eval([next]));
        }
        // At least: other test classes may run the same (shared) specialization concurrently.
        Assert.True(m.Specialization.Runs >= before + story.GreedyIds.Length, "the specialized forward pass did not run for every token");
        Assert.Equal(story.GreedyIds, generated);
    }

    /// <summary>A file nothing was generated for (other types, another shape) runs generic, and says why.</summary>
    [Theory]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-qwen2-q8_0")]
    [InlineData("syn-llama3-f32")]
    public void NoMatchingConfig_RunsGeneric(string model)
    {
        using var file = GgufFile.Open(SharedData.Model(model));
        using var m = Model.Load(file);
        Assert.Null(m.Specialization);
        string d = SpecializationRegistry.Describe(file);
        output.WriteLine($"{model}: {d}");
        Assert.StartsWith("generic", d, StringComparison.Ordinal);
        using var ctx = new InferenceContext(m, contextLength: 64);
        Assert.Equal(m.Config.VocabSize, ctx.Eval([1, 2, 3]).Length);
    }

    /// <summary>
    /// Model.RunGeneric switches one loaded model between the paths per evaluation (what
    /// <c>edgellm bench --vs-generic</c> alternates): the specialization's run counter moves only
    /// while it is off, and the two paths' logits are identical on a quantized file.
    /// </summary>
    [Fact]
    public void RunGeneric_SwitchesOneModelBetweenThePaths()
    {
        using var m = Model.Load(SharedData.Model("syn-llama-q4_0"));
        var spec = m.Specialization;
        Assert.NotNull(spec);
        int[] prompt = GoldenCase.Load("syn-llama-q4_0", "p1").PromptIds;
        using var ctx = new InferenceContext(m, contextLength: 64, threads: 2);
        m.RunGeneric = true;
        long before = spec!.Runs;
        float[] generic = ctx.Eval(prompt);
        long afterGeneric = spec.Runs;
        m.RunGeneric = false;
        ctx.Reset();
        float[] specialized = ctx.Eval(prompt);
        Assert.True(spec.Runs >= afterGeneric + 1, "the specialized forward pass did not run with RunGeneric off");
        Assert.Same(spec, m.Specialization);
        Assert.Equal(generic, specialized);
        // Other test classes may run this shared specialization concurrently: the generic run can only be
        // shown not to have used it by a model of its own, so check the counter on a fresh load as well.
        using var m2 = Model.Load(SharedData.Model("syn-llama-q4_0"));
        m2.RunGeneric = true;
        using var ctx2 = new InferenceContext(m2, contextLength: 64, threads: 1);
        Assert.Equal(generic, ctx2.Eval(prompt));
        output.WriteLine($"runs before {before}, after the generic eval {afterGeneric}, after the specialized eval {spec.Runs}");
    }

    [Fact]
    public void GenericOption_DescribesTheAvailableSpecialization()
    {
        using var file = GgufFile.Open(SharedData.Model("syn-llama-q4_0"));
        using var m = Model.Load(file, new ModelLoadOptions { Generic = true });
        Assert.Null(m.Specialization);
        Assert.Equal("generic (forced; specialized: syn-llama-q4_0 available)", SpecializationRegistry.Describe(m));
    }

    /// <summary>Every config in the default build registered itself (module initializers ran).</summary>
    [Fact]
    public void Registry_HoldsEveryDefaultConfig()
    {
        var names = SpecializationRegistry.All.Select(s => s.Name).ToHashSet();
        string[] expected =
        [
            "tinyllama-1.1b-q4_0", "tinyllama-1.1b-q8_0", "tinyllama-1.1b-q4_k_m",
            "llama-3.2-1b-q4_0", "llama-3.2-1b-q8_0", "llama-3.2-1b-q4_k_m",
            "qwen2.5-0.5b-q4_0", "qwen2.5-0.5b-q8_0", "qwen2.5-0.5b-q4_k_m",
            "smollm2-360m-q4_0", "smollm2-360m-q8_0", "smollm2-360m-q4_k_m",
            "qwen3-0.6b-q4_0", "qwen3-0.6b-q8_0", "qwen3-0.6b-q4_k_m",
            "stories260k-f32", "stories260k-q8_0", "stories260k-q4_0",
            "syn-llama-f32", "syn-llama-q8_0", "syn-llama-q4_0", "syn-qwen2-f32", "syn-qwen2-q4_0",
            "syn-qwen3-f32", "syn-qwen3-q4_0",
        ];
        foreach (var e in expected) Assert.Contains(e, names);
    }
}
