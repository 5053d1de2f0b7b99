using EdgeLlm.Kernels;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Engine;

/// <summary>One document's place in a ranking: its index in the list given, its relevance score, the tokens of its pair.</summary>
/// <param name="Index">the document's index in the list that was ranked</param>
/// <param name="Score">the reranker's relevance score, a logit (llama.cpp's; <see cref="TextReranker.Sigmoid"/> maps it into (0, 1))</param>
/// <param name="Tokens">tokens of the query/document pair the model read</param>
public readonly record struct RerankResult(int Index, float Score, int Tokens);

/// <summary>
/// Reranking with a cross-encoder (a BERT encoder whose file has <c>{arch}.pooling_type</c> 4, rank, and a classification
/// head: ms-marco-MiniLM, jina-reranker, bge-reranker): the query and a document are read together and the head gives a
/// relevance score, as llama.cpp's server computes it for <c>/v1/rerank</c>. The pair is laid out as llama.cpp's
/// <c>format_prompt_rerank</c>: the file's rerank template (<c>tokenizer.chat_template.rerank</c>, with <c>{query}</c> and
/// <c>{document}</c>) when it has one, else [BOS] query [EOS] [SEP] document [EOS], each special token where the vocabulary
/// adds it (add_bos, add_eos, add_sep; EOS falls back to the separator), so a BERT file converted with its pair template
/// (add_eos) reads [CLS] query [SEP] document [SEP].
/// </summary>
/// <remarks>
/// Like llama.cpp, every token takes token type 0 (the document's segment is not marked as type 1, as Hugging Face's
/// BERT cross-encoders mark it): the same file gives llama.cpp's scores, which for such models differ slightly from
/// transformers'. Pairs run in batches of up to <see cref="ContextLength"/> tokens, each pair attending only to itself
/// (<see cref="BertModel.Classify"/>). CPU only; not thread-safe.
/// A decoder reranker (Qwen3-Reranker: a <c>qwen3</c> file with rank pooling, a <c>cls.output</c> of two rows, the
/// lm_head's "yes" and "no", and a rerank template) runs over an <see cref="InferenceContext"/>, as llama.cpp does: the
/// last token's final hidden state (after the output norm) times cls.output, softmax over the labels (qwen3), the first
/// (the probability of "yes") the score; one pair at a time, the context reset for each.
/// </remarks>
public sealed unsafe class TextReranker
{
    /// <summary>A reranker over <paramref name="encoder"/> (not owned).</summary>
    /// <exception cref="NotSupportedException">the file has no classification head (an embedding model)</exception>
    public TextReranker(BertModel encoder, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (encoder.ClassifierOutputs == 0)
            throw new NotSupportedException($"the model ({encoder.Architecture}) has no classification head (cls.weight, cls.output.weight): it is an embedding model, not a reranker; use edgellm embed");
        Encoder = encoder;
        Tokenizer = tokenizer;
        Template = encoder.File.GetString(TemplateKey);
        ContextLength = encoder.ContextLength;
        Outputs = encoder.ClassifierOutputs;
    }

    /// <summary>A reranker over a decoder's <paramref name="context"/> (not owned; reset for every pair).</summary>
    /// <exception cref="NotSupportedException">the file is not a reranker (no rank pooling, or no cls.output.weight)</exception>
    /// <exception cref="ModelLoadException">cls.output.weight misshapen</exception>
    public TextReranker(InferenceContext context, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var file = context.Model.File;
        string arch = context.Model.Config.Architecture;
        if (file.GetInt($"{arch}.pooling_type") != 4 || file.FindTensor("cls.output.weight") is not { } info)
            throw new NotSupportedException($"the model ({arch}) is not a reranker: a decoder reranker has {arch}.pooling_type 4 (rank) and cls.output.weight (as Qwen3-Reranker)");
        int labels = info.Dims.Length > 1 ? checked((int)info.Dims[1]) : 1;
        var loader = new TensorLoader(file);
        var embd = new TensorLoader.Dim(context.Model.Config.EmbeddingLength, $"{arch}.embedding_length");
        _head = loader.Matrix("cls.output.weight", embd, new TensorLoader.Dim(labels, "cls.output.weight's rows"));
        _headBias = loader.OptionalVector("cls.output.bias", new TensorLoader.Dim(labels, "cls.output.weight's rows"));
        _softmax = arch is "qwen3"; // llama.cpp: the Qwen3 reranker's yes/no logits become probabilities
        Context = context;
        Tokenizer = tokenizer;
        Template = file.GetString(TemplateKey);
        ContextLength = context.ContextLength;
        Outputs = labels;
    }

