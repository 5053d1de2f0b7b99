using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Quant;

namespace EdgeLlm.Models;

/// <summary>
/// A decoder-only transformer loaded from a GGUF file. Weights stay in the memory mapping in their
/// own types (no copies); each architecture (<c>llama</c>, <c>qwen2</c>, <c>qwen3</c>, <c>phi3</c>, <c>gemma2</c>, <c>gemma3</c>, <c>smollm3</c>, <c>granite</c>, <c>lfm2</c>, <c>ernie4_5</c> and <c>mistral3</c> (as <see cref="Llama"/>), <c>exaone4</c>, <c>olmo2</c>, <c>hunyuan-dense</c> (as <see cref="Qwen3"/>),
/// and the mixtures of experts <c>qwen3moe</c>, <c>granitemoe</c>, <c>qwen2moe</c>, <c>olmoe</c>, <c>lfm2moe</c> (as <see cref="Lfm2"/>) and llama with experts) is one subclass that maps
/// the GGUF tensor names and wires its layers. Run it with an <see cref="InferenceContext"/>.
/// </summary>
public abstract unsafe class Model : IDisposable
{
    /// <summary>Architectures <see cref="Load(GgufFile, ModelLoadOptions?)"/> accepts (general.architecture).</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } = ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "smollm3", "granite", "lfm2", "qwen3moe", "granitemoe", "qwen2moe", "olmoe", "lfm2moe", "ernie4_5", "exaone4", "olmo2", "mistral3", "hunyuan-dense", "gemma", "gpt-oss"];

    private readonly bool _ownsFile;
    private readonly List<nint> _repacked = [];
    private bool _repackDone;
    private bool _generic;
    private bool _disposed;

