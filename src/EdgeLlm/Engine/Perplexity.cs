namespace EdgeLlm.Engine;

/// <summary>What <see cref="Perplexity.Compute"/> measured.</summary>
/// <param name="Value">exp(mean negative log-likelihood) over every scored token.</param>
/// <param name="StandardError">llama.cpp's "+/-": Value × the standard error of the mean NLL (NaN when the NLLs do not vary).</param>
/// <param name="Chunks">Chunks of <paramref name="ContextLength"/> tokens evaluated.</param>
/// <param name="ContextLength">Tokens per chunk (the KV cache is cleared between chunks).</param>
/// <param name="TokensScored">Tokens whose probability entered the mean: (ContextLength − 1 − ContextLength / 2) per chunk.</param>
/// <param name="RunningPerplexity">After each chunk, the perplexity of all chunks so far (llama-perplexity's <c>[i]value</c> list).</param>
/// <param name="ChunkNll">Each chunk's summed negative log-likelihood (natural log).</param>
public sealed record PerplexityResult(
    double Value,
    double StandardError,
    int Chunks,
    int ContextLength,
    long TokensScored,
    IReadOnlyList<double> RunningPerplexity,
    IReadOnlyList<double> ChunkNll);

/// <summary>What <see cref="Perplexity.Compare"/> measured: a model against a reference on the same chunks.</summary>
/// <param name="Model">The model's perplexity.</param>
/// <param name="Reference">The reference's perplexity.</param>
/// <param name="MeanKld">Mean KL(reference ‖ model) over the scored positions (nats).</param>
/// <param name="MeanKldStdErr">Standard error of that mean.</param>
/// <param name="MaxKld">Largest KL divergence at one position.</param>
/// <param name="P99Kld">99th percentile of the per-position KL divergences.</param>
/// <param name="MedianKld">Median of the per-position KL divergences.</param>
/// <param name="SameTop">Share of positions where both rank the same token first (0..1).</param>
/// <param name="SameTopStdErr">Standard error of that share.</param>
public sealed record KlDivergenceResult(
    PerplexityResult Model, PerplexityResult Reference, double MeanKld, double MeanKldStdErr, double MaxKld, double P99Kld, double MedianKld,
    double SameTop, double SameTopStdErr);

/// <summary>
/// Perplexity of a model over a token sequence, the way llama.cpp's <c>llama-perplexity</c>
/// measures it (its default mode, Feb 2025 source), so that the numbers compare with llama.cpp's
/// on the same file and text: the tokens are cut into consecutive chunks of n_ctx; each chunk is
/// evaluated from an empty cache, with its first token replaced by BOS when the vocabulary adds
/// one; only the second half of each chunk is scored (every scored token sees at least n_ctx / 2
/// tokens before it): the logits at positions n_ctx/2 .. n_ctx − 2 against the tokens that follow.
/// The log-softmax is taken in double over float exponentials, as llama.cpp's log_softmax does.
/// </summary>
public static class Perplexity
{
    /// <summary>Fewest tokens a measurement needs: llama-perplexity's rule, two chunks' worth.</summary>
    public static int MinimumTokens(int contextLength) => 2 * contextLength;

    /// <summary>
    /// Evaluates <paramref name="tokens"/> in chunks of <paramref name="contextLength"/> on
    /// <paramref name="context"/> (which is reset before each chunk) and returns the perplexity.
    /// </summary>
    /// <param name="context">Any backend's context; its KV cache must hold <paramref name="contextLength"/> tokens.</param>
    /// <param name="tokens">The tokenized text (BOS included when the vocabulary adds one).</param>
    /// <param name="contextLength">n_ctx: tokens per chunk, at least 4 (an n_ctx / 2 context and one scored token).</param>
    /// <param name="batchSize">Tokens per Eval call inside a chunk (n_batch; clamped to the chunk).</param>
    /// <param name="bos">The BOS id written over each chunk's first token, or null when the vocabulary adds no BOS.</param>
    /// <param name="maxChunks">Evaluate at most this many chunks (≤ 0: all that fit).</param>
    /// <param name="progress">Called after each chunk with its 1-based index and the running perplexity.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    /// <exception cref="ArgumentException">fewer than 2 × n_ctx tokens, n_ctx below 4 or above the context's cache, n_batch below 1.</exception>
    public static PerplexityResult Compute(IEvalContext context, ReadOnlySpan<int> tokens, int contextLength, int batchSize, int? bos,
        int maxChunks = 0, Action<int, double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var acc = new Accumulator();
        int chunks = Run([context], tokens, contextLength, batchSize, bos, maxChunks, cancellationToken,
            (target, rows, offsets, vocab) => acc.Add(-LogSoftmax(rows[0].AsSpan(offsets[0], vocab), target)),
            chunk =>
            {
                double ppl = acc.EndChunk(contextLength - 1 - contextLength / 2);
                progress?.Invoke(chunk, ppl);
            });
        return acc.Result(chunks, contextLength);
    }

