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

    /// <summary>Evaluates <paramref name="tokens"/>, records them for the repetition penalty and keeps the last logits.</summary>
    public void Eval(ReadOnlySpan<int> tokens)
    {
        int free = Context.ContextLength - Context.Position;
        if (tokens.Length > free)
            throw new EdgeLlmException(EdgeLlmError.ContextFull,
                $"{tokens.Length} tokens do not fit: the context holds {Context.ContextLength} and {free} positions are left");
        float[] logits = Context.Eval(tokens);
        foreach (int t in tokens) Sampler.Accept(t);
        logits.AsSpan().CopyTo(new Span<float>(Logits, VocabSize));
        HasLogits = true;
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

    /// <summary>Ends the call begun by <see cref="Enter"/>.</summary>
    public void Leave() => Volatile.Write(ref _busy, 0);

    /// <summary>Removes <paramref name="handle"/> from the table (unless busy) and frees the context.</summary>
    public static void Free(nint handle)
    {
        NativeContext c;
        lock (HandleTable.Sync)
        {
            c = HandleTable.GetLocked<NativeContext>(handle, "context");
            if (Interlocked.CompareExchange(ref c._busy, 1, 0) != 0)
                throw new EdgeLlmException(EdgeLlmError.Busy, "the context is in use by another call and cannot be freed now");
            HandleTable.RemoveLocked(handle);
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
