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
        if (contextLength < 4) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "a chunk needs at least 4 tokens");
        if (contextLength > context.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"the context holds {context.ContextLength} tokens");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be at least 1");
        if (tokens.Length < MinimumTokens(contextLength))
            throw new ArgumentException($"{tokens.Length} tokens are too few to measure perplexity with a context of {contextLength}: " +
                $"at least {MinimumTokens(contextLength)} are needed (2 × n_ctx, as llama-perplexity); give a longer text or a smaller -c", nameof(tokens));

        int chunks = tokens.Length / contextLength;
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        int first = contextLength / 2;
        int batch = Math.Min(batchSize, contextLength);
        var buffer = new int[batch];
        var running = new List<double>(chunks);
        var chunkNll = new List<double>(chunks);
        double nll = 0, nll2 = 0;
        long count = 0;

        for (int c = 0; c < chunks; c++)
        {
            int start = c * contextLength;
            context.Reset();
            double sum = 0;
            for (int b0 = 0; b0 < contextLength; b0 += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(batch, contextLength - b0);
                tokens.Slice(start + b0, n).CopyTo(buffer);
                if (b0 == 0 && bos is int bosId) buffer[0] = bosId;
                float[] logits = context.Eval(buffer.AsSpan(0, n), allLogits: true);
                int vocab = logits.Length / n;
                // Positions first .. contextLength-2 are scored, each against the token after it.
                for (int i = Math.Max(b0, first); i < b0 + n && i < contextLength - 1; i++)
                {
                    double v = -LogSoftmax(logits.AsSpan((i - b0) * vocab, vocab), tokens[start + i + 1]);
                    sum += v;
                    nll2 += v * v;
                }
            }
            nll += sum;
            count += contextLength - 1 - first;
            chunkNll.Add(sum);
            double ppl = Math.Exp(nll / count);
            running.Add(ppl);
            progress?.Invoke(c + 1, ppl);
        }

        double mean = nll / count;
        double meanSq = nll2 / count - mean * mean;
        double value = Math.Exp(mean);
        double err = meanSq > 0 && count > 1 ? Math.Sqrt(meanSq / (count - 1)) * value : double.NaN;
        return new PerplexityResult(value, err, chunks, contextLength, count, running, chunkNll);
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
