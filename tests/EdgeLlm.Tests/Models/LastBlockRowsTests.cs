using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Specialized;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Models;

/// <summary>
/// The last block runs in full only for the tokens whose logits are asked for (Model.Forward,
/// the generated forward passes): a prompt evaluated for its last logits must give the same last
/// row as with every row's logits, leave the same KV cache behind (the next tokens' logits are
/// identical), and a long prompt's middle chunk (no logits at all) must store its keys and values.
/// Both paths: the generic one and, where the file has a config, the specialized one.
/// </summary>
public class LastBlockRowsTests(ITestOutputHelper output)
{
    /// <summary>
    /// The last row computed alone against the same row computed in the batch: the single-token
    /// kernels (decode products, attention) sum in another order than the batch tiles, as in
    /// <see cref="GoldenLogitsTests.TokenByToken_EqualsBatch"/>; on quantized files a changed float
    /// can flip an activation's rounding, hence the looser bound there.
    /// </summary>
    private const double FloatBound = 1e-4;
    private const double QuantBound = 2e-3;

    public static TheoryData<string, bool, bool> Cases()
    {
        var data = new TheoryData<string, bool, bool>();
        (string Model, bool IsFloat)[] models =
        [
            ("stories260K", true), ("syn-llama-f16", true), ("syn-qwen2-f32", true),
            ("stories260K-q4_0", false), ("syn-llama-q4_0", false), ("syn-llama-q4_k_m", false),
            ("syn-qwen2-q4_0", false), ("syn-llama3-q8_0", false),
        ];
        foreach (var (model, isFloat) in models)
        {
            data.Add(model, isFloat, false);
            data.Add(model, isFloat, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LastLogitsOnly_MatchTheFullBatch_AndLeaveTheSameCache(string model, bool isFloat, bool generic)
    {
        using var m = Model.Load(SharedData.Model(model), new ModelLoadOptions { Generic = generic });
        var golden = GoldenCase.Load(model, "p2");
        int vocab = m.Config.VocabSize;
        long specializedBefore = SpecializedTransformer.SpecializedRuns;

        using var full = new InferenceContext(m, contextLength: 128, threads: 2);
        using var pruned = new InferenceContext(m, contextLength: 128, threads: 2);
        float[] all = full.Eval(golden.PromptIds, allLogits: true);
        float[] last = pruned.Eval(golden.PromptIds);
        float[] lastOfAll = all.AsSpan(all.Length - vocab).ToArray();
        double figure = GoldenCase.Figure(last, lastOfAll);
        double vsLlama = GoldenCase.Figure(last, golden.Logits.AsSpan(golden.Logits.Length - vocab).ToArray());
        output.WriteLine($"{model} ({(generic ? "generic" : m.Specialization?.Name ?? "generic: no config")}): last row alone vs in the batch {figure:G4}; vs llama.cpp {vsLlama:G4}");
        Assert.True(figure <= (isFloat ? FloatBound : QuantBound), $"last row alone vs in the batch: figure {figure:G4}");
        Assert.True(vsLlama <= 0.1, $"last row vs llama.cpp: figure {vsLlama:G4}");

        // The same keys and values behind both: the next tokens see identical caches.
        int next = GoldenCase.ArgMax(last);
        for (int i = 0; i < 2; i++)
        {
            float[] a = full.Eval([next]);
            float[] b = pruned.Eval([next]);
            Assert.Equal(a, b);
            next = GoldenCase.ArgMax(a);
        }
        if (!generic && m.Specialization is not null)
            Assert.True(SpecializedTransformer.SpecializedRuns >= specializedBefore + 6, "the specialized forward pass did not run");
    }

    /// <summary>
    /// A prompt longer than <see cref="InferenceContext.MaxBatch"/>: its first chunk asks for no
    /// logits, so its last block computes only keys and values, which the second chunk attends to.
    /// </summary>
    [Theory]
    [InlineData("syn-llama-q4_0", false)]
    [InlineData("syn-llama-q4_0", true)]
    [InlineData("syn-qwen2-f32", false)]
    [InlineData("syn-qwen2-f32", true)]
    public void LongPrompt_MiddleChunkWithoutLogits_StoresItsKeysAndValues(string model, bool generic)
    {
        using var m = Model.Load(SharedData.Model(model), new ModelLoadOptions { Generic = generic });
        int vocab = m.Config.VocabSize;
        var rng = new Random(7);
        int[] prompt = Enumerable.Range(0, InferenceContext.MaxBatch + 40).Select(_ => rng.Next(vocab)).ToArray();
        int ctxLen = prompt.Length + 8;

        using var full = new InferenceContext(m, contextLength: ctxLen, threads: 2);
        using var pruned = new InferenceContext(m, contextLength: ctxLen, threads: 2);
        float[] all = full.Eval(prompt, allLogits: true);
        float[] last = pruned.Eval(prompt);
        double figure = GoldenCase.Figure(last, all.AsSpan(all.Length - vocab).ToArray());
        output.WriteLine($"{model} ({(generic ? "generic" : "specialized")}): {prompt.Length} tokens in two chunks, last row figure {figure:G4}");
        Assert.True(figure <= QuantBound, $"figure {figure:G4}");
        float[] a = full.Eval([3]);
        float[] b = pruned.Eval([3]);
        Assert.Equal(a, b);
    }
}
