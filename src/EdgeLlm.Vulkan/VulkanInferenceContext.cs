using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using Silk.NET.Vulkan;

namespace EdgeLlm.Vulkan;

/// <summary>
/// One sequence evaluated with a <see cref="Model"/> on a Vulkan device: the same contract as
/// <see cref="Engine.InferenceContext"/> (Eval / Reset / Rewind, logits of the last or every
/// token), with the whole forward pass on the device. The weights are uploaded once, in their
/// own types, from the memory-mapped GGUF (through a staging buffer, in chunks); the f16 KV
/// cache and every activation stay on the device. The command buffer of each batch shape
/// (tokens, output rows) is recorded once and reused: the position lives in a small
/// host-visible buffer the shaders read, so generating a token is one submit of the same
/// command buffer. Not thread-safe.
/// </summary>
public sealed unsafe class VulkanInferenceContext : Engine.IEvalContext, Engine.IProfiledContext
{
    /// <summary>Default most tokens one submit processes; longer inputs run in batches of this size.</summary>
    public const int DefaultMaxBatch = 128;

    private const int MaxCachedShapes = 16;

    private readonly VulkanDevice _device;
    private readonly bool _ownsDevice;
    private readonly ModelConfig _c;
    private readonly List<VulkanBuffer> _buffers = [];
    private readonly Dictionary<string, DescriptorSet> _sets = [];
    private readonly Dictionary<VulkanBuffer, int> _ids = [];
    private readonly Dictionary<(int, int), CommandBuffer> _graphs = [];
    // Profiling (VulkanContextOptions.Profile): per graph, a timestamp pool and the label of each
    // segment between two timestamps (the dispatches between two barriers); totals per label.
    private readonly Dictionary<CommandBuffer, (QueryPool Pool, string[] Labels)> _stamps = [];
    private readonly Dictionary<string, (double Ms, long Calls)> _profile = [];
    private readonly List<string> _recording = [];
    private readonly List<string> _segmentOps = [];
    private QueryPool _recordingPool;
    private double _profileWallMs;
    private long _profileSubmits;
    private readonly VulkanContextOptions _options;
    private readonly Dictionary<string, VulkanOp> _ops = [];
    private readonly Weight _tokEmbd, _output;
    private readonly VulkanBuffer _outputNorm, _ropeFactors;
    private readonly VulkanBuffer? _embeddingScale, _residualScale;
    private readonly bool _hasRopeFactors;
    private readonly Layer[] _layers;
    private readonly VulkanBuffer _x, _norm, _q, _k, _v, _att, _proj, _gate, _up, _tokens, _params, _logits;
    private readonly VulkanBuffer? _bcx;
    private bool _disposed;

    /// <param name="Kind">Tensor kind in pipeline roles: attn_q ... ffn_down, output.</param>
    private sealed record Weight(VulkanBuffer Buffer, GgmlType Type, int Rows, int Cols, string Kind);

    /// <param name="Conv">LFM2's convolution layers: their in/out projections, taps and ring of inputs (the attention fields are then null).</param>
    // Layer, ConvLayer (and Lfm2.Layer, VulkanOp, SelfTest.Check, ModelSynthesizer.TensorSpec) are classes, not records: a
    // record's generated Equals/GetHashCode/PrintMembers, which nothing here uses, cost the NativeAOT binary kilobytes, and the
    // linux-arm64 edgellm sits just under its 15 MB budget (tests/deployment/run.sh).
    private sealed class Layer(VulkanBuffer? attnNorm, Weight? wq, Weight? wk, Weight? wv, Weight? wo, VulkanBuffer? bq, VulkanBuffer? bk,
        VulkanBuffer? bv, VulkanBuffer? ffnNorm, Weight gate, Weight up, Weight down, VulkanBuffer? kCache, VulkanBuffer? vCache,
        VulkanBuffer? qNorm, VulkanBuffer? kNorm, VulkanBuffer? attnPostNorm, VulkanBuffer? ffnPostNorm, bool slidingWindow, bool rope,
        ConvLayer? conv = null)
    {
        /// <summary>attn_norm; null for a block without pre-norms (EXAONE 4), whose projections read x itself.</summary>
        public VulkanBuffer? AttnNorm => attnNorm;
        public Weight? Wq => wq;
        public Weight? Wk => wk;
        public Weight? Wv => wv;
        public Weight? Wo => wo;
        public VulkanBuffer? Bq => bq;
        public VulkanBuffer? Bk => bk;
        public VulkanBuffer? Bv => bv;
        /// <summary>ffn_norm; null as <see cref="AttnNorm"/>.</summary>
        public VulkanBuffer? FfnNorm => ffnNorm;
        public Weight Gate => gate;
        public Weight Up => up;
        public Weight Down => down;
        public VulkanBuffer? KCache => kCache;
        public VulkanBuffer? VCache => vCache;
        public VulkanBuffer? QNorm => qNorm;
        public VulkanBuffer? KNorm => kNorm;
        public VulkanBuffer? AttnPostNorm => attnPostNorm;
        public VulkanBuffer? FfnPostNorm => ffnPostNorm;
        public bool SlidingWindow => slidingWindow;
        public bool Rope => rope;
        public ConvLayer? Conv => conv;
    }

    private sealed class ConvLayer(Weight inProj, VulkanBuffer taps, Weight outProj, VulkanBuffer ring)
    {
        public Weight InProj => inProj;
        public VulkanBuffer Taps => taps;
        public Weight OutProj => outProj;
        public VulkanBuffer Ring => ring;
    }