    private readonly WeightMatrix? _head;
    private readonly float[]? _headBias;
    private readonly bool _softmax;

    /// <summary>The GGUF key of a reranker's prompt template (llama.cpp's <c>llama_model_chat_template(model, "rerank")</c>).</summary>
    public const string TemplateKey = "tokenizer.chat_template.rerank";

    /// <summary>The encoder, or null for a decoder reranker.</summary>
    public BertModel? Encoder { get; }

    /// <summary>The decoder's context, or null for an encoder.</summary>
    public InferenceContext? Context { get; }

    /// <summary>Values the head gives per pair (the first is the score).</summary>
    public int Outputs { get; }

    /// <summary>The tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The file's rerank template (<see cref="TemplateKey"/>), or null.</summary>
    public string? Template { get; }

    /// <summary>The most tokens a query/document pair may have (the encoder's context_length, or the context's size).</summary>
    public int ContextLength { get; }

    /// <summary>The tokens the model reads for <paramref name="query"/> and <paramref name="document"/> (see the class summary).</summary>
    public int[] Tokenize(string query, string document) => PairTokens(Tokenizer, Template, query, document);

    /// <summary>The tokens of a query/document pair for <paramref name="tokenizer"/>'s vocabulary and a rerank template (or null): llama.cpp's format_prompt_rerank.</summary>
    public static int[] PairTokens(Tokenizer tokenizer, string? template, string query, string document)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(document);
        if (template is not null)
            return tokenizer.Encode(template.Replace("{query}", query, StringComparison.Ordinal).Replace("{document}", document, StringComparison.Ordinal), addSpecial: false, parseSpecial: true);
        int[] q = tokenizer.Encode(query, addSpecial: false, parseSpecial: false);
        int[] d = tokenizer.Encode(document, addSpecial: false, parseSpecial: false);
        int eos = tokenizer.Eos != Tokenizer.NoToken ? tokenizer.Eos : tokenizer.Separator ?? Tokenizer.NoToken;
        var pair = new List<int>(q.Length + d.Length + 4);
        void Special(bool add, int id, string what)
        {
            if (!add) return;
            if (id < 0) throw new InvalidOperationException($"the vocabulary adds a {what} token but names none");
            pair.Add(id);
        }
        Special(tokenizer.AddBos, tokenizer.Bos, "BOS");
        pair.AddRange(q);
        Special(tokenizer.AddEos, eos, "EOS");
        Special(tokenizer.AddSep, tokenizer.Separator ?? Tokenizer.NoToken, "separator");
        pair.AddRange(d);
        Special(tokenizer.AddEos, eos, "EOS");
        return pair.ToArray();
    }

    /// <summary>The relevance score of <paramref name="document"/> for <paramref name="query"/> (a logit: higher is more relevant).</summary>
    /// <exception cref="ArgumentException">the pair has no tokens or more than <see cref="ContextLength"/></exception>
    public float Score(string query, string document) => Scores([Tokenize(query, document)])[0];

    /// <summary>The relevance score of each document for <paramref name="query"/>, in the documents' order.</summary>
    /// <exception cref="ArgumentException">no documents, or a pair longer than <see cref="ContextLength"/> (the message names which)</exception>
    public float[] Scores(string query, IReadOnlyList<string> documents)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(documents);
        return Scores(documents.Select(d => Tokenize(query, d ?? throw new ArgumentNullException(nameof(documents)))).ToList());
    }

    /// <summary>
    /// The score of each pair of tokens (from <see cref="Tokenize"/>), in order. Consecutive pairs run together, up to
    /// <see cref="ContextLength"/> tokens a pass, each attending only to itself: the same numbers as one by one.
    /// </summary>
    /// <exception cref="ArgumentException">no pairs, an empty pair, or one longer than <see cref="ContextLength"/></exception>
    public float[] Scores(IReadOnlyList<int[]> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException("no documents to rank", nameof(pairs));
        for (int i = 0; i < pairs.Count; i++)
        {
            ArgumentNullException.ThrowIfNull(pairs[i], nameof(pairs));
            if (pairs[i].Length == 0) throw new ArgumentException($"document {i}: the pair has no tokens", nameof(pairs));
            if (pairs[i].Length > ContextLength)
                throw new ArgumentException($"document {i}: the query and document are {pairs[i].Length} tokens; the context holds {ContextLength}", nameof(pairs));
        }
        int outputs = Outputs;
        var scores = new float[pairs.Count];
        if (Encoder is null)
        {
            for (int i = 0; i < pairs.Count; i++) scores[i] = DecoderHead(pairs[i])[0];
            return scores;
        }
        foreach (var (first, tokens, starts) in BertModel.Passes(pairs, ContextLength))
        {
            float[] values = Encoder.Classify(tokens, starts);
            for (int i = 0; i + 1 < starts.Length; i++) scores[first + i] = values[i * outputs]; // the first label: llama.cpp's score
        }
        return scores;
    }

    /// <summary>The head's values for one pair on the decoder: the last token's hidden state · cls.output (+ bias), softmax for qwen3.</summary>
    private float[] DecoderHead(int[] pair)
    {
        var context = Context!;
        context.Reset();
        float[] hidden = context.EvalHidden(pair);
        context.Reset();
        int d = _head!.Cols, n = _head.Rows;
        var values = new float[n];
        long scratchBytes = MatMul.ScratchBytes(_head, 1);
        byte[] scratch = new byte[scratchBytes + 64];
        fixed (float* h = &hidden[hidden.Length - d])
        fixed (float* y = values)
        fixed (byte* sc = scratch)
            MatMul.Multiply(_head, h, 1, y, sc, threads: 1);
        if (_headBias is not null)
            for (int i = 0; i < n; i++) values[i] += _headBias[i];
        if (_softmax)
        {
            float max = values.Max();
            double sum = 0;
            for (int i = 0; i < n; i++) sum += values[i] = MathF.Exp(values[i] - max);
            for (int i = 0; i < n; i++) values[i] = (float)(values[i] / sum);
        }
        return values;
    }

    /// <summary>
    /// The documents ranked for <paramref name="query"/>, most relevant first (ties keep the documents' order), at most
    /// <paramref name="topN"/> of them (llama.cpp's <c>top_n</c>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topN"/> below 0</exception>
    public List<RerankResult> Rank(string query, IReadOnlyList<string> documents, int topN = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentOutOfRangeException.ThrowIfNegative(topN);
        var pairs = documents.Select(d => Tokenize(query, d ?? throw new ArgumentNullException(nameof(documents)))).ToList();
        return Rank(Scores(pairs), pairs.Select(p => p.Length).ToArray(), topN);
    }

    /// <summary>Orders <paramref name="scores"/> (highest first, ties by index) and keeps the first <paramref name="topN"/>.</summary>
    public static List<RerankResult> Rank(IReadOnlyList<float> scores, IReadOnlyList<int> tokens, int topN = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentOutOfRangeException.ThrowIfNegative(topN);
        return Enumerable.Range(0, scores.Count)
            .Select(i => new RerankResult(i, scores[i], tokens[i]))
            .OrderByDescending(r => r.Score)
            .ThenBy(r => r.Index)
            .Take(topN)
            .ToList();
    }

    /// <summary>1 / (1 + e^-score): a score as a probability of relevance (what Hugging Face's cross-encoders and TEI report).</summary>
    public static float Sigmoid(float score) => (float)(1.0 / (1.0 + Math.Exp(-score)));
}
