using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// The speculative-decoding flags (<c>-md/--model-draft</c>, <c>--draft-max</c>, <c>--draft-p-min</c>,
/// <c>--lookup-ngram</c>) checked once, and attached to a <see cref="TextGenerator"/>.
/// </summary>
internal sealed record Speculation(string? DraftPath, int LookupNgram, int DraftMax, float DraftPMin)
{
    /// <summary>The draft model's KV cache (<c>-ctkd</c>/<c>-ctvd</c>).</summary>
    public KvCacheTypePair DraftCache { get; init; }

    /// <summary>The flags as given; null when neither a draft model nor a lookup is asked for.</summary>
    public static Speculation? Read(string? draftPath, int? lookupNgram, int draftMax, float draftPMin)
    {
        if (draftPath is not null && lookupNgram is not null) throw new UsageException("give either --model-draft or --lookup-ngram, not both");
        if (lookupNgram is < 1 or > 8) throw new UsageException($"--lookup-ngram must be in 1..8, got {lookupNgram}");
        if (draftMax < 1 || draftMax > 256) throw new UsageException($"--draft-max must be in 1..256, got {draftMax}");
        if (!(draftPMin >= 0f && draftPMin <= 1f)) throw new UsageException($"--draft-p-min must be in [0, 1], got {draftPMin}");
        return draftPath is null && lookupNgram is null ? null : new Speculation(draftPath, lookupNgram ?? 0, draftMax, draftPMin);
    }

    /// <summary>Loads the draft model (if any) and makes <paramref name="generator"/> decode speculatively; the result owns the draft's model and context.</summary>
    public IDisposable? Attach(TextGenerator generator, string? backend, bool generic, int ctxLen, int threads)
    {
        if (DraftPath is null)
        {
            generator.UseLookup(LookupNgram, DraftMax);
            return null;
        }
        Model draft;
        try
        {
            draft = Model.Load(DraftPath, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
        }
        catch (Exception e) when (e is ModelLoadException or GgufFormatException or IOException)
        {
            throw new InputException($"--model-draft {DraftPath}: {e.Message}");
        }
        IEvalContext? context = null;
        try
        {
            context = BackendOption.CreateContext(backend, draft, ctxLen, threads, DraftCache);
            generator.UseDraft(context, Tokenizer.FromGguf(draft.File), DraftMax, DraftPMin);
            return new Owner(context, draft);
        }
        catch (ArgumentException e)
        {
            context?.Dispose();
            draft.Dispose();
            throw new InputException($"--model-draft {DraftPath}: {e.Message}");
        }
        catch
        {
            context?.Dispose();
            draft.Dispose();
            throw;
        }
    }

    private sealed class Owner(IEvalContext context, Model model) : IDisposable
    {
        public void Dispose()
        {
            context.Dispose();
            model.Dispose();
        }
    }
}
