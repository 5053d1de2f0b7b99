using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Synth;

/// <summary>
/// The shape of a BERT encoder as llama.cpp's converter writes it (<c>bert</c>: learned positions, GELU; <c>nomic-bert</c>:
/// rotary positions with <paramref name="RopeFreqBase"/>, fused Q/K/V without biases, SwiGLU; <c>jina-bert-v2</c>: ALiBi,
/// GEGLU with gate and up fused in ffn_up, or with <paramref name="JinaExtras"/> a separate ffn_gate, LayerNorms of Q
/// and K and a second attention norm, as jina-embeddings-v2-base-code). A reranker (<paramref name="Labels"/> &gt; 0) has
/// rank pooling (4) and a classification head, each tensor with a bias: cls (the pooler, n_embd × n_embd) and cls.output
/// (one row per label), or with <paramref name="PoolerOnly"/> only cls, of one row per label (jina-reranker's layout),
/// and its vocabulary reads a pair as [CLS] A [SEP] B [SEP]. <paramref name="Unigram"/>: XLM-RoBERTa's vocabulary
/// instead of WordPiece (a SentencePiece unigram model, <c>t5</c>, with a precompiled character map; one token type),
/// as bge-m3, multilingual-e5 and bge-reranker carry it: &lt;s&gt; A &lt;/s&gt;, a pair &lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;.
/// </summary>
public sealed record BertShape(string Name, string Architecture, int EmbeddingLength, int BlockCount, int HeadCount, int FeedForwardLength,
    int ContextLength, int VocabSize, float LayerNormEps, PoolingType Pooling, float RopeFreqBase = 0f, bool JinaExtras = false,
    int Labels = 0, bool PoolerOnly = false, bool Unigram = false);

/// <summary>
/// Random-weight BERT encoders with a WordPiece vocabulary laid out as llama.cpp's converter writes BERT's
/// (<c>tokenizer.ggml.model</c> <c>bert</c>: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, word-initial pieces
/// with "▁", continuations bare), for benchmarks and for checking EdgeLlm against llama.cpp on the same file.
/// </summary>
public static unsafe class BertSynthesizer
{
    /// <summary>Real embedding models' shapes (their config.json).</summary>
    public static IReadOnlyList<BertShape> Shapes { get; } =
    [
        new("all-minilm-l6-v2", "bert", 384, 6, 12, 1536, 512, 30522, 1e-12f, PoolingType.Mean),
        new("bge-small-en-v1.5", "bert", 384, 12, 12, 1536, 512, 30522, 1e-12f, PoolingType.Cls),
        new("bge-base-en-v1.5", "bert", 768, 12, 12, 3072, 512, 30522, 1e-12f, PoolingType.Cls),
        new("nomic-embed-text-v1.5", "nomic-bert", 768, 12, 12, 3072, 2048, 30522, 1e-12f, PoolingType.Mean, 1000f),
        new("jina-embeddings-v2-small-en", "jina-bert-v2", 512, 4, 8, 2048, 8192, 30528, 1e-12f, PoolingType.Mean),
        new("jina-embeddings-v2-base-en", "jina-bert-v2", 768, 12, 12, 3072, 8192, 30528, 1e-12f, PoolingType.Mean),
        // cross-encoders (rerankers): BertForSequenceClassification with one label
        new("ms-marco-minilm-l6-v2", "bert", 384, 6, 12, 1536, 512, 30522, 1e-12f, PoolingType.Cls, Labels: 1),
        new("ms-marco-minilm-l12-v2", "bert", 384, 12, 12, 1536, 512, 30522, 1e-12f, PoolingType.Cls, Labels: 1),
        // XLM-RoBERTa (a unigram vocabulary of 250,002 tokens; 514 positions less the 2 the converter drops)
        new("multilingual-e5-small", "bert", 384, 12, 12, 1536, 512, 250037, 1e-12f, PoolingType.Mean, Unigram: true),
        new("bge-m3", "bert", 1024, 24, 16, 4096, 8192, 250002, 1e-5f, PoolingType.Cls, Unigram: true),
        new("bge-reranker-base", "bert", 768, 12, 12, 3072, 512, 250002, 1e-5f, PoolingType.Cls, Labels: 1, Unigram: true),
        new("bge-reranker-v2-m3", "bert", 1024, 24, 16, 4096, 8192, 250002, 1e-5f, PoolingType.Cls, Labels: 1, Unigram: true),
    ];