    /// <summary>
    /// Runs <paramref name="model"/> and <paramref name="reference"/> (e.g. a quantized file and its F16
    /// original) over the same chunks and compares their next-token distributions at every scored
    /// position: both perplexities, the KL divergence KL(reference ‖ model) = Σ p_ref (ln p_ref − ln p_model),
    /// and how often both rank the same token first (llama-perplexity's --kl-divergence statistics,
    /// computed in one run instead of through a file of the reference's logits).
    /// </summary>
    /// <exception cref="ArgumentException">as <see cref="Compute"/>; the two vocabularies differ in size.</exception>
    public static KlDivergenceResult Compare(IEvalContext model, IEvalContext reference, ReadOnlySpan<int> tokens, int contextLength, int batchSize, int? bos,
        int maxChunks = 0, Action<int, double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(reference);
        var accModel = new Accumulator();
        var accRef = new Accumulator();
        var klds = new List<double>();
        long same = 0;
        int chunks = Run([model, reference], tokens, contextLength, batchSize, bos, maxChunks, cancellationToken,
            (target, rows, offsets, vocab) =>
            {
                var q = rows[0].AsSpan(offsets[0], vocab);
                var p = rows[1].AsSpan(offsets[1], vocab);
                accModel.Add(-LogSoftmax(q, target));
                accRef.Add(-LogSoftmax(p, target));
                klds.Add(KlDivergence(p, q));
                if (ArgMax(p) == ArgMax(q)) same++;
            },
            chunk =>
            {
                int scored = contextLength - 1 - contextLength / 2;
                accRef.EndChunk(scored);
                double ppl = accModel.EndChunk(scored);
                progress?.Invoke(chunk, ppl);
            });
        int n = klds.Count;
        double mean = klds.Average();
        double variance = klds.Sum(k => (k - mean) * (k - mean)) / Math.Max(1, n - 1);
        var sorted = klds.Order().ToArray();
        double sameTop = (double)same / n;
        return new KlDivergenceResult(accModel.Result(chunks, contextLength), accRef.Result(chunks, contextLength),
            mean, Math.Sqrt(variance / n), sorted[^1], Quantile(sorted, 0.99), Quantile(sorted, 0.5),
            sameTop, Math.Sqrt(sameTop * (1 - sameTop) / Math.Max(1, n - 1)));
    }

