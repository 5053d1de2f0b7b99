using System.Diagnostics;
using System.Text;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Engine;

/// <summary>Why a generation ended.</summary>
public enum FinishReason
{
    /// <summary>The model produced an end-of-generation token (EOS, or an end-of-turn token such as <c>&lt;|im_end|&gt;</c>).</summary>
    EndOfGeneration,

    /// <summary>One of <see cref="GenerationOptions.Stop"/> appeared (it is not part of the text).</summary>
    StopString,

    /// <summary><see cref="GenerationOptions.MaxTokens"/> tokens were generated.</summary>
    Length,

    /// <summary>The KV cache is full: no position is left for another token.</summary>
    ContextFull,

    /// <summary>The caller's cancellation token fired (or it stopped enumerating).</summary>
    Cancelled,
}

/// <summary>What one generation asks for.</summary>
public sealed record GenerationOptions
{
    /// <summary>The sampler chain (temperature, top-k, top-p, min-p, repetition penalty, seed); validated when generation starts.</summary>
    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>Most tokens to generate; -1 = until an end-of-generation token, a stop string or a full context.</summary>
    public int MaxTokens { get; init; } = -1;

    /// <summary>Texts that end generation when they appear; they and anything after them are not returned.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>
    /// Constrain the output to one JSON object (OpenAI's <c>response_format: {"type": "json_object"}</c>):
    /// only tokens that keep it valid JSON are sampled, and generation ends when the object closes
    /// (<see cref="FinishReason.EndOfGeneration"/>). See <see cref="JsonConstraint"/>. A generation cut short
    /// by <see cref="MaxTokens"/>, a stop string or a full context leaves the object unfinished.
    /// </summary>
    public bool JsonObject { get; init; }

    /// <summary>
    /// Constrain the output to one JSON object that follows this schema (OpenAI's <c>response_format</c>
    /// <c>json_schema</c>; <see cref="JsonSchemaNode.Parse"/> says which keywords are enforced). Implies
    /// <see cref="JsonObject"/>.
    /// </summary>
    public JsonSchemaNode? JsonSchema { get; init; }

    /// <summary>
    /// Constrain the output to the sentences of this GBNF grammar (llama.cpp's <c>--grammar</c>; see
    /// <see cref="GbnfGrammar"/> and <see cref="GrammarConstraint"/>): only tokens that keep the output a prefix
    /// of a sentence are sampled, an end-of-generation token only once it is a whole sentence, and generation
    /// ends when nothing can extend it (<see cref="FinishReason.EndOfGeneration"/>). Cannot be combined with
    /// <see cref="JsonObject"/> or <see cref="JsonSchema"/>.
    /// </summary>
    public GbnfGrammar? Grammar { get; init; }

    /// <summary>
    /// Report each generated token's log-probability (OpenAI's <c>logprobs</c>) with this many of the likeliest
    /// alternatives at its place (<c>top_logprobs</c>, 0..20); -1 (the default) reports none. The probabilities
    /// are the model's own (log-softmax of its logits, before temperature and the other samplers), as
    /// OpenAI's are. See <see cref="GenerationResult.LogProbs"/>.
    /// </summary>
    public int LogProbs { get; init; } = -1;

    /// <summary>
    /// Control tokens other than the end-of-generation ones come out as their text (llama.cpp's
    /// <c>token_to_piece(special=true)</c>), e.g. gpt-oss's <c>&lt;|channel|&gt;</c> and <c>&lt;|message|&gt;</c>,
    /// which a chat over a harmony template needs to read the answer (<see cref="Chat.HarmonySplitter"/>).
    /// Off by default: control tokens detokenize to nothing.
    /// </summary>
    public bool RenderSpecialTokens { get; init; }
}

