using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;

namespace EdgeLlm.Models;

/// <summary>
/// A BERT-style text encoder (GGUF architectures <c>bert</c>, <c>nomic-bert</c> and <c>jina-bert-v2</c>): the embedding
/// models edge applications run for search and retrieval (all-MiniLM, bge, mxbai-embed, e5, nomic-embed-text,
/// jina-embeddings-v2). It turns a
/// whole text into one hidden state per token with bidirectional attention and no KV cache; pool them with
/// <see cref="TextEmbedder"/>. Follows llama.cpp's <c>llm_build_bert</c>:
/// token + token-type-0 (+ learned position, <c>bert</c>) embeddings → LayerNorm → per block: Q, K, V with biases
/// (nomic: one fused attn_qkv and NEOX rope), softmax attention over every token, attn_output, + the block input,
/// LayerNorm, feed-forward (<c>bert</c>: up → GELU → down with biases; nomic: SwiGLU), + its input, LayerNorm.
/// <c>jina-bert-v2</c>: no position embeddings but ALiBi (slopes for a maximum bias of 8, −|i − j| within a text),
/// GEGLU (gate and up fused in ffn_up, or a separate ffn_gate), optional LayerNorms of Q and K and a second attention
/// norm after the block input is added again (jina-embeddings-v2-base-code).
/// No final norm: the last block's output is what llama.cpp pools.
/// </summary>
/// <remarks>
/// Products run through the same <see cref="MatMul"/> kernels as the decoders, on the weights as the file stores
/// them (no repacking); attention is f32, as llama.cpp's without flash attention. One text at a time; not
/// thread-safe. CPU only (the Vulkan backend runs decoders).
/// </remarks>
public sealed unsafe class BertModel : IDisposable
{
    /// <summary>The GGUF architectures this class loads.</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } = ["bert", "nomic-bert", "jina-bert-v2", GemmaEmbedding.ArchitectureName];

    private readonly bool _ownsFile;
    private readonly WeightMatrix _tokenEmbd;
    private readonly WeightMatrix? _posEmbd;
    private readonly float[]? _typeRow0;
    private readonly float[] _embNorm, _embNormB;
    private readonly Block[] _blocks;
    private readonly WeightMatrix? _cls, _clsOut;       // a reranker's classification head (cls, cls.output)
    private readonly float[]? _clsB, _clsOutB;
    private readonly GemmaEmbedding? _gemma;           // gemma-embedding: Gemma 3's block, its own forward pass
    private WorkerPool? _pool;
    private bool _disposed;

    private sealed class Block
    {
        public required WeightMatrix Wq, Wk, Wv, Wo;
        public float[]? Bq, Bk, Bv, Bo;
        public required float[] AttnNorm, AttnNormB, OutNorm, OutNormB;
        public required WeightMatrix Up, Down;
        public WeightMatrix? Gate;
        public float[]? BUp, BDown;
        public float[]? QNorm, QNormB, KNorm, KNormB;   // jina-bert-v2 (code): LayerNorm of Q and K
        public float[]? Norm2, Norm2B;                  // jina-bert-v2: attn_norm_2 after attn_output_norm
        public bool FusedGeGlu;                         // jina-bert-v2: ffn_up holds gate then up (2 × n_ff rows)
    }

