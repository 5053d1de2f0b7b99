using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;
using AI = Microsoft.Extensions.AI;

namespace EdgeLlm.Chat;

/// <summary>Options of an <see cref="EdgeLlmEmbeddingGenerator"/>.</summary>
public sealed record EdgeLlmEmbeddingGeneratorOptions
{
    /// <summary>
    /// Tokens a text may have (a decoder's context); longer texts are refused. A BERT encoder reads at most its own
    /// <c>{arch}.context_length</c> (512 for <c>bert</c>) whatever this says.
    /// </summary>
    public int ContextLength { get; init; } = 2048;

    /// <summary>Worker threads (0 = the physical cores).</summary>
    public int Threads { get; init; }

    /// <summary>The pooling; null: the file's <c>{arch}.pooling_type</c>, else <see cref="PoolingType.Mean"/> (one vector per text).</summary>
    public PoolingType? Pooling { get; init; }

    /// <summary>llama.cpp's <c>--embd-normalize</c> (2, euclidean, by default: unit vectors, so cosine similarity is a dot product).</summary>
    public int Normalize { get; init; } = 2;

    /// <summary>The model id reported in embeddings (default: the file name without .gguf).</summary>
    public string? ModelId { get; init; }
}

/// <summary>
/// Microsoft.Extensions.AI's <see cref="AI.IEmbeddingGenerator{TInput, TEmbedding}"/> over a local GGUF model: each
/// text's pooled, normalized embedding (<see cref="TextEmbedder"/>, llama.cpp's <c>llama-embedding</c>), for
/// on-device semantic search and RAG with embedding models: BERT encoders (all-MiniLM, bge, nomic-embed-text; a
/// <see cref="BertModel"/>) and decoders such as Qwen3-Embedding. One text at a time on one CPU context or encoder;
/// concurrent calls wait their turn.
/// </summary>
public sealed class EdgeLlmEmbeddingGenerator : AI.IEmbeddingGenerator<string, AI.Embedding<float>>
{
    private readonly IDisposable _model; // the Model or BertModel
    private readonly bool _ownsModel;
    private readonly InferenceContext? _context;
    private readonly TextEmbedder _embedder;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly AI.EmbeddingGeneratorMetadata _metadata;
    private int _disposed;

    /// <summary>Loads the GGUF model at <paramref name="modelPath"/> (a BERT encoder or a decoder); the generator owns it.</summary>
    /// <exception cref="ModelLoadException">the model cannot be loaded</exception>
    /// <exception cref="ArgumentException">bad options (the message names the option)</exception>
    /// <exception cref="NotSupportedException">the file asks for rank pooling (a reranker)</exception>
    public EdgeLlmEmbeddingGenerator(string modelPath, EdgeLlmEmbeddingGeneratorOptions? options = null)
        : this(LoadAny(modelPath ?? throw new ArgumentNullException(nameof(modelPath)), options ?? new()), ownsModel: true, options)
    {
    }

    /// <summary>Uses a loaded BERT <paramref name="encoder"/>, which the caller keeps owning.</summary>
    public EdgeLlmEmbeddingGenerator(BertModel encoder, EdgeLlmEmbeddingGeneratorOptions? options = null)
        : this(encoder ?? throw new ArgumentNullException(nameof(encoder)), ownsModel: false, options)
    {
    }

    private static IDisposable LoadAny(string path, EdgeLlmEmbeddingGeneratorOptions options)
    {
        bool encoder;
        using (var file = Gguf.GgufFile.Open(path)) encoder = BertModel.IsEncoder(file);
        return encoder
            ? BertModel.Load(path, Math.Max(0, options.Threads))
            : Model.Load(path, new ModelLoadOptions { ContextLength = options.ContextLength });
    }

    /// <summary>Uses a loaded <paramref name="model"/>, which the caller keeps owning.</summary>
    public EdgeLlmEmbeddingGenerator(Model model, EdgeLlmEmbeddingGeneratorOptions? options = null)
        : this(model ?? throw new ArgumentNullException(nameof(model)), ownsModel: false, options)
    {
    }