/// <summary>A generated token's log-probability under the model and the likeliest tokens at its place.</summary>
/// <param name="Token">the token generated</param>
/// <param name="LogProb">its natural-log probability (log-softmax of the logits)</param>
/// <param name="Top">the likeliest tokens there and theirs, most likely first (<see cref="GenerationOptions.LogProbs"/> of them)</param>
public sealed record TokenLogProb(int Token, float LogProb, IReadOnlyList<(int Token, float LogProb)> Top)
{
    /// <summary>The log-probability of <paramref name="token"/> under <paramref name="logits"/>, and the <paramref name="top"/> likeliest tokens'.</summary>
    public static TokenLogProb Of(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) max = Math.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        float logZ = max + (float)Math.Log(sum);
        var best = new List<(int Token, float LogProb)>(top + 1);
        if (top > 0)
        {
            // A partial selection: the top few of a 150k vocabulary, kept sorted in a short list.
            for (int i = 0; i < logits.Length; i++)
            {
                if (best.Count == top && logits[i] <= best[^1].LogProb) continue;
                int at = best.Count;
                while (at > 0 && best[at - 1].LogProb < logits[i]) at--;
                best.Insert(at, (i, logits[i]));
                if (best.Count > top) best.RemoveAt(best.Count - 1);
            }
            for (int i = 0; i < best.Count; i++) best[i] = (best[i].Token, best[i].LogProb - logZ);
        }
        return new TokenLogProb(token, logits[token] - logZ, best);
    }
}

/// <summary>The outcome of one generation.</summary>
/// <param name="Text">everything generated (stop strings and end-of-generation tokens excluded)</param>
/// <param name="Reason">why it ended</param>
/// <param name="PromptTokens">tokens in the prompt</param>
/// <param name="ReusedPromptTokens">prompt tokens whose KV cache entries were kept from the previous generation (not evaluated again)</param>
/// <param name="CompletionTokens">tokens sampled, the end-of-generation token excluded</param>
/// <param name="Seed">the sampler's seed (the one given, or the random one drawn)</param>
/// <param name="PromptTime">time spent evaluating the prompt</param>
/// <param name="GenerationTime">time spent sampling and evaluating generated tokens</param>
/// <param name="StopString">the stop string that ended it, when <paramref name="Reason"/> is <see cref="FinishReason.StopString"/></param>
/// <param name="Tokens">the sampled tokens (<paramref name="CompletionTokens"/> of them; a stop string's tokens included, the end-of-generation token not)</param>
public sealed record GenerationResult(
    string Text, FinishReason Reason, int PromptTokens, int ReusedPromptTokens, int CompletionTokens, ulong Seed,
    TimeSpan PromptTime, TimeSpan GenerationTime, string? StopString, IReadOnlyList<int> Tokens)
{
    /// <summary>With a draft model (<see cref="TextGenerator.UseDraft"/>): tokens it proposed.</summary>
    public int DraftedTokens { get; init; }

    /// <summary>With a draft model: proposed tokens the model confirmed (each saved one evaluation of the model on its own).</summary>
    public int AcceptedDraftTokens { get; init; }

    /// <summary>Per token of <see cref="Tokens"/>, its log-probability (when <see cref="GenerationOptions.LogProbs"/> asked for them), else null.</summary>
    public IReadOnlyList<TokenLogProb>? LogProbs { get; init; }
}

/// <summary>A prompt that does not fit in the context.</summary>
public sealed class PromptTooLongException(int promptTokens, int contextLength)
    : ArgumentException($"the prompt is {promptTokens} tokens; the context holds {contextLength}, which leaves no room to generate")
{
    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; } = promptTokens;

    /// <summary>Tokens the context holds.</summary>
    public int ContextLength { get; } = contextLength;
}

/// <summary>
/// The generation loop over one <see cref="IEvalContext"/>: evaluate the prompt, then sample,
/// detokenize (UTF-8 safe, <see cref="StreamingDecoder"/>), watch for stop strings
/// (<see cref="StopStringMatcher"/>) and evaluate the sampled token, until something ends it.
/// </summary>
/// <remarks>
/// It remembers which tokens the context's KV cache holds. A new prompt that starts with some of
/// them (the next turn of a chat, the same system prompt) rewinds the cache to the longest common
/// prefix and evaluates only the rest, as llama.cpp's server does with its slots. Not thread-safe:
/// one generation at a time per generator.
/// </remarks>
public sealed class TextGenerator
{
    private readonly List<int> _cached = [];
    private IDraftSource? _draft;

    /// <summary>Creates a generator over <paramref name="context"/> (which it does not own).</summary>
    public TextGenerator(IEvalContext context, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Context = context;
        Tokenizer = tokenizer;
    }

