using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// EmbeddingGemma (GGUF architecture <c>gemma-embedding</c>: Google's embeddinggemma-300m): Gemma 3's block run as a
/// bidirectional text encoder, as llama.cpp's <c>llm_build_gemma_embedding</c> and its hyper-parameter rules. Token rows
/// × √embd; per block RMSNorm, Q/K/V, per-head Q and K RMSNorms, NEOX rope (the sliding layers with base 10000 and no
/// scaling, the sixth with <c>rope.freq_base</c>), queries × 1/√head_dim, attention of every token of the text over
/// every token of the text (no causal mask), within |i − j| ≤ <c>attention.sliding_window</c> / 2 in five layers of six
/// (llama.cpp's LLAMA_SWA_TYPE_SYMMETRIC), attn_output, post-attention RMSNorm, residual add, RMSNorm, GeGLU
/// feed-forward, post-feed-forward RMSNorm, residual add; the output norm last. <see cref="TextEmbedder"/> pools the
/// rows (mean: <c>pooling_type</c> 1), then <see cref="Project"/> applies sentence-transformers' two dense layers where
/// the file has them (<c>dense_2.weight</c>: 768 → 3072, <c>dense_3.weight</c>: 3072 → 768; converted with
/// <c>--sentence-transformers-dense-modules</c>), then the vector is normalized.
/// </summary>
/// <remarks>
/// The products run through the shared <see cref="MatMul"/> kernels on the weights as the file stores them; attention is
/// f32 with a double softmax sum, as llama.cpp's without flash attention. Loaded and run through <see cref="BertModel"/>,
/// the encoder type of every embedding surface (CLI, server, C ABI, .NET).
/// </remarks>
internal sealed unsafe class GemmaEmbedding
{
    internal const string ArchitectureName = "gemma-embedding";

    private readonly WeightMatrix _tokenEmbd;
    private readonly LayerWeights[] _layers;
    private readonly float[] _outputNorm;
    private readonly WeightMatrix? _dense2, _dense3;
    private readonly float[]? _dense2Bias;

    internal GemmaEmbedding(GgufFile file, TensorLoader tensors)
    {
        const string a = ArchitectureName;
        var c = ModelConfig.Read(file, a, ropeNeox: true, hasQkvBias: false);
        long window = file.GetInt($"{a}.attention.sliding_window") ?? throw new ModelLoadException($"metadata key {a}.attention.sliding_window is missing");
        if (window is < 0 or > int.MaxValue) throw new ModelLoadException($"metadata key {a}.attention.sliding_window must be >= 0, found {window}");
        Config = c with
        {
            HasQkNorm = true,
            GeluGate = true,
            SlidingWindow = (int)window,
            SlidingWindowPattern = 6,
            RopeFreqBaseSwa = 10000f,                          // llama.cpp's rope_freq_base_train_swa for gemma-embedding
            EmbeddingScale = MathF.Sqrt(c.EmbeddingLength),
            AttentionScale = 1.0f / MathF.Sqrt(c.HeadDim),   // f_attention_scale, applied to Q before the attention
        };
        if (c.HasRopeFrequencyFactors) throw new ModelLoadException($"{a}: rope_freqs.weight is not part of this architecture");

        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{a}.embedding_length");
        _tokenEmbd = tensors.Matrix("token_embd.weight", embd, new TensorLoader.Dim(c.VocabSize, "the vocabulary size"));
        _layers = new LayerWeights[c.BlockCount];
        for (int il = 0; il < c.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, Config, il, qkvBias: false, postNorms: true);
        _outputNorm = tensors.Vector("output_norm.weight", embd);

        // sentence-transformers' dense layers (optional, as in llama.cpp): the width between them from the keys, else the tensor
        if (file.FindTensor("dense_2.weight") is { } d2 || file.FindTensor("dense_3.weight") is not null)
        {
            long inner = file.GetInt($"{a}.dense_2_feat_out") ?? (file.FindTensor("dense_2.weight") is { Dims.Length: > 1 } t ? t.Dims[1] : 0);
            if (inner is <= 0 or > int.MaxValue) throw new ModelLoadException($"{a}.dense_2_feat_out is {inner}; it must be a positive 32-bit number");
            long? in2 = file.GetInt($"{a}.dense_2_feat_in"), out3 = file.GetInt($"{a}.dense_3_feat_out"), in3 = file.GetInt($"{a}.dense_3_feat_in");
            if (in2 is long i2 && i2 != c.EmbeddingLength) throw new ModelLoadException($"{a}.dense_2_feat_in is {i2}; it must equal {a}.embedding_length ({c.EmbeddingLength})");
            if (out3 is long o3 && o3 != c.EmbeddingLength) throw new ModelLoadException($"{a}.dense_3_feat_out is {o3}; it must equal {a}.embedding_length ({c.EmbeddingLength})");
            if (in3 is long i3 && i3 != inner) throw new ModelLoadException($"{a}.dense_3_feat_in is {i3}; it must equal {a}.dense_2_feat_out ({inner})");
            var width = new TensorLoader.Dim((int)inner, $"{a}.dense_2_feat_out");
            _dense2 = tensors.Matrix("dense_2.weight", embd, width);
            _dense2Bias = tensors.OptionalVector("dense_2.bias", width);
            _dense3 = tensors.Matrix("dense_3.weight", width, embd);
        }
    }

