using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tests.Models;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// <see cref="TextGenerator.UseDraft"/>: a draft model proposes, the model confirms in one batch. The text
/// must be the model's own (greedy: llama.cpp's golden story), the cache must hold exactly what was
/// generated, and the counters must show proposals kept and dropped.
/// </summary>
public sealed class SpeculativeDecodingTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new() { Sampling = new SamplerOptions { Temperature = 0 } };

    [Theory]
    [InlineData("stories260K-q8_0", 16)]  // a close draft: most proposals kept
    [InlineData("stories260K-q4_0", 4)]   // a rougher one: more dropped
    [InlineData("stories260K", 8)]        // the model itself
    public void GreedyStory_WithADraft_EqualsLlamaCpp(string draftName, int maxDraft)
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var model = Model.Load(SharedData.Model("stories260K"));
        using var draftModel = Model.Load(SharedData.Model(draftName));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 512, threads: 1);
        using var draftCtx = new InferenceContext(draftModel, contextLength: 512, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        gen.UseDraft(draftCtx, Tokenizer.FromGguf(draftModel.File), maxDraft, minProbability: 0f);
        var result = gen.Generate(story.PromptIds, Greedy with { MaxTokens = story.GreedyIds.Length });
        output.WriteLine($"{draftName}: {result.CompletionTokens} tokens, {result.DraftedTokens} drafted, {result.AcceptedDraftTokens} accepted");
        Assert.Equal(tokenizer.Decode(story.GreedyIds), result.Text);
        Assert.Equal(story.GreedyIds, result.Tokens);
        Assert.Equal(FinishReason.Length, result.Reason);
        // The cache holds the prompt and what was generated but the last token, as without a draft.
        Assert.Equal(story.PromptIds.Concat(story.GreedyIds.SkipLast(1)), gen.CachedTokens);
        Assert.Equal(gen.CachedTokens.Count, ctx.Position);
        Assert.True(result.AcceptedDraftTokens > result.CompletionTokens / 2, "a close draft should guess most tokens");
        Assert.True(result.AcceptedDraftTokens <= result.DraftedTokens);

        // The next generation reuses the cache as usual, and the draft follows.
        int cached = gen.CachedTokens.Count;
        int[] more = [.. gen.CachedTokens, .. tokenizer.Encode(" The end. One day", addSpecial: false)];
        var again = gen.Generate(more, Greedy with { MaxTokens = 30 });
        using var fresh = new InferenceContext(model, contextLength: 512, threads: 1);
        var alone = new TextGenerator(fresh, tokenizer).Generate(more, Greedy with { MaxTokens = 30 });
        Assert.Equal(alone.Text, again.Text);
        Assert.Equal(cached, again.ReusedPromptTokens);
        Assert.Equal(gen.CachedTokens.Count, ctx.Position);
    }

    /// <summary>Prompt lookup (no draft model): proposals from the text itself; the story is still llama.cpp's, and repeats are guessed.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void GreedyStory_WithLookup_EqualsLlamaCpp(int ngram)
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 512, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        gen.UseLookup(ngram, maxDraft: 8);
        var result = gen.Generate(story.PromptIds, Greedy with { MaxTokens = story.GreedyIds.Length });
        output.WriteLine($"n-gram {ngram}: {result.CompletionTokens} tokens, {result.DraftedTokens} proposed, {result.AcceptedDraftTokens} accepted");
        Assert.Equal(story.GreedyIds, result.Tokens);
        Assert.Equal(story.PromptIds.Concat(story.GreedyIds.SkipLast(1)), gen.CachedTokens);
        Assert.True(result.AcceptedDraftTokens > 0, "the story repeats names and phrases: some proposals must be kept");

        // A text that repeats itself: nearly every token after the first round is guessed.
        int[] loop = [.. tokenizer.Encode("Once upon a time", addSpecial: true), .. Enumerable.Repeat(tokenizer.Encode(" the cat sat on the mat.", addSpecial: false), 6).SelectMany(t => t)];
        gen.Reset();
        var echo = gen.Generate(loop, Greedy with { MaxTokens = 40 });
        using var fresh = new InferenceContext(model, contextLength: 512, threads: 1);
        var alone = new TextGenerator(fresh, tokenizer).Generate(loop, Greedy with { MaxTokens = 40 });
        output.WriteLine($"echo: '{echo.Text}', {echo.DraftedTokens} proposed, {echo.AcceptedDraftTokens} accepted");
        Assert.Equal(alone.Text, echo.Text);
        Assert.Throws<ArgumentOutOfRangeException>(() => gen.UseLookup(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => gen.UseLookup(3, 0));
    }

    /// <summary>Sampling, stop strings and a grammar go through the same rules, row by row: the seed gives the text it gives without a draft.</summary>
    [Fact]
    public void Sampling_StopStrings_AndGrammar_AreThoseOfTheModelAlone()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        using var draftModel = Model.Load(SharedData.Model("stories260K-q8_0"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] prompt = tokenizer.Encode("Once upon a time", addSpecial: true);
        var cases = new[]
        {
            new GenerationOptions { MaxTokens = 60, Sampling = new SamplerOptions { Temperature = 0.8f, Seed = 42 } },
            new GenerationOptions { MaxTokens = 200, Stop = ["."], Sampling = new SamplerOptions { Temperature = 0.5f, Seed = 7, RepeatPenalty = 1.1f } },
            new GenerationOptions { MaxTokens = 80, Grammar = GbnfGrammar.Parse("root ::= (\"- \" [a-z ]{1,20} \"\\n\"){2}"), Sampling = new SamplerOptions { Temperature = 0.7f, Seed = 3 } },
            new GenerationOptions { MaxTokens = 60, JsonObject = true, Sampling = new SamplerOptions { Temperature = 0f } },
        };
        foreach (var options in cases)
        {
            using var ctx = new InferenceContext(model, contextLength: 256, threads: 1);
            using var draftCtx = new InferenceContext(draftModel, contextLength: 256, threads: 1);
            var gen = new TextGenerator(ctx, tokenizer);
            gen.UseDraft(draftCtx, Tokenizer.FromGguf(draftModel.File), 6, minProbability: 0.2f);
            var r = gen.Generate(prompt, options);
            using var fresh = new InferenceContext(model, contextLength: 256, threads: 1);
            var alone = new TextGenerator(fresh, tokenizer).Generate(prompt, options);
            output.WriteLine($"{r.Reason} / {alone.Reason}: {r.CompletionTokens} tokens, {r.DraftedTokens} drafted, {r.AcceptedDraftTokens} accepted: '{r.Text.Replace("\n", "\\n")}'");
            Assert.Equal(alone.Text, r.Text);
            Assert.Equal(alone.Reason, r.Reason);
            Assert.Equal(alone.Tokens, r.Tokens);
            Assert.Equal(gen.CachedTokens.Count, ctx.Position);
            Assert.True(r.DraftedTokens > 0);
        }
    }

    [Fact]
    public void ContextFull_WithProposals_EndsAsWithout()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        using var draftModel = Model.Load(SharedData.Model("stories260K-q8_0"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] prompt = tokenizer.Encode("Once upon a time", addSpecial: true);
        using var ctx = new InferenceContext(model, contextLength: 40, threads: 1);
        using var draftCtx = new InferenceContext(draftModel, contextLength: 24, threads: 1); // shorter: it stops proposing
        var gen = new TextGenerator(ctx, tokenizer);
        gen.UseDraft(draftCtx, Tokenizer.FromGguf(draftModel.File), 16, 0f);
        var r = gen.Generate(prompt, Greedy);
        using var fresh = new InferenceContext(model, contextLength: 40, threads: 1);
        var alone = new TextGenerator(fresh, tokenizer).Generate(prompt, Greedy);
        Assert.Equal(FinishReason.ContextFull, r.Reason);
        Assert.Equal(alone.Text, r.Text);
        Assert.Equal(40, ctx.Position);
    }

    [Fact]
    public void ADraftWithAnotherVocabulary_IsRefused()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        // Qwen2's vocabulary (a vocabulary-only file: the check comes before any evaluation).
        var qwen = Tokenizer.FromGguf(EdgeLlm.Gguf.GgufFile.Open(Path.Combine(SharedData.Tokenizer, "ggml-vocab-qwen2.gguf")));
        using var ctx = new InferenceContext(model, contextLength: 64, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        var e = Assert.Throws<ArgumentException>(() => gen.UseDraft(ctx, qwen));
        output.WriteLine(e.Message);
        Assert.Contains("same vocabulary", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => gen.UseDraft(ctx, tokenizer, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => gen.UseDraft(ctx, tokenizer, 4, float.NaN));
    }
}
