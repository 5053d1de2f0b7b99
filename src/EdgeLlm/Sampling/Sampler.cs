using System.Numerics.Tensors;

namespace EdgeLlm.Sampling;

/// <summary>
/// Picks the next token from a row of logits with llama.cpp's default sampler chain (common/sampling.cpp,
/// src/llama-sampling.cpp): repetition penalty → top-k → top-p → min-p → temperature → a draw from the
/// softmax. With temperature 0 the chain ends in argmax instead (after the penalty, as in llama.cpp).
/// </summary>
/// <remarks>
/// Feed every token that enters the context to <see cref="Accept"/>, prompt tokens included (llama.cpp's
/// main loop does the same), so the repetition penalty sees them. One instance per sequence; not thread-safe.
/// Top-p and min-p look at the distribution at temperature 1, since temperature comes after them in the chain.
/// </remarks>
public sealed class Sampler
{
    private readonly SamplerOptions _options;
    private readonly int _vocabSize;
    private readonly float[] _work;              // [vocab] logits after the penalty
    private readonly Candidate[] _candidates;    // [vocab] the surviving (id, logit) pairs, a prefix in use
    private readonly double[] _probs;            // [vocab] scratch for the final softmax
    private readonly List<int> _history = [];    // accepted tokens, oldest first, trimmed to the penalty window
    private readonly HashSet<int> _penalized = [];
    private Xoshiro256StarStar _rng;

    /// <summary>Creates a sampler for a model with <paramref name="vocabSize"/> logits per row.</summary>
    /// <exception cref="ArgumentException">An option is out of range (see <see cref="SamplerOptions.Validate"/>).</exception>
    public Sampler(SamplerOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        _options = options;
        _vocabSize = vocabSize;
        _work = new float[vocabSize];
        _candidates = new Candidate[vocabSize];
        _probs = new double[vocabSize];
        Seed = options.Seed ?? RandomSeed();
        _rng = new Xoshiro256StarStar(Seed);
    }

    /// <summary>The seed actually in use: <see cref="SamplerOptions.Seed"/>, or the random one drawn when that was null.</summary>
    public ulong Seed { get; }

    /// <summary>The options this sampler runs with.</summary>
    public SamplerOptions Options => _options;

    /// <summary>Number of logits expected per row.</summary>
    public int VocabSize => _vocabSize;

    /// <summary>Tokens currently in the repetition-penalty history, oldest first.</summary>
    public IReadOnlyList<int> History => _history;

    private static ulong RandomSeed()
    {
        // Random.Shared is seeded from the OS (getrandom / arc4random) without OpenSSL: a seed needs
        // no cryptographic strength, and RandomNumberGenerator would make the NativeAOT binary
        // load libssl at run time (a minimal device image may have none; `run` then aborted).
        Span<byte> b = stackalloc byte[8];
        Random.Shared.NextBytes(b);
        return BitConverter.ToUInt64(b);
    }

    /// <summary>Records a token that entered the context (prompt or generated), for the repetition penalty.</summary>
    public void Accept(int token)
    {
        if ((uint)token >= (uint)_vocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"token id must be in [0, {_vocabSize})");
        int window = _options.RepeatLastN;
        if (window == 0) return;
        _history.Add(token);
        // Trim in batches so accepting stays O(1) amortized.
        if (window > 0 && _history.Count >= 2 * window) _history.RemoveRange(0, _history.Count - window);
    }

    /// <summary>Forgets the accepted tokens and restarts the random sequence from <see cref="Seed"/>.</summary>
    public void Reset()
    {
        _history.Clear();
        _rng = new Xoshiro256StarStar(Seed);
    }

    /// <summary>Chooses the next token from <paramref name="logits"/> (length = vocabulary size).</summary>
    /// <exception cref="ArgumentException">Wrong length, or every logit −∞.</exception>
    /// <exception cref="InvalidLogitsException">A NaN or +∞ logit: the model, not the caller, is at fault.</exception>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.Length != _vocabSize)
            throw new ArgumentException($"expected {_vocabSize} logits (the vocabulary size), got {logits.Length}", nameof(logits));
        // One vectorized pass: Max is NaN if any logit is NaN, +inf if any is +inf. Only then look for the culprit.
        float top = TensorPrimitives.Max(logits);
        if (float.IsNaN(top) || float.IsPositiveInfinity(top))
        {
            int bad = 0;
            while (!float.IsNaN(logits[bad]) && !float.IsPositiveInfinity(logits[bad])) bad++;
            throw new InvalidLogitsException(bad, logits[bad]);
        }
        logits.CopyTo(_work);
        ApplyRepetitionPenalty(_work);

