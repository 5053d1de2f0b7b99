using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Engine;

/// <summary>How a text's token vectors become one embedding (llama.cpp's <c>enum llama_pooling_type</c>, same numbers).</summary>
public enum PoolingType
{
    /// <summary>No pooling: one vector per token.</summary>
    None = 0,

    /// <summary>The mean of the token vectors.</summary>
    Mean = 1,

    /// <summary>The first token's vector (BERT's [CLS]).</summary>
    Cls = 2,

    /// <summary>The last token's vector (decoder embedding models: Qwen3-Embedding, e5-mistral, gte-Qwen).</summary>
    Last = 3,
}

/// <summary>
/// Text embeddings, as llama.cpp's <c>llama-embedding</c> computes them, from a decoder model (an
/// <see cref="InferenceContext"/>) or an encoder (<see cref="BertModel"/>: all-MiniLM, bge, nomic-embed-text, EmbeddingGemma): the
/// text is tokenized (the vocabulary's BOS/EOS, or [CLS]/[SEP], added, special-token text parsed), evaluated from
/// position 0, and the final hidden states (a decoder's after its output norm, <c>t_embd</c>) are pooled
/// (<see cref="PoolingType"/>), passed through any layers the model has after pooling (EmbeddingGemma's dense layers,
/// <see cref="BertModel.ProjectPooled"/>) and normalized (<see cref="Normalize"/>, <c>--embd-normalize</c>). Embedding models say
/// how to pool in <c>{arch}.pooling_type</c> (Qwen3-Embedding: last; all-MiniLM: mean; bge: cls); a file without it
/// pools as <see cref="PoolingType.None"/>, as llama.cpp does, unless a pooling is given. Runs on the CPU; not
/// thread-safe (one context or encoder).
/// </summary>
public sealed class TextEmbedder
{
    /// <summary>An embedder over <paramref name="context"/> (not owned; its KV cache is reset for every text).</summary>
    /// <param name="pooling">the pooling; null: the file's <c>{arch}.pooling_type</c>, else none</param>
    /// <param name="normalize">llama.cpp's <c>--embd-normalize</c>: -1 none, 0 max-abs scaled to int16, 1 taxicab, 2 euclidean (default), p &gt; 2 p-norm</param>
    /// <exception cref="NotSupportedException">the file asks for rank pooling (a reranker: see <see cref="TextReranker"/>) and no pooling is given</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="normalize"/> below -1</exception>
    public TextEmbedder(InferenceContext context, Tokenizer tokenizer, PoolingType? pooling = null, int normalize = 2)
        : this(context ?? throw new ArgumentNullException(nameof(context)), null, tokenizer, pooling, normalize)
    {
    }

    /// <summary>An embedder over the encoder <paramref name="encoder"/> (not owned).</summary>
    /// <param name="pooling">the pooling; null: the file's <c>{arch}.pooling_type</c>, else none</param>
    /// <param name="normalize">as for a decoder's embedder</param>
    /// <exception cref="NotSupportedException">the file asks for rank pooling (a reranker: see <see cref="TextReranker"/>) and no pooling is given</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="normalize"/> below -1</exception>
    public TextEmbedder(BertModel encoder, Tokenizer tokenizer, PoolingType? pooling = null, int normalize = 2)
        : this(null, encoder ?? throw new ArgumentNullException(nameof(encoder)), tokenizer, pooling, normalize)
    {
    }