    private EdgeLlmEmbeddingGenerator(IDisposable model, bool ownsModel, EdgeLlmEmbeddingGeneratorOptions? options)
    {
        options ??= new();
        _model = model;
        _ownsModel = ownsModel;
        try
        {
            if (options.ContextLength < 1) throw new ArgumentException($"EdgeLlmEmbeddingGeneratorOptions.ContextLength must be >= 1, got {options.ContextLength}", nameof(options));
            if (options.Threads < 0) throw new ArgumentException($"EdgeLlmEmbeddingGeneratorOptions.Threads must be >= 0, got {options.Threads}", nameof(options));
            if (options.Normalize < -1) throw new ArgumentException($"EdgeLlmEmbeddingGeneratorOptions.Normalize must be >= -1, got {options.Normalize}", nameof(options));
            var file = model is BertModel bert ? bert.File : ((Model)model).File;
            string arch = model is BertModel b ? b.Architecture : ((Model)model).Config.Architecture;
            var pooling = options.Pooling ?? TextEmbedder.FilePooling(file, arch) ?? PoolingType.Mean;
            if (pooling == PoolingType.None) throw new ArgumentException("EdgeLlmEmbeddingGeneratorOptions.Pooling: none gives a vector per token; an embedding generator gives one per text (mean, cls or last)", nameof(options));
            if (model is BertModel encoder)
                _embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(file), pooling, options.Normalize);
            else
            {
                _context = new InferenceContext((Model)model, options.ContextLength, options.Threads);
                _embedder = new TextEmbedder(_context, Tokenizer.FromGguf(file), pooling, options.Normalize);
            }
            ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(file.FilePath);
            Uri? uri = Path.IsPathRooted(file.FilePath) ? new Uri(file.FilePath) : null;
            _metadata = new AI.EmbeddingGeneratorMetadata("edgellm", uri, ModelId, _embedder.Dimensions);
        }
        catch
        {
            _context?.Dispose();
            if (ownsModel) model.Dispose();
            throw;
        }
    }

    /// <summary>The model id reported in embeddings.</summary>
    public string ModelId { get; }

    /// <summary>The embedder (pooling, normalization, dimensions).</summary>
    public TextEmbedder Embedder => _embedder;

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">a null or empty text, a text longer than the context, or <see cref="AI.EmbeddingGenerationOptions.Dimensions"/> other than the model's</exception>
    public async Task<AI.GeneratedEmbeddings<AI.Embedding<float>>> GenerateAsync(IEnumerable<string> values, AI.EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (options?.Dimensions is { } d && d != _embedder.Dimensions)
            throw new ArgumentException($"EmbeddingGenerationOptions.Dimensions is {d}; this model's embeddings have {_embedder.Dimensions}", nameof(options));
        if (options?.ModelId is { Length: > 0 } id && id != ModelId)
            throw new ArgumentException($"EmbeddingGenerationOptions.ModelId is '{id}', but this generator runs '{ModelId}'", nameof(options));
        var texts = values.ToList();
        var tokens = new List<int[]>(texts.Count);
        for (int i = 0; i < texts.Count; i++)
        {
            if (string.IsNullOrEmpty(texts[i])) throw new ArgumentException($"value {i} is null or empty", nameof(values));
            int[] t = _embedder.Tokenize(texts[i]);
            if (t.Length > _embedder.ContextLength)
                throw new ArgumentException($"value {i} is {t.Length} tokens; the context holds {_embedder.ContextLength} ({(_context is null ? "the encoder's context_length" : "EdgeLlmEmbeddingGeneratorOptions.ContextLength")})", nameof(values));
            tokens.Add(t);
        }
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            var result = new AI.GeneratedEmbeddings<AI.Embedding<float>>(texts.Count);
            int total = 0;
            await Task.Factory.StartNew(() =>
            {
                // An encoder runs the texts in batches (EmbedBatch); a decoder one by one, cancellable between texts.
                if (_context is null)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    foreach (var v in _embedder.EmbedBatch(tokens)) result.Add(new AI.Embedding<float>(v) { ModelId = ModelId, CreatedAt = DateTimeOffset.UtcNow });
                }
                else
                    foreach (var t in tokens)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        result.Add(new AI.Embedding<float>(_embedder.Embed(t)) { ModelId = ModelId, CreatedAt = DateTimeOffset.UtcNow });
                    }
                total = tokens.Sum(t => t.Length);
            }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
            result.Usage = new AI.UsageDetails { InputTokenCount = total, TotalTokenCount = total };
            return result;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(AI.EmbeddingGeneratorMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_model)) return _model;
        if (serviceType == typeof(TextEmbedder)) return _embedder;
        return null;
    }

    /// <summary>Frees the context (and the model when the generator loaded it), after a call in progress ends.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _gate.Wait();
        try
        {
            _context?.Dispose();
            if (_ownsModel) _model.Dispose();
        }
        finally
        {
            _gate.Release();
        }
    }
}