    /// <summary>The context evaluated.</summary>
    public IEvalContext Context { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The tokens whose KV entries the context holds, in order.</summary>
    public IReadOnlyList<int> CachedTokens => _cached;

    /// <summary>The result of the last generation that ended (also after an enumeration stopped early).</summary>
    public GenerationResult? LastResult { get; private set; }

    /// <summary>Forgets the cache (the next prompt is evaluated from position 0).</summary>
    public void Reset()
    {
        _cached.Clear();
        Context.Reset();
        _draft?.Reset();
    }

    /// <summary>
    /// Speculative decoding (llama.cpp's <c>--model-draft</c>): from now on a smaller model with the same
    /// vocabulary proposes up to <paramref name="maxDraft"/> tokens greedily after each sampled token, as
    /// long as it gives its choice at least <paramref name="minProbability"/>, and the model evaluates the
    /// token and the proposals in one batch. Each row of logits is then sampled exactly as one at a time
    /// (the same sampler, constraints and stop rules): a proposal equal to the token sampled there is kept,
    /// the first one that differs and everything after it are dropped from the KV cache. The output is the
    /// one the model alone gives (greedy: the same tokens, up to the float rounding of batched products;
    /// sampled: the same distribution), sooner when the draft guesses well: a batch of a few tokens costs
    /// little more than one token, whose evaluation is bound by reading the weights.
    /// </summary>
    /// <param name="draftContext">the draft model's context (not owned); its cache is managed from here on</param>
    /// <param name="draftTokenizer">the draft model's tokenizer: it must have the same tokens as the model's</param>
    /// <param name="maxDraft">most tokens proposed at a time (llama.cpp's <c>--draft-max</c>, default 16); 0 turns drafting off</param>
    /// <param name="minProbability">the draft stops proposing when its top token's probability is below this (llama.cpp's <c>--draft-p-min</c>)</param>
    /// <exception cref="ArgumentException">the vocabularies differ, or a value is out of range.</exception>
    public void UseDraft(IEvalContext draftContext, Tokenizer draftTokenizer, int maxDraft = 16, float minProbability = 0.75f)
    {
        ArgumentNullException.ThrowIfNull(draftContext);
        ArgumentNullException.ThrowIfNull(draftTokenizer);
        if (maxDraft < 0 || maxDraft > 256) throw new ArgumentOutOfRangeException(nameof(maxDraft), maxDraft, "the draft length must be in 0..256");
        if (!(minProbability >= 0f && minProbability <= 1f)) throw new ArgumentOutOfRangeException(nameof(minProbability), minProbability, "the draft's minimum probability must be in [0, 1]");
        Drafter.CheckSameVocabulary(Tokenizer, draftTokenizer, nameof(draftTokenizer));
        _draft = maxDraft == 0 ? null : new Drafter(draftContext, maxDraft, minProbability);
    }

    /// <summary>
    /// Speculative decoding without a draft model (prompt lookup, llama.cpp's <c>llama-lookup</c> idea): the
    /// proposals are the tokens that followed the most recent earlier occurrence of the last
    /// <paramref name="ngram"/> tokens (or fewer, down to 1) in the prompt and the text so far. Free to make, so
    /// it pays wherever the output repeats its input: summaries, extraction, code edits, quoting, loops. The
    /// output is unchanged, as with <see cref="UseDraft"/>, which it replaces (and which replaces it).
    /// </summary>
    /// <param name="ngram">tokens matched (1..8)</param>
    /// <param name="maxDraft">most tokens proposed at a time (1..256)</param>
    public void UseLookup(int ngram = 3, int maxDraft = 8)
    {
        if (ngram is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(ngram), ngram, "the lookup n-gram must be 1..8 tokens");
        if (maxDraft is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(maxDraft), maxDraft, "the draft length must be in 1..256");
        _draft?.Reset();
        _draft = new LookupDrafter(ngram, maxDraft);
    }

    /// <summary>Generates a continuation of <paramref name="prompt"/>, calling <paramref name="onText"/> with each piece of text as it becomes final.</summary>
    /// <exception cref="ArgumentException">an empty prompt, bad sampler options or a token outside the vocabulary</exception>
    /// <exception cref="PromptTooLongException">the prompt leaves no room in the context</exception>
    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        foreach (var piece in Stream(prompt, options, cancellationToken))
            onText?.Invoke(piece);
        return LastResult!;
    }

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> as a stream of text pieces (each final: never
    /// retracted, never half a UTF-8 character, never part of a stop string). When the enumeration ends,
    /// <see cref="LastResult"/> says why and how many tokens it took; disposing the enumerator early
    /// counts as <see cref="FinishReason.Cancelled"/>. The prompt is checked before the first piece.
    /// </summary>
    /// <exception cref="ArgumentException">an empty prompt, bad sampler options or a token outside the vocabulary</exception>
    /// <exception cref="PromptTooLongException">the prompt leaves no room in the context</exception>
    public IEnumerable<string> Stream(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        options.Sampling.Validate();
        if (options.MaxTokens < -1) throw new ArgumentException($"MaxTokens must be -1 (no limit) or >= 0, got {options.MaxTokens}", nameof(options));
        if (options.LogProbs is < -1 or > 20) throw new ArgumentException($"LogProbs must be -1 (none) or 0..20 alternatives, got {options.LogProbs}", nameof(options));
        if (prompt.Count >= Context.ContextLength) throw new PromptTooLongException(prompt.Count, Context.ContextLength);
        if (options.Grammar is not null && (options.JsonObject || options.JsonSchema is not null))
            throw new ArgumentException("Grammar cannot be combined with JsonObject or JsonSchema: choose one", nameof(options));
        for (int i = 0; i < prompt.Count; i++)
        {
            if ((uint)prompt[i] >= (uint)Tokenizer.VocabSize)
                throw new ArgumentException($"token id {prompt[i]} at index {i} is outside the vocabulary (0..{Tokenizer.VocabSize - 1})", nameof(prompt));
        }
        var stopper = new StopStringMatcher(options.Stop);
        return StreamCore(prompt, options, stopper, cancellationToken);
    }

    private IEnumerable<string> StreamCore(IReadOnlyList<int> prompt, GenerationOptions options, StopStringMatcher stopper, CancellationToken ct)
    {
        var promptWatch = Stopwatch.StartNew();
        int reused = Prefill(prompt, out float[] logits);
        promptWatch.Stop();

        var sampler = new Sampler(options.Sampling, Tokenizer.VocabSize);
        foreach (int t in prompt) sampler.Accept(t);
        var json = TokenConstraint.For(Tokenizer, options.Grammar, options.JsonObject, options.JsonSchema);
        var decoder = new StreamingDecoder(Tokenizer, options.RenderSpecialTokens);
        var text = new StringBuilder();
        var genWatch = new Stopwatch();
        var tokens = new List<int>();
        var logProbs = options.LogProbs >= 0 ? new List<TokenLogProb>() : null;
        int generated = 0;
        FinishReason reason = FinishReason.Cancelled;
        string? stopString = null;
        bool finished = false;
        // Speculative decoding: proposals evaluated after the last sampled token and not yet confirmed,
        // the logits of every row of that batch, and the proposal the next sampled token is compared with.
        int[]? pending = null;
        float[]? rows = null;
        int pendingAt = 0, drafted = 0, accepted = 0;
        int vocab = Tokenizer.VocabSize;

        void DropPending()
        {
            if (pending is null) return;
            _draft?.Feedback(pending.Length, pendingAt);
            int drop = pending.Length - pendingAt;
            pending = null;
            if (drop <= 0) return;
            if (Context.Position == _cached.Count && drop <= _cached.Count)
            {
                Context.Rewind(Context.Position - drop);
                _cached.RemoveRange(_cached.Count - drop, drop);
            }
            else
            {
                // An evaluation failed part-way: what the cache holds is unknown, so the next prompt starts afresh.
                _cached.Clear();
                Context.Reset();
            }
        }

        try
        {
            while (true)
            {
                if (ct.IsCancellationRequested) { reason = FinishReason.Cancelled; break; }
                if (options.MaxTokens >= 0 && generated >= options.MaxTokens) { reason = FinishReason.Length; break; }
                genWatch.Start();
                int next = sampler.Sample(logits);
                if (json is not null) next = json.Choose(sampler, logits, next);
                // A proposal equal to the sampled token is already in the KV cache; one that differs is dropped, with all after it.
                bool inCache = pending is not null && next == pending[pendingAt];
                if (pending is not null && !inCache) DropPending();
                genWatch.Stop();
                if (Tokenizer.IsEndOfGeneration(next)) { reason = FinishReason.EndOfGeneration; break; }
                sampler.Accept(next);
                tokens.Add(next);
                logProbs?.Add(TokenLogProb.Of(logits, next, options.LogProbs));
                generated++;
                var match = stopper.Append(decoder.Append(next));
                if (match.Text.Length > 0)
                {
                    text.Append(match.Text);
                    yield return match.Text;
                }
                if (match.Stopped) { reason = FinishReason.StopString; stopString = match.StopString; break; }
                // The JSON object just closed, or the grammar's sentence can go no further: nothing may follow (the token needs no KV entry either).
                if (json is not null && json.IsComplete) { reason = FinishReason.EndOfGeneration; break; }
                // Checked before evaluating the token: a token that ends generation needs no KV entry.
                if (options.MaxTokens >= 0 && generated >= options.MaxTokens) { reason = FinishReason.Length; break; }
                if (inCache)
                {
                    // The batch already holds the logits after this token.
                    accepted++;
                    pendingAt++;
                    logits = rows.AsSpan(pendingAt * vocab, vocab).ToArray();
                    if (pendingAt == pending!.Length)
                    {
                        _draft?.Feedback(pending.Length, pending.Length);
                        pending = null;
                    }
                    continue;
                }
                if (Context.Position >= Context.ContextLength) { reason = FinishReason.ContextFull; break; }
                genWatch.Start();
                int[] drafts = _draft is null ? [] : _draft.Propose(_cached, next, Math.Min(Math.Min(_draft.MaxDraft,
                    Context.ContextLength - Context.Position - 1), options.MaxTokens >= 0 ? options.MaxTokens - generated : int.MaxValue));
                if (drafts.Length == 0)
                {
                    logits = Context.Eval([next]);
                    _cached.Add(next);
                }
                else
                {
                    rows = Context.Eval([next, .. drafts], allLogits: true);
                    _cached.Add(next);
                    _cached.AddRange(drafts);
                    pending = drafts;
                    pendingAt = 0;
                    drafted += drafts.Length;
                    logits = rows.AsSpan(0, vocab).ToArray();
                }
                genWatch.Stop();
            }
            if (reason != FinishReason.StopString)
            {
                var tail = stopper.Append(decoder.Flush());
                string rest = tail.Stopped ? tail.Text : tail.Text + stopper.Flush();
                if (tail.Stopped) { reason = FinishReason.StopString; stopString = tail.StopString; }
                if (rest.Length > 0)
                {
                    text.Append(rest);
                    yield return rest;
                }
            }
            finished = true;
        }
        finally
        {
            // Proposals never confirmed leave the cache (it holds what was generated, as without a draft).
            DropPending();
            // An enumeration abandoned early (the consumer stopped reading) ends as Cancelled.
            LastResult = new GenerationResult(text.ToString(), finished ? reason : FinishReason.Cancelled, prompt.Count, reused, generated,
                sampler.Seed, promptWatch.Elapsed, genWatch.Elapsed, stopString, tokens)
            { DraftedTokens = drafted, AcceptedDraftTokens = accepted, LogProbs = logProbs };
        }
    }

    /// <summary>
    /// Brings the cache to <paramref name="prompt"/>: keeps the longest common prefix of what it holds,
    /// evaluates the rest, and returns how many tokens were kept. At least the last prompt token is
    /// evaluated, since its logits are needed.
    /// </summary>
    private int Prefill(IReadOnlyList<int> prompt, out float[] logits)
    {
        if (Context.Position != _cached.Count)
        {
            // Someone else evaluated tokens in this context: what it holds is unknown.
            _cached.Clear();
            Context.Reset();
        }
        int common = 0;
        while (common < _cached.Count && common < prompt.Count && _cached[common] == prompt[common]) common++;
        if (common == prompt.Count) common--;
        // A sliding-window ring that no longer holds the prefix's last window: the context would evaluate the prefix
        // again anyway, so say so (0 kept) rather than report tokens as reused that are not.
        if (!Context.CanResumeAt(common)) common = 0;
        Context.Rewind(common);
        _cached.RemoveRange(common, _cached.Count - common);
        var rest = new int[prompt.Count - common];
        for (int i = 0; i < rest.Length; i++) rest[i] = prompt[common + i];
        try
        {
            logits = Context.Eval(rest);
        }
        catch
        {
            // A failed evaluation leaves the cache in an unknown state.
            _cached.Clear();
            Context.Reset();
            throw;
        }
        _cached.AddRange(rest);
        return common;
    }
}