    /// <summary>The shape named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static BertShape? Find(string name) => Shapes.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The WordPiece vocabulary of <paramref name="size"/> tokens (at least 1,000) a synthetic encoder carries.</summary>
    public static (string[] Tokens, int[] Types) Vocabulary(int size)
    {
        if (size < 1000) throw new ArgumentOutOfRangeException(nameof(size), size, "a synthetic WordPiece vocabulary has at least 1000 tokens");
        var tokens = new List<string>(size);
        var types = new List<int>(size);
        void Add(string t, int type)
        {
            tokens.Add(t);
            types.Add(type);
        }
        Add("[PAD]", 3);
        for (int i = 1; i < 100; i++) Add($"[unused{i - 1}]", 1);
        Add("[UNK]", 2);
        Add("[CLS]", 3);
        Add("[SEP]", 3);
        Add("[MASK]", 3);
        var seen = new HashSet<string>(tokens);
        void Piece(string t)
        {
            if (tokens.Count < size && seen.Add(t)) Add(t, 1);
        }
        // every printable ASCII character as a word and as a continuation, then Latin-1 letters, some CJK
        for (char c = '!'; c <= '~'; c++) { Piece("▁" + c); Piece(c.ToString()); }
        foreach (char c in "àáâäçèéêëìíîïñòóôöùúûüýÿßøæœ") { Piece("▁" + c); Piece(c.ToString()); }
        foreach (char c in "中文字的一是不了人我在有他这为之大来以个") Piece("▁" + c);
        string[] words =
        [
            "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "embed", "search", "query",
            "document", "passage", "model", "edge", "device", "cafe", "naive", "resume", "text", "token", "sentence",
            "un", "##able", "able", "ing", "ed", "er", "est", "ly", "tion", "s", "es",
        ];
        foreach (var w in words) { Piece("▁" + w); Piece(w); }
        // made-up pieces: letter pairs and triples, as words and continuations, until the size
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        for (int len = 2; tokens.Count < size && len <= 4; len++)
        {
            int count = (int)Math.Pow(letters.Length, len);
            for (int i = 0; i < count && tokens.Count < size; i++)
            {
                var chars = new char[len];
                for (int k = 0, v = i; k < len; k++, v /= letters.Length) chars[k] = letters[v % letters.Length];
                string s = new(chars);
                Piece(s);
                Piece("▁" + s);
            }
        }
        return (tokens.ToArray(), types.ToArray());
    }

