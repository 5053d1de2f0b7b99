using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Synth;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// LFM2's short-convolution layers keep their last inputs (<see cref="ShortConvCache"/>) instead of keys and
/// values: decoding carries them from call to call, rewinds within the kept history go on from them, a deeper
/// rewind evaluates the tokens before again, and only the attention layers hold a KV cache.
/// (SynthLlamaCppTests holds the logits themselves to llama.cpp's.)
/// </summary>
public sealed class ShortConvCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-lfm2-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper _out;

    public ShortConvCacheTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    // Six layers: attention in 2 and 5, short convolutions (3 taps) in 0, 1, 3 and 4.
    private static readonly SynthShape s_shape = new("tiny-lfm2", "tiny lfm2", "lfm2", 128, 6, 4, 2, 256, 700, 1024, 1e6f, 1e-5f, true, false,
        SynthVocabKind.Llama3Bpe, AttentionLayers: [2, 5]);

    private string File(string type)
    {
        string path = Path.Combine(_dir, $"lfm2-{type}.gguf");
        if (!System.IO.File.Exists(path)) ModelSynthesizer.Synthesize(s_shape, type, path, seed: 7);
        return path;
    }

    private static int[] Tokens(int n) => Enumerable.Range(0, n).Select(i => (i * 37 + 11) % 700).ToArray();

    private static double MaxDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

    [Theory]
    [InlineData("F32")]
    [InlineData("Q4_0")]
    public void Rewinds_GoOnFromTheKeptInputs_OrEvaluateAgain(string type)
    {
        using var model = Model.Load(File(type));
        int[] tokens = Tokens(300);
        using var ctx = new InferenceContext(model, 1024, threads: 2);
        ctx.Eval(tokens, allLogits: false);

        // Within the history (64 positions): no re-evaluation; the same logits as a context that never went further.
        Assert.True(ctx.CanResumeAt(290));
        ctx.Rewind(290);
        float[] resumed = ctx.Eval(tokens.AsSpan(290, 10), allLogits: true);
        Assert.Equal(0, ctx.Reevaluations);
        float[] expected;
        using (var fresh = new InferenceContext(model, 1024, threads: 2))
        {
            fresh.Eval(tokens.AsSpan(0, 290), allLogits: false);
            expected = fresh.Eval(tokens.AsSpan(290, 10), allLogits: true);
        }
        Assert.True(MaxDiff(resumed, expected) < 1e-4, $"after a rewind by 10: {MaxDiff(resumed, expected)}");

        // Past it: positions 198 and 199 were overwritten by 262 and 263; the tokens before 200 are evaluated again.
        Assert.False(ctx.CanResumeAt(200));
        ctx.Rewind(200);
        resumed = ctx.Eval(tokens.AsSpan(200, 10), allLogits: true);
        Assert.Equal(200, ctx.Reevaluations);
        using (var fresh = new InferenceContext(model, 1024, threads: 2))
        {
            fresh.Eval(tokens.AsSpan(0, 200), allLogits: false);
            expected = fresh.Eval(tokens.AsSpan(200, 10), allLogits: true);
        }
        Assert.True(MaxDiff(resumed, expected) < 1e-4, $"after a rewind by 100: {MaxDiff(resumed, expected)}");

        // Decoding one token at a time agrees with the batch (the inputs carried from call to call).
        using var one = new InferenceContext(model, 1024, threads: 1);
        float[] batch;
        using (var all = new InferenceContext(model, 1024, threads: 1)) batch = all.Eval(tokens.AsSpan(0, 40), allLogits: true);
        int v = s_shape.VocabSize;
        double worst = 0;
        for (int i = 0; i < 40; i++)
        {
            float[] row = one.Eval(tokens.AsSpan(i, 1));
            worst = Math.Max(worst, MaxDiff(row, batch.AsSpan(i * v, v).ToArray()));
        }
        _out.WriteLine($"{type}: one at a time against the batch {worst:E2}");
        Assert.True(worst < 1e-3, $"one at a time differs from the batch by {worst}");
        Assert.Equal(0, one.Reevaluations);
    }

    /// <summary>
    /// Speculative decoding rewinds the model after every rejected draft token: with the convolution inputs kept, the
    /// greedy text is the model's alone and nothing is evaluated again.
    /// </summary>
    [Fact]
    public void SpeculativeDecoding_RewindsWithinTheKeptInputs()
    {
        using var model = Model.Load(File("F32"));
        // A draft of other weights (another seed); these small random models settle into the same few tokens, so most
        // proposals are kept, but each rejected one rewinds the model's convolution inputs.
        string draftPath = Path.Combine(_dir, "lfm2-draft.gguf");
        ModelSynthesizer.Synthesize(s_shape, "Q4_0", draftPath, seed: 8);
        using var draftModel = Model.Load(draftPath);
        var tokenizer = EdgeLlm.Tokenizers.Tokenizer.FromGguf(model.File);
        var greedy = new GenerationOptions { Sampling = new EdgeLlm.Sampling.SamplerOptions { Temperature = 0 }, MaxTokens = 48 };
        int[] prompt = Tokens(20);
        GenerationResult alone;
        using (var plain = new InferenceContext(model, 1024, threads: 1))
            alone = new TextGenerator(plain, tokenizer).Generate(prompt, greedy);
        using var ctx = new InferenceContext(model, 1024, threads: 1);
        using var draftCtx = new InferenceContext(draftModel, 1024, threads: 1);
        var gen = new TextGenerator(ctx, tokenizer);
        gen.UseDraft(draftCtx, EdgeLlm.Tokenizers.Tokenizer.FromGguf(draftModel.File), maxDraft: 8, minProbability: 0f);
        var drafted = gen.Generate(prompt, greedy);
        _out.WriteLine($"lfm2 with another model's draft: {drafted.CompletionTokens} tokens, {drafted.DraftedTokens} drafted, {drafted.AcceptedDraftTokens} accepted, {ctx.Reevaluations} evaluated again");
        Assert.Equal(alone.Tokens, drafted.Tokens);
        Assert.True(drafted.DraftedTokens > drafted.AcceptedDraftTokens, "a draft was rejected (the model rewound)");
        Assert.Equal(0, ctx.Reevaluations);
        Assert.Equal(0, draftCtx.Reevaluations);
    }

    [Fact]
    public void OnlyTheAttentionLayers_HoldKeysAndValues()
    {
        using var model = Model.Load(File("F32"));
        var c = model.Config;
        Assert.Equal(3, c.ShortConvTaps);
        Assert.Equal([true, true, false, true, true, false], Enumerable.Range(0, 6).Select(c.IsShortConvLayer));
        Assert.True(c.HasQkNorm && c.RopeNeox);
        using var ctx = new InferenceContext(model, 1024, threads: 1);
        long kv = 2L * 1024 * c.KvLength * 2 * 2;       // two attention layers, K and V in f16
        long conv = 4L * ShortConvCache.HistoryPositions * c.EmbeddingLength * 4; // four convolution layers' f32 inputs
        Assert.Equal(kv + conv, ctx.KvCacheBytes);
        Assert.Equal(kv + conv, model.EstimateKvCacheBytes(1024));
        Assert.Equal(KvCache.Bytes(2, 1024, c.KvLength, KvCacheType.Q8_0, KvCacheType.Q8_0) + conv, model.EstimateKvCacheBytes(1024, KvCacheType.Q8_0, KvCacheType.Q8_0));
    }
}
