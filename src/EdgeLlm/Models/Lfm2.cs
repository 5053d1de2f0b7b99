using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>lfm2</c> architecture (Liquid AI's LFM2 350M, 700M, 1.2B, 2.6B): a hybrid of grouped-query attention
/// layers (per-head Q/K RMSNorm, NEOX rope, as <see cref="Qwen3"/>) and short-convolution layers, each followed
/// by a SwiGLU feed-forward network, pre-norm residual blocks throughout, tied embeddings, the final norm stored
/// as token_embd_norm. Which layers convolve comes from <c>lfm2.attention.head_count_kv</c>, an array with 0 for
/// them. A convolution layer projects the normed input to B, C and x (shortconv.in_proj, 3 × embd rows), gates
/// B ⊙ x, convolves each channel causally over the last <c>lfm2.shortconv.l_cache</c> (3) positions with its own
/// taps (shortconv.conv, [embd, taps]), gates again with C and projects back (shortconv.out_proj). Follows
/// llama.cpp's llm_build_lfm2 and ggml_ssm_conv; the convolution's inputs live in <see cref="ShortConvCache"/>.
/// The MoE variant <c>lfm2moe</c> (LFM2-8B-A1B) is the same hybrid with a <see cref="MixtureOfExperts"/> in place
/// of the SwiGLU network past its first <c>lfm2moe.leading_dense_block_count</c> blocks: the router's probabilities
/// are sigmoids (<c>expert_gating_func</c> 2), a per-expert bias (exp_probs_b) only steers the choice, and the chosen
/// weights are normalized, as llama.cpp's llm_build_lfm2 passes them to build_moe_ffn.
/// </summary>
internal sealed unsafe class Lfm2 : Model
{
    /// <summary>
    /// An attention layer's weights, or a convolution layer's, with its feed-forward network: one SwiGLU
    /// (<see cref="Gate"/>, <see cref="Up"/>, <see cref="Down"/>) or, in lfm2moe's later blocks, <see cref="Experts"/>.
    /// </summary>
    internal sealed class Layer(AttentionWeights? attention, float[] attnNorm, WeightMatrix? inProj, float[]? convTaps, WeightMatrix? outProj,
        float[] ffnNorm, WeightMatrix? gate, WeightMatrix? up, WeightMatrix? down, ExpertWeights? experts = null)
    {
        public AttentionWeights? Attention => attention;
        public float[] AttnNorm => attnNorm;
        public WeightMatrix? InProj => inProj;
        public float[]? ConvTaps => convTaps;
        public WeightMatrix? OutProj => outProj;
        public float[] FfnNorm => ffnNorm;
        public WeightMatrix? Gate => gate;
        public WeightMatrix? Up => up;
        public WeightMatrix? Down => down;
        public ExpertWeights? Experts => experts;
    }

    private readonly Layer[] _layers;

    internal Lfm2(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        var c = config;
        string arch = c.Architecture;
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{arch}.embedding_length");
        var ff = new TensorLoader.Dim(c.FeedForwardLength, $"{arch}.feed_forward_length");
        _layers = new Layer[c.BlockCount];
        for (int il = 0; il < c.BlockCount; il++)
        {
            string p = $"blk.{il}.";
            ExpertWeights? experts = c.HasExperts(il) ? MixtureOfExperts.LoadExperts(tensors, c, il) : null;
            float[] ffnNorm = experts?.FfnNorm ?? tensors.Vector(p + "ffn_norm.weight", embd);
            WeightMatrix? gate = experts is null ? tensors.Matrix(p + "ffn_gate.weight", embd, ff) : null;
            WeightMatrix? up = experts is null ? tensors.Matrix(p + "ffn_up.weight", embd, ff) : null;
            WeightMatrix? down = experts is null ? tensors.Matrix(p + "ffn_down.weight", ff, embd) : null;
            if (!c.IsShortConvLayer(il))
            {
                var w = DecoderBlocks.LoadAttention(tensors, c, il, qkvBias: false);
                _layers[il] = new Layer(w, w.AttnNorm, null, null, null, ffnNorm, gate, up, down, experts);
                continue;
            }
            var taps = new TensorLoader.Dim(c.ShortConvTaps, $"{arch}.shortconv.l_cache");
            _layers[il] = new Layer(null,
                tensors.Vector(p + "attn_norm.weight", embd),
                tensors.Matrix(p + "shortconv.in_proj.weight", embd, new TensorLoader.Dim(3 * c.EmbeddingLength, $"3 × {arch}.embedding_length")),
                ConvTaps(file, p + "shortconv.conv.weight", taps, embd),
                tensors.Matrix(p + "shortconv.out_proj.weight", embd, embd),
                ffnNorm, gate, up, down, experts);
        }
    }

    /// <summary>shortconv.conv ([embd rows of taps], ggml ne = {taps, embd}) as f32, channel-major.</summary>
    private static float[] ConvTaps(GgufFile file, string name, TensorLoader.Dim taps, TensorLoader.Dim embd)
    {
        var t = file.FindTensor(name) ?? throw new ModelLoadException($"tensor {name} is missing from the model file");
        if (!Quant.WeightFormat.TryGet(t.Type, out var format) || format.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ModelLoadException($"tensor {name} has type {GgmlTypes.Name(t.Type)}; a convolution's taps must be F32, F16 or BF16 (llama-quantize keeps them)");
        int rank = t.Dims.Length;
        while (rank > 2 && t.Dims[rank - 1] == 1) rank--;
        if (rank != 2 || t.Dims[0] != taps.Value || t.Dims[1] != embd.Value)
            throw new ModelLoadException($"tensor {name} has shape [{string.Join(", ", t.Dims)}], but the metadata implies [{taps.Value}, {embd.Value}] (ne[0] = {taps.Source}, ne[1] = {embd.Source})");
        var result = new float[taps.Value * embd.Value];
        fixed (float* dst = result)
            format.DequantizeRow(file.GetTensorPointer(t), dst, result.Length);
        return result;
    }

    /// <summary>
    /// Hyperparameters under the <c>lfm2.</c> (or <c>lfm2moe.</c>) keys: the per-layer KV head counts pick the
    /// convolution layers; lfm2moe's experts as <see cref="ReadExperts"/>.
    /// </summary>
    internal static ModelConfig ReadConfig(GgufFile file, string arch = "lfm2")
    {
        string kvKey = $"{arch}.attention.head_count_kv";
        int layers = file.GetInt($"{arch}.block_count") is long n and > 0 and < 100_000 ? (int)n
            : throw new ModelLoadException($"metadata key {arch}.block_count is missing or not a positive integer");
        if (!file.TryGetValue(kvKey, out var kvValue))
            throw new ModelLoadException($"metadata key {kvKey} is missing (LFM2 marks its convolution layers with 0 there)");
        int[] perLayer;
        if (kvValue.IsArray)
        {
            perLayer = kvValue.AsInt32Array() ?? throw new ModelLoadException($"metadata key {kvKey} must be an array of integers");
            if (perLayer.Length != layers)
                throw new ModelLoadException($"metadata key {kvKey} has {perLayer.Length} entries for {layers} layers (lfm2.block_count)");
        }
        else
        {
            long one = kvValue.AsInt64() ?? throw new ModelLoadException($"metadata key {kvKey} must be an integer or an array of integers");
            perLayer = Enumerable.Repeat((int)Math.Clamp(one, -1, int.MaxValue), layers).ToArray();
        }
        if (perLayer.Any(v => v < 0))
            throw new ModelLoadException($"metadata key {kvKey} has a negative entry");
        int[] attentionKv = perLayer.Where(v => v > 0).Distinct().ToArray();
        if (attentionKv.Length > 1)
            throw new ModelLoadException($"metadata key {kvKey}: the attention layers have different KV head counts ({string.Join(", ", attentionKv)}); EdgeLlm needs one");
        bool[] conv = perLayer.Select(v => v == 0).ToArray();
        string tapsKey = $"{arch}.shortconv.l_cache";
        long taps = file.GetInt(tapsKey) ?? 0;
        if (conv.Any(x => x) && (taps < 2 || taps > ShortConvCache.HistoryPositions))
            throw new ModelLoadException($"metadata key {tapsKey} must be 2..{ShortConvCache.HistoryPositions} for the convolution layers, found {(file.TryGetValue(tapsKey, out var v) ? v : "nothing")}");
        int heads = file.GetInt($"{arch}.attention.head_count") is long h and > 0 and <= int.MaxValue ? (int)h : 1;
        var c = ModelConfig.Read(file, arch, ropeNeox: true, hasQkvBias: false, headCountKv: attentionKv.Length == 1 ? attentionKv[0] : heads);
        c = c with
        {
            HasQkNorm = true,
            ShortConvTaps = conv.Any(x => x) ? (int)taps : 0,
            ShortConvLayers = conv,
        };
        return arch == "lfm2moe" ? ReadExperts(file, c) : c;
    }

    /// <summary>
    /// lfm2moe's experts as llama.cpp reads them (each key required): expert_count, expert_used_count,
    /// expert_feed_forward_length, leading_dense_block_count (the dense blocks first) and expert_gating_func (1 softmax,
    /// 2 sigmoid); the chosen weights are always normalized (llama.cpp's norm_w = true for LFM2) and every expert block
    /// has exp_probs_b.
    /// </summary>
    private static ModelConfig ReadExperts(GgufFile file, ModelConfig c)
    {
        const string arch = "lfm2moe";
        string denseKey = $"{arch}.leading_dense_block_count", gatingKey = $"{arch}.expert_gating_func";
        if (!file.TryGetValue($"{arch}.expert_feed_forward_length", out _))
            throw new ModelLoadException($"metadata key {arch}.expert_feed_forward_length is missing");
        if (!file.TryGetValue(denseKey, out var denseValue))
            throw new ModelLoadException($"metadata key {denseKey} is missing");
        long dense = denseValue.AsInt64() is long d and >= 0 ? d
            : throw new ModelLoadException($"metadata key {denseKey} must be an integer of 0 or more, found {denseValue}");
        if (dense > c.BlockCount)
            throw new ModelLoadException($"metadata key {denseKey} ({dense}) is larger than {arch}.block_count ({c.BlockCount})");
        if (!file.TryGetValue(gatingKey, out var gatingValue))
            throw new ModelLoadException($"metadata key {gatingKey} is missing (1 = softmax, 2 = sigmoid)");
        bool sigmoid = gatingValue.AsInt64() switch
        {
            1 => false,
            2 => true,
            _ => throw new ModelLoadException($"metadata key {gatingKey} is {gatingValue}; EdgeLlm knows 1 (softmax) and 2 (sigmoid)"),
        };
        return ModelConfig.ReadExperts(file, arch, c, expertWidthKey: true, sharedExpert: false) with
        {
            LeadingDenseBlocks = (int)dense,
            ExpertGatingSigmoid = sigmoid,
            ExpertSelectionBias = true,
        };
    }

    /// <summary>Every layer, attention or convolution (the Vulkan backend uploads them from here).</summary>
    internal IReadOnlyList<Layer> HybridLayers => _layers;

    /// <summary>Not the layer list of an attention-only model: the source generator does not take LFM2, and the Vulkan backend reads <see cref="HybridLayers"/>.</summary>
    internal override IReadOnlyList<LayerWeights> Layers => [];

    private protected override IEnumerable<WeightMatrix> AllMatrices()
    {
        yield return Output;
        foreach (var l in _layers)
        {
            if (l.Attention is { } a)
            {
                yield return a.Wq; yield return a.Wk; yield return a.Wv; yield return a.Wo;
            }
            else
            {
                yield return l.InProj!; yield return l.OutProj!;
            }
            if (l.Experts is { } experts)
            {
                foreach (var m in experts.Matrices()) yield return m;
            }
            else
            {
                yield return l.Gate!; yield return l.Up!; yield return l.Down!;
            }
        }
    }

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var l = _layers[layer];
        if (l.Attention is { } w) DecoderBlocks.SelfAttention(Config, w, layer, b, neox: true, keep);
        else ShortConv(layer, l, b, keep);
        if (l.Experts is { } experts) MixtureOfExperts.FeedForward(Config, experts, b, keep);
        else DecoderBlocks.SwiGluFeedForward(Config, l.FfnNorm, l.Gate!, l.Up!, l.Down!, null, b, keep);
    }

    /// <summary>
    /// x += out_proj(C ⊙ conv(B ⊙ x')), (B, C, x') = in_proj(rmsnorm(x) ⊙ attn_norm), the convolution over this
    /// batch's gated inputs and the stored ones before it, for the last <paramref name="keep"/> tokens; every
    /// token's gated input is stored for the tokens after it.
    /// </summary>
    private void ShortConv(int il, Layer l, ForwardBatch b, int keep)
    {
        var c = Config;
        var conv = b.Conv ?? throw new InvalidOperationException("an LFM2 forward pass needs the convolution state");
        int n = b.Count, embd = c.EmbeddingLength, taps = c.ShortConvTaps, first = n - keep;

        DecoderBlocks.Norm(b, l.AttnNorm, b.X, n, embd, c.RmsEps);
        MatMul.Multiply(l.InProj!, b.Norm, n, b.ConvBcx, b.MatScratch, b.Pool);

        using (Profiler.Section(Profiler.Op.ShortConv))
        {
            // The convolution's input rows: taps − 1 stored ones (zeros before position 0), then B ⊙ x of the batch (ggml_mul(b, x)).
            float* input = b.ConvIn;
            for (int j = 0; j < taps - 1; j++)
            {
                int p = b.StartPos - (taps - 1) + j;
                var row = new Span<float>(input + (long)j * embd, embd);
                if (p < 0) row.Clear();
                else new ReadOnlySpan<float>(conv.Row(il, p), embd).CopyTo(row);
            }
            for (int t = 0; t < n; t++)
            {
                float* bcx = b.ConvBcx + (long)t * 3 * embd;
                System.Numerics.Tensors.TensorPrimitives.Multiply(
                    new ReadOnlySpan<float>(bcx, embd), new ReadOnlySpan<float>(bcx + 2 * embd, embd), new Span<float>(input + (long)(taps - 1 + t) * embd, embd));
            }
            conv.Store(il, b.StartPos, input + (long)(taps - 1) * embd, n);

            // y = C ⊙ conv_out for the kept rows, into Norm (its input is consumed); ggml_ssm_conv's order: taps summed first to last.
            fixed (float* w = l.ConvTaps)
            {
                float* wp = w;
                b.Pool.For(keep, embd * taps, (start, end, _) =>
                {
                    for (int r = start; r < end; r++)
                    {
                        int t = first + r;
                        float* cGate = b.ConvBcx + (long)t * 3 * embd + embd;
                        float* y = b.Norm + (long)r * embd;
                        for (int d = 0; d < embd; d++)
                        {
                            float sum = 0f;
                            for (int k = 0; k < taps; k++) sum += input[(long)(t + k) * embd + d] * wp[d * taps + k];
                            y[d] = cGate[d] * sum;
                        }
                    }
                }, minParallelWork: 1 << 16);
            }
        }
        if (keep == 0) return;
        MatMul.Multiply(l.OutProj!, b.Norm, keep, b.Proj, b.MatScratch, b.Pool);
        using (Profiler.Section(Profiler.Op.Add))
            Activations.Add(b.X + (long)first * embd, b.Proj, (long)keep * embd);
    }
}
