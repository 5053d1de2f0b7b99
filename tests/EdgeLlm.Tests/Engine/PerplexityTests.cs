using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Models;
using EdgeLlm.Tests.Tokenizers;
using EdgeLlm.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// <see cref="Perplexity"/>: llama-perplexity's chunking, BOS replacement, scored half and
/// statistics on a context whose logits are known in closed form, and the scored log-probabilities
/// against llama.cpp's own logits (../shared/golden).
/// </summary>
public class PerplexityTests(ITestOutputHelper output)
{
    /// <summary>
    /// Four-token vocabulary. At even positions the logits are [ln 3, 0, 0, 0] (token 1 has
    /// probability 1/6), at odd positions all zero (1/4). Records every Eval and Reset.
    /// </summary>
    private sealed class KnownContext(int contextLength) : IEvalContext
    {
        public readonly List<(int Position, int[] Tokens)> Calls = [];
        public int Resets;

        public int Position { get; private set; }
        public int ContextLength { get; } = contextLength;
        public string Description => "known logits";

        public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false)
        {
            Assert.True(allLogits, "perplexity needs the logits of every position");
            Assert.True(Position + tokens.Length <= ContextLength, "a chunk overran the context");
            Calls.Add((Position, tokens.ToArray()));
            var logits = new float[tokens.Length * 4];
            for (int i = 0; i < tokens.Length; i++)
                if ((Position + i) % 2 == 0) logits[i * 4] = MathF.Log(3f);
            Position += tokens.Length;
            return logits;
        }

        public void Reset()
        {
            Resets++;
            Position = 0;
        }

        public void Rewind(int position) => Position = position;