    private protected Model(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
    {
        File = file;
        Config = config;
        _ownsFile = ownsFile;
        var c = config;
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{c.Architecture}.embedding_length");
        string vocabSource = file.Metadata.ContainsKey("tokenizer.ggml.tokens") ? "the number of tokenizer.ggml.tokens"
            : file.Metadata.ContainsKey($"{c.Architecture}.vocab_size") ? $"{c.Architecture}.vocab_size" : "the vocabulary size";
        var vocab = new TensorLoader.Dim(c.VocabSize, vocabSource);
        TokenEmbedding = tensors.Matrix("token_embd.weight", embd, vocab);
        // LFM2's converter names the final norm token_embd_norm (llama.cpp reads it as the output norm).
        OutputNorm = c.Architecture is "lfm2" or "lfm2moe" && file.FindTensor("output_norm.weight") is null
            ? tensors.Vector("token_embd_norm.weight", embd)
            : tensors.Vector("output_norm.weight", embd);
        // No output.weight: the output projection reuses the token embeddings (tied).
        Output = tensors.OptionalMatrix("output.weight", embd, vocab) ?? TokenEmbedding;
        if (!options.IgnoreRopeFrequencyFactors)
        {
            var pairs = new TensorLoader.Dim(c.RopeDimensionCount / 2, $"{c.Architecture}.rope.dimension_count / 2");
            RopeFactors = tensors.OptionalVector("rope_freqs.weight", pairs);
            RopeFactorsLong = tensors.OptionalVector("rope_factors_long.weight", pairs);
            RopeFactorsShort = tensors.OptionalVector("rope_factors_short.weight", pairs);
        }
    }

    /// <summary>The hyperparameters.</summary>
    public ModelConfig Config { get; }

    /// <summary>
    /// The compile-time specialized forward pass that runs this model (generators/EdgeLlm.Generators),
    /// or null for the generic path: no generated config matches, or <see cref="ModelLoadOptions.Generic"/>.
    /// </summary>
    public Specialized.SpecializedTransformer? Specialization { get; private set; }

    /// <summary>
    /// True: forward passes take the generic path even where <see cref="Specialization"/> matches.
    /// Switch it between evaluations, never during one. <c>edgellm bench --vs-generic</c> alternates
    /// it to measure the specialization against the generic path on the same mapped and repacked
    /// weights in one process (<see cref="ModelLoadOptions.Generic"/> instead never looks a
    /// specialization up).
    /// </summary>
    public bool RunGeneric { get; set; }

    /// <summary>The GGUF file the weights are mapped from.</summary>
    public GgufFile File { get; }

    internal WeightMatrix TokenEmbedding { get; }   // [vocab, embd]
    internal float[] OutputNorm { get; }             // [embd]
    internal WeightMatrix Output { get; }            // [vocab, embd] (token_embd when tied)
    internal float[]? RopeFactors { get; }           // [rope_dims / 2] (Llama 3 rope_freqs)
    internal float[]? RopeFactorsLong { get; }       // [rope_dims / 2] (Phi-3 LongRoPE, contexts past the original)
    internal float[]? RopeFactorsShort { get; }      // [rope_dims / 2] (Phi-3 LongRoPE, contexts up to the original)

    /// <summary>
    /// The rotary frequency factors a context of <paramref name="contextLength"/> tokens uses, as
    /// llama.cpp's get_rope_factors chooses them: rope_freqs.weight when the file has it, else
    /// LongRoPE's rope_factors_long for a context longer than <see cref="ModelConfig.RopeOriginalContextLength"/>
    /// and rope_factors_short otherwise (null when the file has none).
    /// </summary>
    internal float[]? RopeFactorsFor(int contextLength) =>
        RopeFactors ?? (contextLength > Config.RopeOriginalContextLength ? RopeFactorsLong : RopeFactorsShort);
    internal abstract IReadOnlyList<LayerWeights> Layers { get; }

    /// <summary>Largest converted activation row any matrix needs (bytes), for scratch sizing.</summary>
    internal long MaxActivationRowBytes { get; private set; }

    /// <summary>
    /// Bytes of weights repacked at load into a faster layout (<see cref="ModelLoadOptions.RepackWeights"/>);
    /// they live in memory the model owns instead of the mapping's pages.
    /// </summary>
    public long RepackedBytes { get; private set; }

    /// <summary>The repacked layouts in use, e.g. "q4_0x8" (empty when none).</summary>
    public IReadOnlyList<string> RepackedLayouts => AllMatrices().Select(w => w.Format.Layout).OfType<string>().Distinct().ToArray();

    /// <summary>Bytes of tensor data in the file (what the mapping keeps resident).</summary>
    public long WeightBytes => File.Tensors.Sum(t => t.ByteSize);

    /// <summary>
    /// Bytes of the KV cache a context of <paramref name="contextLength"/> tokens allocates (f16 unless the cache types say
    /// otherwise): sliding-window layers keep a ring of their window and a batch (see <see cref="InferenceContext"/>), unless
    /// <paramref name="fullSlidingWindowCache"/>.
    /// </summary>
    public long EstimateKvCacheBytes(int contextLength, KvCacheType cacheTypeK = KvCacheType.F16, KvCacheType cacheTypeV = KvCacheType.F16, bool fullSlidingWindowCache = false) =>
        KvCache.Bytes(Config, contextLength, cacheTypeK, cacheTypeV, fullSlidingWindowCache) + ShortConvCache.Bytes(Config);

    /// <summary>
    /// Loads the model in <paramref name="file"/>; the file stays owned by the caller and must
    /// outlive the model.
    /// </summary>
    /// <exception cref="ModelLoadException">unknown architecture, missing or misshapen tensor, unsupported tensor type, inconsistent metadata, or not enough memory.</exception>
    public static Model Load(GgufFile file, ModelLoadOptions? options = null) => Load(file, options ?? new(), ownsFile: false);

    /// <summary>Opens and loads the GGUF file at <paramref name="path"/>; the model owns (and disposes) the file.</summary>
    /// <exception cref="ModelLoadException">as <see cref="Load(GgufFile, ModelLoadOptions?)"/>.</exception>
    /// <exception cref="GgufFormatException">the file is not valid GGUF.</exception>
    public static Model Load(string path, ModelLoadOptions? options = null)
    {
        var file = GgufFile.Open(path);
        try
        {
            return Load(file, options ?? new(), ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static Model Load(GgufFile file, ModelLoadOptions options, bool ownsFile)
    {
        string? arch = file.GetString("general.architecture");
        if (arch is null)
            throw new ModelLoadException("metadata key general.architecture is missing");
        var config = arch switch
        {
            "llama" => Llama.ReadConfig(file),
            "qwen2" => Qwen2.ReadConfig(file),
            "qwen3" => Qwen3.ReadConfig(file),
            "phi3" => Phi3.ReadConfig(file),
            "gemma2" => Gemma2.ReadConfig(file),
            "gemma3" => Gemma3.ReadConfig(file),
            "smollm3" => SmolLM3.ReadConfig(file),
            "granite" => Granite.ReadConfig(file),
            "lfm2" => Lfm2.ReadConfig(file),
            "qwen3moe" => Qwen3Moe.ReadConfig(file),
            "granitemoe" => GraniteMoe.ReadConfig(file),
            "qwen2moe" => Qwen2Moe.ReadConfig(file),
            "olmoe" => OlMoe.ReadConfig(file),
            "lfm2moe" => Lfm2.ReadConfig(file, "lfm2moe"),
            "ernie4_5" => Llama.ReadConfig(file, "ernie4_5"),
            "exaone4" => Exaone4.ReadConfig(file),
            "olmo2" => Olmo2.ReadConfig(file),
            "mistral3" => Llama.ReadMistral3Config(file),
            "hunyuan-dense" => Qwen3.ReadHunyuanDenseConfig(file),
            "gemma" => Gemma2.ReadGemmaConfig(file),
            "gpt-oss" => GptOss.ReadConfig(file),
            _ when BertModel.SupportedArchitectures.Contains(arch) => throw new ModelLoadException($"architecture '{arch}' is a text encoder (an embedding model), not a decoder that generates text: run it with `edgellm embed`, or load it as a BertModel"),
            _ => throw new ModelLoadException($"architecture '{arch}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})"),
        };
        if (!options.SkipMemoryCheck) CheckMemory(file, config, options.ContextLength);
        var tensors = new TensorLoader(file);
        Model model = arch switch
        {
            "llama" when config.IsMixtureOfExperts => new Mixtral(file, config, tensors, ownsFile, options),
            "llama" or "ernie4_5" or "mistral3" => new Llama(file, config, tensors, ownsFile, options),
            "exaone4" => new Exaone4(file, config, tensors, ownsFile, options),
            "olmo2" => new Olmo2(file, config, tensors, ownsFile, options),
            "qwen3" or "hunyuan-dense" => new Qwen3(file, config, tensors, ownsFile, options),
            "phi3" => new Phi3(file, config, tensors, ownsFile, options),
            "gemma2" or "gemma" => new Gemma2(file, config, tensors, ownsFile, options),
            "gemma3" => new Gemma3(file, config, tensors, ownsFile, options),
            "smollm3" => new SmolLM3(file, config, tensors, ownsFile, options),
            "granite" => new Granite(file, config, tensors, ownsFile, options),
            "lfm2" or "lfm2moe" => new Lfm2(file, config, tensors, ownsFile, options),
            "qwen3moe" => new Qwen3Moe(file, config, tensors, ownsFile, options),
            "granitemoe" => new GraniteMoe(file, config, tensors, ownsFile, options),
            "qwen2moe" => new Qwen2Moe(file, config, tensors, ownsFile, options),
            "olmoe" => new OlMoe(file, config, tensors, ownsFile, options),
            "gpt-oss" => new GptOss(file, config, tensors, ownsFile, options),
            _ => new Qwen2(file, config, tensors, ownsFile, options),
        };
        model.MaxActivationRowBytes = model.AllMatrices().Max(w => ActivationQuantizer.RowBytes(w.Format.VecDotType, w.Cols));
        model._generic = options.Generic;
        if (options.RepackWeights)
        {
            try
            {
                model.RepackWeights();
            }
            catch (ModelLoadException)
            {
                model.Dispose();
                throw;
            }
        }
        else if (!options.Generic) model.Specialization = Specialized.SpecializationRegistry.Find(model);
        return model;
    }

    /// <summary>
    /// Repacks the weights into this CPU's faster layouts now (what <see cref="ModelLoadOptions.RepackWeights"/>
    /// does at load), for a model loaded without it that turns out to run on the CPU after all (the C ABI
    /// loads that way and repacks before its first CPU context, so a model that only feeds Vulkan never
    /// holds a repacked copy). Runs once; later calls return at once. Call it before any CPU context on
    /// this model computes: it changes the layout the products read and re-selects the specialization.
    /// </summary>
    /// <exception cref="ModelLoadException">the file could not be read, or not enough memory.</exception>
    public void RepackWeights()
    {
        lock (_repacked)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_repackDone) return;
            if (WeightPacking.Enabled)
            {
                try
                {
                    RepackedBytes = WeightPacking.Repack(File, AllMatrices(), _repacked);
                }
                catch (Exception e) when (e is IOException or OutOfMemoryException or UnauthorizedAccessException)
                {
                    throw new ModelLoadException($"repacking the weights failed: {e.Message}", e);
                }
            }
            _repackDone = true;
            if (!_generic) Specialization = Specialized.SpecializationRegistry.Find(this);
        }
    }

    /// <summary>Every weight matrix the forward pass multiplies by (repacked at load, sized for the activation scratch).</summary>
    private protected virtual IEnumerable<WeightMatrix> AllMatrices()
    {
        yield return Output;
        foreach (var l in Layers)
        {
            yield return l.Wq; yield return l.Wk; yield return l.Wv; yield return l.Wo;
            yield return l.Gate; yield return l.Up; yield return l.Down;
        }
    }

    /// <summary>
    /// Throws when the weights plus a KV cache of <paramref name="contextLength"/> tokens exceed
    /// the memory the OS reports available (/proc/meminfo MemAvailable, else the GC's view).
    /// </summary>
    private static void CheckMemory(GgufFile file, ModelConfig config, int contextLength)
    {
        long weights = file.Tensors.Sum(t => t.ByteSize);
        long kv = KvCache.Bytes(config, contextLength, KvCacheType.F16, KvCacheType.F16);
        long need = weights + kv;
        long available = AvailableMemoryBytes();
        if (need > available)
            throw new ModelLoadException(
                $"the model does not fit in memory: it needs about {need >> 20} MiB (weights {weights >> 20} MiB + KV cache for {contextLength} tokens {kv >> 20} MiB), but only {available >> 20} MiB is available");
    }

    /// <summary>Memory the OS could give us now, in bytes.</summary>
    internal static long AvailableMemoryBytes()
    {
        try
        {
            if (OperatingSystem.IsLinux() && System.IO.File.Exists("/proc/meminfo"))
            {
                foreach (var line in System.IO.File.ReadLines("/proc/meminfo"))
                {
                    if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 2 && long.TryParse(parts[1], out long kb)) return kb * 1024;
                }
            }
        }
        catch (IOException)
        {
            // Fall through to the GC's figure.
        }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>
    /// The architecture's transformer block <paramref name="layer"/>: reads and updates the
    /// residual stream <see cref="ForwardBatch.X"/> and stores the layer's keys and values for
    /// every token of the batch, but computes the rest of the block (queries, attention, output
    /// projection, feed-forward) only for the last <paramref name="keep"/> tokens, whose rows of
    /// X are the only ones updated (see <see cref="Forward"/>).
    /// </summary>
    internal abstract void ForwardLayer(int layer, ForwardBatch b, int keep);

    /// <summary>
    /// Runs the batch through the model and writes the logits of the last
    /// <paramref name="outputRows"/> tokens to <paramref name="logits"/> ([outputRows, vocab]).
    /// </summary>
    /// <param name="hidden">when not null: the last <paramref name="outputRows"/> tokens' final hidden states after the
    /// output norm ([outputRows, embd], what llama.cpp's embeddings read), and no logits (<paramref name="logits"/> unused)</param>
    internal void Forward(ForwardBatch b, int outputRows, float* logits, float* hidden = null)
    {
        if ((uint)outputRows > (uint)b.Count) throw new ArgumentOutOfRangeException(nameof(outputRows), outputRows, $"a batch of {b.Count} tokens has no {outputRows} rows of logits");
        if (hidden == null && !RunGeneric && Specialization is { } specialized)
        {
            specialized.Forward(this, b, outputRows, logits);
            return;
        }
        var c = Config;
        int n = b.Count;
        int embd = c.EmbeddingLength;

        // inp_embd: one dequantized row of token_embd per token
        using (Profiler.Section(Profiler.Op.Embed))
            for (int t = 0; t < n; t++)
                TokenEmbedding.Format.DequantizeRow(TokenEmbedding.Row(b.Tokens[t]), b.X + (long)t * embd, embd);
        if (c.EmbeddingScale != 1f)
            Activations.Scale(b.X, (long)n * embd, c.EmbeddingScale); // Gemma: × √embd (ggml_scale)

        // rotation angles per position, shared by every layer and head
        int pairs = c.RopeDimensionCount / 2;
        for (int t = 0; t < n; t++)
            Rope.Angles(b.StartPos + t, c.RopeDimensionCount, c.RopeFreqBase, c.RopeFreqScale, b.RopeFactors,
                b.RopeCos + (long)t * pairs, b.RopeSin + (long)t * pairs, c.RopeAttnFactor, c.RopeYarn);
        // Gemma 3's sliding-window layers rotate with their own base and no frequency scaling (llama.cpp's
        // rope_freq_base_train_swa / rope_freq_scale_train_swa).
        if (b.RopeCosSwa != null)
            for (int t = 0; t < n; t++)
                Rope.Angles(b.StartPos + t, c.RopeDimensionCount, c.RopeFreqBaseSwa, c.RopeSwaScaled ? c.RopeFreqScale : 1f, b.RopeFactors,
                    b.RopeCosSwa + (long)t * pairs, b.RopeSinSwa + (long)t * pairs, c.RopeAttnFactorSwa ?? c.RopeAttnFactor, c.RopeSwaScaled ? c.RopeYarn : default);

        // The last block runs in full only for the rows whose logits are asked for (llama.cpp's
        // inp_out_ids): the other tokens need only their keys and values there, which later batches
        // read from the cache. A 128-token prompt skips 127/128 of the last block's queries,
        // attention, attn_output and feed-forward (a middle chunk of a long prompt skips them all).
        for (int il = 0; il < c.BlockCount; il++) ForwardLayer(il, b, il == c.BlockCount - 1 ? outputRows : n);

        // result_norm and result_output for the rows asked for
        if (outputRows == 0) return;
        int first = n - outputRows;
        using (Profiler.Section(Profiler.Op.RmsNorm))
            fixed (float* w = OutputNorm)
                for (int t = first; t < n; t++)
                    RmsNorm.Forward(b.X + (long)t * embd, w, b.Norm + (long)t * embd, embd, c.RmsEps);
        if (hidden != null)
        {
            Buffer.MemoryCopy(b.Norm + (long)first * embd, hidden, (long)outputRows * embd * sizeof(float), (long)outputRows * embd * sizeof(float));
            return;
        }
        MatMul.Multiply(Output, b.Norm + (long)first * embd, outputRows, logits, b.MatScratch, b.Pool);
        if (c.LogitScale != 1f)
            Activations.Scale(logits, (long)outputRows * c.VocabSize, 1f / c.LogitScale); // Granite: ggml_scale(cur, 1.0f / f_logit_scale)
        if (c.FinalLogitSoftcap > 0)
            Activations.Softcap(logits, (long)outputRows * c.VocabSize, c.FinalLogitSoftcap);
    }

    /// <summary>Releases the file when the model owns it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // The contexts on this model must be done with it (as with the mapping, which goes too when owned).
        WeightPacking.Free(_repacked);
        if (_ownsFile) File.Dispose();
        GC.SuppressFinalize(this);
    }
}