    /// <summary>Writes a random-weight encoder of <paramref name="shape"/> with its matrices in <paramref name="type"/> (F32, F16, Q8_0, Q4_0, ...).</summary>
    /// <exception cref="ArgumentException">a type EdgeLlm cannot write, or a shape whose heads do not divide the width</exception>
    public static void Write(BertShape shape, string type, string path, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(path);
        if (!GgmlTypes.TryParse(type, out var matrixType) || !(matrixType is GgmlType.F32 or GgmlType.F16 || RowQuantizer.TryGet(matrixType, out _)))
            throw new ArgumentException($"'{type}' is not a tensor type EdgeLlm writes (F32, F16, Q8_0, Q4_0, ...)", nameof(type));
        if (shape.EmbeddingLength % shape.HeadCount != 0) throw new ArgumentException($"{shape.HeadCount} heads do not divide the width {shape.EmbeddingLength}", nameof(shape));
        var (tokens, tokenTypes) = shape.Unigram ? (null!, null!) : Vocabulary(shape.VocabSize);
        float[]? scores = null;
        if (shape.Unigram) (tokens, scores, tokenTypes) = UnigramVocabulary.Vocabulary(shape.VocabSize);
        string a = shape.Architecture;
        bool nomic = a == "nomic-bert", jina = a == "jina-bert-v2";
        var w = new GgufWriter()
            .Set("general.architecture", a)
            .Set("general.name", $"synthetic {shape.Name}")
            .Set("general.file_type", matrixType switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q4_0 => 2u, GgmlType.Q8_0 => 7u, _ => 0u })
            .Set($"{a}.context_length", (uint)shape.ContextLength)
            .Set($"{a}.embedding_length", (uint)shape.EmbeddingLength)
            .Set($"{a}.feed_forward_length", (uint)shape.FeedForwardLength)
            .Set($"{a}.block_count", (uint)shape.BlockCount)
            .Set($"{a}.attention.head_count", (uint)shape.HeadCount)
            .Set($"{a}.attention.layer_norm_epsilon", shape.LayerNormEps)
            .Set($"{a}.attention.causal", false)
            .Set($"{a}.pooling_type", shape.Labels > 0 ? 4u : (uint)shape.Pooling)
            .Set("tokenizer.ggml.tokens", GgufValue.From(tokens))
            .Set("tokenizer.ggml.token_type", GgufValue.From(tokenTypes));
        if (shape.Unigram)
        {
            // as the converter writes XLM-RoBERTa: RobertaProcessing's <s> A </s> (</s></s> between a pair's texts)
            w.Set("tokenizer.ggml.model", "t5")
             .Set("tokenizer.ggml.scores", GgufValue.From(scores!))
             .Set("tokenizer.ggml.bos_token_id", 0u)
             .Set("tokenizer.ggml.padding_token_id", 1u)
             .Set("tokenizer.ggml.eos_token_id", 2u)
             .Set("tokenizer.ggml.seperator_token_id", 2u)
             .Set("tokenizer.ggml.unknown_token_id", 3u)
             .Set("tokenizer.ggml.mask_token_id", (uint)(tokens.Length - 1))
             .Set("tokenizer.ggml.add_bos_token", true)
             .Set("tokenizer.ggml.add_eos_token", true)
             .Set("tokenizer.ggml.add_sep_token", true)
             .Set("tokenizer.ggml.add_space_prefix", true)
             .Set("tokenizer.ggml.remove_extra_whitespaces", true)
             .Set("tokenizer.ggml.precompiled_charsmap", GgufValue.From(UnigramVocabulary.Charsmap(UnigramVocabulary.Rules)))
             .Set("tokenizer.ggml.token_type_count", 1u);
        }
        else
        {
            w.Set("tokenizer.ggml.model", "bert")
             .Set("tokenizer.ggml.unknown_token_id", 100u)
             .Set("tokenizer.ggml.seperator_token_id", 102u)
             .Set("tokenizer.ggml.padding_token_id", 0u)
             .Set("tokenizer.ggml.cls_token_id", 101u)
             .Set("tokenizer.ggml.mask_token_id", 103u)
             .Set("tokenizer.ggml.bos_token_id", 101u)
             .Set("tokenizer.ggml.add_bos_token", true)
             .Set("tokenizer.ggml.add_sep_token", true)
             .Set("tokenizer.ggml.token_type_count", 2u);
        }
        if (shape.Labels > 0)
        {
            // as the converter writes a cross-encoder: its labels, and (WordPiece) the pair template's [SEP] as EOS
            // (add_eos: [CLS] A [SEP] B [SEP])
            w.Set($"{a}.classifier.output_labels", GgufValue.From(Enumerable.Range(0, shape.Labels).Select(i => $"LABEL_{i}").ToArray()));
            if (!shape.Unigram)
                w.Set("tokenizer.ggml.eos_token_id", 102u)
                 .Set("tokenizer.ggml.add_eos_token", true)
                 .Set("tokenizer.ggml.add_sep_token", false);
        }
        if (nomic) w.Set($"{a}.rope.freq_base", shape.RopeFreqBase);

