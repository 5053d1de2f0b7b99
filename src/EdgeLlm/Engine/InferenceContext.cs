using EdgeLlm.Models;

namespace EdgeLlm.Engine;

/// <summary>
/// One sequence being evaluated with a <see cref="Models.Model"/>: its KV cache (f16, or q8_0/q4_0; sized by
/// <see cref="ContextLength"/>), its position, and the scratch buffers of the forward pass.
/// Not thread-safe; the model can be shared by several contexts.
/// </summary>
/// <remarks>
/// Sliding-window layers (Gemma 2 and 3) keep only the keys their window still reaches, as llama.cpp's default
/// (non-full) SWA cache: a ring of the window plus one batch (<see cref="KvCache.RingPositions"/>). A
/// <see cref="Rewind"/> by up to about a batch keeps working as with a full cache (speculative decoding's
/// rejected drafts, a chat's re-rendered last turn); a deeper one leaves the window's keys overwritten, and the
/// next <see cref="Eval"/> then evaluates the tokens before the rewound position again (<see cref="Reevaluations"/>),
/// as llama.cpp's server re-processes a prompt it cannot reuse from an SWA cache. Pass
/// <c>fullSlidingWindowCache</c> (llama.cpp's <c>--swa-full</c>) to keep every position in every layer instead.
/// </remarks>
public sealed unsafe class InferenceContext : IEvalContext
{
    /// <summary>Most tokens one forward pass processes together; longer inputs run in batches of this size.</summary>
    public const int MaxBatch = 512;

    private readonly KvCache _kv;
    private readonly ShortConvCache? _conv; // LFM2's convolution layers' inputs
    private readonly int[] _tokens; // every evaluated token, to evaluate again after a rewind past a ring (KvCache.Intact)
    private readonly ScratchArena _arena = new();
    private readonly Kernels.WorkerPool _pool;
    private bool _disposed;

    /// <summary>Creates a context for <paramref name="model"/>.</summary>
    /// <param name="model">the model; must outlive the context.</param>
    /// <param name="contextLength">tokens the KV cache holds (positions 0 .. contextLength-1).</param>
    /// <param name="threads">threads of the forward pass (the caller plus threads − 1 dedicated workers, started here and stopped by <see cref="Dispose"/>); 0 = <see cref="Runtime.CpuFeatures.PhysicalCores"/>.</param>
    /// <param name="cacheTypeK">how the cache stores keys (llama.cpp's <c>--cache-type-k</c>): f16 (default), q8_0 or q4_0; see <see cref="KvCacheType"/>.</param>
    /// <param name="cacheTypeV">how the cache stores values (llama.cpp's <c>--cache-type-v</c>).</param>
    /// <param name="fullSlidingWindowCache">sliding-window layers keep every position as the other layers do (llama.cpp's
    /// <c>--swa-full</c>): more memory, no re-evaluation after deep rewinds. Off by default, as in llama.cpp.</param>
    /// <exception cref="ArgumentOutOfRangeException">contextLength or threads is out of range.</exception>
    /// <exception cref="ArgumentException">a quantized cache type and a head size that is not a multiple of 32.</exception>
    /// <exception cref="InsufficientMemoryException">the KV cache does not fit in available memory.</exception>
    public InferenceContext(Model model, int contextLength = 4096, int threads = 0, KvCacheType cacheTypeK = KvCacheType.F16, KvCacheType cacheTypeV = KvCacheType.F16,
        bool fullSlidingWindowCache = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        Model = model;
        ContextLength = contextLength;
        Threads = threads == 0 ? Runtime.CpuFeatures.PhysicalCores : threads;
        if (!Enum.IsDefined(cacheTypeK)) throw new ArgumentOutOfRangeException(nameof(cacheTypeK), cacheTypeK, "not a KV cache type");
        if (!Enum.IsDefined(cacheTypeV)) throw new ArgumentOutOfRangeException(nameof(cacheTypeV), cacheTypeV, "not a KV cache type");
        KvCache.CheckHeadDim(cacheTypeK, model.Config.HeadDim, "K");
        KvCache.CheckHeadDim(cacheTypeV, model.Config.HeadDim, "V");
        long kvBytes = model.EstimateKvCacheBytes(contextLength, cacheTypeK, cacheTypeV, fullSlidingWindowCache);
        long available = Model.AvailableMemoryBytes();
        if (kvBytes > available)
            throw new InsufficientMemoryException(
                $"the KV cache for {contextLength} tokens needs {kvBytes >> 20} MiB, but only {available >> 20} MiB of memory is available; use a shorter context");
        var c = model.Config;
        _kv = new KvCache(c.BlockCount, contextLength, c.HeadCountKv, c.HeadDim, cacheTypeK, cacheTypeV,
            window: fullSlidingWindowCache ? 0 : c.SlidingWindow, windowed: c.IsSlidingWindowLayer, maxBatch: MaxBatch, uncached: c.IsShortConvLayer);
        _conv = c.ShortConvTaps > 0 ? new ShortConvCache(c) : null;
        _tokens = _kv.HasRing || _conv is not null ? new int[contextLength] : [];
        _pool = new Kernels.WorkerPool(Threads);
    }

