using System.Runtime.InteropServices;
using EdgeLlm.Engine;
using EdgeLlm.Sampling;
using EdgeLlm.Vulkan;

namespace EdgeLlm.Native;

/// <summary>
/// What an <c>edgellm_context_t</c> handle stands for: an inference context on either backend (the CPU
/// <see cref="InferenceContext"/> or a <see cref="VulkanInferenceContext"/>, both behind <see cref="IEvalContext"/>,
/// so every entry point works on both), its sampler, and the logits of the last evaluated token in native
/// memory (so <c>edgellm_context_logits</c> can hand out a stable pointer).
/// A busy flag turns concurrent or re-entrant use into EDGELLM_ERROR_BUSY instead of corrupting the KV cache.
/// </summary>
internal sealed unsafe class NativeContext : IDisposable
{
    private int _busy;

    private VulkanDevice? _ownedDevice;

    /// <param name="model">the model (this context holds one reference, released by <see cref="Dispose"/>).</param>
    /// <param name="context">the inference context; this object owns it.</param>
    /// <param name="backend">where <paramref name="context"/> runs: <see cref="NativeBackend.Cpu"/> or <see cref="NativeBackend.Vulkan"/>.</param>
    /// <param name="ownedDevice">the Vulkan device <paramref name="context"/> runs on, disposed after it (null for the CPU).</param>
    /// <param name="sampler">the sampler.</param>
    public NativeContext(NativeModel model, IEvalContext context, NativeBackend backend, VulkanDevice? ownedDevice, Sampler sampler)
    {
        Model = model;
        Context = context;
        Backend = backend;
        _ownedDevice = ownedDevice;
        Sampler = sampler;
        VocabSize = model.Model.Config.VocabSize;
        Logits = (float*)NativeMemory.Alloc((nuint)VocabSize, sizeof(float));
    }

    public NativeModel Model { get; }

    public IEvalContext Context { get; }

    /// <summary>The backend the context really runs on (never <see cref="NativeBackend.Auto"/>).</summary>
    public NativeBackend Backend { get; }

    public Sampler Sampler { get; }

    public int VocabSize { get; }

    /// <summary>[VocabSize] logits of the last evaluated token, meaningful when <see cref="HasLogits"/>.</summary>
    public float* Logits { get; private set; }

    public bool HasLogits { get; set; }

    /// <summary>The tokens the KV cache holds, in order (what a draft model is kept in step with).</summary>
    public List<int> Tokens { get; } = [];

    /// <summary>The draft of speculative decoding (<c>edgellm_context_set_draft</c>), or null.</summary>
    public IDraftSource? Drafter { get; private set; }

    /// <summary>The context <see cref="Drafter"/> runs on (this context holds it attached: it cannot be freed meanwhile).</summary>
    public NativeContext? DraftContext { get; private set; }

    /// <summary>How many contexts use this one as their draft.</summary>
    public int AttachedAsDraft { get; set; }

    /// <summary>Proposed and accepted draft tokens over the last generate call.</summary>
    public int Drafted { get; set; }

    /// <summary>See <see cref="Drafted"/>.</summary>
    public int AcceptedDrafts { get; set; }

    /// <summary>Attaches <paramref name="draft"/> (null detaches); the previous draft is reset for use on its own.</summary>
    public void SetDraft(NativeContext? draft, int maxDraft, float minProbability)
    {
        if (DraftContext is { } old)
        {
            old.Reset();
            old.AttachedAsDraft--;
        }
        DraftContext = null;
        Drafter = null;
        if (draft is null || maxDraft == 0) return;
        draft.Reset();
        draft.AttachedAsDraft++;
        DraftContext = draft;
        Drafter = new Drafter(draft.Context, maxDraft, minProbability);
    }

    /// <summary>Evaluates <paramref name="tokens"/>, records them for the repetition penalty and keeps the last logits.</summary>
    public void Eval(ReadOnlySpan<int> tokens)
    {
        CheckRoom(tokens.Length);
        float[] logits = Context.Eval(tokens);
        foreach (int t in tokens) Sampler.Accept(t);
        Tokens.AddRange(tokens);
        logits.AsSpan().CopyTo(new Span<float>(Logits, VocabSize));
        HasLogits = true;
    }

