using EdgeLlm.Engine;
using EdgeLlm.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Models;

/// <summary>
/// Our forward pass against llama.cpp's logits (shared/golden): the whole prompt in one batch,
/// every position's logits compared by figure = max|ours − golden| / std(golden).
/// Bounds follow shared/README.md: float summation order gives 3e-4..2e-3 on f32/f16, bf16's
/// activation rounding ~0.013, quantized files 0.02..0.07.
/// </summary>
public class GoldenLogitsTests(ITestOutputHelper output)
{
    private const double TrainedF32Bound = 5e-3;
    private const double FloatBound = 0.02;
    private const double BF16Bound = 0.05;
    private const double QuantBound = 0.10;

    /// <summary>(model, bound) × (p1, p2). Every shared model file is here.</summary>
    public static TheoryData<string, string, double> Cases()
    {
        var data = new TheoryData<string, string, double>();
        (string Model, double Bound)[] models =
        [
            ("stories260K", TrainedF32Bound),
            ("syn-llama-f32", FloatBound),
            ("syn-llama-f16", FloatBound),
            ("syn-llama-bf16", BF16Bound),
            ("syn-qwen2-f32", FloatBound),
            ("syn-qwen2-f16", FloatBound),
            ("syn-llama3-f32", FloatBound),
            ("stories260K-q8_0", QuantBound),
            ("stories260K-q4_0", QuantBound),
            ("syn-llama-q8_0", QuantBound),
            ("syn-llama-q4_0", QuantBound),
            ("syn-llama-q4_1", QuantBound),
            ("syn-llama-q5_0", QuantBound),
            ("syn-llama-q5_1", QuantBound),
            ("syn-llama-q2_k", QuantBound),
            ("syn-llama-q3_k_m", QuantBound),
            ("syn-llama-q4_k_m", QuantBound),
            ("syn-llama-q5_k_m", QuantBound),
            ("syn-llama-q6_k", QuantBound),
            ("syn-llama-iq4_nl", QuantBound),
            ("syn-qwen2-q8_0", QuantBound),
            ("syn-qwen2-q4_0", QuantBound),
            ("syn-qwen2-q4_k_m", QuantBound),
            ("syn-llama3-q8_0", QuantBound),
            ("syn-llama3-q4_k_m", QuantBound),
        ];
        foreach (var (model, bound) in models)
        {
            data.Add(model, "p1", bound);
            data.Add(model, "p2", bound);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BatchPrompt_MatchesLlamaCppLogits(string model, string prompt, double bound)
    {
        var golden = GoldenCase.Load(model, prompt);
        using var m = Model.Load(SharedData.Model(model));
        using var ctx = new InferenceContext(m, contextLength: 256);
        float[] logits = ctx.Eval(golden.PromptIds, allLogits: true);
        double figure = GoldenCase.Figure(logits, golden.Logits);
        output.WriteLine($"{model}.{prompt}: figure {figure:G4} (bound {bound})");
        Assert.True(figure <= bound, $"{model}.{prompt}: figure {figure:G4} exceeds {bound}");
    }

    [Theory]
    [InlineData("stories260K")]
    [InlineData("syn-llama-f16")]
    [InlineData("syn-qwen2-f32")]
    [InlineData("syn-llama3-f32")]
    public void TokenByToken_EqualsBatch(string model)
    {
        var golden = GoldenCase.Load(model, "p2");
        using var m = Model.Load(SharedData.Model(model));
        using var batchCtx = new InferenceContext(m, contextLength: 128);
        float[] batch = batchCtx.Eval(golden.PromptIds, allLogits: true);

        using var stepCtx = new InferenceContext(m, contextLength: 128);
        int vocab = m.Config.VocabSize;
        var steps = new float[batch.Length];
        for (int i = 0; i < golden.PromptIds.Length; i++)
        {
            float[] row = stepCtx.Eval(golden.PromptIds.AsSpan(i, 1));
            row.CopyTo(steps, i * vocab);
        }
        Assert.Equal(golden.PromptIds.Length, stepCtx.Position);
        double figure = GoldenCase.Figure(steps, batch);
        output.WriteLine($"{model}: token-by-token vs batch figure {figure:G4}");
        Assert.True(figure <= 1e-4, $"token-by-token differs from batch: figure {figure:G4}");
    }

    /// <summary>
    /// The 200-token greedy story: exact on the float file; on quantized files two faithful
    /// implementations can part at a near-tie (activation rounding), so the first 50 must match.
    /// </summary>
    [Theory]
    [InlineData("stories260K", 200)]
    [InlineData("stories260K-q8_0", 50)]
    [InlineData("stories260K-q4_0", 50)]
    public void Stories260K_GreedyStory_MatchesLlamaCpp(string model, int mustMatch)
    {
        var story = GoldenCase.Load(model, "story");
        using var m = Model.Load(SharedData.Model(model));
        using var ctx = new InferenceContext(m, contextLength: 4096);
        float[] logits = ctx.Eval(story.PromptIds, allLogits: true);
        double figure = GoldenCase.Figure(logits, story.Logits);
        output.WriteLine($"story prompt logits figure {figure:G4}");

        int vocab = m.Config.VocabSize;
        int next = GoldenCase.ArgMax(logits.AsSpan((story.PromptIds.Length - 1) * vocab, vocab));
        var generated = new List<int>();
        for (int i = 0; i < story.GreedyIds.Length; i++)
        {
            generated.Add(next);
            if (i + 1 < story.GreedyIds.Length) next = GoldenCase.ArgMax(ctx.Eval([next]));
        }
        int matching = 0;
        while (matching < generated.Count && generated[matching] == story.GreedyIds[matching]) matching++;
        output.WriteLine($"{model} greedy story: {matching}/{story.GreedyIds.Length} tokens match llama.cpp");
        Assert.Equal(200, story.GreedyIds.Length);
        Assert.True(matching >= mustMatch, $"{model}: only the first {matching} greedy tokens match llama.cpp's, {mustMatch} required");
        if (mustMatch == story.GreedyIds.Length) Assert.Equal(story.GreedyIds, generated);
    }

    [Fact]
    public void Llama3_WithoutRopeFrequencyFactors_IsFarOff()
    {
        var golden = GoldenCase.Load("syn-llama3-f32", "p2");
        using var m = Model.Load(SharedData.Model("syn-llama3-f32"), new ModelLoadOptions { IgnoreRopeFrequencyFactors = true });
        Assert.True(m.Config.HasRopeFrequencyFactors);
        using var ctx = new InferenceContext(m, contextLength: 128);
        double figure = GoldenCase.Figure(ctx.Eval(golden.PromptIds, allLogits: true), golden.Logits);
        output.WriteLine($"syn-llama3-f32.p2 without rope_freqs: figure {figure:G4}");
        Assert.True(figure > 0.1, $"ignoring rope_freqs should change the logits a lot, figure {figure:G4}");
    }
}