    /// <summary>The model this context evaluates.</summary>
    public Model Model { get; }

    /// <summary>How the KV cache stores keys.</summary>
    public KvCacheType CacheTypeK => _kv.KeyType;

    /// <summary>How the KV cache stores values.</summary>
    public KvCacheType CacheTypeV => _kv.ValueType;

    /// <summary>Bytes the KV cache holds (keys and values of every layer; with LFM2's convolution layers' state, <see cref="ShortConvCache"/>).</summary>
    public long KvCacheBytes => _kv.TotalBytes + (_conv?.TotalBytes ?? 0);

    /// <summary>Positions a sliding-window layer of <paramref name="window"/> keeps (its ring: the window and a batch, in whole blocks of 64), at any context longer than that.</summary>
    public static int SlidingWindowCacheLength(int window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(window, 1);
        return KvCache.RingPositions(window, MaxBatch);
    }

    /// <summary>Positions each sliding-window layer's cache keeps (its ring), 0 when every layer keeps the whole context.</summary>
    public int SlidingWindowCachePositions
    {
        get
        {
            for (int l = 0; l < _kv.Layers; l++)
                if (_kv.RingBlocks(l) > 0) return _kv.LayerPositions(l);
            return 0;
        }
    }

    /// <summary>
    /// Tokens evaluated again because a <see cref="Rewind"/> went back past what the sliding-window layers' rings
    /// still held (see the class remarks); 0 without such layers or with <c>fullSlidingWindowCache</c>.
    /// </summary>
    public long Reevaluations { get; private set; }

    /// <summary>Tokens the KV cache can hold.</summary>
    public int ContextLength { get; }

    /// <summary>Threads of the forward pass (matrix products, attention), the calling thread included.</summary>
    public int Threads { get; }

    /// <summary>Number of tokens evaluated so far: the position the next token takes.</summary>
    public int Position { get; private set; }

    /// <inheritdoc/>
    public string Description => CacheTypeK == KvCacheType.F16 && CacheTypeV == KvCacheType.F16
        ? $"cpu ({Threads} threads)"
        : $"cpu ({Threads} threads, KV cache K {CacheTypeK.Name()} V {CacheTypeV.Name()})";

    /// <summary>True when <paramref name="contextLength"/> exceeds the context the model was trained with (quality degrades past it).</summary>
    public static bool ExceedsTrainingContext(Model model, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(model);
        int train = model.Config.TrainingContextLength;
        return train > 0 && contextLength > train;
    }

    /// <inheritdoc/>
    public bool CanResumeAt(int position) =>
        position <= 0 || !HasRings || (position <= Position && IntactBefore(position));

    private bool HasRings => _kv.HasRing || _conv is not null;

    /// <summary>True when the rings still hold what a token at <paramref name="position"/> reads: its window's keys, its convolution's inputs.</summary>
    private bool IntactBefore(int position) =>
        (!_kv.HasRing || _kv.Intact(position + 1 - _kv.Window, position))
        && (_conv is null || _conv.Intact(position + 1 - _conv.Taps, position));

    /// <summary>Forgets every evaluated token (position 0).</summary>
    public void Reset() => Position = 0;