    /// <summary>
    /// Evaluates <paramref name="next"/> and the proposals after it in one batch and returns every row's logits;
    /// only <paramref name="next"/> enters the repetition history (each proposal does when confirmed, <see cref="Confirm"/>).
    /// </summary>
    public float[] EvalWithProposals(int next, int[] proposals)
    {
        CheckRoom(1 + proposals.Length);
        float[] rows = Context.Eval([next, .. proposals], allLogits: true);
        Sampler.Accept(next);
        Tokens.Add(next);
        Tokens.AddRange(proposals);
        rows.AsSpan(0, VocabSize).CopyTo(new Span<float>(Logits, VocabSize));
        HasLogits = true;
        return rows;
    }

    /// <summary>A proposal confirmed: it enters the repetition history, and the logits after it (row <paramref name="row"/> of <paramref name="rows"/>) become current.</summary>
    public void Confirm(int token, float[] rows, int row)
    {
        Sampler.Accept(token);
        rows.AsSpan(row * VocabSize, VocabSize).CopyTo(new Span<float>(Logits, VocabSize));
    }

    /// <summary>Drops the last <paramref name="count"/> tokens from the KV cache (unconfirmed proposals).</summary>
    public void Drop(int count)
    {
        if (count <= 0) return;
        Context.Rewind(Context.Position - count);
        Tokens.RemoveRange(Tokens.Count - count, count);
    }

    private void CheckRoom(int count)
    {
        int free = Context.ContextLength - Context.Position;
        if (count > free)
            throw new EdgeLlmException(EdgeLlmError.ContextFull,
                $"{count} tokens do not fit: the context holds {Context.ContextLength} and {free} positions are left");
    }

    /// <summary>The token <paramref name="constraint"/> lets through for the sampled <paramref name="sampled"/> (see <see cref="TokenConstraint.Choose"/>).</summary>
    public int Constrain(TokenConstraint constraint, int sampled) => constraint.Choose(Sampler, new ReadOnlySpan<float>(Logits, VocabSize), sampled);

    /// <summary>Samples the next token from the current logits.</summary>
    public int Sample()
    {
        if (!HasLogits) throw new EdgeLlmException(EdgeLlmError.NoLogits, "no logits yet: evaluate tokens first");
        return Sampler.Sample(new ReadOnlySpan<float>(Logits, VocabSize));
    }

    /// <summary>Back to position 0 with an empty sampler history.</summary>
    public void Reset()
    {
        Context.Reset();
        Sampler.Reset();
        Tokens.Clear();
        Drafter?.Reset();
        HasLogits = false;
    }

    /// <summary>
    /// Looks up <paramref name="handle"/> and marks the context busy for one call; fails with BUSY when another
    /// call holds it. Pair with <see cref="Leave"/>.
    /// </summary>
    public static NativeContext Enter(nint handle)
    {
        lock (HandleTable.Sync)
        {
            var c = HandleTable.GetLocked<NativeContext>(handle, "context");
            if (Interlocked.CompareExchange(ref c._busy, 1, 0) != 0)
                throw new EdgeLlmException(EdgeLlmError.Busy, "the context is in use by another call (one context must not be used from two threads at once, nor from its own generate callback)");
            return c;
        }
    }

    /// <summary>Marks this (attached draft) context busy for the generate call of the context it drafts for; pair with <see cref="Leave"/>.</summary>
    public void EnterAsDraft()
    {
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            throw new EdgeLlmException(EdgeLlmError.Busy, "the draft context is in use by another call");
    }

    /// <summary>Ends the call begun by <see cref="Enter"/>.</summary>
    public void Leave() => Volatile.Write(ref _busy, 0);

    /// <summary>Removes <paramref name="handle"/> from the table (unless busy) and frees the context.</summary>
    public static void Free(nint handle)
    {
        NativeContext c;
        lock (HandleTable.Sync)
        {
            c = HandleTable.GetLocked<NativeContext>(handle, "context");
            if (c.AttachedAsDraft > 0)
                throw new EdgeLlmException(EdgeLlmError.Busy, "the context is the draft of another context: detach it (edgellm_context_set_draft with draft NULL) or free that context first");
            if (Interlocked.CompareExchange(ref c._busy, 1, 0) != 0)
                throw new EdgeLlmException(EdgeLlmError.Busy, "the context is in use by another call and cannot be freed now");
            HandleTable.RemoveLocked(handle);
            if (c.DraftContext is { } d) d.AttachedAsDraft--; // freeing the main context detaches its draft (left as it is)
        }
        c.Dispose();
    }

    public void Dispose()
    {
        Context.Dispose();
        _ownedDevice?.Dispose(); // after the context: its buffers live on the device
        _ownedDevice = null;
        if (Logits != null)
        {
            NativeMemory.Free(Logits);
            Logits = null;
        }
        Model.Release();
    }
}