    /// <summary>Exactly one of <paramref name="context"/> and <paramref name="encoder"/> is given.</summary>
    private TextEmbedder(InferenceContext? context, BertModel? encoder, Tokenizer tokenizer, PoolingType? pooling, int normalize)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        CheckNormalize(normalize);
        Context = context;
        Encoder = encoder;
        Tokenizer = tokenizer;
        var (file, architecture) = encoder is not null ? (encoder.File, encoder.Architecture) : (context!.Model.File, context.Model.Config.Architecture);
        Pooling = pooling ?? FilePooling(file, architecture) ?? PoolingType.None;
        Normalization = normalize;
        Dimensions = encoder?.EmbeddingLength ?? context!.Model.Config.EmbeddingLength;
        ContextLength = encoder?.ContextLength ?? context!.ContextLength;
    }

    private static void CheckNormalize(int normalize)
    {
        if (normalize < -1) throw new ArgumentOutOfRangeException(nameof(normalize), normalize, "the normalization must be -1 (none), 0 (max-abs, int16), 1 (taxicab), 2 (euclidean) or a larger p-norm");
    }

    /// <summary>The decoder context evaluated, or null for an encoder.</summary>
    public InferenceContext? Context { get; }

    /// <summary>The encoder evaluated, or null for a decoder.</summary>
    public BertModel? Encoder { get; }

    /// <summary>The most tokens one text may have.</summary>
    public int ContextLength { get; }

    /// <summary>The tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The pooling applied.</summary>
    public PoolingType Pooling { get; }

    /// <summary>The normalization (<c>--embd-normalize</c>).</summary>
    public int Normalization { get; }

    /// <summary>Dimensions of an embedding (the model's embedding length).</summary>
    public int Dimensions { get; }

    /// <summary>The pooling a file asks for (<c>{arch}.pooling_type</c>), or null when it names none.</summary>
    /// <exception cref="NotSupportedException">rank pooling (4) or an unknown value</exception>
    public static PoolingType? FilePooling(GgufFile file, string architecture)
    {
        ArgumentNullException.ThrowIfNull(file);
        long? v = file.GetInt($"{architecture}.pooling_type");
        return v switch
        {
            null or -1 => null,
            0 or 1 or 2 or 3 => (PoolingType)v.Value,
            4 => throw new NotSupportedException($"{architecture}.pooling_type is 4 (rank): the model is a reranker, which scores query/document pairs (edgellm rerank, the server's /v1/rerank, TextReranker) instead of embedding texts; give a pooling (mean, cls or last) to embed with it anyway"),
            _ => throw new NotSupportedException($"{architecture}.pooling_type is {v}, which is not a llama.cpp pooling type (0 none, 1 mean, 2 cls, 3 last, 4 rank)"),
        };
    }

    /// <summary>The tokens a text is embedded as (BOS/EOS as the vocabulary asks, special-token text parsed: llama-embedding's).</summary>
    public int[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
    }

    /// <summary>The pooled, normalized embedding of <paramref name="text"/> (<see cref="Dimensions"/> floats).</summary>
    /// <exception cref="InvalidOperationException">the pooling is <see cref="PoolingType.None"/> (use <see cref="EmbedTokens(string)"/>)</exception>
    /// <exception cref="ArgumentException">the text has no tokens, or more than the context holds</exception>
    public float[] Embed(string text) => Embed(Tokenize(text));

    /// <inheritdoc cref="Embed(string)"/>
    public float[] Embed(IReadOnlyList<int> tokens)
    {
        CheckPooled();
        return Pool(Hidden(tokens), 0, tokens.Count);
    }

    /// <summary>
    /// The pooled, normalized embeddings of several texts, in order, each as <see cref="Embed(IReadOnlyList{int})"/> gives
    /// it. An encoder runs consecutive texts together, up to <see cref="ContextLength"/> tokens a pass, each attending only
    /// to itself (<see cref="BertModel.Encode(ReadOnlySpan{int}, ReadOnlySpan{int})"/>: the same numbers, fuller matrix
    /// tiles, so many short texts go several times faster); a decoder's context embeds them one by one.
    /// </summary>
    /// <exception cref="InvalidOperationException">the pooling is <see cref="PoolingType.None"/></exception>
    /// <exception cref="ArgumentException">a text with no tokens, or more than the context holds (the message names which)</exception>
    public List<float[]> EmbedBatch(IReadOnlyList<int[]> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        CheckPooled();
        for (int i = 0; i < texts.Count; i++)
        {
            ArgumentNullException.ThrowIfNull(texts[i], nameof(texts));
            if (texts[i].Length == 0) throw new ArgumentException($"text {i} has no tokens", nameof(texts));
            if (texts[i].Length > ContextLength) throw new ArgumentException($"text {i} is {texts[i].Length} tokens; the context holds {ContextLength}", nameof(texts));
        }
        var result = new List<float[]>(texts.Count);
        if (Encoder is null)
        {
            foreach (var t in texts) result.Add(Embed(t));
            return result;
        }
        foreach (var (_, tokens, starts) in BertModel.Passes(texts, ContextLength))
        {
            float[] hidden = Encoder.Encode(tokens, starts);
            for (int i = 0; i + 1 < starts.Length; i++) result.Add(Pool(hidden, (long)starts[i] * Dimensions, starts[i + 1] - starts[i]));
        }
        return result;
    }

    /// <summary><see cref="EmbedBatch(IReadOnlyList{int[]})"/> of the texts' tokens.</summary>
    public List<float[]> EmbedBatch(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        return EmbedBatch(texts.Select(Tokenize).ToList());
    }

    private void CheckPooled()
    {
        if (Pooling == PoolingType.None)
            throw new InvalidOperationException("the pooling is none (the model names no pooling_type): give one (mean, cls or last) to get one vector per text, or embed per token");
    }

    /// <summary>The pooled, normalized vector of the <paramref name="n"/> token rows at <paramref name="offset"/> of <paramref name="hidden"/>.</summary>
    private float[] Pool(float[] hidden, long offset, int n)
    {
        int d = Dimensions;
        var pooled = new float[d];
        switch (Pooling)
        {
            case PoolingType.Mean:
                // llama.cpp multiplies by a [n] row of 1/n (ggml_mul_mat with inp_mean): the sum of x·(1/n) in token order.
                float w = 1f / n;
                for (int t = 0; t < n; t++)
                    for (int i = 0; i < d; i++) pooled[i] += hidden[offset + (long)t * d + i] * w;
                break;
            case PoolingType.Cls:
                Array.Copy(hidden, offset, pooled, 0, d);
                break;
            default:
                Array.Copy(hidden, offset + (long)(n - 1) * d, pooled, 0, d);
                break;
        }
        Encoder?.ProjectPooled(pooled, 1); // (EmbeddingGemma's dense layers)
        Normalize(pooled, Normalization);
        return pooled;
    }

    /// <summary>One normalized vector per token of <paramref name="text"/> (pooling none), in token order.</summary>
    public float[][] EmbedTokens(string text)
    {
        var tokens = Tokenize(text);
        float[] hidden = Hidden(tokens);
        int d = Dimensions;
        Encoder?.ProjectPooled(hidden, tokens.Length); // (as llama.cpp, which applies the dense layers to every token's row when nothing pools)
        var rows = new float[tokens.Length][];
        for (int t = 0; t < rows.Length; t++)
        {
            rows[t] = hidden.AsSpan(t * d, d).ToArray();
            Normalize(rows[t], Normalization);
        }
        return rows;
    }

    private float[] Hidden(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count == 0) throw new ArgumentException("the text has no tokens (and the vocabulary adds no BOS)", nameof(tokens));
        if (tokens.Count > ContextLength)
            throw new ArgumentException($"the text is {tokens.Count} tokens; the context holds {ContextLength}", nameof(tokens));
        if (Encoder is not null) return Encoder.Encode(tokens.ToArray());
        Context!.Reset();
        return Context.EvalHidden(tokens.ToArray());
    }

    /// <summary>llama.cpp's <c>common_embd_normalize</c>: scales <paramref name="v"/> in place by 1/norm (0 when the norm is 0).</summary>
    public static void Normalize(Span<float> v, int normalize)
    {
        double sum = 0;
        switch (normalize)
        {
            case -1:
                return;
            case 0:
                foreach (float x in v) sum = Math.Max(sum, Math.Abs(x));
                sum /= 32760.0; // an int16 range
                break;
            case 2:
                foreach (float x in v) sum += x * x;
                sum = Math.Sqrt(sum);
                break;
            default:
                foreach (float x in v) sum += Math.Pow(Math.Abs(x), normalize);
                sum = Math.Pow(sum, 1.0 / normalize);
                break;
        }
        float norm = sum > 0 ? (float)(1.0 / sum) : 0f;
        for (int i = 0; i < v.Length; i++) v[i] *= norm;
    }
}