    private BertModel(GgufFile file, bool ownsFile, int threads)
    {
        File = file;
        _ownsFile = ownsFile;
        Threads = threads;
        string a = Architecture = file.GetString("general.architecture")!;
        if (a == GemmaEmbedding.ArchitectureName)
        {
            var gemma = _gemma = new GemmaEmbedding(file, new TensorLoader(file));
            var gc = gemma.Config;
            (EmbeddingLength, BlockCount, HeadCount, HeadCountKv, HeadDim, FeedForwardLength) =
                (gc.EmbeddingLength, gc.BlockCount, gc.HeadCount, gc.HeadCountKv, gc.HeadDim, gc.FeedForwardLength);
            ContextLength = RequiredInt(file, $"{a}.context_length");
            (LayerNormEps, RopeFreqBase, DenseWidth) = (gc.RmsEps, gc.RopeFreqBase, gemma.DenseWidth);
            (_tokenEmbd, _embNorm, _embNormB, _blocks) = (gemma.TokenEmbedding, [], [], []);
            if (file.GetInt($"{a}.pooling_type") == 4) throw new ModelLoadException($"{a}.pooling_type is 4 (rank), but EmbeddingGemma has no classification head");
            return;
        }
        EmbeddingLength = RequiredInt(file, $"{a}.embedding_length");
        BlockCount = RequiredInt(file, $"{a}.block_count");
        HeadCount = RequiredInt(file, $"{a}.attention.head_count");
        FeedForwardLength = RequiredInt(file, $"{a}.feed_forward_length");
        ContextLength = RequiredInt(file, $"{a}.context_length");
        double eps = file.GetFloat($"{a}.attention.layer_norm_epsilon") ?? throw new ModelLoadException($"metadata key {a}.attention.layer_norm_epsilon is missing");
        LayerNormEps = (float)eps;
        if (!(LayerNormEps > 0) || !float.IsFinite(LayerNormEps)) throw new ModelLoadException($"{a}.attention.layer_norm_epsilon is {eps}; it must be a positive number");
        long kvHeads = file.GetInt($"{a}.attention.head_count_kv") ?? HeadCount;
        if (kvHeads != HeadCount) throw new ModelLoadException($"{a}.attention.head_count_kv is {kvHeads}, but a BERT encoder has as many key/value heads as query heads ({HeadCount})");
        if (EmbeddingLength % HeadCount != 0)
            throw new ModelLoadException($"{a}.embedding_length ({EmbeddingLength}) is not a multiple of {a}.attention.head_count ({HeadCount})");
        (HeadCountKv, HeadDim) = (HeadCount, EmbeddingLength / HeadCount);
        if (file.GetBool($"{a}.attention.causal") is true)
            throw new ModelLoadException($"{a}.attention.causal is true: EdgeLlm runs BERT encoders with bidirectional attention only");
        IsNomic = a == "nomic-bert";
        IsJina = a == "jina-bert-v2";
        RopeFreqBase = IsNomic ? (float)(file.GetFloat($"{a}.rope.freq_base") ?? 10000.0) : 0f;

        var tensors = new TensorLoader(file);
        var embd = new TensorLoader.Dim(EmbeddingLength, $"{a}.embedding_length");
        var ff = new TensorLoader.Dim(FeedForwardLength, $"{a}.feed_forward_length");
        var tokens = file.TryGetValue("tokenizer.ggml.tokens", out var tv) ? tv.AsStringArray() : null;
        var vocab = new TensorLoader.Dim(tokens?.Length ?? RequiredInt(file, $"{a}.vocab_size"), tokens is null ? $"{a}.vocab_size" : "the number of tokenizer.ggml.tokens");
        _tokenEmbd = tensors.Matrix("token_embd.weight", embd, vocab);
        if (!IsNomic && !IsJina) _posEmbd = tensors.Matrix("position_embd.weight", embd, new TensorLoader.Dim(ContextLength, $"{a}.context_length"));
        if (file.FindTensor("token_types.weight") is { } types)
        {
            int count = types.Dims.Length > 1 ? checked((int)types.Dims[1]) : 1;
            _typeRow0 = tensors.VectorRows("token_types.weight", embd, new TensorLoader.Dim(count, "token_types.weight's rows"))[..EmbeddingLength];
        }
        _embNorm = tensors.Vector("token_embd_norm.weight", embd);
        _embNormB = tensors.Vector("token_embd_norm.bias", embd);

        _blocks = new Block[BlockCount];
        for (int il = 0; il < BlockCount; il++)
        {
            string p = $"blk.{il}.";
            var fused = tensors.OptionalFused(p + "attn_qkv.weight", embd, (embd, "Q"), (embd, "K"), (embd, "V"));
            float[]? bq, bk, bv;
            if (fused is not null && tensors.Has(p + "attn_qkv.bias"))
            {
                var b = tensors.Vector(p + "attn_qkv.bias", new TensorLoader.Dim(3 * EmbeddingLength, $"3 × {a}.embedding_length"));
                (bq, bk, bv) = (b[..EmbeddingLength], b[EmbeddingLength..(2 * EmbeddingLength)], b[(2 * EmbeddingLength)..]);
            }
            else if (fused is not null) (bq, bk, bv) = (null, null, null);
            else (bq, bk, bv) = (tensors.OptionalVector(p + "attn_q.bias", embd), tensors.OptionalVector(p + "attn_k.bias", embd), tensors.OptionalVector(p + "attn_v.bias", embd));
            // jina-bert-v2 may fuse its GEGLU's gate and up into one ffn_up of 2 × n_ff rows (llama.cpp's loader accepts both)
            bool fusedGeGlu = IsJina && file.FindTensor(p + "ffn_up.weight") is { } upInfo && upInfo.Dims.Length > 1 && upInfo.Dims[1] == 2L * FeedForwardLength;
            var upRows = fusedGeGlu ? new TensorLoader.Dim(2 * FeedForwardLength, $"2 × {a}.feed_forward_length") : ff;
            _blocks[il] = new Block
            {
                Wq = fused?[0] ?? tensors.Matrix(p + "attn_q.weight", embd, embd),
                Wk = fused?[1] ?? tensors.Matrix(p + "attn_k.weight", embd, embd),
                Wv = fused?[2] ?? tensors.Matrix(p + "attn_v.weight", embd, embd),
                Bq = bq, Bk = bk, Bv = bv,
                Wo = tensors.Matrix(p + "attn_output.weight", embd, embd),
                Bo = tensors.OptionalVector(p + "attn_output.bias", embd),
                AttnNorm = tensors.Vector(p + "attn_output_norm.weight", embd),
                AttnNormB = tensors.Vector(p + "attn_output_norm.bias", embd),
                Up = tensors.Matrix(p + "ffn_up.weight", embd, upRows),
                BUp = IsJina ? null : tensors.OptionalVector(p + "ffn_up.bias", ff), // (llama.cpp's jina graph adds no up bias)
                Gate = IsNomic ? tensors.Matrix(p + "ffn_gate.weight", embd, ff) : IsJina ? tensors.OptionalMatrix(p + "ffn_gate.weight", embd, ff) : null,
                FusedGeGlu = fusedGeGlu,
                QNorm = tensors.OptionalVector(p + "attn_q_norm.weight", embd),
                QNormB = tensors.OptionalVector(p + "attn_q_norm.bias", embd),
                KNorm = tensors.OptionalVector(p + "attn_k_norm.weight", embd),
                KNormB = tensors.OptionalVector(p + "attn_k_norm.bias", embd),
                Norm2 = tensors.OptionalVector(p + "attn_norm_2.weight", embd),
                Norm2B = tensors.OptionalVector(p + "attn_norm_2.bias", embd),
                Down = tensors.Matrix(p + "ffn_down.weight", ff, embd),
                BDown = tensors.OptionalVector(p + "ffn_down.bias", embd),
                OutNorm = tensors.Vector(p + "layer_output_norm.weight", embd),
                OutNormB = tensors.Vector(p + "layer_output_norm.bias", embd),
            };
        }

        // A reranker's classification head (llama.cpp's LLM_TENSOR_CLS / CLS_OUT): a dense layer and tanh (cls, + bias:
        // BERT's pooler, n_embd → n_embd; jina-bert-v2's classifier itself, n_embd → 1), then the classifier
        // (cls.output: n_embd → one row per label, + bias) where the file has one.
        if (file.FindTensor("cls.weight") is { } clsInfo)
        {
            var clsRows = new TensorLoader.Dim(clsInfo.Dims.Length > 1 ? checked((int)clsInfo.Dims[1]) : 1, "cls.weight's rows");
            _cls = tensors.Matrix("cls.weight", embd, clsRows);
            _clsB = tensors.OptionalVector("cls.bias", clsRows);
        }
        string labelsKey = $"{a}.classifier.output_labels";
        string[]? labelNames = file.TryGetValue(labelsKey, out var lv)
            ? lv.AsStringArray() ?? throw new ModelLoadException($"metadata key {labelsKey} is not a string array")
            : null;
        ClassifierLabels = labelNames;
        if (labelNames is { Length: 0 }) throw new ModelLoadException($"metadata key {labelsKey} is empty");
        if (file.FindTensor("cls.output.weight") is { } outInfo)
        {
            int rows = outInfo.Dims.Length > 1 ? checked((int)outInfo.Dims[1]) : 1;
            var labels = labelNames is null
                ? new TensorLoader.Dim(rows, "cls.output.weight's rows")
                : new TensorLoader.Dim(labelNames.Length, $"the number of {labelsKey}");
            _clsOut = tensors.Matrix("cls.output.weight", embd, labels);
            _clsOutB = tensors.OptionalVector("cls.output.bias", labels);
            if (_cls is not null && _cls.Rows != EmbeddingLength)
                throw new ModelLoadException($"cls.weight has {_cls.Rows} rows; before cls.output.weight it must have {a}.embedding_length ({EmbeddingLength})");
        }
        // llama.cpp keeps n_cls_out values per text (the labels, else 1); without cls.output they are the pooler's first ones
        ClassifierOutputs = _cls is null && _clsOut is null ? 0 : _clsOut?.Rows ?? labelNames?.Length ?? 1;
        if (_clsOut is null && _cls is not null && ClassifierOutputs > _cls.Rows)
            throw new ModelLoadException($"{labelsKey} names {ClassifierOutputs} labels, but the head (cls.weight, no cls.output.weight) gives {_cls.Rows} values");
        long? pooling = file.GetInt($"{a}.pooling_type");
        if (pooling == 4 && ClassifierOutputs == 0)
            throw new ModelLoadException($"{a}.pooling_type is 4 (rank: a reranker), but the file has no classification head (cls.weight or cls.output.weight)");
        IsReranker = pooling == 4;
    }

