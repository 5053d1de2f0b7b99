using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Synth;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// Sliding-window layers keep a ring of their window and a batch (llama.cpp's default SWA cache) instead of the
/// whole context: the logits must be those of the full cache bit for bit, through prompts, decoding and rewinds,
/// and a rewind past the ring must evaluate the tokens again rather than read overwritten keys.
/// </summary>
public sealed class SlidingWindowCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-swa-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper _out;

    public SlidingWindowCacheTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    // Gemma 3 (five local layers, one global, one local; window 72, which starts windows past whole blocks) and
    // Gemma 2 (every other layer local), small enough to run 1,500 tokens in a second or two.
    private static SynthShape Shape(string arch) => arch == "gemma3"
        ? new("tiny-gemma3", "tiny gemma3", "gemma3", 128, 7, 4, 1, 384, 400, 2048, 1e6f, 1e-6f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 72)
        : new("tiny-gemma2", "tiny gemma2", "gemma2", 128, 4, 4, 2, 384, 400, 2048, 10000f, 1e-6f, true, false, SynthVocabKind.SentencePiece,
            WriteHeadLengths: true, HeadLength: 64, SlidingWindow: 72, FinalLogitSoftcap: 8f, AttnLogitSoftcap: 5f);

    private string File(string arch, string type)
    {
        string path = Path.Combine(_dir, $"{arch}-{type}.gguf");
        if (!System.IO.File.Exists(path)) ModelSynthesizer.Synthesize(Shape(arch), type, path, seed: 5);
        return path;
    }

    private static int[] Tokens(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(400)).ToArray();
    }

    [Theory]
    [InlineData("gemma3", "Q8_0", KvCacheType.F16, KvCacheType.F16)]
    [InlineData("gemma3", "F32", KvCacheType.Q8_0, KvCacheType.Q4_0)]
    [InlineData("gemma2", "Q4_0", KvCacheType.F16, KvCacheType.F16)]
    public void Ring_GivesTheFullCachesLogits_BitForBit(string arch, string type, KvCacheType typeK, KvCacheType typeV)
    {
        using var model = Model.Load(File(arch, type));
        using var ring = new InferenceContext(model, 2048, threads: 2, typeK, typeV);
        using var full = new InferenceContext(model, 2048, threads: 2, typeK, typeV, fullSlidingWindowCache: true);

        // The ring: the window (72) and a batch (512), in whole blocks of 64: 704 positions.
        Assert.Equal(704, KvCache.RingPositions(72, InferenceContext.MaxBatch));
        Assert.Equal(704, ring.SlidingWindowCachePositions);
        Assert.Equal(0, full.SlidingWindowCachePositions);
        int local = Enumerable.Range(0, model.Config.BlockCount).Count(model.Config.IsSlidingWindowLayer);
        long perPosition = (typeK.Bytes(model.Config.KvLength * 64L) + typeV.Bytes(model.Config.KvLength * 64L)) / 64;
        Assert.Equal(full.KvCacheBytes - local * (2048L - 704) * perPosition, ring.KvCacheBytes);
        Assert.Equal(ring.KvCacheBytes, model.EstimateKvCacheBytes(2048, typeK, typeV));
        Assert.Equal(full.KvCacheBytes, model.EstimateKvCacheBytes(2048, typeK, typeV, fullSlidingWindowCache: true));
        _out.WriteLine($"{arch}: KV cache {ring.KvCacheBytes} bytes with the ring, {full.KvCacheBytes} without ({local} of {model.Config.BlockCount} layers local)");

        int[] tokens = Tokens(1600, 7);
        void Same(ReadOnlySpan<int> part, bool all, string what)
        {
            float[] a = ring.Eval(part, all), b = full.Eval(part, all);
            Assert.True(a.AsSpan().SequenceEqual(b), $"{what}: the ring's logits differ from the full cache's (max {a.Zip(b, (x, y) => Math.Abs(x - y)).Max()})");
        }
        // A prompt of 600 (batches of 512 and 88, the second reading across the first's blocks), 150 decoded tokens
        // (the ring wraps at 704), a batch of 400 that wraps it again, 450 more one by one.
        Same(tokens.AsSpan(0, 600), all: true, "prompt");
        for (int i = 600; i < 750; i++) Same(tokens.AsSpan(i, 1), all: false, $"token {i}");
        Same(tokens.AsSpan(750, 400), all: true, "second batch");
        for (int i = 1150; i < 1600; i += 3) Same(tokens.AsSpan(i, Math.Min(3, 1600 - i)), all: true, $"tokens {i}..");
        Assert.Equal(0, ring.Reevaluations);
    }

    /// <summary>One model in two contexts of 2,048 tokens: the default ring and the full cache (<c>fullSlidingWindowCache</c>).</summary>
    private sealed class RingAndFull : IDisposable
    {
        private readonly Model _model;
        public RingAndFull(string path)
        {
            _model = Model.Load(path);
            Ring = new InferenceContext(_model, 2048, threads: 2);
            Full = new InferenceContext(_model, 2048, threads: 2, fullSlidingWindowCache: true);
        }

        public InferenceContext Ring { get; }
        public InferenceContext Full { get; }

        /// <summary>Evaluates <paramref name="tokens"/> in both and asserts the same bits for every row.</summary>
        public void Same(ReadOnlySpan<int> tokens)
        {
            float[] full = Full.Eval(tokens, allLogits: true), ring = Ring.Eval(tokens, allLogits: true);
            Assert.True(ring.AsSpan().SequenceEqual(full), $"at {Ring.Position}: the ring's logits differ from the full cache's");
        }

        public void Rewind(int position)
        {
            Ring.Rewind(position);
            Full.Rewind(position);
        }

        public void Dispose()
        {
            Ring.Dispose();
            Full.Dispose();
            _model.Dispose();
        }
    }

    [Fact]
    public void Rewinds_WithinTheRing_KeepIt_PastTheRing_EvaluateAgain()
    {
        using var both = new RingAndFull(File("gemma3", "Q8_0"));
        int[] tokens = Tokens(1400, 9), other = Tokens(300, 10);
        both.Same(tokens.AsSpan(0, 1000));

        // A speculative-decoding-sized rewind over other tokens, then the original ones again.
        both.Ring.Eval(other.AsSpan(0, 12));
        both.Rewind(1000);
        both.Same(tokens.AsSpan(1000, 8));
        Assert.Equal(0, both.Ring.Reevaluations);

        // Back by 500 (1008 → 508): 508's window (437..507, blocks 6 and 7) is still in the ring, which holds
        // blocks 5..15 (positions 320..1011) after the writes up to 1011, in 11 blocks.
        both.Rewind(508);
        both.Same(tokens.AsSpan(508, 5));
        Assert.Equal(0, both.Ring.Reevaluations);

        // 300 other tokens (513..812), then back to 200: its window (129..199, blocks 2 and 3) was overwritten by
        // blocks 13 and 14 (832..959) before the rewind to 508: the 200 tokens before it are evaluated again.
        both.Same(other);
        both.Rewind(200);
        both.Same(tokens.AsSpan(200, 4));
        _out.WriteLine($"after a rewind from 813 to 200: {both.Ring.Reevaluations} tokens evaluated again");
        Assert.Equal(200, both.Ring.Reevaluations);
    }

    [Fact]
    public void RewindPastTheRing_EvaluatesTheTokensBeforeAgain()
    {
        using var both = new RingAndFull(File("gemma3", "Q8_0"));
        int[] tokens = Tokens(1500, 11);
        both.Same(tokens.AsSpan(0, 1400));
        // After 1400 tokens the ring (11 blocks) holds blocks 11..21 (positions 704..1399): 300's window is gone.
        both.Rewind(300);
        both.Same(tokens.AsSpan(300, 6));
        Assert.Equal(300, both.Ring.Reevaluations);
        Assert.Equal(0, both.Full.Reevaluations);
        // And the context goes on from there as the full one does.
        for (int i = 306; i < 330; i++) both.Same(tokens.AsSpan(i, 1));
        Assert.Equal(300, both.Ring.Reevaluations);
    }

    /// <summary>
    /// A generator reusing a cached prefix (chat, server) asks <c>CanResumeAt</c> first: when the ring no longer holds the
    /// prefix's window it reports 0 tokens reused (and evaluates the prompt from the start) instead of counting tokens that
    /// are evaluated again as kept; the text is the full cache's either way.
    /// </summary>
    [Fact]
    public void Generator_ReportsOnlyThePrefixTheRingCanKeep()
    {
        using var both = new RingAndFull(File("gemma3", "Q8_0"));
        var tokenizer = EdgeLlm.Tokenizers.Tokenizer.FromGguf(GgufOf(both));
        var greedy = new GenerationOptions { Sampling = new EdgeLlm.Sampling.SamplerOptions { Temperature = 0 }, MaxTokens = 8 };
        int[] first = Tokens(1000, 21), near = [.. first.AsSpan(0, 990), .. Tokens(5, 22)], far = [.. first.AsSpan(0, 200), .. Tokens(5, 23)];
        var ring = new TextGenerator(both.Ring, tokenizer);
        var full = new TextGenerator(both.Full, tokenizer);
        Assert.Equal(full.Generate(first, greedy).Text, ring.Generate(first, greedy).Text);

        Assert.True(both.Ring.CanResumeAt(990));
        Assert.False(both.Ring.CanResumeAt(200));    // 200's window was overwritten long ago
        Assert.True(both.Full.CanResumeAt(200));

        var r = ring.Generate(near, greedy);           // within the ring: kept
        var f = full.Generate(near, greedy);
        Assert.Equal(f.Text, r.Text);
        Assert.Equal(990, r.ReusedPromptTokens);
        Assert.Equal(990, f.ReusedPromptTokens);

        r = ring.Generate(far, greedy);                // past it: reported as evaluated, and it is
        f = full.Generate(far, greedy);
        Assert.Equal(f.Text, r.Text);
        Assert.Equal(0, r.ReusedPromptTokens);
        Assert.Equal(200, f.ReusedPromptTokens);
        Assert.Equal(0, both.Ring.Reevaluations);      // no hidden re-evaluation: the generator started over
    }

    private static EdgeLlm.Gguf.GgufFile GgufOf(RingAndFull both) => both.Ring.Model.File;

    [Fact]
    public void Cache_TracksWhatTheRingHolds()
    {
        // Two layers, the second windowed (32), batches of up to 64: a ring of (64 + 32 - 2) / 64 + 2 = 3 blocks.
        using var kv = new KvCache(2, 1024, 1, 32, window: 32, windowed: l => l == 1, maxBatch: 64);
        Assert.Equal(0, kv.RingBlocks(0));
        Assert.Equal(3, kv.RingBlocks(1));
        Assert.Equal(1024, kv.LayerPositions(0));
        Assert.Equal(192, kv.LayerPositions(1));
        Assert.Equal(2 * (1024 + 192) * 32 * 2L, kv.TotalBytes);
        Assert.Equal(70 % 64 + 64, kv.Slot(1, 70));
        Assert.Equal(200 - 192, kv.Slot(1, 200));
        Assert.Equal(200, kv.Slot(0, 200));
        Assert.True(kv.Intact(0, 0));
        Assert.False(kv.Intact(0, 1));

        float[] k = new float[64 * 32], v = new float[64 * 32];
        unsafe
        {
            fixed (float* kp = k)
            fixed (float* vp = v)
            {
                float* kq = kp, vq = vp;
                void Store(int pos, int n)
                {
                    kv.Store(0, pos, kq, vq, n);
                    kv.Store(1, pos, kq, vq, n);
                }
                Store(0, 64);
                Store(64, 64);
                Store(128, 40);                     // positions 0..167: blocks 0, 1, 2
                Assert.True(kv.Intact(0, 168));
                Store(168, 30);                     // 192..197 take block 0's slot
                Assert.False(kv.Intact(0, 198));
                Assert.True(kv.Intact(100, 198));  // only block 0 was evicted
                Assert.True(kv.Intact(64, 198));
                Assert.True(kv.Intact(192, 198));
                // Rewind to 150 and write over: block 3 (192..) stays in its slot, 150.. are written again.
                Store(150, 10);
                Assert.True(kv.Intact(64, 160));
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => kv.Store(1, 300, kq, vq, 65));
                Assert.Contains("batches of up to 64", e.Message);
            }
        }
    }
}
