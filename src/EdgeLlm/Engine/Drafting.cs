using EdgeLlm.Tokenizers;

namespace EdgeLlm.Engine;

// The proposal side of speculative decoding (TextGenerator.UseDraft / UseLookup, edgellm_context_set_draft).

/// <summary>Where proposals come from: a draft model or the text itself.</summary>
internal interface IDraftSource
{
    int MaxDraft { get; }

    void Reset();

    /// <summary>Up to <paramref name="max"/> tokens likely to follow <paramref name="confirmed"/> and then <paramref name="next"/>.</summary>
    int[] Propose(List<int> confirmed, int next, int max);

    /// <summary>How the last proposals fared: <paramref name="accepted"/> of <paramref name="proposed"/> kept.</summary>
    void Feedback(int proposed, int accepted) { }
}

/// <summary>
/// Prompt lookup: the continuation of the last earlier occurrence of the newest n-gram. A wrong guess
/// costs its share of a batch (on a CPU, a batch of 16 tokens takes several single tokens' time), so
/// the length adapts: one more than the last proposals kept, from 1 up to the maximum.
/// </summary>
internal sealed class LookupDrafter(int ngram, int maxDraft) : IDraftSource
{
    private int _length = 2;

    public int MaxDraft => maxDraft;

    public void Reset() => _length = 2;

    public void Feedback(int proposed, int accepted) => _length = Math.Clamp(accepted + 1, 1, maxDraft);

    public int[] Propose(List<int> confirmed, int next, int max)
    {
        max = Math.Min(max, _length);
        if (max <= 0) return [];
        // The history is confirmed + [next]; h(i) reads it without copying.
        int count = confirmed.Count + 1;
        int H(int i) => i < confirmed.Count ? confirmed[i] : next;
        for (int n = Math.Min(ngram, count - 1); n >= 1; n--)
        {
            // The most recent j < count - n where history[j..j+n) equals the last n tokens.
            for (int j = count - n - 1; j >= 0; j--)
            {
                int k = 0;
                while (k < n && H(j + k) == H(count - n + k)) k++;
                if (k < n) continue;
                int from = j + n, take = Math.Min(max, count - from);
                var drafts = new int[take];
                for (int i = 0; i < take; i++) drafts[i] = H(from + i);
                return drafts;
            }
        }
        return [];
    }
}

/// <summary>The draft model's side: its cache (kept in step with the model's by longest common prefix) and its greedy proposals.</summary>
internal sealed class Drafter(IEvalContext context, int maxDraft, float minProbability) : IDraftSource
{
    /// <summary>Throws unless <paramref name="draft"/> has exactly <paramref name="model"/>'s tokens (the message names the first that differs).</summary>
    public static void CheckSameVocabulary(Tokenizer model, Tokenizer draft, string paramName)
    {
        if (draft.VocabSize != model.VocabSize)
            throw new ArgumentException($"the draft model's vocabulary has {draft.VocabSize} tokens, the model's {model.VocabSize}: speculative decoding needs the same vocabulary", paramName);
        for (int id = 0; id < model.VocabSize; id++)
        {
            if (draft.TokenText(id) != model.TokenText(id))
                throw new ArgumentException($"token {id} is '{draft.TokenText(id)}' in the draft model and '{model.TokenText(id)}' in the model: speculative decoding needs the same vocabulary", paramName);
        }
    }

    private readonly List<int> _cached = [];

    public int MaxDraft => maxDraft;

    public void Reset()
    {
        _cached.Clear();
        context.Reset();
    }

    /// <summary>Up to <paramref name="max"/> greedy proposals to follow <paramref name="confirmed"/> and then <paramref name="next"/>.</summary>
    public int[] Propose(List<int> confirmed, int next, int max)
    {
        if (max <= 0 || confirmed.Count + 1 > context.ContextLength) return []; // the draft's context cannot hold the text
        if (context.Position != _cached.Count)
        {
            _cached.Clear();
            context.Reset();
        }
        int common = 0;
        while (common < _cached.Count && common < confirmed.Count && _cached[common] == confirmed[common]) common++;
        if (common < _cached.Count && common == confirmed.Count && _cached[common] == next) common++;
        if (common == confirmed.Count + 1) common--; // the logits after `next` are needed
        context.Rewind(common);
        _cached.RemoveRange(common, _cached.Count - common);
        var rest = new int[confirmed.Count + 1 - common];
        for (int i = 0; i < rest.Length; i++) rest[i] = common + i < confirmed.Count ? confirmed[common + i] : next;
        float[] logits = context.Eval(rest);
        _cached.AddRange(rest);
        var drafts = new List<int>(max);
        while (drafts.Count < max)
        {
            int best = TopToken(logits, out float p);
            if (p < minProbability) break;
            drafts.Add(best);
            if (drafts.Count == max || context.Position >= context.ContextLength) break;
            logits = context.Eval([best]);
            _cached.Add(best);
        }
        return [.. drafts];
    }

    /// <summary>The most likely token and its softmax probability.</summary>
    private static int TopToken(ReadOnlySpan<float> logits, out float probability)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        float max = logits[best];
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        probability = (float)(1.0 / sum);
        return best;
    }
}