    /// <summary>The hyper-parameters (Gemma 3's, with the sliding window and scales as llama.cpp sets them).</summary>
    internal ModelConfig Config { get; }

    /// <summary>The width between the dense layers after pooling, 0 when the file has none.</summary>
    internal int DenseWidth => _dense2?.Rows ?? 0;

    /// <summary>The token embedding (rows: the vocabulary).</summary>
    internal WeightMatrix TokenEmbedding => _tokenEmbd;

    /// <summary>
    /// The output-normed hidden states of the texts in <paramref name="tokens"/> ([n, embd]), text i at
    /// [<paramref name="seqStart"/>..<paramref name="seqEnd"/>) of each of its tokens, positions from the text's start.
    /// </summary>
    internal float[] Encode(ReadOnlySpan<int> tokens, int[] seqStart, int[] seqEnd, int longest, WorkerPool pool)
    {
        var c = Config;
        int n = tokens.Length, d = c.EmbeddingLength, ff = c.FeedForwardLength;
        int qLen = c.QueryLength, kvLen = c.KvLength, hd = c.HeadDim, pairs = c.RopeDimensionCount / 2;
        long scratchBytes = 0;
        foreach (var l in _layers)
            foreach (var w in new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down })
                scratchBytes = Math.Max(scratchBytes, MatMul.ScratchBytes(w, n));
        long floats = 3L * n * d + 2L * n * qLen + 2L * n * kvLen + 2L * n * ff + 4L * n * pairs + (long)pool.Threads * longest;
        float* mem = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + scratchBytes + 64), 64);
        try
        {
            float* x = mem, norm = x + (long)n * d, proj = norm + (long)n * d;
            float* q = proj + (long)n * d, att = q + (long)n * qLen, k = att + (long)n * qLen, v = k + (long)n * kvLen;
            float* gate = v + (long)n * kvLen, up = gate + (long)n * ff;
            float* cos = up + (long)n * ff, sin = cos + (long)n * pairs, cosSwa = sin + (long)n * pairs, sinSwa = cosSwa + (long)n * pairs;
            float* scores = sinSwa + (long)n * pairs;
            byte* scratch = (byte*)(scores + (long)pool.Threads * longest);

            // inp_embd × √embd (ggml_scale)
            for (int t = 0; t < n; t++)
                _tokenEmbd.Format.DequantizeRow(_tokenEmbd.Row(tokens[t]), x + (long)t * d, d);
            Activations.Scale(x, (long)n * d, c.EmbeddingScale);

            // rope angles at each token's position within its text: the global layers' and the sliding layers' (base 10000, no scaling)
            for (int t = 0; t < n; t++)
            {
                int pos = t - seqStart[t];
                Rope.Angles(pos, c.RopeDimensionCount, c.RopeFreqBase, c.RopeFreqScale, null, cos + (long)t * pairs, sin + (long)t * pairs, c.RopeAttnFactor, c.RopeYarn);
                Rope.Angles(pos, c.RopeDimensionCount, c.RopeFreqBaseSwa, 1f, null, cosSwa + (long)t * pairs, sinSwa + (long)t * pairs, c.RopeAttnFactor);
            }

            fixed (int* lo = seqStart, hi = seqEnd)
                for (int il = 0; il < _layers.Length; il++)
                {
                    var w = _layers[il];
                    bool swa = c.IsSlidingWindowLayer(il);
                    RmsRows(x, norm, n, w.AttnNorm, d, c.RmsEps);
                    MatMul.Multiply(w.Wq, norm, n, q, scratch, pool);
                    MatMul.Multiply(w.Wk, norm, n, k, scratch, pool);
                    MatMul.Multiply(w.Wv, norm, n, v, scratch, pool);
                    DecoderBlocks.HeadNorm(q, (long)n * c.HeadCount, w.QNorm!, hd, c.RmsEps);
                    DecoderBlocks.HeadNorm(k, (long)n * c.HeadCountKv, w.KNorm!, hd, c.RmsEps);
                    float* cs = swa ? cosSwa : cos, sn = swa ? sinSwa : sin;
                    for (int t = 0; t < n; t++)
                    {
                        Rope.Apply(q + (long)t * qLen, c.HeadCount, hd, c.RopeDimensionCount, cs + (long)t * pairs, sn + (long)t * pairs, neox: true);
                        Rope.Apply(k + (long)t * kvLen, c.HeadCountKv, hd, c.RopeDimensionCount, cs + (long)t * pairs, sn + (long)t * pairs, neox: true);
                    }
                    Activations.Scale(q, (long)n * qLen, c.AttentionScale);
                    // llama.cpp's symmetric window: key j is seen from query i when |i − j| ≤ n_swa / 2
                    Attend(q, k, v, att, scores, n, longest, lo, hi, swa ? c.SlidingWindow / 2 : int.MaxValue, pool);

                    // attn_output, post-attention norm, + the block input (sa_out, kept in x)
                    MatMul.Multiply(w.Wo, att, n, proj, scratch, pool);
                    RmsRows(proj, proj, n, w.AttnPostNorm!, d, c.RmsEps);
                    Activations.Add(x, proj, (long)n * d);

                    // ffn_norm, gelu(gate) ⊙ up, ffn_down, post-feed-forward norm, + sa_out
                    RmsRows(x, norm, n, w.FfnNorm, d, c.RmsEps);
                    MatMul.Multiply(w.Gate, norm, n, gate, scratch, pool);
                    MatMul.Multiply(w.Up, norm, n, up, scratch, pool);
                    pool.For(n, ff, (start, end, _) =>
                    {
                        for (int t = start; t < end; t++) Activations.GeGlu(gate + (long)t * ff, up + (long)t * ff, ff);
                    }, minParallelWork: 1 << 16);
                    MatMul.Multiply(w.Down, gate, n, proj, scratch, pool);
                    RmsRows(proj, proj, n, w.FfnPostNorm!, d, c.RmsEps);
                    Activations.Add(x, proj, (long)n * d);
                }

            RmsRows(x, x, n, _outputNorm, d, c.RmsEps); // result_norm: what llama.cpp pools
            return new ReadOnlySpan<float>(x, checked(n * d)).ToArray();
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    /// <summary>
    /// sentence-transformers' dense layers on <paramref name="count"/> vectors of embd at <paramref name="vectors"/>, in
    /// place (llama.cpp's build_dense_out: dense_2 (+ its bias), then dense_3, no activation); nothing without them.
    /// </summary>
    internal void Project(float[] vectors, int count, WorkerPool pool)
    {
        if (_dense2 is null || _dense3 is null) return;
        int d = Config.EmbeddingLength, inner = _dense2.Rows;
        long scratchBytes = Math.Max(MatMul.ScratchBytes(_dense2, count), MatMul.ScratchBytes(_dense3, count));
        float* mem = (float*)NativeMemory.AlignedAlloc((nuint)(((long)count * (inner + 2L * d)) * sizeof(float) + scratchBytes + 64), 64);
        try
        {
            float* input = mem, mid = input + (long)count * d, output = mid + (long)count * inner;
            byte* scratch = (byte*)(output + (long)count * d);
            vectors.AsSpan(0, count * d).CopyTo(new Span<float>(input, count * d));
            MatMul.Multiply(_dense2, input, count, mid, scratch, pool);
            if (_dense2Bias is not null) Activations.AddBias(mid, _dense2Bias, count);
            MatMul.Multiply(_dense3, mid, count, output, scratch, pool);
            new ReadOnlySpan<float>(output, count * d).CopyTo(vectors);
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    /// <summary>y = rmsnorm(x) ⊙ weight for <paramref name="n"/> rows (in place when x = y).</summary>
    private static void RmsRows(float* x, float* y, int n, float[] weight, int d, float eps)
    {
        fixed (float* g = weight)
            for (int t = 0; t < n; t++)
                RmsNorm.Forward(x + (long)t * d, g, y + (long)t * d, d, eps);
    }

    /// <summary>
    /// Grouped-query attention of every query over the keys of its own text within <paramref name="halfWindow"/>
    /// positions either side (llama.cpp's build_attn_mha without a cache or flash attention: kq = k·q in f32, softmax
    /// with scale 1 (the queries are scaled already) and a double sum, then v·softmax).
    /// </summary>
    private void Attend(float* q, float* k, float* v, float* output, float* scores, int n, int longest, int* seqStart, int* seqEnd, int halfWindow, WorkerPool pool)
    {
        var c = Config;
        int heads = c.HeadCount, group = c.HeadCount / c.HeadCountKv, hd = c.HeadDim, qLen = c.QueryLength, kvLen = c.KvLength;
        pool.For(heads * n, (long)longest * hd * 2, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end, worker) =>
        {
            float* s = scores + (long)worker * longest;
            for (int item = start; item < end; item++)
            {
                int h = item / n, t = item % n, kvh = h / group;
                // the keys of this token's own text within the window: [first, last)
                int first = Math.Max(seqStart[t], halfWindow == int.MaxValue ? seqStart[t] : t - halfWindow);
                int last = Math.Min(seqEnd[t], halfWindow == int.MaxValue ? seqEnd[t] : t + halfWindow + 1);
                int count = last - first;
                float* kh = k + (long)first * kvLen + kvh * hd;
                var qt = new ReadOnlySpan<float>(q + (long)t * qLen + h * hd, hd);
                for (int j = 0; j < count; j++)
                    s[j] = System.Numerics.Tensors.TensorPrimitives.Dot(qt, new ReadOnlySpan<float>(kh + (long)j * kvLen, hd));
                Activations.Softmax(s, count);
                BertModel.WeightedRows(s, count, v + (long)first * kvLen + kvh * hd, kvLen, output + (long)t * qLen + h * hd, hd);
            }
        }, minParallelWork: 1 << 14);
    }
}
