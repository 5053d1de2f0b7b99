using System.Runtime.InteropServices;
using EdgeLlm.Models;

namespace EdgeLlm.Engine;

/// <summary>
/// The working buffers of one forward pass over a batch of tokens, carved from a native arena
/// owned by the <see cref="InferenceContext"/> (grown when a larger batch arrives, never per call).
/// Names follow llama.cpp's graph (inp_embd, attn_norm, Qcur, kqv_out, ffn_out, l_out).
/// </summary>
internal sealed unsafe class ForwardBatch
{
    public required int[] Tokens { get; init; }
    public required int StartPos { get; init; }
    public required int Threads { get; init; }
    public required Kernels.WorkerPool Pool { get; init; }
    public required KvCache Kv { get; init; }

    /// <summary>LFM2's convolution layers' inputs, or null for a model without them.</summary>
    public ShortConvCache? Conv { get; init; }

    /// <summary>The rotary frequency factors of this context (<see cref="Model.RopeFactorsFor"/>), or null.</summary>
    public float[]? RopeFactors { get; init; }
    public int Count => Tokens.Length;

    public float* X;        // [n, embd]  residual stream (inp_embd, then l_out of each layer)
    public float* Norm;     // [n, embd]  rms-normalized input of the current sub-block (attn_norm / ffn_norm)
    public float* Q;        // [n, heads * head_dim]     Qcur
    public float* K;        // [n, kv_heads * head_dim]  Kcur
    public float* V;        // [n, kv_heads * head_dim]  Vcur
    public float* AttnOut;  // [n, heads * head_dim]     kqv_out
    public float* Proj;     // [n, embd]  attn_output / ffn_down result before the residual add
    public float* Gate;     // [n, ff]    ffn_gate, then silu(gate) * up
    public float* Up;       // [n, ff]    ffn_up
    public float* RopeCos;  // [n, rope_dims / 2]
    public float* RopeSin;  // [n, rope_dims / 2]
    public float* RopeCosSwa;  // [n, rope_dims / 2] the sliding-window layers' own rope (Gemma 3), else null
    public float* RopeSinSwa;  // [n, rope_dims / 2]
    public byte* MatScratch;   // activation rows converted to a weight's vec-dot type
    public byte* AttnScratch;  // threads × Attention.WorkerScratchBytes
    public float* ConvBcx;     // [n, 3 × embd] LFM2's in_proj output (B, C, x), else null
    public float* ConvIn;      // [taps − 1 + n, embd] the stored and new gated inputs B ⊙ x, else null
    public float* MoeProbs;    // [n, experts] the router's logits, then probabilities (mixture-of-experts models, else null)
    public int* MoeExpert;     // [n, used] the experts each token is routed to, best first
    public float* MoeWeight;   // [n, used] their weights
    public int* MoeSlot;       // [n, used] the row of each (token, rank) in the expert-grouped buffers below
    public byte* MoeActs;      // [n × used] converted activation rows, grouped by expert
    public float* MoeGate;     // [n × used, expert ff] gate products, then silu(gate) ⊙ up
    public float* MoeUp;       // [n × used, expert ff] up products
    public float* MoeDown;     // [n × used, embd] down products