        if (_options.IsGreedy) return ArgMax(_work);

        int n = TopK(_work, _candidates, _options.TopK, sort: _options.TopP < 1f);
        Span<Candidate> c = _candidates.AsSpan(0, n);
        if (float.IsNegativeInfinity(c[0].Logit) && !HasFinite(c))
            throw new ArgumentException("every logit is -infinity: no token can be sampled", nameof(logits));
        if (_options.TopP < 1f) c = c[..TopP(c, _options.TopP)];
        if (_options.MinP > 0f) c = c[..MinP(c, _options.MinP)];
        return Draw(c, _options.Temperature);
    }

    private void ApplyRepetitionPenalty(float[] work)
    {
        float penalty = _options.RepeatPenalty;
        if (penalty == 1f || _history.Count == 0) return;
        int window = _options.RepeatLastN;
        int start = window < 0 ? 0 : Math.Max(0, _history.Count - window);
        _penalized.Clear();
        for (int i = start; i < _history.Count; i++) _penalized.Add(_history[i]);
        // llama.cpp (llama_sampler_penalties_apply): each distinct recent token once, whatever its count;
        // dividing a negative logit would raise it, so those are multiplied instead.
        foreach (int t in _penalized)
            work[t] = work[t] > 0 ? work[t] / penalty : work[t] * penalty;
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best]) best = i; // strict: the lowest id wins a tie, like llama.cpp's greedy sampler
        if (float.IsNegativeInfinity(x[best]))
            throw new ArgumentException("every logit is -infinity: no token can be sampled", "logits");
        return best;
    }

    private static bool HasFinite(ReadOnlySpan<Candidate> c)
    {
        foreach (var x in c) if (!float.IsNegativeInfinity(x.Logit)) return true;
        return false;
    }

    /// <summary>
    /// Copies the <paramref name="k"/> largest logits (all when k is 0 or ≥ n) into <paramref name="dst"/> and returns
    /// their count; sorted descending (ties: lower id first) when top-k cut or <paramref name="sort"/> asks.
    /// </summary>
    internal static int TopK(ReadOnlySpan<float> logits, Span<Candidate> dst, int k, bool sort)
    {
        int n = logits.Length;
        if (k <= 0 || k >= n)
        {
            for (int i = 0; i < n; i++) dst[i] = new Candidate(i, logits[i]);
            if (sort) dst[..n].Sort(default(DescendingByLogit));
            return n;
        }
        // Min-heap of the k best seen so far: the root is the weakest survivor, replaced when beaten. O(n log k).
        var heap = dst[..k];
        for (int i = 0; i < k; i++) heap[i] = new Candidate(i, logits[i]);
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(heap, i);
        // Ids only grow from here, so an equal logit never beats the root: a strict > against a cached floor suffices.
        float floor = heap[0].Logit;
        for (int i = k; i < n; i++)
        {
            float l = logits[i];
            if (l > floor)
            {
                heap[0] = new Candidate(i, l);
                SiftDown(heap, 0);
                floor = heap[0].Logit;
            }
        }
        heap.Sort(default(DescendingByLogit));
        return k;
    }

    // a ranks above b: a larger logit, or an equal logit and a smaller id.
    private static bool Better(Candidate a, Candidate b) => a.Logit > b.Logit || (a.Logit == b.Logit && a.Id < b.Id);

    private static void SiftDown(Span<Candidate> heap, int i)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, worst = i;
            if (l < heap.Length && Better(heap[worst], heap[l])) worst = l;
            if (r < heap.Length && Better(heap[worst], heap[r])) worst = r;
            if (worst == i) return;
            (heap[i], heap[worst]) = (heap[worst], heap[i]);
            i = worst;
        }
    }

    /// <summary>
    /// Top-p over candidates sorted descending: the length of the shortest prefix whose probabilities reach
    /// <paramref name="p"/> (at least 1), as llama_sampler_top_p_apply.
    /// </summary>
    internal static int TopP(ReadOnlySpan<Candidate> sorted, float p)
    {
        double max = sorted[0].Logit, sum = 0;
        foreach (var c in sorted) sum += Math.Exp(c.Logit - max);
        double cum = 0;
        for (int i = 0; i < sorted.Length; i++)
        {
            cum += Math.Exp(sorted[i].Logit - max) / sum;
            if (cum >= p) return i + 1;
        }
        return sorted.Length; // rounding left the total just under p
    }

    /// <summary>
    /// Min-p: keeps, in order, the candidates with probability ≥ <paramref name="minP"/> × the largest probability,
    /// i.e. logit ≥ max logit + ln(minP) (the softmax denominator cancels). Returns the kept count (≥ 1).
    /// </summary>
    internal static int MinP(Span<Candidate> c, float minP)
    {
        float max = float.NegativeInfinity;
        foreach (var x in c) max = Math.Max(max, x.Logit);
        double threshold = max + Math.Log(minP);
        int kept = 0;
        for (int i = 0; i < c.Length; i++)
            if (c[i].Logit >= threshold) c[kept++] = c[i];
        return kept;
    }

    private int Draw(ReadOnlySpan<Candidate> c, float temperature)
    {
        // Temperature scales logits (llama_sampler_temp); softmax in double so a long tail sums without loss.
        double max = double.NegativeInfinity;
        foreach (var x in c) max = Math.Max(max, x.Logit / (double)temperature);
        double sum = 0;
        for (int i = 0; i < c.Length; i++) sum += _probs[i] = Math.Exp(c[i].Logit / (double)temperature - max);
        double u = _rng.NextDouble() * sum, cum = 0;
        for (int i = 0; i < c.Length; i++)
        {
            cum += _probs[i];
            if (u < cum) return c[i].Id;
        }
        // u landed in the rounding slack at the very end: the last token with any mass.
        for (int i = c.Length - 1; i >= 0; i--) if (_probs[i] > 0) return c[i].Id;
        return c[0].Id;
    }

    /// <summary>
    /// The <paramref name="k"/> most likely tokens of the full softmax of <paramref name="logits"/> (no sampler
    /// settings applied), most likely first, ties by lower id; for <c>--show-probs K</c>.
    /// </summary>
    public static IReadOnlyList<(int Id, float Prob)> TopCandidates(ReadOnlySpan<float> logits, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (logits.IsEmpty || k == 0) return [];
        var cand = new Candidate[logits.Length];
        int n = TopK(logits, cand, Math.Min(k, logits.Length), sort: true);
        double max = cand[0].Logit;
        if (double.IsNaN(max) || double.IsInfinity(max))
            throw new ArgumentException($"the largest logit is {max}: cannot form probabilities", nameof(logits));
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        var result = new (int, float)[n];
        for (int i = 0; i < n; i++) result[i] = (cand[i].Id, (float)(Math.Exp(cand[i].Logit - max) / sum));
        return result;
    }

    internal readonly record struct Candidate(int Id, float Logit);

    private readonly struct DescendingByLogit : IComparer<Candidate>
    {
        public int Compare(Candidate a, Candidate b) =>
            a.Logit > b.Logit ? -1 : a.Logit < b.Logit ? 1 : a.Id.CompareTo(b.Id);
    }
}

/// <summary>
/// The model produced a NaN or +∞ logit. Derives from <see cref="ArgumentException"/> (what
/// <see cref="Sampler.Sample"/> threw before this type existed), but callers should report it as a bad model:
/// a finite prompt through finite weights never gives one, so the weights hold NaN or infinite values
/// (a corrupt or badly converted file) or the activations overflowed. The CLI exits with code 2 ("model error").
/// </summary>
public sealed class InvalidLogitsException(int tokenId, float value)
    : ArgumentException($"logit {tokenId} is {value}: the model produced invalid output " +
        "(NaN or infinite values in its weights, e.g. a corrupt file, or activations that overflowed)", "logits")
{
    /// <summary>The first token id whose logit was NaN or +∞.</summary>
    public int TokenId { get; } = tokenId;

    /// <summary>That logit.</summary>
    public float Value { get; } = value;
}