    /// <summary>
    /// Truncates the KV cache to its first <paramref name="position"/> tokens, so that the next
    /// token is evaluated at that position (e.g. to drop a rejected continuation).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">position is negative or beyond <see cref="Position"/>.</exception>
    public void Rewind(int position)
    {
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"can only rewind to a position in 0..{Position}");
        Position = position;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at positions <see cref="Position"/>, Position+1, … and
    /// advances the position. All tokens of the call go through each weight matrix together.
    /// </summary>
    /// <returns>the logits of the last token ([vocab]), or of every token ([tokens × vocab], row-major) when <paramref name="allLogits"/>.</returns>
    /// <exception cref="ArgumentException">no tokens, a token id outside the vocabulary, or more tokens than the context has room for.</exception>
    public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        Prepare(tokens);
        int vocab = Model.Config.VocabSize;
        var logits = new float[(allLogits ? tokens.Length : 1) * (long)vocab];
        fixed (float* outp = logits)
        {
            for (int done = 0; done < tokens.Length; done += MaxBatch)
            {
                int n = Math.Min(MaxBatch, tokens.Length - done);
                bool last = done + n == tokens.Length;
                int outputRows = allLogits ? n : last ? 1 : 0;
                Forward(tokens.Slice(done, n), outputRows, allLogits ? outp + (long)done * vocab : outp);
            }
        }
        return logits;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at <see cref="Position"/> (which it advances) and returns every token's final
    /// hidden state after the output norm ([tokens × embd], row-major): what llama.cpp's embeddings pool
    /// (<c>t_embd</c>). No logits are computed. The generic forward pass runs (compile-time specializations produce
    /// logits only).
    /// </summary>
    /// <exception cref="ArgumentException">no tokens, a token id outside the vocabulary, or more tokens than the context has room for.</exception>
    public float[] EvalHidden(ReadOnlySpan<int> tokens)
    {
        Prepare(tokens);
        int embd = Model.Config.EmbeddingLength;
        var hidden = new float[(long)tokens.Length * embd];
        fixed (float* outp = hidden)
        {
            for (int done = 0; done < tokens.Length; done += MaxBatch)
            {
                int n = Math.Min(MaxBatch, tokens.Length - done);
                Forward(tokens.Slice(done, n), n, null, outp + (long)done * embd);
            }
        }
        return hidden;
    }

    /// <summary>
    /// Checks <paramref name="tokens"/> against the vocabulary and the room left, and readies the rings: after a rewind
    /// past them the window (or the convolution's inputs) of the next token is gone, so what came before is evaluated
    /// again; the tokens are remembered for the next such replay.
    /// </summary>
    private void Prepare(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        int vocab = Model.Config.VocabSize;
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)vocab)
                throw new ArgumentException($"token id {tokens[i]} at index {i} is outside the vocabulary (0..{vocab - 1})", nameof(tokens));
        }
        if (tokens.Length > ContextLength - Position)
            throw new ArgumentException(
                $"{tokens.Length} tokens at position {Position} would overflow the context of {ContextLength} tokens ({ContextLength - Position} free)", nameof(tokens));
        if (!HasRings) return;
        if (!IntactBefore(Position))
        {
            int redo = Position;
            Position = 0;
            Reevaluations += redo;
            for (int done = 0; done < redo; done += MaxBatch)
                Forward(_tokens.AsSpan(done, Math.Min(MaxBatch, redo - done)), 0, null);
        }
        tokens.CopyTo(_tokens.AsSpan(Position));
    }

    /// <summary>One forward pass of up to <see cref="MaxBatch"/> tokens at <see cref="Position"/>, which it advances.</summary>
    private void Forward(ReadOnlySpan<int> tokens, int outputRows, float* logits, float* hidden = null)
    {
        var batch = new ForwardBatch { Tokens = tokens.ToArray(), StartPos = Position, Threads = Threads, Pool = _pool, Kv = _kv, Conv = _conv,
            RopeFactors = Model.RopeFactorsFor(ContextLength) };
        batch.Carve(_arena, Model, ContextLength);
        Model.Forward(batch, outputRows, logits, hidden);
        Position += tokens.Length;
    }

    /// <summary>Stops the worker threads and frees the KV cache and scratch buffers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool.Dispose();
        _kv.Dispose();
        _conv?.Dispose();
        _arena.Dispose();
    }
}
