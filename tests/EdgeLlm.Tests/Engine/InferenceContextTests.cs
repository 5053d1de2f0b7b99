using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tests.Models;
using Xunit;

namespace EdgeLlm.Tests.Engine;

public class InferenceContextTests
{
    [Fact]
    public void ContextOverflow_ThrowsWithoutAdvancing()
    {
        using var m = Model.Load(SharedData.Model("stories260K"));
        using var ctx = new InferenceContext(m, contextLength: 8);
        ctx.Eval([1, 403, 407, 261, 378]);
        var e = Assert.Throws<ArgumentException>(() => ctx.Eval([1, 2, 3, 4]));
        Assert.Contains("overflow the context of 8 tokens (3 free)", e.Message);
        Assert.Equal(5, ctx.Position);
        ctx.Eval([1, 2, 3]);
        Assert.Equal(8, ctx.Position);
        Assert.Throws<ArgumentException>(() => ctx.Eval([1]));
    }

    [Fact]
    public void TokenOutsideVocabulary_Throws()
    {
        using var m = Model.Load(SharedData.Model("stories260K"));
        using var ctx = new InferenceContext(m, contextLength: 8);
        var e = Assert.Throws<ArgumentException>(() => ctx.Eval([1, 512]));
        Assert.Contains("token id 512 at index 1 is outside the vocabulary (0..511)", e.Message);
        Assert.Throws<ArgumentException>(() => ctx.Eval([-1]));
        Assert.Throws<ArgumentException>(() => ctx.Eval([]));
        Assert.Equal(0, ctx.Position);
    }

    [Fact]
    public void RewindAndReset_ReproduceLogits()
    {
        var golden = GoldenCase.Load("stories260K", "p1");
        using var m = Model.Load(SharedData.Model("stories260K"));
        using var ctx = new InferenceContext(m, contextLength: 32, threads: 2);
        int[] ids = golden.PromptIds;
        float[] full = ctx.Eval(ids);

        ctx.Rewind(10);
        Assert.Equal(10, ctx.Position);
        Assert.Equal(full, ctx.Eval(ids.AsSpan(10)));

        // Overwrite the tail with other tokens, then rewind and redo it: the stale cache entries must not leak.
        ctx.Rewind(4);
        ctx.Eval([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        ctx.Rewind(4);
        Assert.Equal(full, ctx.Eval(ids.AsSpan(4)));

        ctx.Reset();
        Assert.Equal(0, ctx.Position);
        Assert.Equal(full, ctx.Eval(ids));
        Assert.Throws<ArgumentOutOfRangeException>(() => ctx.Rewind(ids.Length + 1));
    }

    [Fact]
    public void LastRowLogits_EqualLastRowOfAllLogits()
    {
        var golden = GoldenCase.Load("syn-qwen2-f32", "p1");
        using var m = Model.Load(SharedData.Model("syn-qwen2-f32"));
        using var a = new InferenceContext(m, contextLength: 32);
        using var b = new InferenceContext(m, contextLength: 32, threads: 1);
        float[] all = a.Eval(golden.PromptIds, allLogits: true);
        float[] last = b.Eval(golden.PromptIds);
        int vocab = m.Config.VocabSize;
        Assert.Equal(all.AsSpan(all.Length - vocab).ToArray(), last);
    }

    [Fact]
    public void ExceedsTrainingContext_ComparesWithContextLengthKey()
    {
        using var m = Model.Load(SharedData.Model("stories260K"));
        Assert.False(InferenceContext.ExceedsTrainingContext(m, 128));
        Assert.True(InferenceContext.ExceedsTrainingContext(m, 129));
    }
}
