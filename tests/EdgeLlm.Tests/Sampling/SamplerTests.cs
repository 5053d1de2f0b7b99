using EdgeLlm.Sampling;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Sampling;

public class SamplerTests(ITestOutputHelper output)
{
    // Probabilities 0.5, 0.3, 0.15, 0.05 as logits (softmax of ln p gives p back).
    private static readonly float[] s_fourProbs = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];

    private static readonly SamplerOptions s_plain = new() { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, Seed = 1234 };

    private static int[] Histogram(Sampler s, float[] logits, int draws)
    {
        var counts = new int[logits.Length];
        for (int i = 0; i < draws; i++) counts[s.Sample(logits)]++;
        return counts;
    }

    private static double[] Softmax(float[] logits, double t)
    {
        double max = logits.Max() / t;
        var e = logits.Select(l => Math.Exp(l / t - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    [Fact]
    public void TopK_KeepsTheKLargest()
    {
        float[] logits = [0.1f, 3f, -2f, 2.5f, 1f, 2.9f, 0f];
        var cand = new Sampler.Candidate[logits.Length];
        int n = Sampler.TopK(logits, cand, 3, sort: true);
        Assert.Equal(3, n);
        Assert.Equal([1, 5, 3], cand[..n].Select(c => c.Id));

        var counts = Histogram(new Sampler(s_plain with { TopK = 3 }, logits.Length), logits, 5000);
        output.WriteLine("top-k=3 counts: " + string.Join(" ", counts));
        for (int i = 0; i < logits.Length; i++)
            Assert.True(i is 1 or 5 or 3 ? counts[i] > 0 : counts[i] == 0, $"token {i} drawn {counts[i]} times");
    }

    [Fact]
    public void TopK_OnLargeVocabulary_MatchesFullSort()
    {
        var rng = new Random(7);
        var logits = Enumerable.Range(0, 32000).Select(_ => (float)Math.Round(rng.NextDouble() * 20, 1)).ToArray(); // many ties
        var cand = new Sampler.Candidate[logits.Length];
        int n = Sampler.TopK(logits, cand, 40, sort: true);
        var expected = logits.Select((l, i) => (l, i)).OrderByDescending(x => x.l).ThenBy(x => x.i).Take(40).Select(x => x.i);
        Assert.Equal(expected, cand[..n].Select(c => c.Id));
    }

    [Theory]
    [InlineData(0.4f, 1)]   // 0.5 already reaches 0.4
    [InlineData(0.75f, 2)]  // 0.5 + 0.3
    [InlineData(0.85f, 3)]  // 0.5 + 0.3 + 0.15
    [InlineData(0.99f, 4)]
    [InlineData(0f, 1)]     // always at least one token
    public void TopP_KeepsTheSmallestSetReachingP(float p, int kept)
    {
        var cand = new Sampler.Candidate[4];
        int n = Sampler.TopK(s_fourProbs, cand, 0, sort: true);
        Assert.Equal(kept, Sampler.TopP(cand.AsSpan(0, n), p));

        var counts = Histogram(new Sampler(s_plain with { TopP = p }, 4), s_fourProbs, 4000);
        output.WriteLine($"top-p={p} counts: " + string.Join(" ", counts));
        for (int i = 0; i < 4; i++) Assert.Equal(i < kept, counts[i] > 0);
    }

    [Theory]
    [InlineData(0.05f, 4)]  // threshold 0.025: all
    [InlineData(0.2f, 3)]   // threshold 0.1: 0.5, 0.3, 0.15
    [InlineData(0.5f, 2)]   // threshold 0.25
    [InlineData(0.7f, 1)]   // threshold 0.35
    [InlineData(1f, 1)]
    public void MinP_KeepsTokensAtLeastMinPTimesTheTopProbability(float minP, int kept)
    {
        // Shuffled order: min-p must not rely on sorted input.
        int[] order = [2, 0, 3, 1];
        var cand = order.Select(i => new Sampler.Candidate(i, s_fourProbs[i])).ToArray();
        int n = Sampler.MinP(cand, minP);
        Assert.Equal(kept, n);
        Assert.All(cand[..n], c => Assert.True(c.Id < kept));

        var counts = Histogram(new Sampler(s_plain with { MinP = minP }, 4), s_fourProbs, 4000);
        output.WriteLine($"min-p={minP} counts: " + string.Join(" ", counts));
        for (int i = 0; i < 4; i++) Assert.Equal(i < kept, counts[i] > 0);
    }

    [Theory]
    [InlineData(0.5f)]
    [InlineData(1.0f)]
    [InlineData(1.7f)]
    public void Temperature_EmpiricalFrequenciesApproachSoftmaxOfLogitsOverT(float t)
    {
        float[] logits = [2f, 1.2f, 0.5f, 0f, -1f, -3f];
        const int Draws = 200_000;
        // Binomial std of a frequency is <= 0.5/sqrt(N) ~ 0.0011; 0.006 is > 5 sigma.
        const double Tolerance = 0.006;
        var counts = Histogram(new Sampler(s_plain with { Temperature = t }, logits.Length), logits, Draws);
        var expected = Softmax(logits, t);
        double worst = 0;
        for (int i = 0; i < logits.Length; i++) worst = Math.Max(worst, Math.Abs(counts[i] / (double)Draws - expected[i]));
        output.WriteLine($"T={t}: expected {string.Join(" ", expected.Select(p => p.ToString("F4")))}; max |freq - p| = {worst:F5}");
        Assert.True(worst < Tolerance, $"max deviation {worst} at T={t}");
    }

    [Fact]
    public void LowerTemperature_Sharpens()
    {
        float[] logits = [1f, 0.5f, 0f, -0.5f];
        double Top(float t) => Histogram(new Sampler(s_plain with { Temperature = t }, 4), logits, 20_000)[0] / 20_000.0;
        double cold = Top(0.3f), warm = Top(1f), hot = Top(3f);
        output.WriteLine($"P(top) at T=0.3: {cold:F3}, T=1: {warm:F3}, T=3: {hot:F3}");
        Assert.True(cold > warm && warm > hot);
    }

    [Fact]
    public void ZeroTemperature_IsArgMax_WhateverTheSeed()
    {
        float[] logits = [0.3f, 4f, 4.5f, -1f, 4.5f];
        for (ulong seed = 0; seed < 20; seed++)
        {
            var s = new Sampler(new SamplerOptions { Temperature = 0f, Seed = seed }, logits.Length);
            Assert.Equal(2, s.Sample(logits)); // tie between 2 and 4: the lower id, like llama.cpp
        }
    }

    [Fact]
    public void RepetitionPenalty_DividesPositiveAndMultipliesNegativeLogits()
    {
        var greedy = new SamplerOptions { Temperature = 0f, RepeatPenalty = 1.5f, RepeatLastN = 64 };
        var s = new Sampler(greedy, 3);
        float[] positive = [2f, 1.9f, float.NegativeInfinity];
        Assert.Equal(0, s.Sample(positive));
        s.Accept(0); // 2 / 1.5 = 1.33 < 1.9
        Assert.Equal(1, s.Sample(positive));

        float[] negative = [-1f, -1.1f, float.NegativeInfinity];
        Assert.Equal(1, s.Sample(negative)); // -1 * 1.5 = -1.5 < -1.1

        s.Reset();
        Assert.Equal(0, s.Sample(positive));
        Assert.Equal(0, new Sampler(greedy with { RepeatPenalty = 1f }, 3).Sample(positive)); // 1 = off
    }

    [Fact]
    public void RepetitionPenalty_OnlyLooksAtTheLastNTokens()
    {
        float[] logits = [2f, 1.9f, 1.8f];
        var greedy = new SamplerOptions { Temperature = 0f, RepeatPenalty = 2f };

        var last1 = new Sampler(greedy with { RepeatLastN = 1 }, 3);
        last1.Accept(1);
        last1.Accept(0);
        Assert.Equal(1, last1.Sample(logits)); // only token 0 penalized
        for (int i = 0; i < 10; i++) last1.Accept(2);
        Assert.Equal(0, last1.Sample(logits)); // 0 left the window
        Assert.True(last1.History.Count < 3);

        var all = new Sampler(greedy with { RepeatLastN = -1 }, 3);
        all.Accept(0);
        for (int i = 0; i < 500; i++) all.Accept(1);
        Assert.Equal(2, all.Sample(logits)); // 0 and 1 both still penalized

        var off = new Sampler(greedy with { RepeatLastN = 0 }, 3);
        off.Accept(0);
        Assert.Equal(0, off.Sample(logits));
    }

    private static int[] Sequence(ulong? seed, int count, out ulong used)
    {
        float[] logits = Enumerable.Range(0, 50).Select(i => MathF.Sin(i) * 2).ToArray();
        var s = new Sampler(new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, Seed = seed }, logits.Length);
        used = s.Seed;
        var seq = new int[count];
        for (int i = 0; i < count; i++) seq[i] = s.Sample(logits);
        return seq;
    }

    [Fact]
    public void SameSeed_SameSequence_DifferentSeeds_DifferentSequences()
    {
        var a = Sequence(42, 64, out _);
        var b = Sequence(42, 64, out _);
        var c = Sequence(43, 64, out _);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        output.WriteLine("seed 42: " + string.Join(" ", a.Take(16)));
        output.WriteLine("seed 43: " + string.Join(" ", c.Take(16)));
    }

    [Fact]
    public void NullSeed_DrawsARandomSeed_ThatReproducesTheRun()
    {
        var a = Sequence(null, 64, out ulong seedA);
        Sequence(null, 1, out ulong seedB);
        Assert.NotEqual(seedA, seedB); // two random 64-bit seeds
        Assert.Equal(a, Sequence(seedA, 64, out _));
    }

    [Fact]
    public void Reset_RestartsTheRandomSequence()
    {
        float[] logits = [0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f];
        var s = new Sampler(s_plain, logits.Length);
        var first = Enumerable.Range(0, 20).Select(_ => s.Sample(logits)).ToArray();
        s.Reset();
        Assert.Equal(first, Enumerable.Range(0, 20).Select(_ => s.Sample(logits)).ToArray());
    }

    [Fact]
    public void Xoshiro256StarStar_MatchesTheReferenceAlgorithm()
    {
        // SplitMix64(0) = 0xE220A8397B1DCDAF is the algorithm's published first output; the xoshiro values below
        // came from a line-by-line Python transcription of xoshiro256starstar.c. They pin the stream so a seed
        // means the same tokens on every platform and release.
        var r0 = new Xoshiro256StarStar(0);
        Assert.Equal(0x99ec5f36cb75f2b4UL, r0.NextUInt64());
        Assert.Equal(0xbf6e1f784956452aUL, r0.NextUInt64());
        Assert.Equal(0x1a5f849d4933e6e0UL, r0.NextUInt64());
        var r42 = new Xoshiro256StarStar(42);
        Assert.Equal(0x15780b2e0c2ec716UL, r42.NextUInt64());
    }

    public static TheoryData<SamplerOptions, string> InvalidOptions => new()
    {
        { new() { Temperature = float.NaN }, "--temp must be a finite number >= 0 (0 = greedy), got NaN" },
        { new() { Temperature = -0.1f }, "--temp" },
        { new() { Temperature = float.PositiveInfinity }, "--temp" },
        { new() { TopK = -1 }, "--top-k must be >= 0 (0 = off), got -1" },
        { new() { TopP = float.NaN }, "--top-p must be in [0, 1], got NaN" },
        { new() { TopP = 1.5f }, "--top-p must be in [0, 1], got 1.5" },
        { new() { TopP = -0.01f }, "--top-p" },
        { new() { MinP = float.NaN }, "--min-p must be in [0, 1], got NaN" },
        { new() { MinP = 2f }, "--min-p" },
        { new() { MinP = float.NegativeInfinity }, "--min-p" },
        { new() { RepeatPenalty = 0f }, "--repeat-penalty must be a finite number > 0 (1 = off), got 0" },
        { new() { RepeatPenalty = -1f }, "--repeat-penalty" },
        { new() { RepeatPenalty = float.NaN }, "--repeat-penalty" },
        { new() { RepeatPenalty = float.PositiveInfinity }, "--repeat-penalty" },
        { new() { RepeatLastN = -2 }, "--repeat-last-n must be >= -1 (0 = off, -1 = whole context), got -2" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void InvalidOption_IsRejected_WithItsCliName(SamplerOptions options, string message)
    {
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new Sampler(options, 10));
    }

    [Fact]
    public void ValidEdgeValues_AreAccepted()
    {
        new SamplerOptions().Validate();
        new SamplerOptions { Temperature = 0f, TopK = 0, TopP = 0f, MinP = 1f, RepeatLastN = -1, RepeatPenalty = 0.5f }.Validate();
        new SamplerOptions { TopP = 1f, MinP = 0f, RepeatLastN = 0 }.Validate();
    }

    [Fact]
    public void Sample_RejectsBadLogits()
    {
        var s = new Sampler(new SamplerOptions { Seed = 1 }, 4);
        Assert.Contains("expected 4 logits", Assert.Throws<ArgumentException>(() => s.Sample(new float[3])).Message);
        Assert.Contains("logit 2 is NaN", Assert.Throws<InvalidLogitsException>(() => s.Sample([0f, 1f, float.NaN, 0f])).Message);
        float[] masked = [float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity];
        Assert.Contains("-infinity", Assert.Throws<ArgumentException>(() => s.Sample(masked)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Accept(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Accept(-1));
    }

    [Fact]
    public void MaskedTokens_AreNeverDrawn()
    {
        float[] logits = [float.NegativeInfinity, 0f, float.NegativeInfinity, 0f];
        var counts = Histogram(new Sampler(s_plain, 4), logits, 2000);
        Assert.Equal(0, counts[0] + counts[2]);
    }

    [Fact]
    public void TopCandidates_GivesSoftmaxProbabilitiesOfTheMostLikely()
    {
        float[] logits = [1f, 3f, 2f, 3f, -1f];
        var top = Sampler.TopCandidates(logits, 3);
        var p = Softmax(logits, 1);
        Assert.Equal([1, 3, 2], top.Select(t => t.Id));
        for (int i = 0; i < 3; i++) Assert.Equal(p[top[i].Id], top[i].Prob, 1e-6);
        Assert.Equal(5, Sampler.TopCandidates(logits, 99).Count);
        Assert.Empty(Sampler.TopCandidates(logits, 0));
        Assert.Equal(1.0, Sampler.TopCandidates(logits, 5).Sum(t => t.Prob), 1e-5);
    }

    [Fact]
    public void DefaultChain_OnARealisticVocabulary_IsFastAndStaysInTopK()
    {
        var rng = new Random(3);
        var logits = Enumerable.Range(0, 151_936).Select(_ => (float)(rng.NextDouble() * 10 - 5)).ToArray();
        var s = new Sampler(new SamplerOptions { Seed = 9 }, logits.Length);
        var allowed = Sampler.TopCandidates(logits, 40).Select(t => t.Id).ToHashSet();
        for (int i = 0; i < 20; i++) s.Sample(logits); // warm up the JIT
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 50; i++) Assert.Contains(s.Sample(logits), allowed);
        output.WriteLine($"default chain on 151,936 logits: {sw.Elapsed.TotalMilliseconds / 50:F2} ms per token");
    }
}
