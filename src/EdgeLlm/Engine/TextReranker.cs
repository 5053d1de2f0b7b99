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
/// </remarks>
public sealed class TextReranker
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
    }

    /// <summary>The GGUF key of a reranker's prompt template (llama.cpp's <c>llama_model_chat_template(model, "rerank")</c>).</summary>
    public const string TemplateKey = "tokenizer.chat_template.rerank";

    /// <summary>The encoder.</summary>
    public BertModel Encoder { get; }

    /// <summary>The tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The file's rerank template (<see cref="TemplateKey"/>), or null.</summary>
    public string? Template { get; }

    /// <summary>The most tokens a query/document pair may have.</summary>
    public int ContextLength => Encoder.ContextLength;

    /// <summary>The tokens the model reads for <paramref name="query"/> and <paramref name="document"/> (see the class summary).</summary>
    public int[] Tokenize(string query, string document)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(document);
        if (Template is not null)
            return Tokenizer.Encode(Template.Replace("{query}", query, StringComparison.Ordinal).Replace("{document}", document, StringComparison.Ordinal), addSpecial: false, parseSpecial: true);
        int[] q = Tokenizer.Encode(query, addSpecial: false, parseSpecial: false);
        int[] d = Tokenizer.Encode(document, addSpecial: false, parseSpecial: false);
        int eos = Tokenizer.Eos != Tokenizer.NoToken ? Tokenizer.Eos : Tokenizer.Separator ?? Tokenizer.NoToken;
        var pair = new List<int>(q.Length + d.Length + 4);
        void Special(bool add, int id, string what)
        {
            if (!add) return;
            if (id < 0) throw new InvalidOperationException($"the vocabulary adds a {what} token but names none");
            pair.Add(id);
        }
        Special(Tokenizer.AddBos, Tokenizer.Bos, "BOS");
        pair.AddRange(q);
        Special(Tokenizer.AddEos, eos, "EOS");
        Special(Tokenizer.AddSep, Tokenizer.Separator ?? Tokenizer.NoToken, "separator");
        pair.AddRange(d);
        Special(Tokenizer.AddEos, eos, "EOS");
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
                throw new ArgumentException($"document {i}: the query and document are {pairs[i].Length} tokens; the context holds {ContextLength} ({Encoder.Architecture}.context_length)", nameof(pairs));
        }
        int outputs = Encoder.ClassifierOutputs;
        var scores = new float[pairs.Count];
        foreach (var (first, tokens, starts) in BertModel.Passes(pairs, ContextLength))
        {
            float[] values = Encoder.Classify(tokens, starts);
            for (int i = 0; i + 1 < starts.Length; i++) scores[first + i] = values[i * outputs]; // the first label: llama.cpp's score
        }
        return scores;
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
