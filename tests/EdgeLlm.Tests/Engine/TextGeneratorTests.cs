using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tests.Models;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

public sealed class TextGeneratorTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new() { Sampling = new SamplerOptions { Temperature = 0 } };

    [Fact]
    public void GreedyStory_EqualsLlamaCpp()
    {
        var story = GoldenCase.Load("stories260K", "story");
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 512, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        var result = gen.Generate(story.PromptIds, Greedy with { MaxTokens = story.GreedyIds.Length });
        string expected = tokenizer.Decode(story.GreedyIds);
        output.WriteLine($"{result.CompletionTokens} tokens, reason {result.Reason}; text equal: {expected == result.Text}");
        Assert.Equal(FinishReason.Length, result.Reason);
        Assert.Equal(story.GreedyIds.Length, result.CompletionTokens);
        Assert.Equal(expected, result.Text);
        Assert.Equal(story.PromptIds.Concat(story.GreedyIds.SkipLast(1)), gen.CachedTokens);
    }

    [Fact]
    public void PrefixReuse_EvaluatesOnlyTheNewTokens_AndGivesTheSameText()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 512, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        int[] first = tokenizer.Encode("Once upon a time, there was a little girl", addSpecial: true);
        var r1 = gen.Generate(first, Greedy with { MaxTokens = 20 });
        Assert.Equal(0, r1.ReusedPromptTokens);

        // The second prompt continues the first conversation: its prefix is in the cache.
        int[] second = [.. gen.CachedTokens, .. tokenizer.Encode(" The end. One day", addSpecial: false)];
        var r2 = gen.Generate(second, Greedy with { MaxTokens = 20 });
        output.WriteLine($"second prompt {second.Length} tokens, {r2.ReusedPromptTokens} reused");
        Assert.Equal(first.Length + 19, r2.ReusedPromptTokens);

        using var fresh = new InferenceContext(model, contextLength: 512, threads: 1);
        var r3 = new TextGenerator(fresh, tokenizer).Generate(second, Greedy with { MaxTokens = 20 });
        Assert.Equal(r3.Text, r2.Text);

        // The same prompt again: everything but the last token is reused (its logits are needed).
        var r4 = gen.Generate(second, Greedy with { MaxTokens = 20 });
        Assert.Equal(second.Length - 1, r4.ReusedPromptTokens);
        Assert.Equal(r3.Text, r4.Text);

        // A different prompt: only the common prefix (BOS) is kept.
        var r5 = gen.Generate(tokenizer.Encode("Lily", addSpecial: true), Greedy with { MaxTokens = 5 });
        Assert.Equal(1, r5.ReusedPromptTokens);
    }

    [Fact]
    public void StopsAtStopString_ContextFull_Cancellation_AndEarlyDispose()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 64, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        int[] prompt = tokenizer.Encode("Once upon a time", addSpecial: true);

        string full = gen.Generate(prompt, Greedy with { MaxTokens = 30 }).Text;
        string stop = full.Substring(10, 4);
        var stopped = gen.Generate(prompt, Greedy with { Stop = [stop] });
        Assert.Equal(FinishReason.StopString, stopped.Reason);
        Assert.Equal(stop, stopped.StopString);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);

        var filled = gen.Generate(prompt, Greedy);
        output.WriteLine($"context 64: {filled.CompletionTokens} tokens, {filled.Reason}");
        Assert.True(filled.Reason is FinishReason.ContextFull or FinishReason.EndOfGeneration);
        if (filled.Reason == FinishReason.ContextFull) Assert.Equal(64, ctx.Position);

        using var cts = new CancellationTokenSource();
        int pieces = 0;
        var cancelled = gen.Generate(prompt, Greedy, _ => { if (++pieces == 3) cts.Cancel(); }, cts.Token);
        Assert.Equal(FinishReason.Cancelled, cancelled.Reason);
        Assert.Equal(3, cancelled.CompletionTokens);

        foreach (var _ in gen.Stream(prompt, Greedy)) break;
        Assert.Equal(FinishReason.Cancelled, gen.LastResult!.Reason);
    }

    [Fact]
    public void BadInput_IsRejectedBeforeGenerating()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 16, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        Assert.Throws<ArgumentException>(() => gen.Stream([], Greedy));
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => gen.Stream([1, 100000], Greedy)).Message);
        Assert.Contains("--top-p", Assert.Throws<ArgumentException>(() => gen.Stream([1], new GenerationOptions { Sampling = new SamplerOptions { TopP = float.NaN } })).Message);
        var e = Assert.Throws<PromptTooLongException>(() => gen.Stream(Enumerable.Repeat(1, 16).ToArray(), Greedy));
        Assert.Equal("the prompt is 16 tokens; the context holds 16, which leaves no room to generate", e.Message);
    }
}