    /// <summary>The shared chunk loop: every context evaluates each batch, then each scored position is handed over with its target.</summary>
    private static int Run(IEvalContext[] contexts, ReadOnlySpan<int> tokens, int contextLength, int batchSize, int? bos, int maxChunks,
        CancellationToken cancellationToken, Action<int, float[][], int[], int> scored, Action<int> chunkDone)
    {
        foreach (var context in contexts)
        {
            if (contextLength > context.ContextLength)
                throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"the context holds {context.ContextLength} tokens");
        }
        if (contextLength < 4) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "a chunk needs at least 4 tokens");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be at least 1");
        if (tokens.Length < MinimumTokens(contextLength))
            throw new ArgumentException($"{tokens.Length} tokens are too few to measure perplexity with a context of {contextLength}: " +
                $"at least {MinimumTokens(contextLength)} are needed (2 × n_ctx, as llama-perplexity); give a longer text or a smaller -c", nameof(tokens));

        int chunks = tokens.Length / contextLength;
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        int first = contextLength / 2;
        int batch = Math.Min(batchSize, contextLength);
        var buffer = new int[batch];
        var rows = new float[contexts.Length][];
        var offsets = new int[contexts.Length];

        for (int c = 0; c < chunks; c++)
        {
            int start = c * contextLength;
            foreach (var context in contexts) context.Reset();
            for (int b0 = 0; b0 < contextLength; b0 += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(batch, contextLength - b0);
                tokens.Slice(start + b0, n).CopyTo(buffer);
                if (b0 == 0 && bos is int bosId) buffer[0] = bosId;
                for (int k = 0; k < contexts.Length; k++) rows[k] = contexts[k].Eval(buffer.AsSpan(0, n), allLogits: true);
                int vocab = rows[0].Length / n;
                for (int k = 1; k < contexts.Length; k++)
                {
                    if (rows[k].Length / n != vocab)
                        throw new ArgumentException($"the models' vocabularies differ ({vocab} and {rows[k].Length / n} tokens): their distributions cannot be compared");
                }
                // Positions first .. contextLength-2 are scored, each against the token after it.
                for (int i = Math.Max(b0, first); i < b0 + n && i < contextLength - 1; i++)
                {
                    for (int k = 0; k < contexts.Length; k++) offsets[k] = (i - b0) * vocab;
                    scored(tokens[start + i + 1], rows, offsets, vocab);
                }
            }
            chunkDone(c + 1);
        }
        return chunks;
    }

    /// <summary>Sums of the negative log-likelihoods and their squares, per chunk and in all.</summary>
    private sealed class Accumulator
    {
        private readonly List<double> _running = [];
        private readonly List<double> _chunkNll = [];
        private double _nll, _nll2, _sum;
        private long _count;

        public void Add(double v)
        {
            _sum += v;
            _nll2 += v * v;
        }

        /// <summary>Closes a chunk of <paramref name="scored"/> positions; returns the running perplexity.</summary>
        public double EndChunk(int scored)
        {
            _nll += _sum;
            _count += scored;
            _chunkNll.Add(_sum);
            _sum = 0;
            double ppl = Math.Exp(_nll / _count);
            _running.Add(ppl);
            return ppl;
        }

        public PerplexityResult Result(int chunks, int contextLength)
        {
            double mean = _nll / _count;
            double meanSq = _nll2 / _count - mean * mean;
            double value = Math.Exp(mean);
            double err = meanSq > 0 && _count > 1 ? Math.Sqrt(meanSq / (_count - 1)) * value : double.NaN;
            return new PerplexityResult(value, err, chunks, contextLength, _count, _running, _chunkNll);
        }
    }

    /// <summary>KL(p ‖ q) of the softmax distributions of two logit rows, in double.</summary>
    internal static double KlDivergence(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double lseP = LogSumExp(p), lseQ = LogSumExp(q);
        double kld = 0;
        for (int j = 0; j < p.Length; j++)
        {
            double lp = p[j] - lseP;
            double pj = Math.Exp(lp);
            if (pj > 0) kld += pj * (lp - (q[j] - lseQ));
        }
        return Math.Max(0, kld);
    }

    private static double LogSumExp(ReadOnlySpan<float> x)
    {
        float max = x[0];
        for (int j = 1; j < x.Length; j++) max = MathF.Max(max, x[j]);
        double sum = 0;
        for (int j = 0; j < x.Length; j++) sum += Math.Exp(x[j] - max);
        return max + Math.Log(sum);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int j = 1; j < x.Length; j++) if (x[j] > x[best]) best = j;
        return best;
    }

    /// <summary>The <paramref name="q"/> quantile of sorted values, linearly interpolated.</summary>
    private static double Quantile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>log softmax(logits)[token]: the maximum subtracted, exponentials in float, their sum in double (llama.cpp's log_softmax).</summary>
    internal static double LogSoftmax(ReadOnlySpan<float> logits, int token)
    {
        if ((uint)token >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"the model's vocabulary has {logits.Length} tokens");
        float max = logits[0];
        for (int j = 1; j < logits.Length; j++) max = MathF.Max(max, logits[j]);
        double sumExp = 0;
        for (int j = 0; j < logits.Length; j++) sumExp += MathF.Exp(logits[j] - max);
        return logits[token] - max - Math.Log(sumExp);
    }
}