        int d = shape.EmbeddingLength, ff = shape.FeedForwardLength;
        int index = 0;
        void Matrix(string name, int cols, int rows, GgmlType t, float std) => AddRandom(w, name, t, cols, rows, std, 0f, seed, index++);
        void Vector(string name, int n, float std, float mean) => AddRandom(w, name, GgmlType.F32, n, 1, std, mean, seed, index++);
        Matrix("token_embd.weight", d, tokens.Length, matrixType == GgmlType.F32 ? GgmlType.F32 : GgmlType.F16, 0.5f);
        AddRandom(w, "token_types.weight", GgmlType.F32, d, shape.Unigram ? 1 : 2, 0.1f, 0f, seed, index++, matrix: true);
        if (!nomic && !jina) Matrix("position_embd.weight", d, shape.ContextLength, GgmlType.F32, 0.1f);
        Vector("token_embd_norm.weight", d, 0.1f, 1f);
        Vector("token_embd_norm.bias", d, 0.05f, 0f);
        float std = 1f / MathF.Sqrt(d), stdFf = 1f / MathF.Sqrt(ff);
        for (int il = 0; il < shape.BlockCount; il++)
        {
            string p = $"blk.{il}.";
            if (nomic) Matrix(p + "attn_qkv.weight", d, 3 * d, matrixType, std);
            else
            {
                foreach (var m in new[] { "attn_q", "attn_k", "attn_v" })
                {
                    Matrix(p + m + ".weight", d, d, matrixType, std);
                    Vector(p + m + ".bias", d, 0.05f, 0f);
                }
            }
            if (jina && shape.JinaExtras)
            {
                Vector(p + "attn_q_norm.weight", d, 0.1f, 1f);
                Vector(p + "attn_q_norm.bias", d, 0.05f, 0f);
                Vector(p + "attn_k_norm.weight", d, 0.1f, 1f);
                Vector(p + "attn_k_norm.bias", d, 0.05f, 0f);
            }
            Matrix(p + "attn_output.weight", d, d, matrixType, std);
            if (!nomic) Vector(p + "attn_output.bias", d, 0.05f, 0f);
            Vector(p + "attn_output_norm.weight", d, 0.1f, 1f);
            Vector(p + "attn_output_norm.bias", d, 0.05f, 0f);
            if (jina && shape.JinaExtras)
            {
                Vector(p + "attn_norm_2.weight", d, 0.1f, 1f);
                Vector(p + "attn_norm_2.bias", d, 0.05f, 0f);
            }
            if (jina)
            {
                // jina-embeddings-v2's gated_layers: gate and up in one ffn_up (2 × n_ff rows), or separate (JinaExtras)
                Matrix(p + "ffn_up.weight", d, shape.JinaExtras ? ff : 2 * ff, matrixType, std);
                if (shape.JinaExtras) Matrix(p + "ffn_gate.weight", d, ff, matrixType, std);
            }
            else Matrix(p + "ffn_up.weight", d, ff, matrixType, std);
            if (nomic) Matrix(p + "ffn_gate.weight", d, ff, matrixType, std);
            else if (!jina) Vector(p + "ffn_up.bias", ff, 0.05f, 0f);
            Matrix(p + "ffn_down.weight", ff, d, matrixType, stdFf);
            if (!nomic) Vector(p + "ffn_down.bias", d, 0.05f, 0f);
            Vector(p + "layer_output_norm.weight", d, 0.1f, 1f);
            Vector(p + "layer_output_norm.bias", d, 0.05f, 0f);
        }
        if (shape.Labels > 0)
        {
            if (shape.PoolerOnly)
            {
                // jina-bert-v2's head as llama.cpp loads it: cls is the classifier (n_embd → labels), then tanh
                AddRandom(w, "cls.weight", GgmlType.F32, d, shape.Labels, 0.2f, 0f, seed, index++, matrix: true);
                Vector("cls.bias", shape.Labels, 0.05f, 0f);
            }
            else
            {
                Matrix("cls.weight", d, d, matrixType, std);
                Vector("cls.bias", d, 0.05f, 0f);
                AddRandom(w, "cls.output.weight", GgmlType.F32, d, shape.Labels, 1f, 0f, seed, index++, matrix: true);
                Vector("cls.output.bias", shape.Labels, 0.5f, 0f);
            }
        }
        w.Write(path);
    }

    private static void AddRandom(GgufWriter w, string name, GgmlType type, int cols, int rows, float std, float mean, int seed, int index, bool matrix = false)
    {
        long[] dims = rows == 1 && !matrix ? [cols] : [cols, rows];
        w.AddTensor(name, type, dims, stream =>
        {
            long rowBytes = GgmlTypes.Info(type).RowBytes(cols);
            var row = new float[cols];
            var bytes = new byte[rowBytes];
            RowQuantizer.QuantizeRowFn? quantize = null;
            if (type is not (GgmlType.F32 or GgmlType.F16)) RowQuantizer.TryGet(type, out quantize);
            ulong state = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)index << 40);
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < cols; i++)
                {
                    // Irwin–Hall of four 16-bit uniforms: mean 0, variance ≈ 1
                    ulong z = state += 0x9E3779B97F4A7C15UL;
                    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                    z ^= z >> 31;
                    long sum = (long)(z & 0xFFFF) + (long)((z >> 16) & 0xFFFF) + (long)((z >> 32) & 0xFFFF) + (long)(z >> 48);
                    row[i] = mean + (sum - 131070) * (std * 1.7320508f / 65536f);
                }
                fixed (float* x = row)
                fixed (byte* dst = bytes)
                {
                    if (type == GgmlType.F32) MemoryMarshal.AsBytes(row.AsSpan()).CopyTo(bytes);
                    else if (type == GgmlType.F16) TensorPrimitives.ConvertToHalf(row, MemoryMarshal.Cast<byte, Half>(bytes.AsSpan()));
                    else quantize!(x, dst, cols);
                }
                stream.Write(bytes);
            }
        });
    }
}
