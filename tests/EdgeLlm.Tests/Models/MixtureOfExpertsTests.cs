using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Models.Blocks;
using EdgeLlm.Synth;
using Xunit;

namespace EdgeLlm.Tests.Models;

/// <summary>
/// The mixture-of-experts block's routing, and that grouping a batch by expert changes no token's result: the
/// logits of a token are the same bits in a batch, one at a time and on any number of threads.
/// </summary>
public sealed unsafe class MixtureOfExpertsTests
{
    [Fact]
    public void Route_TakesTheMostProbable_BestFirst_AndNormalizes()
    {
        float[] logits = [0.5f, 2f, -1f, 2f, 1f];
        int[] experts = new int[3];
        float[] weights = new float[3];
        fixed (float* l = logits) fixed (int* e = experts) fixed (float* w = weights)
            MixtureOfExperts.Route(l, 5, 3, normalize: true, e, w);
        // softmax, then the three largest: the tie between experts 1 and 3 goes to the lower one first
        Assert.Equal([1, 3, 4], experts);
        double z = new[] { 0.5, 2, -1, 2, 1 }.Sum(Math.Exp);
        double p1 = Math.Exp(2) / z, p4 = Math.Exp(1) / z, sum = 2 * p1 + p4;
        Assert.Equal(p1 / sum, weights[0], 1e-6);
        Assert.Equal(p1 / sum, weights[1], 1e-6);
        Assert.Equal(p4 / sum, weights[2], 1e-6);
        Assert.Equal(1.0, weights.Sum(), 1e-6);
        Assert.Equal(1.0, logits.Sum(), 1e-6); // the logits became the probabilities

        // Without normalization the weights are the probabilities themselves (OLMoE, Qwen2 MoE in llama.cpp).
        logits = [0.5f, 2f, -1f, 2f, 1f];
        fixed (float* l = logits) fixed (int* e = experts) fixed (float* w = weights)
            MixtureOfExperts.Route(l, 5, 3, normalize: false, e, w);
        Assert.Equal(p1, weights[0], 1e-6);
        Assert.Equal(p4, weights[2], 1e-6);
    }

    [Fact]
    public void Route_Sigmoid_WithAChoiceBias_WeighsByTheUnbiasedProbabilities()
    {
        // LFM2-MoE: probabilities = sigmoid(logits); the bias decides the choice only.
        float[] logits = [2f, 0f, 1f, -1f];
        float[] bias = [-1f, 0.9f, 0f, 0f];
        int[] experts = new int[2];
        float[] weights = new float[2];
        fixed (float* l = logits) fixed (float* bp = bias) fixed (int* e = experts) fixed (float* w = weights)
            MixtureOfExperts.Route(l, 4, 2, normalize: true, e, w, sigmoid: true, bias: bp);
        static double Sig(double x) => 1 / (1 + Math.Exp(-x));
        // sigmoids 0.881, 0.5, 0.731, 0.269; with the bias −0.119, 1.4, 0.731, 0.269: experts 1 then 2
        Assert.Equal([1, 2], experts);
        double sum = Sig(0) + Sig(1);
        Assert.Equal(Sig(0) / sum, weights[0], 1e-6);
        Assert.Equal(Sig(1) / sum, weights[1], 1e-6);
        Assert.Equal(Sig(2), logits[0], 1e-6); // the logits became the (unbiased) probabilities

        logits = [2f, 0f, 1f, -1f];
        fixed (float* l = logits) fixed (int* e = experts) fixed (float* w = weights)
            MixtureOfExperts.Route(l, 4, 2, normalize: false, e, w, sigmoid: true);
        Assert.Equal([0, 2], experts);
        Assert.Equal(Sig(2), weights[0], 1e-6);
        Assert.Equal(Sig(1), weights[1], 1e-6);
    }

    [Fact]
    public void Route_ANaNLogit_StillChoosesDistinctExperts()
    {
        float[] logits = [1f, float.NaN, 0f, 3f];
        int[] experts = new int[2];
        float[] weights = new float[2];
        fixed (float* l = logits) fixed (int* e = experts) fixed (float* w = weights)
            MixtureOfExperts.Route(l, 4, 2, normalize: true, e, w);
        Assert.Equal(2, experts.Distinct().Count());
        Assert.All(experts, e => Assert.InRange(e, 0, 3));
    }

    [Theory]
    [InlineData("F32")]
    [InlineData("Q4_0")]
    [InlineData("Q8_0")]
    public void ATokensLogits_DoNotDependOnItsBatch_OrTheThreads(string type)
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-moe-{Guid.NewGuid():N}.gguf");
        try
        {
            ModelSynthesizer.Synthesize(new SynthShape("tiny-qwen3moe", "tiny qwen3moe", "qwen3moe", 256, 2, 4, 2, 768, 400, 256, 1e6f, 1e-6f,
                false, false, SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 64, Experts: new SynthExperts(16, 4, 128)), type, path, seed: 3);
            using var model = Model.Load(path, new ModelLoadOptions { RepackWeights = true });
            int[] tokens = Enumerable.Range(0, 24).Select(i => (i * 53 + 7) % 400).ToArray();
            int v = model.Config.VocabSize;
            float[] batch;
            using (var ctx = new InferenceContext(model, 64, threads: 2)) batch = ctx.Eval(tokens, allLogits: true);
            using (var ctx = new InferenceContext(model, 64, threads: 1))
                Assert.Equal(batch, ctx.Eval(tokens, allLogits: true));
            using (var ctx = new InferenceContext(model, 64, threads: 2))
            {
                ctx.Eval(tokens.AsSpan(0, 10), allLogits: false);
                for (int i = 10; i < tokens.Length; i++)
                    Assert.Equal(batch.AsSpan(i * v, v).ToArray(), ctx.Eval(tokens.AsSpan(i, 1), allLogits: false));
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