    /// <summary>Carves the buffers for <paramref name="n"/> tokens out of <paramref name="arena"/>.</summary>
    public void Carve(ScratchArena arena, Model model, int contextLength)
    {
        var c = model.Config;
        int n = Count;
        long need = 0;
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1) arena.Reset(need);
            var a = pass == 0 ? ScratchArena.Measuring : arena;
            X = a.Take<float>((long)n * c.EmbeddingLength);
            Norm = a.Take<float>((long)n * c.EmbeddingLength);
            Q = a.Take<float>((long)n * c.QueryLength);
            K = a.Take<float>((long)n * c.KvLength);
            V = a.Take<float>((long)n * c.KvLength);
            AttnOut = a.Take<float>((long)n * c.QueryLength);
            Proj = a.Take<float>((long)n * c.EmbeddingLength);
            // (a mixture-of-experts block uses these for its shared expert only; LFM2-MoE's leading dense blocks for their SwiGLU)
            int denseFf = !c.IsMixtureOfExperts ? c.FeedForwardLength
                : c.LeadingDenseBlocks > 0 ? Math.Max(c.FeedForwardLength, c.ExpertSharedFeedForwardLength) : c.ExpertSharedFeedForwardLength;
            Gate = a.Take<float>((long)n * denseFf);
            Up = a.Take<float>((long)n * denseFf);
            RopeCos = a.Take<float>((long)n * (c.RopeDimensionCount / 2));
            RopeSin = a.Take<float>((long)n * (c.RopeDimensionCount / 2));
            RopeCosSwa = c.SlidingWindow > 0 ? a.Take<float>((long)n * (c.RopeDimensionCount / 2)) : null;
            RopeSinSwa = c.SlidingWindow > 0 ? a.Take<float>((long)n * (c.RopeDimensionCount / 2)) : null;
            MatScratch = a.Take<byte>(n * model.MaxActivationRowBytes);
            AttnScratch = a.Take<byte>(Threads * Kernels.Attention.WorkerScratchBytes(contextLength, c.HeadDim));
            ConvBcx = c.ShortConvTaps > 0 ? a.Take<float>((long)n * 3 * c.EmbeddingLength) : null;
            ConvIn = c.ShortConvTaps > 0 ? a.Take<float>((long)(c.ShortConvTaps - 1 + n) * c.EmbeddingLength) : null;
            long routed = c.IsMixtureOfExperts ? (long)n * c.ExpertUsedCount : 0;
            MoeProbs = c.IsMixtureOfExperts ? a.Take<float>((long)n * c.ExpertCount) : null;
            MoeExpert = c.IsMixtureOfExperts ? a.Take<int>(routed) : null;
            MoeWeight = c.IsMixtureOfExperts ? a.Take<float>(routed) : null;
            MoeSlot = c.IsMixtureOfExperts ? a.Take<int>(routed) : null;
            MoeActs = c.IsMixtureOfExperts ? a.Take<byte>(routed * model.MaxActivationRowBytes) : null;
            MoeGate = c.IsMixtureOfExperts ? a.Take<float>(routed * c.ExpertFeedForwardLength) : null;
            MoeUp = c.IsMixtureOfExperts ? a.Take<float>(routed * c.ExpertFeedForwardLength) : null;
            MoeDown = c.IsMixtureOfExperts ? a.Take<float>(routed * c.EmbeddingLength) : null;
            need = a.Used;
            if (pass == 0) ScratchArena.Measuring.Reset(0);
        }
    }
}

/// <summary>
/// A grow-only native buffer handed out in 64-byte aligned pieces. <see cref="Measuring"/> hands
/// out nothing and only adds up sizes.
/// </summary>
internal sealed unsafe class ScratchArena : IDisposable
{
    private byte* _base;
    private long _capacity;

    [ThreadStatic] private static ScratchArena? t_measuring;

    /// <summary>An arena without memory that only counts (per thread).</summary>
    public static ScratchArena Measuring => t_measuring ??= new ScratchArena { IsMeasuring = true };

    private bool IsMeasuring { get; init; }

    /// <summary>Bytes handed out since the last <see cref="Reset"/>.</summary>
    public long Used { get; private set; }

    /// <summary>Makes at least <paramref name="capacity"/> bytes available and starts handing out from the beginning.</summary>
    public void Reset(long capacity)
    {
        Used = 0;
        if (IsMeasuring || capacity <= _capacity) return;
        NativeMemory.AlignedFree(_base);
        _base = null;
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)capacity, 64);
        _capacity = capacity;
    }

    public T* Take<T>(long count) where T : unmanaged
    {
        long bytes = (count * sizeof(T) + 63) & ~63L;
        byte* p = IsMeasuring ? null : _base + Used;
        Used += bytes;
        if (!IsMeasuring && Used > _capacity)
            throw new InvalidOperationException($"scratch arena overflow: {Used} bytes needed, {_capacity} reserved");
        return (T*)p;
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_base);
        _base = null;
        _capacity = 0;
    }
}