    /// <summary>
    /// Uploads <paramref name="model"/>'s weights to <paramref name="device"/> (or to the best
    /// device <see cref="VulkanDevice.Open(int?)"/> finds when null; the context then owns it) and
    /// allocates a KV cache of <paramref name="contextLength"/> tokens there. Every pipeline is built
    /// here: from the generated table of a matching specialized config (see
    /// <see cref="PipelineTable"/>), else from the model's own shapes and types.
    /// </summary>
    /// <exception cref="VulkanUnavailableException">no usable device, a weight type without shaders, or too little device memory.</exception>
    public VulkanInferenceContext(Model model, int contextLength = 4096, VulkanDevice? device = null, int maxBatch = DefaultMaxBatch,
        VulkanContextOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        Model = model;
        ContextLength = contextLength;
        MaxBatch = maxBatch;
        _options = options ?? new VulkanContextOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MatMulMinTokens, 1, nameof(options));
        _c = model.Config;
        if (_c.IsMixtureOfExperts)
            throw new VulkanUnavailableException($"the Vulkan backend does not run mixture-of-experts models ({_c.Architecture} with {_c.ExpertCount} experts) yet; the CPU backend does");
        // (The queries' attention temperature rides on the rope: a layer without rope would skip it.)
        if (_c.AttnTemperatureScale != 0f && Enumerable.Range(0, _c.BlockCount).Any(l => !_c.UsesRope(l)))
            throw new VulkanUnavailableException($"the Vulkan backend scales the queries' attention temperature ({_c.Architecture}.attention.temperature_scale) in the rope, and this model has layers without rope; the CPU backend runs it");
        if (_c.HeadDim % 2 != 0 || _c.KvLength % 2 != 0)
            throw new VulkanUnavailableException($"the Vulkan backend needs an even head dimension (this model has {_c.HeadDim})");
        CheckTypes(model.File);
        _ownsDevice = device is null;
        _device = device ?? VulkanDevice.Open();
        // Sliding-window layers: a ring of the window and a batch, where that is shorter than the context (as the CPU's KvCache).
        SlidingWindowCacheRows = _c.SlidingWindow > 0 && !_options.FullSlidingWindowCache && _c.SlidingWindow + maxBatch - 1 < contextLength
            ? _c.SlidingWindow + maxBatch - 1 : 0;
        // LFM2's convolution layers: a ring of the last batch and ShortConvCache.HistoryPositions more positions of gated inputs.
        ShortConvRows = _c.ShortConvTaps > 0 ? maxBatch + EdgeLlm.Engine.ShortConvCache.HistoryPositions : 0;
        _convRowPosition = new int[ShortConvRows];
        Array.Fill(_convRowPosition, -1);
        _history = SlidingWindowCacheRows > 0 || ShortConvRows > 0 ? new int[contextLength] : [];
        _rowPosition = new int[SlidingWindowCacheRows];
        Array.Fill(_rowPosition, -1);
        try
        {
            CheckMemory();
            var c = _c;
            var f = model.File;
            PipelineTable = _options.UseSpecialization ? VulkanPipelineRegistry.Find(model) : null;
            Pipelines = PipelineTable?.Pipelines ?? VulkanPipelinePlan.ForModel(model);
            if (SlidingWindowCacheRows > 0)
                Pipelines = [.. Pipelines.Select(s => s.Role == "attention.swa" ? VulkanKernels.AttentionRing(s, SlidingWindowCacheRows) : s),
                    VulkanKernels.KvStoreRingSpec(c.KvLength, SlidingWindowCacheRows)];
            if (ShortConvRows > 0)
                Pipelines = [.. Pipelines, VulkanKernels.ShortConvStoreSpec(c.EmbeddingLength, c.ShortConvTaps, ShortConvRows),
                    VulkanKernels.ShortConvSpec(c.EmbeddingLength, c.ShortConvTaps, ShortConvRows)];
            foreach (var spec in Pipelines) _ops[spec.Role] = VulkanKernels.Create(_device, spec, _options.UseSubgroupOps);
            _tokEmbd = Matrix(f, "token_embd.weight", "token_embd");
            _output = f.FindTensor("output.weight") is null ? _tokEmbd with { Kind = "output" } : Matrix(f, "output.weight", "output");
            // (LFM2's converter names the final norm token_embd_norm.)
            _outputNorm = Vector(f, c.Architecture is "lfm2" or "lfm2moe" && f.FindTensor("output_norm.weight") is null ? "token_embd_norm.weight" : "output_norm.weight", c.EmbeddingLength)!;
            // Gemma's √embd embedding scale, as a row of factors the "mul" pipeline broadcasts.
            _embeddingScale = c.EmbeddingScale != 1f ? Upload(Enumerable.Repeat(c.EmbeddingScale, c.EmbeddingLength).ToArray(), "the embedding scale") : null;
            // Granite's residual_scale on each block output before its residual add, the same way.
            _residualScale = c.ResidualScale != 1f ? Upload(Enumerable.Repeat(c.ResidualScale, c.EmbeddingLength).ToArray(), "the residual scale") : null;
            // Llama 3's rope_freqs, or the LongRoPE factors this context's length picks (Phi-3), as on the CPU.
            var ropeFactors = model.RopeFactorsFor(contextLength);
            _hasRopeFactors = ropeFactors is not null;
            _ropeFactors = ropeFactors is not null ? Upload(ropeFactors, "the rope frequency factors") : Track(_device.CreateBuffer(4, host: false, "an unused rope factor"));
            _layers = new Layer[c.BlockCount];
            for (int il = 0; il < c.BlockCount; il++)
            {
                string p = $"blk.{il}.";
                if (model is Lfm2 hybrid)
                {
                    _layers[il] = HybridLayer(f, hybrid.HybridLayers[il], il);
                    continue;
                }
                var lw = model.Layers[il];
                long kvBytes = (long)CacheRows(il) * c.KvLength * 2;
                _layers[il] = new Layer(
                    c.PreNorms ? Vector(f, p + "attn_norm.weight", c.EmbeddingLength)! : null,
                    Matrix(lw.Wq, "attn_q"), Matrix(lw.Wk, "attn_k"), Matrix(lw.Wv, "attn_v"),
                    Matrix(lw.Wo, "attn_output"),
                    Vector(f, p + "attn_q.bias", c.QueryLength, optional: true), Vector(f, p + "attn_k.bias", c.KvLength, optional: true),
                    Vector(f, p + "attn_v.bias", c.KvLength, optional: true),
                    c.PreNorms ? Vector(f, p + "ffn_norm.weight", c.EmbeddingLength)! : null,
                    Matrix(lw.Gate, "ffn_gate"), Matrix(lw.Up, "ffn_up"), Matrix(lw.Down, "ffn_down"),
                    Track(_device.CreateBuffer(kvBytes, host: false, $"the K cache of layer {il}")),
                    Track(_device.CreateBuffer(kvBytes, host: false, $"the V cache of layer {il}")),
                    c.HasQkNorm ? Vector(f, p + "attn_q_norm.weight", c.QkNormFullWidth ? c.QueryLength : c.HeadDim) : null,
                    c.HasQkNorm ? Vector(f, p + "attn_k_norm.weight", c.QkNormFullWidth ? c.KvLength : c.HeadDim) : null,
                    lw.AttnPostNorm is not null ? Vector(f, p + "post_attention_norm.weight", c.EmbeddingLength) : null,
                    lw.FfnPostNorm is not null ? Vector(f, p + "post_ffw_norm.weight", c.EmbeddingLength) : null,
                    c.IsSlidingWindowLayer(il), c.UsesRope(il));
            }
            long b = maxBatch;
            _x = Activation(b * c.EmbeddingLength, "x");
            _norm = Activation(b * c.EmbeddingLength, "norm");
            _q = Activation(b * c.QueryLength, "q");
            _k = Activation(b * c.KvLength, "k");
            _v = Activation(b * c.KvLength, "v");
            _att = Activation(b * c.QueryLength, "attention output");
            _proj = Activation(b * c.EmbeddingLength, "projection");
            _gate = Activation(b * c.FeedForwardLength, "gate");
            _up = Activation(b * c.FeedForwardLength, "up");
            _bcx = ShortConvRows > 0 ? Activation(b * 3 * c.EmbeddingLength, "the short convolution's B, C and x") : null;
            _tokens = Track(_device.CreateBuffer(b * 4, host: true, "token ids"));
            _params = Track(_device.CreateBuffer(16, host: true, "parameters"));
            _logits = Track(_device.CreateBuffer(b * c.VocabSize * 4, host: true, "logits"));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The model this context evaluates.</summary>
    public Model Model { get; }

    /// <summary>The device it runs on.</summary>
    public VulkanDeviceInfo Device => _device.Info;

    /// <summary>Tokens the KV cache can hold.</summary>
    public int ContextLength { get; }

    /// <summary>Most tokens one submit processes.</summary>
    public int MaxBatch { get; }

    /// <summary>
    /// Rows each sliding-window layer's cache keeps (a ring: position p in row p mod rows; window + <see cref="MaxBatch"/> − 1),
    /// 0 when every layer keeps the whole context. A rewind past what the ring holds makes the next <see cref="Eval"/> evaluate
    /// the tokens before again (<see cref="Reevaluations"/>), as on the CPU.
    /// </summary>
    public int SlidingWindowCacheRows { get; }

    /// <summary>
    /// Rows of each LFM2 convolution layer's ring of gated inputs (<see cref="MaxBatch"/> + 64: a rewind by up to
    /// 64 − taps + 1 positions goes on from it, a deeper one evaluates the tokens before again, as on the CPU); 0 for other models.
    /// </summary>
    public int ShortConvRows { get; }

    /// <summary>Tokens evaluated again after rewinds past the sliding-window ring (or the convolution layers' ring).</summary>
    public long Reevaluations { get; private set; }

    private readonly int[] _convRowPosition; // the position each convolution ring row holds (-1: none)

    private readonly int[] _history;      // the evaluated tokens (with a ring), to evaluate again after a deep rewind
    private readonly int[] _rowPosition;  // the position each ring row holds (-1: none)

    /// <summary>Rows of layer <paramref name="il"/>'s K (and V) cache.</summary>
    private int CacheRows(int il) => SlidingWindowCacheRows > 0 && _c.IsSlidingWindowLayer(il) ? SlidingWindowCacheRows : ContextLength;

    /// <summary>True when the ring still holds positions [from, to) as last written.</summary>
    private bool RingHolds(int from, int to) => Holds(_rowPosition, from, to);

    private static bool Holds(int[] rowPosition, int from, int to)
    {
        for (int q = Math.Max(0, from); q < to; q++)
            if (rowPosition[q % rowPosition.Length] != q) return false;
        return true;
    }

    /// <summary>True when the rings hold what a token at <paramref name="position"/> reads: its window's keys, its convolution's inputs.</summary>
    private bool IntactBefore(int position) =>
        (SlidingWindowCacheRows == 0 || RingHolds(position + 1 - _c.SlidingWindow, position))
        && (ShortConvRows == 0 || Holds(_convRowPosition, position + 1 - _c.ShortConvTaps, position));

    /// <summary>Number of tokens evaluated so far: the position the next token takes.</summary>
    public int Position { get; private set; }

    /// <summary>
    /// The generated pipeline table this context's pipelines come from (the model matched its
    /// specialized config), or null when they were derived from the loaded model.
    /// </summary>
    public VulkanPipelineTable? PipelineTable { get; }

    /// <summary>The pipelines this context built (table or derived), one per role.</summary>
    public IReadOnlyList<VulkanPipelineSpec> Pipelines { get; } = [];

    /// <summary>The shader variant built for each role (with "_sg" where the subgroup reduction was chosen).</summary>
    public IReadOnlyDictionary<string, string> Variants => _ops.ToDictionary(o => o.Key, o => o.Value.Variant);

    /// <summary>Matrix products recorded with mul_mat (tiled) and with mul_mat_vec so far.</summary>
    internal (int MatMul, int MatVec) RecordedProducts => (_matMuls, _matVecs);

    private int _matMuls, _matVecs;

    /// <summary>Command buffers recorded so far (one per batch shape; for tests of the reuse).</summary>
    internal int RecordedGraphs { get; private set; }

    /// <inheritdoc/>
    public string Description => $"vulkan ({Device.Name})";

    /// <inheritdoc/>
    public bool CanResumeAt(int position) =>
        position <= 0 || (SlidingWindowCacheRows == 0 && ShortConvRows == 0) || (position <= Position && IntactBefore(position));

    /// <summary>Forgets every evaluated token (position 0).</summary>
    public void Reset() => Position = 0;

    /// <summary>Truncates the KV cache to its first <paramref name="position"/> tokens.</summary>
    /// <exception cref="ArgumentOutOfRangeException">position is negative or beyond <see cref="Position"/>.</exception>
    public void Rewind(int position)
    {
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"can only rewind to a position in 0..{Position}");
        Position = position;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at positions <see cref="Position"/>, Position+1, … and
    /// advances the position (one submit per <see cref="MaxBatch"/> tokens).
    /// </summary>
    /// <returns>the logits of the last token ([vocab]), or of every token ([tokens × vocab], row-major) when <paramref name="allLogits"/>.</returns>
    /// <exception cref="ArgumentException">no tokens, a token id outside the vocabulary, or more tokens than the context has room for.</exception>
    public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        int vocab = _c.VocabSize;
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)vocab)
                throw new ArgumentException($"token id {tokens[i]} at index {i} is outside the vocabulary (0..{vocab - 1})", nameof(tokens));
        }
        if (tokens.Length > ContextLength - Position)
            throw new ArgumentException(
                $"{tokens.Length} tokens at position {Position} would overflow the context of {ContextLength} tokens ({ContextLength - Position} free)", nameof(tokens));

        if (SlidingWindowCacheRows > 0 || ShortConvRows > 0)
        {
            // A rewind past a ring: the next token's window (or convolution inputs) is gone; evaluate what came before again.
            if (!IntactBefore(Position))
            {
                int redo = Position;
                Position = 0;
                Reevaluations += redo;
                for (int done = 0; done < redo; done += MaxBatch)
                    Submit(_history.AsSpan(done, Math.Min(MaxBatch, redo - done)), 0, []);
            }
            tokens.CopyTo(_history.AsSpan(Position));
        }
        var logits = new float[(allLogits ? tokens.Length : 1) * (long)vocab];
        for (int done = 0; done < tokens.Length; done += MaxBatch)
        {
            int n = Math.Min(MaxBatch, tokens.Length - done);
            bool last = done + n == tokens.Length;
            int outputRows = allLogits ? n : last ? 1 : 0;
            Submit(tokens.Slice(done, n), outputRows, logits.AsSpan(allLogits ? done * vocab : 0, outputRows * vocab));
        }
        return logits;
    }

    /// <summary>One submit of up to <see cref="MaxBatch"/> tokens at <see cref="Position"/> (which it advances); the last <paramref name="outputRows"/> rows of logits into <paramref name="dst"/>.</summary>
    private void Submit(ReadOnlySpan<int> tokens, int outputRows, Span<float> dst)
    {
        int n = tokens.Length, vocab = _c.VocabSize;
        tokens.CopyTo(new Span<int>(_tokens.Mapped, n));
        *(uint*)_params.Mapped = (uint)Position;
        var graph = Graph(n, outputRows);
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        _device.SubmitAndWait(graph, end: false);
        if (_stamps.TryGetValue(graph, out var stamps)) AddProfile(stamps.Pool, stamps.Labels, System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        if (outputRows > 0)
        {
            _logits.AsFloats()[..(outputRows * vocab)].CopyTo(dst);
            if (_c.LogitScale != 1f) // Granite: × 1 / logit_scale, on the host as the logits arrive (as the CPU's Activations.Scale)
                fixed (float* lp = dst) EdgeLlm.Kernels.Activations.Scale(lp, dst.Length, 1f / _c.LogitScale);
            if (_c.FinalLogitSoftcap > 0) // Gemma: c · tanh(logit / c), on the host as the logits arrive
                fixed (float* lp = dst) EdgeLlm.Kernels.Activations.Softcap(lp, dst.Length, _c.FinalLogitSoftcap);
        }
        for (int t = 0; t < n && _rowPosition.Length > 0; t++) _rowPosition[(Position + t) % _rowPosition.Length] = Position + t;
        for (int t = 0; t < n && _convRowPosition.Length > 0; t++) _convRowPosition[(Position + t) % _convRowPosition.Length] = Position + t;
        Position += n;
    }

    private CommandBuffer Graph(int n, int outputRows)
    {
        if (_graphs.TryGetValue((n, outputRows), out var cb)) return cb;
        if (_graphs.Count >= MaxCachedShapes)
        {
            // prompts of many lengths: start over rather than grow without bound
            foreach (var old in _graphs.Values) _device.FreeCommandBuffer(old);
            _graphs.Clear();
            foreach (var (pool, _) in _stamps.Values) _device.DestroyQueryPool(pool);
            _stamps.Clear();
        }
        cb = _device.AllocateCommandBuffer();
        _device.Begin(cb, oneShot: false);
        bool profile = _options.Profile && _device.TimestampPeriodNs > 0;
        if (profile)
        {
            // One timestamp before the pass and one at every barrier: at most four per layer step, generously sized.
            uint count = (uint)(_layers.Length * 16 + 16);
            _recordingPool = _device.CreateTimestampPool(count);
            _device.Api.CmdResetQueryPool(cb, _recordingPool, 0, count);
            _device.Api.CmdWriteTimestamp(cb, PipelineStageFlags.TopOfPipeBit, _recordingPool, 0);
            _recording.Clear();
            _segmentOps.Clear();
        }
        Record(cb, n, outputRows);
        if (profile) _stamps[cb] = (_recordingPool, _recording.ToArray());
        _recordingPool = default;
        VulkanDevice.Check(_device.Api.EndCommandBuffer(cb), "vkEndCommandBuffer");
        _graphs[(n, outputRows)] = cb;
        RecordedGraphs++;
        return cb;
    }

    /// <summary>Records the forward pass of <paramref name="n"/> tokens, as Model.Forward and DecoderBlocks do on the CPU.</summary>
    private void Record(CommandBuffer cb, int n, int outputRows)
    {
        var d = _device;
        var c = _c;
        int embd = c.EmbeddingLength;

        var getRows = Op("get_rows");
        VulkanKernels.RecordGetRows(d, cb, Mark(getRows), Set(getRows, _tokEmbd.Buffer, _tokens, _x), n);
        Sync(cb);
        if (_embeddingScale is not null)
        {
            var mul = Op("mul");
            VulkanKernels.RecordElementwise(d, cb, Mark(mul), Set(mul, _x, _embeddingScale), (long)n * embd, (uint)embd);
            Sync(cb);
        }

        var norm = Op("rms_norm");
        var add = Op("add");
        var ropeQ = Op("rope.q");
        var ropeK = Op("rope.k");
        var store = Op("kv_store");
        var storeRing = SlidingWindowCacheRows > 0 ? Op("kv_store.swa") : store;
        var attn = Op("attention");
        foreach (var l in _layers)
        {
            // attn_norm (EXAONE 4 has none: the projections read x)
            if (l.AttnNorm is { } attnNorm) VulkanKernels.RecordRmsNorm(d, cb, Mark(norm), Set(norm, _x, attnNorm, _norm), 0, n);
            Sync(cb);
            var attnIn = l.AttnNorm is null ? _x : _norm;
            if (l.Conv is { } conv)
            {
                // LFM2's short convolution: B, C, x = in_proj(norm); the ring gets B ⊙ x; norm = C ⊙ conv(ring); x += out_proj(norm)
                MatVec(cb, conv.InProj, _norm, _bcx!, n, 0);
                Sync(cb);
                var convStore = Op("shortconv.store");
                VulkanKernels.RecordShortConv(d, cb, Mark(convStore), Set(convStore, _bcx!, conv.Ring, _params), n);
                Sync(cb);
                var sc = Op("shortconv");
                VulkanKernels.RecordShortConv(d, cb, Mark(sc), Set(sc, _bcx!, conv.Ring, conv.Taps, _norm, _params), n);
                Sync(cb);
                MatVec(cb, conv.OutProj, _norm, _proj, n, 0);
                Sync(cb);
                AddResidual(cb, null, n);
                FeedForward(cb, l, n);
                continue;
            }
            // Qcur, Kcur, Vcur (+ biases)
            MatVec(cb, l.Wq!, attnIn, _q, n, 0);
            MatVec(cb, l.Wk!, attnIn, _k, n, 0);
            MatVec(cb, l.Wv!, attnIn, _v, n, 0);
            Sync(cb);
            if (l.Bq is not null || l.Bk is not null || l.Bv is not null)
            {
                if (l.Bq is not null) VulkanKernels.RecordElementwise(d, cb, Mark(add), Set(add, _q, l.Bq), (long)n * c.QueryLength, (uint)c.QueryLength);
                if (l.Bk is not null) VulkanKernels.RecordElementwise(d, cb, Mark(add), Set(add, _k, l.Bk), (long)n * c.KvLength, (uint)c.KvLength);
                if (l.Bv is not null) VulkanKernels.RecordElementwise(d, cb, Mark(add), Set(add, _v, l.Bv), (long)n * c.KvLength, (uint)c.KvLength);
                Sync(cb);
            }
            // Qwen3: RMSNorm of every query and key head, in place (one workgroup per head row), before the rope (Hunyuan:
            // after it); OLMo 2: of each token's whole query and key rows (one workgroup per token)
            if (!c.QkNormAfterRope) QkNorms(cb, l, n);
            // rope (Gemma's sliding-window layers: their own base; SmolLM3's every fourth layer: none)
            if (l.Rope)
            {
                var rq = l.SlidingWindow ? Op("rope.q.swa") : ropeQ;
                var rk = l.SlidingWindow ? Op("rope.k.swa") : ropeK;
                VulkanKernels.RecordRope(d, cb, Mark(rq), Set(rq, _q, _ropeFactors, _params), n);
                VulkanKernels.RecordRope(d, cb, Mark(rk), Set(rk, _k, _ropeFactors, _params), n);
                Sync(cb);
            }
            if (c.QkNormAfterRope) QkNorms(cb, l, n);
            // K and V into the f16 cache, then attention over it
            var st = l.SlidingWindow ? storeRing : store;
            VulkanKernels.RecordKvStore(d, cb, Mark(st), Set(st, _k, l.KCache!, _params), n);
            VulkanKernels.RecordKvStore(d, cb, Mark(st), Set(st, _v, l.VCache!, _params), n);
            Sync(cb);
            var at = l.SlidingWindow ? Op("attention.swa") : attn;
            VulkanKernels.RecordAttention(d, cb, Mark(at), Set(at, _q, l.KCache!, l.VCache!, _att, _params), n);
            Sync(cb);
            // attn_output (Gemma: post-norm in place), ffn_inp
            MatVec(cb, l.Wo!, _att, _proj, n, 0);
            Sync(cb);
            AddResidual(cb, l.AttnPostNorm, n);
            FeedForward(cb, l, n);
        }
        if (outputRows > 0)
        {
            int first = n - outputRows;
            VulkanKernels.RecordRmsNorm(d, cb, Mark(norm), Set(norm, _x, _outputNorm, _norm), first, outputRows);
            Sync(cb);
            MatVec(cb, _output, _norm, _logits, outputRows, (long)first * embd);
            Sync(cb);
        }
    }

    /// <summary>ffn_norm, SwiGLU (or GeGLU), ffn_down (Gemma: post-norm), l_out, for <paramref name="n"/> rows.</summary>
    private void FeedForward(CommandBuffer cb, Layer l, int n)
    {
        var d = _device;
        var norm = Op("rms_norm");
        var swiglu = Op("swiglu");
        if (l.FfnNorm is { } ffnNorm) VulkanKernels.RecordRmsNorm(d, cb, Mark(norm), Set(norm, _x, ffnNorm, _norm), 0, n);
        Sync(cb);
        var ffnIn = l.FfnNorm is null ? _x : _norm;
        MatVec(cb, l.Gate, ffnIn, _gate, n, 0);
        MatVec(cb, l.Up, ffnIn, _up, n, 0);
        Sync(cb);
        VulkanKernels.RecordElementwise(d, cb, Mark(swiglu), Set(swiglu, _gate, _up), (long)n * _c.FeedForwardLength);
        Sync(cb);
        MatVec(cb, l.Down, _gate, _proj, n, 0);
        Sync(cb);
        AddResidual(cb, l.FfnPostNorm, n);
    }

    /// <summary>
    /// x += _proj for <paramref name="n"/> rows, _proj first RMS-normalized in place by <paramref name="postNorm"/> where the
    /// block has one (Gemma) and scaled by the residual scale where the model has one (Granite).
    /// </summary>
    private void AddResidual(CommandBuffer cb, VulkanBuffer? postNorm, int n)
    {
        var d = _device;
        if (postNorm is not null)
        {
            var norm = Op("rms_norm");
            VulkanKernels.RecordRmsNorm(d, cb, Mark(norm), Set(norm, _proj, postNorm, _proj), 0, n);
            Sync(cb);
        }
        ScaleResidual(cb, n);
        var add = Op("add");
        long values = (long)n * _c.EmbeddingLength;
        VulkanKernels.RecordElementwise(d, cb, Mark(add), Set(add, _x, _proj), values, (uint)values);
        Sync(cb);
    }

    /// <summary>An LFM2 layer uploaded: an attention layer as any other, a convolution layer with its projections, taps and ring.</summary>
    private Layer HybridLayer(GgufFile f, Lfm2.Layer l, int il)
    {
        var c = _c;
        string p = $"blk.{il}.";
        var ffnNorm = Vector(f, p + "ffn_norm.weight", c.EmbeddingLength)!;
        var attnNorm = Vector(f, p + "attn_norm.weight", c.EmbeddingLength)!;
        if (l.Attention is { } a)
        {
            long kvBytes = (long)ContextLength * c.KvLength * 2;
            return new Layer(attnNorm, Matrix(a.Wq, "attn_q"), Matrix(a.Wk, "attn_k"), Matrix(a.Wv, "attn_v"), Matrix(a.Wo, "attn_output"),
                null, null, null, ffnNorm, Matrix(l.Gate!, "ffn_gate"), Matrix(l.Up!, "ffn_up"), Matrix(l.Down!, "ffn_down"),
                Track(_device.CreateBuffer(kvBytes, host: false, $"the K cache of layer {il}")),
                Track(_device.CreateBuffer(kvBytes, host: false, $"the V cache of layer {il}")),
                Vector(f, p + "attn_q_norm.weight", c.HeadDim), Vector(f, p + "attn_k_norm.weight", c.HeadDim), null, null, false, true);
        }
        var conv = new ConvLayer(Matrix(l.InProj!, "shortconv.in_proj"), Upload(l.ConvTaps!, $"the convolution taps of layer {il}"),
            Matrix(l.OutProj!, "shortconv.out_proj"),
            Track(_device.CreateBuffer((long)ShortConvRows * c.EmbeddingLength * 4, host: false, $"the convolution inputs of layer {il}")));
        return new Layer(attnNorm, null, null, null, null, null, null, null, ffnNorm, Matrix(l.Gate!, "ffn_gate"), Matrix(l.Up!, "ffn_up"), Matrix(l.Down!, "ffn_down"),
            null, null, null, null, null, null, false, false, conv);
    }

    /// <summary>_proj ×= Granite's residual_scale for <paramref name="n"/> rows (nothing for other models).</summary>
    private void ScaleResidual(CommandBuffer cb, int n)
    {
        if (_residualScale is null) return;
        var mul = Op("mul");
        VulkanKernels.RecordElementwise(_device, cb, Mark(mul), Set(mul, _proj, _residualScale), (long)n * _c.EmbeddingLength, (uint)_c.EmbeddingLength);
        Sync(cb);
    }

    /// <summary>The layer's query and key RMSNorms, if it has them: per head, or over each token's whole rows (OLMo 2).</summary>
    private void QkNorms(CommandBuffer cb, Layer l, int n)
    {
        if (l.QNorm is null || l.KNorm is null) return;
        if (_c.QkNormFullWidth)
        {
            HeadNorm(cb, Op("rms_norm.q"), _q, l.QNorm, n);
            HeadNorm(cb, Op("rms_norm.k"), _k, l.KNorm, n);
        }
        else
        {
            var headNorm = Op("rms_norm.head");
            HeadNorm(cb, headNorm, _q, l.QNorm, (long)n * _c.HeadCount);
            HeadNorm(cb, headNorm, _k, l.KNorm, (long)n * _c.HeadCountKv);
        }
        Sync(cb);
    }

    /// <summary>rms_norm over <paramref name="rows"/> head rows of <paramref name="x"/>, in place, in dispatches of at most 65535 workgroups.</summary>
    private void HeadNorm(CommandBuffer cb, VulkanOp op, VulkanBuffer x, VulkanBuffer weight, long rows)
    {
        var set = Set(op, x, weight, x);
        for (long row0 = 0; row0 < rows; row0 += 65535)
            VulkanKernels.RecordRmsNorm(_device, cb, Mark(op), set, (int)row0, (int)Math.Min(65535, rows - row0));
    }

    /// <summary>y = W·x for <paramref name="ncols"/> activation rows: the tiled mul_mat for a batch of at least MatMulMinTokens, else mul_mat_vec.</summary>
    private void MatVec(CommandBuffer cb, Weight w, VulkanBuffer x, VulkanBuffer y, int ncols, long xOff)
    {
        if (ncols >= _options.MatMulMinTokens)
        {
            var k = Op(VulkanPipelinePlan.MatRole(w.Kind, w.Type));
            VulkanKernels.RecordMatMul(_device, cb, Mark(k), Set(k, w.Buffer, x, y), ncols, xOff, 0);
            _matMuls++;
        }
        else
        {
            var k = Op(VulkanPipelinePlan.VecRole(w.Kind, w.Type));
            VulkanKernels.RecordMatVec(_device, cb, Mark(k), Set(k, w.Buffer, x, y), ncols, xOff, 0);
            _matVecs++;
        }
    }

    /// <summary>
    /// The barrier between dependent steps; when profiling, first a timestamp that closes the
    /// segment of dispatches recorded since the last one (labelled by their roles).
    /// </summary>
    private void Sync(CommandBuffer cb)
    {
        if (_recordingPool.Handle != 0 && _segmentOps.Count > 0)
        {
            _recording.Add(string.Join(" + ", _segmentOps.Distinct()));
            _segmentOps.Clear();
            _device.Api.CmdWriteTimestamp(cb, PipelineStageFlags.BottomOfPipeBit, _recordingPool, (uint)_recording.Count);
        }
        _device.Barrier(cb);
    }

    /// <summary>Notes <paramref name="op"/>'s role for the profile's current segment (when profiling) and returns it.</summary>
    private VulkanOp Mark(VulkanOp op)
    {
        if (_recordingPool.Handle != 0) _segmentOps.Add(op.Spec.Role);
        return op;
    }

    private VulkanOp Op(string role) => _ops.TryGetValue(role, out var op) ? op
        : throw new InvalidOperationException($"{(PipelineTable is null ? "the derived pipeline plan" : $"the pipeline table {PipelineTable.Name}")} has no pipeline for {role}");

    /// <summary>The descriptor set binding <paramref name="buffers"/> for <paramref name="k"/>'s layout, created once.</summary>
    private DescriptorSet Set(VulkanOp op, params VulkanBuffer[] buffers)
    {
        var key = string.Join(",", buffers.Select(b => _ids.TryGetValue(b, out int id) ? id : _ids[b] = _ids.Count));
        if (_sets.TryGetValue(key, out var set)) return set;
        set = _device.CreateSet(op.Kernel, buffers);
        _sets[key] = set;
        return set;
    }

    private static void CheckTypes(GgufFile f)
    {
        foreach (var t in f.Tensors)
        {
            if (t.Dims.Length < 2 || t.Name == "rope_freqs.weight") continue;
            if (!VulkanKernels.IsSupported(t.Type))
                throw new VulkanUnavailableException(
                    $"tensor {t.Name} has type {GgmlTypes.Info(t.Type).Name}, which the Vulkan backend has no shader for (supported: {string.Join(", ", VulkanKernels.SupportedTypes.Select(x => GgmlTypes.Info(x).Name))}); use --backend cpu");
        }
    }

    private void CheckMemory()
    {
        var c = _c;
        long weights = Model.File.Tensors.Sum(t => t.ByteSize);
        long kv = 2L * Enumerable.Range(0, c.BlockCount).Where(il => !c.IsShortConvLayer(il)).Sum(il => (long)CacheRows(il)) * c.KvLength * 2
            + Enumerable.Range(0, c.BlockCount).Count(c.IsShortConvLayer) * (long)ShortConvRows * c.EmbeddingLength * 4;
        long act = 4L * MaxBatch * (4L * c.EmbeddingLength + 2L * c.QueryLength + 2L * c.KvLength + 2L * c.FeedForwardLength);
        long need = weights + kv + act;
        long have = _device.Info.DeviceLocalMemory;
        if (have > 0 && need > have)
            throw new VulkanUnavailableException(
                $"the model needs about {need >> 20} MiB of device memory (weights {weights >> 20} MiB + KV cache for {ContextLength} tokens {kv >> 20} MiB + activations {act >> 20} MiB), but {_device.Info.Name} has {have >> 20} MiB");
    }

    private VulkanBuffer Track(VulkanBuffer b)
    {
        _buffers.Add(b);
        return b;
    }

    private VulkanBuffer Activation(long floats, string what) => Track(_device.CreateBuffer(floats * 4, host: false, what));

    private Weight Matrix(GgufFile f, string name, string kind)
    {
        var t = f.FindTensor(name) ?? throw new VulkanUnavailableException($"tensor {name} is missing");
        var buf = Track(_device.CreateBuffer(t.ByteSize, host: false, name));
        _device.Upload(buf, 0, f.GetTensorPointer(t), t.ByteSize);
        return new Weight(buf, t.Type, (int)t.RowCount, (int)t.RowLength, kind);
    }

    /// <summary>
    /// One of the model's layer matrices, uploaded from the mapping in its GGUF layout (never the CPU's
    /// repacked copy): a whole tensor, or a part of a fused one (Phi-3's attn_qkv, ffn_up).
    /// </summary>
    private Weight Matrix(WeightMatrix w, string kind)
    {
        long bytes = w.Rows * w.RowBytes;
        var buf = Track(_device.CreateBuffer(bytes, host: false, w.Name));
        _device.Upload(buf, 0, w.FileData, bytes);
        return new Weight(buf, w.Tensor.Type, w.Rows, w.Cols, kind);
    }

    /// <summary>f32 values uploaded to a device buffer of their own.</summary>
    private VulkanBuffer Upload(float[] values, string what)
    {
        fixed (float* v = values)
        {
            var buf = Track(_device.CreateBuffer(values.Length * 4L, host: false, what));
            _device.Upload(buf, 0, (byte*)v, values.Length * 4L);
            return buf;
        }
    }

    /// <summary>A norm weight, bias or rope factor vector, dequantized to f32 on the host and uploaded.</summary>
    private VulkanBuffer? Vector(GgufFile f, string name, int length, bool optional = false)
    {
        var t = f.FindTensor(name);
        if (t is null)
            return optional ? null : throw new VulkanUnavailableException($"tensor {name} is missing");
        if (t.ElementCount != length)
            throw new VulkanUnavailableException($"tensor {name} has {t.ElementCount} values, expected {length}");
        if (!WeightFormat.TryGet(t.Type, out var fmt))
            throw new VulkanUnavailableException($"tensor {name} has type {GgmlTypes.Info(t.Type).Name}, which cannot be dequantized");
        var values = new float[length];
        fixed (float* v = values)
        {
            fmt.DequantizeRow(f.GetTensorPointer(t), v, length);
            var buf = Track(_device.CreateBuffer(length * 4L, host: false, name));
            _device.Upload(buf, 0, (byte*)v, length * 4L);
            return buf;
        }
    }

    private void AddProfile(QueryPool pool, string[] labels, double wallMs)
    {
        Span<ulong> t = stackalloc ulong[labels.Length + 1];
        _device.ReadTimestamps(pool, t);
        double msPerTick = _device.TimestampPeriodNs / 1e6;
        for (int i = 0; i < labels.Length; i++)
        {
            var (ms, calls) = _profile.GetValueOrDefault(labels[i]);
            _profile[labels[i]] = (ms + (t[i + 1] - t[i]) * msPerTick, calls + 1);
        }
        _profileWallMs += wallMs;
        _profileSubmits++;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// One line per step of the recorded pass (the dispatches between two barriers, labelled by
    /// their pipeline roles, e.g. <c>mul_mat_vec.ffn_gate.q4_0 + mul_mat_vec.ffn_up.q4_0</c>):
    /// device milliseconds from the timestamp before the step to the one after it, share of the
    /// device total, and how often it ran; then the device total against the host's wall time for
    /// the submits (submit, wait, and the gaps the device time does not cover). Null when the
    /// context is not profiling (<see cref="VulkanContextOptions.Profile"/>) or the device writes
    /// no timestamps.
    /// </remarks>
    public string? ProfileReport()
    {
        if (!_options.Profile || _device.TimestampPeriodNs <= 0) return null;
        double total = _profile.Values.Sum(v => v.Ms);
        var o = new System.Text.StringBuilder();
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        foreach (var (label, (ms, calls)) in _profile.OrderByDescending(kv => kv.Value.Ms))
            o.AppendLine(ci, $"  {ms,10:F2} ms {100 * ms / Math.Max(total, 1e-12),5:F1}%  {calls,7} × {label}");
        o.AppendLine(ci, $"  device total {total:F2} ms over {_profileSubmits} submits; host wall time of those submits {_profileWallMs:F2} ms");
        return o.ToString();
    }

    /// <inheritdoc/>
    public void ResetProfile()
    {
        _profile.Clear();
        _profileWallMs = 0;
        _profileSubmits = 0;
    }

    /// <summary>Frees the device buffers and command buffers (and the device when the context opened it).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_device is null) return;
        foreach (var cb in _graphs.Values) _device.FreeCommandBuffer(cb);
        _graphs.Clear();
        foreach (var (pool, _) in _stamps.Values) _device.DestroyQueryPool(pool);
        _stamps.Clear();
        foreach (var b in _buffers) b.Dispose();
        if (_ownsDevice) _device.Dispose();
    }
}