        public void Dispose() { }
    }

    [Fact]
    public void Chunks_Bos_ScoredHalf_AndStatistics_AreLlamaPerplexitys()
    {
        const int nCtx = 10, nBatch = 4;
        int[] tokens = Enumerable.Repeat(1, 35).ToArray(); // 3 chunks of 10 fit; 5 tokens left over
        using var ctx = new KnownContext(16);
        var progress = new List<(int, double)>();
        var r = Perplexity.Compute(ctx, tokens, nCtx, nBatch, bos: 3, progress: (i, p) => progress.Add((i, p)));

        Assert.Equal(3, r.Chunks);
        Assert.Equal(3, ctx.Resets); // an empty cache for every chunk
        // batches of 4, 4, 2 per chunk, each chunk from position 0, its first token BOS
        Assert.Equal(Enumerable.Repeat(new[] { 0, 4, 8 }, 3).SelectMany(x => x), ctx.Calls.Select(c => c.Position));
        Assert.Equal(Enumerable.Repeat(new[] { 4, 4, 2 }, 3).SelectMany(x => x), ctx.Calls.Select(c => c.Tokens.Length));
        Assert.All(ctx.Calls.Where(c => c.Position == 0), c => Assert.Equal(new[] { 3, 1, 1, 1 }, c.Tokens));
        Assert.All(ctx.Calls.Where(c => c.Position > 0), c => Assert.All(c.Tokens, t => Assert.Equal(1, t)));

        // Scored: positions 5..8 of each chunk (first = n_ctx / 2, up to n_ctx - 2), each against token 1:
        // odd positions 5, 7 at 1/4, even 6, 8 at 1/6.
        Assert.Equal(3 * 4, r.TokensScored);
        double odd = Math.Log(4), even = Math.Log(6);
        double mean = (odd + even) / 2;
        Assert.Equal(Math.Exp(mean), r.Value, 1e-6);
        // llama.cpp: sqrt((mean of squares − square of mean) / (count − 1)) × ppl
        double variance = (odd * odd + even * even) / 2 - mean * mean;
        Assert.Equal(Math.Sqrt(variance / (12 - 1)) * Math.Exp(mean), r.StandardError, 1e-6);
        Assert.All(r.ChunkNll, s => Assert.Equal(2 * odd + 2 * even, s, 1e-6));
        Assert.Equal(new[] { 1, 2, 3 }, progress.Select(p => p.Item1));
        Assert.All(progress, p => Assert.Equal(r.Value, p.Item2, 1e-6)); // every chunk scores the same
    }

    /// <summary>A context whose logits are all zero: the uniform distribution at every position.</summary>
    private sealed class UniformContext(int contextLength) : IEvalContext
    {
        public int Position { get; private set; }
        public int ContextLength { get; } = contextLength;
        public string Description => "uniform";

        public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false)
        {
            Position += tokens.Length;
            return new float[tokens.Length * 4];
        }

        public void Reset() => Position = 0;
        public void Rewind(int position) => Position = position;
        public void Dispose() { }
    }

    /// <summary>
    /// Compare: the reference puts 1/2 on token 0 at even positions (uniform at odd ones), the model is
    /// uniform everywhere: KL = ½ ln 2 + 3 · ⅙ ln ⅔ = ½ ln(4/3) at even positions and 0 at odd ones,
    /// both rank token 0 first everywhere (ties go to the lowest id), and each perplexity is its own.
    /// </summary>
    [Fact]
    public void Compare_KlDivergence_SameTop_AndBothPerplexities()
    {
        int[] tokens = Enumerable.Repeat(1, 35).ToArray();
        using var model = new UniformContext(16);
        using var reference = new KnownContext(16);
        var chunks = new List<int>();
        var r = Perplexity.Compare(model, reference, tokens, 10, 4, bos: 3, progress: (i, _) => chunks.Add(i));
        Assert.Equal(new[] { 1, 2, 3 }, chunks);
        Assert.Equal(4, r.Model.Value, 1e-6);
        Assert.Equal(Math.Exp((Math.Log(4) + Math.Log(6)) / 2), r.Reference.Value, 1e-6);
        double even = 0.5 * Math.Log(4.0 / 3);
        Assert.Equal(even / 2, r.MeanKld, 1e-6);       // positions 5..8: two odd (0), two even
        Assert.Equal(even, r.MaxKld, 1e-6);
        Assert.Equal(even / 2, r.MedianKld, 1e-6);     // twelve values, six of each: halfway between
        Assert.Equal(even, r.P99Kld, 1e-6);
        Assert.Equal(1.0, r.SameTop);
        Assert.Equal(Math.Sqrt(even * even / 4 * 12 / 11 / 12), r.MeanKldStdErr, 1e-6); // sample variance / n
    }

    [Fact]
    public void Compare_AModelWithItself_IsZero()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var golden = GoldenCase.Load("stories260K", "story");
        int[] tokens = [.. golden.PromptIds, .. golden.GreedyIds];
        using var a = new InferenceContext(model, 64, threads: 2);
        using var b = new InferenceContext(model, 64, threads: 1);
        var r = Perplexity.Compare(a, b, tokens, 64, 64, bos: 1);
        output.WriteLine($"self: PPL {r.Model.Value:F6} / {r.Reference.Value:F6}, KLD {r.MeanKld:E3}, same top {r.SameTop:P2}");
        Assert.Equal(r.Reference.Value, r.Model.Value, 1e-6);
        Assert.True(r.MeanKld < 1e-9 && r.MaxKld < 1e-8, $"KLD {r.MeanKld}, max {r.MaxKld}");
        Assert.Equal(1.0, r.SameTop);
    }

    [Fact]
    public void NoBos_KeepsTheFirstToken_AndMaxChunksStops()
    {
        int[] tokens = Enumerable.Range(0, 40).Select(i => i % 4).ToArray();
        using var ctx = new KnownContext(8);
        var r = Perplexity.Compute(ctx, tokens, 8, 8, bos: null, maxChunks: 2);
        Assert.Equal(2, r.Chunks);
        Assert.Equal(new[] { 0, 1, 2, 3, 0, 1, 2, 3 }, ctx.Calls[0].Tokens);
        Assert.Equal(tokens[8..16], ctx.Calls[1].Tokens);
        Assert.Equal(2 * 3, r.TokensScored);
    }

    [Fact]
    public void SameLogProbabilityEverywhere_HasNoStandardError()
    {
        // n_ctx 4 scores position 2 alone in each chunk: the same 1/6 twice, no spread
        using var ctx = new KnownContext(4);
        var r = Perplexity.Compute(ctx, [2, 2, 2, 2, 2, 2, 2, 2], 4, 4, bos: null);
        Assert.Equal(2, r.TokensScored); // position 2 of each chunk: token 2 at 1/6
        Assert.Equal(6, r.Value, 1e-6);
        Assert.True(double.IsNaN(r.StandardError));
    }

    [Theory]
    [InlineData(19, 10, 4, "at least 20")]
    [InlineData(40, 3, 4, "contextLength")]
    [InlineData(40, 10, 0, "batchSize")]
    [InlineData(40, 20, 4, "holds 16")]
    public void BadArguments_AreNamed(int tokens, int nCtx, int nBatch, string expected)
    {
        using var ctx = new KnownContext(16);
        var ex = Assert.ThrowsAny<ArgumentException>(() => Perplexity.Compute(ctx, new int[tokens], nCtx, nBatch, bos: 1));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// stories260K, p2's 96 ids in chunks of 48: the first chunk's scored log-probabilities equal
    /// those of llama.cpp's logits for the same positions (p2 begins with BOS, so the replacement
    /// changes nothing there), to float rounding.
    /// </summary>
    [Fact]
    public void Stories260K_FirstChunk_MatchesLlamaCppsLogits()
    {
        var golden = GoldenCase.Load("stories260K", "p2");
        using var model = Model.Load(SharedData.Model("stories260K"));
        using var ctx = new InferenceContext(model, contextLength: 48, threads: 2);
        var r = Perplexity.Compute(ctx, golden.PromptIds, 48, 16, bos: 1);
        Assert.Equal(2, r.Chunks);

        double expected = 0;
        for (int i = 24; i < 47; i++)
            expected -= Perplexity.LogSoftmax(golden.Logits.AsSpan(i * golden.Vocab, golden.Vocab), golden.PromptIds[i + 1]);
        output.WriteLine($"chunk 0 NLL: EdgeLlm {r.ChunkNll[0]:F6}, from llama.cpp's logits {expected:F6}; PPL over both chunks {r.Value:F4} +/- {r.StandardError:F5}");
        // 23 log-probabilities summing to ~430: the logits agree with llama.cpp's to ~4e-4 of their spread (the golden
        // figure), which moves the sum by ~1e-3 with a change of float summation order alone; a real error moves it by
        // whole units.
        Assert.Equal(expected, r.ChunkNll[0], 5e-3);
        Assert.True(double.IsFinite(r.ChunkNll[1]) && r.ChunkNll[1] > 0);
    }

    /// <summary>
    /// llama.cpp itself (LLamaSharp's CPU backend, in this process) on stories260K and a story:
    /// the same tokens (its tokenizer), and llama-perplexity's procedure run on its logits (a fresh
    /// context per chunk, BOS first, the second half scored) gives the perplexity EdgeLlm reports.
    /// </summary>
    [Fact]
    public void Stories260K_Story_MatchesLlamaCpp()
    {
        const int nCtx = 64;
        string path = SharedData.Model("stories260K");
        string text = CliPerplexityTests.Story + " " + CliPerplexityTests.Story;
        using var model = Model.Load(path);
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] tokens = tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
        PerplexityResult ours;
        using (var ctx = new InferenceContext(model, nCtx, threads: 2))
            ours = Perplexity.Compute(ctx, tokens, nCtx, 32, tokenizer.Bos);

        using var oracle = new LlamaCppOracle(path);
        Assert.Equal(tokens, oracle.Tokenize(text, addSpecial: true, parseSpecial: false));
        var prm = new ModelParams(path) { GpuLayerCount = 0, ContextSize = nCtx, BatchSize = nCtx, UBatchSize = nCtx, Threads = 1, BatchThreads = 1 };
        using var weights = LLamaWeights.LoadFromFile(prm);
        int vocab = weights.Vocab.Count;
        double nll = 0;
        long count = 0;
        var chunkNll = new List<double>();
        for (int c = 0; c < tokens.Length / nCtx; c++)
        {
            using var lctx = weights.CreateContext(prm);
            var batch = new LLamaBatch();
            for (int i = 0; i < nCtx; i++) batch.Add(i == 0 ? tokenizer.Bos : tokens[c * nCtx + i], i, LLamaSeqId.Zero, true);
            Assert.Equal(DecodeResult.Ok, lctx.NativeHandle.Decode(batch));
            double sum = 0;
            var row = new float[vocab];
            for (int i = nCtx / 2; i < nCtx - 1; i++)
            {
                lctx.NativeHandle.GetLogitsIth(i).CopyTo(row);
                sum -= Perplexity.LogSoftmax(row, tokens[c * nCtx + i + 1]);
            }
            chunkNll.Add(sum);
            nll += sum;
            count += nCtx - 1 - nCtx / 2;
        }
        double theirs = Math.Exp(nll / count);
        output.WriteLine($"{tokens.Length} tokens, {ours.Chunks} chunks: EdgeLlm PPL {ours.Value:F6}, llama.cpp {theirs:F6}; chunk NLLs {string.Join(", ", ours.ChunkNll.Select(x => x.ToString("F5")))} / {string.Join(", ", chunkNll.Select(x => x.ToString("F5")))}");
        Assert.Equal(chunkNll.Count, ours.Chunks);
        // F32 weights, different summation orders: ~3e-4 per scored token (the golden figures' size), where
        // scoring one position off or leaving the BOS out moves a chunk's NLL by whole units.
        for (int c = 0; c < chunkNll.Count; c++) Assert.Equal(chunkNll[c], ours.ChunkNll[c], 0.03);
        Assert.Equal(theirs, ours.Value, theirs * 1e-3);
    }
}