    /// <summary>The GGUF file the weights are mapped from.</summary>
    public GgufFile File { get; }

    /// <summary>general.architecture: <c>bert</c>, <c>nomic-bert</c>, <c>jina-bert-v2</c> or <c>gemma-embedding</c>.</summary>
    public string Architecture { get; }

    /// <summary>Width of the hidden states (and of an embedding).</summary>
    public int EmbeddingLength { get; }

    /// <summary>Encoder blocks.</summary>
    public int BlockCount { get; }

    /// <summary>Attention heads.</summary>
    public int HeadCount { get; }

    /// <summary>Key/value heads (fewer than <see cref="HeadCount"/> for grouped-query attention: EmbeddingGemma's one).</summary>
    public int HeadCountKv { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>
    /// The width between the dense layers applied after pooling (EmbeddingGemma's sentence-transformers modules: 3072),
    /// 0 when the model has none (see <see cref="ProjectPooled"/>).
    /// </summary>
    public int DenseWidth { get; }

    /// <summary>Feed-forward width.</summary>
    public int FeedForwardLength { get; }

    /// <summary>The most tokens one text may have ({arch}.context_length: the learned positions of <c>bert</c>, the training context of nomic-bert).</summary>
    public int ContextLength { get; }

    /// <summary>The LayerNorm epsilon (EmbeddingGemma: its RMSNorm epsilon).</summary>
    public float LayerNormEps { get; }

    /// <summary>nomic-bert's rotary base (0 for <c>bert</c>, which learns its positions).</summary>
    public float RopeFreqBase { get; }

    /// <summary>Threads the products and attention run on.</summary>
    public int Threads { get; }

    /// <summary>
    /// Whether the file is a reranker (<c>{arch}.pooling_type</c> 4, rank: a cross-encoder with a classification head,
    /// such as ms-marco-MiniLM or jina-reranker; run it with <see cref="TextReranker"/>).
    /// </summary>
    public bool IsReranker { get; }

    /// <summary>
    /// Values the classification head gives per text (<see cref="Classify"/>): the labels' count
    /// (<c>{arch}.classifier.output_labels</c>, else cls.output's rows, else 1, as llama.cpp's <c>n_cls_out</c>); 0 when
    /// the file has no head.
    /// </summary>
    public int ClassifierOutputs { get; }

    /// <summary>The classifier's label names (<c>{arch}.classifier.output_labels</c>), or null.</summary>
    public IReadOnlyList<string>? ClassifierLabels { get; }

    private bool IsNomic { get; }

    private bool IsJina { get; }

    /// <summary>Whether <paramref name="file"/> holds an encoder this class loads (its general.architecture).</summary>
    public static bool IsEncoder(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return file.GetString("general.architecture") is { } a && SupportedArchitectures.Contains(a);
    }

    /// <summary>Opens and loads the encoder at <paramref name="path"/>; the model owns the file.</summary>
    /// <exception cref="ModelLoadException">not a BERT encoder, missing or misshapen tensor, unsupported tensor type, inconsistent metadata.</exception>
    /// <exception cref="GgufFormatException">the file is not valid GGUF.</exception>
    public static BertModel Load(string path, int threads = 0)
    {
        var file = GgufFile.Open(path);
        try
        {
            return Load(file, threads, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Loads the encoder in <paramref name="file"/> (not owned: it must outlive the model).</summary>
    /// <param name="threads">threads to run on; 0: <see cref="Runtime.CpuFeatures.PhysicalCores"/></param>
    public static BertModel Load(GgufFile file, int threads = 0) => Load(file, threads, ownsFile: false);

    private static BertModel Load(GgufFile file, int threads, bool ownsFile)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        string? arch = file.GetString("general.architecture") ?? throw new ModelLoadException("metadata key general.architecture is missing");
        if (!SupportedArchitectures.Contains(arch))
            throw new ModelLoadException($"architecture '{arch}' is not a BERT encoder (encoders: {string.Join(", ", SupportedArchitectures)})");
        return new BertModel(file, ownsFile, threads == 0 ? Runtime.CpuFeatures.PhysicalCores : threads);
    }

    /// <summary>
    /// The last block's hidden states of <paramref name="tokens"/> (one text, positions from 0): [count, <see cref="EmbeddingLength"/>], row per token.
    /// </summary>
    /// <exception cref="ArgumentException">no tokens, more than <see cref="ContextLength"/>, or an id outside the vocabulary</exception>
    public float[] Encode(ReadOnlySpan<int> tokens) => Encode(tokens, [0, tokens.Length]);

    /// <summary>
    /// The hidden states of several texts in one pass, each attending only to itself with its own positions from 0:
    /// <paramref name="tokens"/> holds the texts one after the other, text i at
    /// [<paramref name="starts"/>[i], <paramref name="starts"/>[i + 1]). Every row equals what <see cref="Encode(ReadOnlySpan{int})"/>
    /// gives for its text alone, bit for bit (each product row and each attention row is computed alike); a batch of short
    /// texts fills the matrix tiles that one short text leaves mostly empty.
    /// </summary>
    /// <exception cref="ArgumentException">an empty text, one longer than <see cref="ContextLength"/>, bad starts, or an id outside the vocabulary</exception>
    public float[] Encode(ReadOnlySpan<int> tokens, ReadOnlySpan<int> starts)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int n = tokens.Length, d = EmbeddingLength, ff = FeedForwardLength;
        if (n == 0) throw new ArgumentException("no tokens to encode", nameof(tokens));
        if (starts.Length < 2 || starts[0] != 0 || starts[^1] != n) throw new ArgumentException($"starts must run from 0 to the token count ({n})", nameof(starts));
        var seqStart = new int[n];
        var seqEnd = new int[n];
        int longest = 0;
        for (int i = 0; i + 1 < starts.Length; i++)
        {
            int a = starts[i], b = starts[i + 1];
            if (b <= a) throw new ArgumentException($"text {i} is empty (starts {a}, {b})", nameof(starts));
            if (b - a > ContextLength) throw new ArgumentException($"the text is {b - a} tokens; the context holds {ContextLength} ({Architecture}.context_length)", nameof(tokens));
            for (int t = a; t < b; t++) (seqStart[t], seqEnd[t]) = (a, b);
            longest = Math.Max(longest, b - a);
        }
        for (int t = 0; t < n; t++)
            if ((uint)tokens[t] >= (uint)_tokenEmbd.Rows) throw new ArgumentException($"token {t} is id {tokens[t]}, outside the vocabulary (size {_tokenEmbd.Rows})", nameof(tokens));
        var pool = _pool ??= new WorkerPool(Threads);
        if (_gemma is not null) return _gemma.Encode(tokens, seqStart, seqEnd, longest, pool);

        long rows = (long)n * d;
        long scratchBytes = 0;
        foreach (var b in _blocks)
            foreach (var w in new[] { b.Wq, b.Wk, b.Wv, b.Wo, b.Up, b.Down, b.Gate })
                if (w is not null) scratchBytes = Math.Max(scratchBytes, MatMul.ScratchBytes(w, n));
        long floats = 6 * rows + 3L * n * ff + (long)pool.Threads * longest;
        float* mem = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + scratchBytes + 64), 64);
        try
        {
            float* x = mem, q = x + rows, k = q + rows, v = k + rows, att = v + rows, proj = att + rows;
            float* up = proj + rows, gate = up + 2L * n * ff, scores = gate + (long)n * ff; // (up: room for a fused GEGLU's 2 × n_ff)
            byte* scratch = (byte*)(scores + (long)pool.Threads * longest);

            // inp_embd: token rows + token type 0 (+ learned positions), then the embedding LayerNorm
            for (int t = 0; t < n; t++)
                _tokenEmbd.Format.DequantizeRow(_tokenEmbd.Row(tokens[t]), x + (long)t * d, d);
            if (_typeRow0 is not null) Activations.AddBias(x, _typeRow0, n);
            if (_posEmbd is not null)
                for (int t = 0; t < n; t++)
                {
                    _posEmbd.Format.DequantizeRow(_posEmbd.Row(t - seqStart[t]), proj, d);
                    Activations.Add(x + (long)t * d, proj, d); // (position + inp: the same f32 add)
                }
            LayerNorm(x, x, n, d, _embNorm, _embNormB, LayerNormEps);

            int headDim = d / HeadCount;
            float[]? ropeCos = null, ropeSin = null;
            if (IsNomic)
            {
                ropeCos = new float[(long)n * headDim / 2];
                ropeSin = new float[(long)n * headDim / 2];
                fixed (float* c = ropeCos, s = ropeSin)
                    for (int t = 0; t < n; t++)
                        Rope.Angles(t - seqStart[t], headDim, RopeFreqBase, 1f, null, c + (long)t * headDim / 2, s + (long)t * headDim / 2);
            }

            foreach (var b in _blocks)
            {
                MatMul.Multiply(b.Wq, x, n, q, scratch, pool);
                MatMul.Multiply(b.Wk, x, n, k, scratch, pool);
                MatMul.Multiply(b.Wv, x, n, v, scratch, pool);
                if (b.Bq is not null) Activations.AddBias(q, b.Bq, n);
                if (b.Bk is not null) Activations.AddBias(k, b.Bk, n);
                if (b.Bv is not null) Activations.AddBias(v, b.Bv, n);
                if (b.QNorm is not null && b.QNormB is not null) LayerNorm(q, q, n, d, b.QNorm, b.QNormB, LayerNormEps);
                if (b.KNorm is not null && b.KNormB is not null) LayerNorm(k, k, n, d, b.KNorm, b.KNormB, LayerNormEps);
                if (ropeCos is not null)
                    fixed (float* c = ropeCos, s = ropeSin)
                        for (int t = 0; t < n; t++)
                        {
                            long o = (long)t * headDim / 2;
                            Rope.Apply(q + (long)t * d, HeadCount, headDim, headDim, c + o, s + o, neox: true);
                            Rope.Apply(k + (long)t * d, HeadCount, headDim, headDim, c + o, s + o, neox: true);
                        }
                fixed (int* lo = seqStart, hi = seqEnd)
                    Attend(q, k, v, att, scores, n, longest, lo, hi, headDim, pool, IsJina);

                // attn_output (+ bias), + the block input, LayerNorm: the feed-forward's input (kept in x)
                MatMul.Multiply(b.Wo, att, n, proj, scratch, pool);
                if (b.Bo is not null) Activations.AddBias(proj, b.Bo, n);
                Activations.Add(proj, x, rows);
                if (b.Norm2 is not null && b.Norm2B is not null)
                {
                    // jina-bert-v2: the block input added again, then attn_norm_2
                    LayerNorm(proj, proj, n, d, b.AttnNorm, b.AttnNormB, LayerNormEps);
                    Activations.Add(proj, x, rows);
                    LayerNorm(proj, x, n, d, b.Norm2, b.Norm2B, LayerNormEps);
                }
                else LayerNorm(proj, x, n, d, b.AttnNorm, b.AttnNormB, LayerNormEps);

                // feed-forward: up → GELU → down (bert), silu(gate) ⊙ up → down (nomic-bert), gelu(gate) ⊙ up → down (jina-bert-v2)
                MatMul.Multiply(b.Up, x, n, up, scratch, pool);
                if (b.BUp is not null) Activations.AddBias(up, b.BUp, n);
                if (b.FusedGeGlu)
                {
                    // ggml_geglu of the 2 × n_ff row: gelu(first half) ⊙ second half
                    for (int t = 0; t < n; t++)
                    {
                        float* row = up + 2L * t * ff;
                        Activations.GeGlu(row, row + ff, ff);
                        Buffer.MemoryCopy(row, gate + (long)t * ff, (long)ff * sizeof(float), (long)ff * sizeof(float));
                    }
                    MatMul.Multiply(b.Down, gate, n, proj, scratch, pool);
                }
                else if (b.Gate is not null && IsJina)
                {
                    MatMul.Multiply(b.Gate, x, n, gate, scratch, pool);
                    for (int t = 0; t < n; t++) Activations.GeGlu(gate + (long)t * ff, up + (long)t * ff, ff);
                    MatMul.Multiply(b.Down, gate, n, proj, scratch, pool);
                }
                else if (b.Gate is not null)
                {
                    MatMul.Multiply(b.Gate, x, n, gate, scratch, pool);
                    for (int t = 0; t < n; t++) Activations.SwiGlu(gate + (long)t * ff, up + (long)t * ff, ff);
                    MatMul.Multiply(b.Down, gate, n, proj, scratch, pool);
                }
                else
                {
                    pool.For(n, ff, (start, end, _) =>
                    {
                        for (int t = start; t < end; t++) Activations.Gelu(up + (long)t * ff, ff);
                    }, minParallelWork: 1 << 16);
                    MatMul.Multiply(b.Down, up, n, proj, scratch, pool);
                }
                if (b.BDown is not null) Activations.AddBias(proj, b.BDown, n);
                Activations.Add(proj, x, rows);
                LayerNorm(proj, x, n, d, b.OutNorm, b.OutNormB, LayerNormEps);
            }
            return new ReadOnlySpan<float>(x, checked((int)rows)).ToArray();
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    /// <summary>
    /// Applies the layers that follow pooling, in place, to <paramref name="count"/> vectors of <see cref="EmbeddingLength"/>
    /// (pooled, or per token when nothing pools), before they are normalized: EmbeddingGemma's sentence-transformers dense
    /// layers (llama.cpp's build_dense_out); nothing for the other encoders.
    /// </summary>
    public void ProjectPooled(float[] vectors, int count)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count < 0 || (long)count * EmbeddingLength > vectors.Length)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{vectors.Length} floats hold {vectors.Length / EmbeddingLength} vectors of {EmbeddingLength}");
        if (_gemma is null || DenseWidth == 0 || count == 0) return;
        _gemma.Project(vectors, count, _pool ??= new WorkerPool(Threads));
    }

    /// <summary>
    /// Consecutive texts grouped into passes of at most <paramref name="maxTokens"/> tokens (a text longer than that runs
    /// alone), each as the arguments of <see cref="Encode(ReadOnlySpan{int}, ReadOnlySpan{int})"/>: the index of its
    /// first text, the texts' tokens one after the other and where each starts (with the end last).
    /// </summary>
    public static IEnumerable<(int First, int[] Tokens, int[] Starts)> Passes(IReadOnlyList<int[]> texts, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(texts);
        for (int first = 0; first < texts.Count;)
        {
            int last = first, total = texts[first].Length;
            while (last + 1 < texts.Count && total + texts[last + 1].Length <= maxTokens) total += texts[++last].Length;
            var tokens = new int[total];
            var starts = new int[last - first + 2];
            for (int i = first, at = 0; i <= last; i++)
            {
                texts[i].CopyTo(tokens, at);
                at += texts[i].Length;
                starts[i - first + 1] = at;
            }
            yield return (first, tokens, starts);
            first = last + 1;
        }
    }

    /// <summary>
    /// The classification head's <see cref="ClassifierOutputs"/> values for each text of <paramref name="tokens"/> (texts
    /// laid out as for <see cref="Encode(ReadOnlySpan{int}, ReadOnlySpan{int})"/>), text after text: llama.cpp's rank
    /// pooling, from each text's first token ([CLS]): tanh(cls · h + cls.bias), then cls.output · that + cls.output.bias
    /// where the file has cls.output (else the first values of the tanh: jina-reranker's cls is its one-row classifier).
    /// A reranker's relevance score is the first value (a logit: higher is more relevant; not a probability).
    /// </summary>
    /// <exception cref="InvalidOperationException">the file has no classification head</exception>
    /// <exception cref="ArgumentException">as for <see cref="Encode(ReadOnlySpan{int}, ReadOnlySpan{int})"/></exception>
    public float[] Classify(ReadOnlySpan<int> tokens, ReadOnlySpan<int> starts)
    {
        if (ClassifierOutputs == 0)
            throw new InvalidOperationException($"{File.FilePath} has no classification head (cls.weight, cls.output.weight): it is an embedding model, not a reranker");
        float[] hidden = Encode(tokens, starts);
        int m = starts.Length - 1, d = EmbeddingLength, nOut = ClassifierOutputs;
        int width = _cls?.Rows ?? d; // the values per text after the dense layer
        var pool = _pool!;
        long scratchBytes = Math.Max(_cls is null ? 0 : MatMul.ScratchBytes(_cls, m), _clsOut is null ? 0 : MatMul.ScratchBytes(_clsOut, m));
        long floats = (long)m * d + (long)m * width + (long)m * nOut;
        float* mem = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + scratchBytes + 64), 64);
        try
        {
            float* first = mem, pooled = first + (long)m * d, result = pooled + (long)m * width;
            byte* scratch = (byte*)(result + (long)m * nOut);
            for (int i = 0; i < m; i++) hidden.AsSpan(starts[i] * d, d).CopyTo(new Span<float>(first + (long)i * d, d));
            float* x = first;
            if (_cls is not null)
            {
                MatMul.Multiply(_cls, first, m, pooled, scratch, pool);
                if (_clsB is not null) Activations.AddBias(pooled, _clsB, m);
                for (long i = 0; i < (long)m * width; i++) pooled[i] = MathF.Tanh(pooled[i]);
                x = pooled;
            }
            var scores = new float[m * nOut];
            if (_clsOut is not null)
            {
                MatMul.Multiply(_clsOut, x, m, result, scratch, pool);
                if (_clsOutB is not null) Activations.AddBias(result, _clsOutB, m);
                new ReadOnlySpan<float>(result, m * nOut).CopyTo(scores);
            }
            else
                for (int i = 0; i < m; i++) new ReadOnlySpan<float>(x + (long)i * width, nOut).CopyTo(scores.AsSpan(i * nOut, nOut));
            return scores;
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    /// <summary>
    /// Bidirectional attention of every query over every key, head by head (llama.cpp's build_attn_mha without a
    /// cache or flash attention: kq = k·q in f32, softmax of kq / √head_dim with a double sum, then v·softmax).
    /// </summary>
    private void Attend(float* q, float* k, float* v, float* output, float* scores, int n, int longest, int* seqStart, int* seqEnd, int headDim, WorkerPool pool, bool alibi)
    {
        int d = EmbeddingLength;
        float scale = 1.0f / MathF.Sqrt(headDim);
        // jina-bert-v2's ALiBi (llama.cpp: max bias 8, soft_max_ext's slopes; the mask holds −|i − j| within a text)
        var slopes = new float[HeadCount];
        if (alibi)
        {
            int headsLog2 = 1 << (int)MathF.Floor(MathF.Log2(HeadCount));
            float m0 = MathF.Pow(2.0f, -8.0f / headsLog2), m1 = MathF.Pow(2.0f, -4.0f / headsLog2);
            for (int h = 0; h < HeadCount; h++) slopes[h] = h < headsLog2 ? MathF.Pow(m0, h + 1) : MathF.Pow(m1, 2 * (h - headsLog2) + 1);
        }
        // (AggressiveOptimization: a body run once per block would otherwise stay in the unoptimized first tier for
        // most of a short run, as measured on the f32 tile kernel: a third of its speed on one thread)
        pool.For(HeadCount * n, (long)longest * headDim * 2, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end, worker) =>
        {
            float* s = scores + (long)worker * longest;
            for (int item = start; item < end; item++)
            {
                int h = item / n, t = item % n;
                // the keys and values of this token's own text (k, v and s from its first token)
                int first = seqStart[t], count = seqEnd[t] - first;
                float* kh = k + (long)first * d + h * headDim;
                var qt = new ReadOnlySpan<float>(q + (long)t * d + h * headDim, headDim);
                for (int j = 0; j < count; j++)
                {
                    s[j] = System.Numerics.Tensors.TensorPrimitives.Dot(qt, new ReadOnlySpan<float>(kh + (long)j * d, headDim)) * scale;
                    if (alibi) s[j] += slopes[h] * -MathF.Abs(t - first - j);
                }
                Activations.Softmax(s, count);
                WeightedRows(s, count, v + (long)first * d + h * headDim, d, output + (long)t * d + h * headDim, headDim);
            }
        }, minParallelWork: 1 << 14);
    }

    /// <summary>
    /// o = Σ_j p_j · v_j over <paramref name="count"/> rows of <paramref name="width"/> floats, <paramref name="stride"/>
    /// apart: attention's softmax-weighted values, eight (or sixteen) outputs at a time held in a register over every j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WeightedRows(float* p, int count, float* v, long stride, float* o, int width)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= width; i += 16)
            {
                var acc = Vector512<float>.Zero;
                for (int j = 0; j < count; j++) acc += Vector512.Create(p[j]) * Vector512.Load(v + j * stride + i);
                acc.Store(o + i);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= width; i += 8)
            {
                var acc = Vector256<float>.Zero;
                for (int j = 0; j < count; j++) acc += Vector256.Create(p[j]) * Vector256.Load(v + j * stride + i);
                acc.Store(o + i);
            }
        for (; i < width; i++)
        {
            float acc = 0;
            for (int j = 0; j < count; j++) acc += p[j] * v[j * stride + i];
            o[i] = acc;
        }
    }

    /// <summary>
    /// y = (x − mean) / √(var + eps) ⊙ weight + bias per row (ggml_norm with double sums, then build_norm's mul and add).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void LayerNorm(float* x, float* y, int n, int d, float[] weight, float[] bias, float eps)
    {
        fixed (float* w = weight, b = bias)
            for (int t = 0; t < n; t++)
            {
                float* xr = x + (long)t * d, yr = y + (long)t * d;
                double sum = 0;
                for (int i = 0; i < d; i++) sum += xr[i];
                float mean = (float)(sum / d);
                double sum2 = 0;
                for (int i = 0; i < d; i++)
                {
                    float c = xr[i] - mean;
                    yr[i] = c;
                    sum2 += (double)(c * c);
                }
                float scale = 1.0f / MathF.Sqrt((float)(sum2 / d) + eps);
                for (int i = 0; i < d; i++) yr[i] = yr[i] * scale * w[i] + b[i];
            }
    }

    private static int RequiredInt(GgufFile file, string key)
    {
        long v = file.GetInt(key) ?? throw new ModelLoadException($"metadata key {key} is missing");
        if (v is <= 0 or > int.MaxValue) throw new ModelLoadException($"metadata key {key} is {v}; it must be a positive 32-bit number");
        return (int)v;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool?.Dispose();
        if (_ownsFile) File.Dispose();
    }
}
