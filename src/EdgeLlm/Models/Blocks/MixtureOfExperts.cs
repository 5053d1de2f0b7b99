using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Quant;

namespace EdgeLlm.Models.Blocks;

/// <summary>
/// One mixture-of-experts transformer block: attention (<see cref="AttentionWeights"/>) and, in place of one SwiGLU
/// network, the <see cref="ExpertWeights"/>.
/// </summary>
internal sealed class MoeLayerWeights : AttentionWeights
{
    public required ExpertWeights Experts { get; init; }

    /// <summary>Every matrix of the block (for repacking and scratch sizing).</summary>
    public IEnumerable<WeightMatrix> Matrices()
    {
        yield return Wq; yield return Wk; yield return Wv; yield return Wo;
        foreach (var m in Experts.Matrices()) yield return m;
    }
}

/// <summary>
/// A mixture-of-experts feed-forward network: a router (ffn_gate_inp, kept F32 by llama-quantize) over many small
/// SwiGLU experts, each a slice of the three 3-D tensors ffn_gate_exps / ffn_up_exps / ffn_down_exps ({embd, ff,
/// experts} in ggml order: expert e's rows are contiguous, so each is a <see cref="WeightMatrix"/> view, repacked and
/// multiplied like any matrix), plus an optional shared expert every token passes through (Granite MoE Shared's and
/// Qwen2 MoE's ffn_*_shexp) and an optional per-expert bias on the choice alone (LFM2-MoE's exp_probs_b).
/// </summary>
internal sealed class ExpertWeights
{
    public required float[] FfnNorm { get; init; }          // [embd]
    public required WeightMatrix Router { get; init; }      // [experts, embd] ffn_gate_inp
    public required WeightMatrix[] Gate { get; init; }      // per expert [expert ff, embd]
    public required WeightMatrix[] Up { get; init; }        // per expert [expert ff, embd]
    public required WeightMatrix[] Down { get; init; }      // per expert [embd, expert ff]
    public WeightMatrix? SharedGate { get; init; }          // [shared ff, embd]
    public WeightMatrix? SharedUp { get; init; }            // [shared ff, embd]
    public WeightMatrix? SharedDown { get; init; }          // [embd, shared ff]
    public float[]? SharedGateInput { get; init; }          // [embd] ffn_gate_inp_shexp (Qwen2 MoE: the shared expert's output × silu(g·x)/(g·x))
    public float[]? SelectionBias { get; init; }            // [experts] exp_probs_b (LFM2-MoE: added to the probabilities to choose, not to weigh)
    public float[]? RouterBias { get; init; }               // [experts] ffn_gate_inp.bias (gpt-oss: added to the router's logits)
    public float[]? GateBias { get; init; }                 // [experts × expert ff] ffn_gate_exps.bias (gpt-oss), expert e's at e × ff
    public float[]? UpBias { get; init; }                   // [experts × expert ff] ffn_up_exps.bias
    public float[]? DownBias { get; init; }                 // [experts × embd] ffn_down_exps.bias

    /// <summary>Every matrix of the network.</summary>
    public IEnumerable<WeightMatrix> Matrices()
    {
        yield return Router;
        for (int e = 0; e < Gate.Length; e++)
        {
            yield return Gate[e]; yield return Up[e]; yield return Down[e];
        }
        if (SharedGate is not null && SharedUp is not null && SharedDown is not null)
        {
            yield return SharedGate; yield return SharedUp; yield return SharedDown;
        }
    }
}

/// <summary>
/// The mixture-of-experts feed-forward block, as llama.cpp's build_moe_ffn computes it for qwen3moe, granitemoe and
/// Mixtral (llama with experts): probabilities = softmax(router · x_norm); the <see cref="ModelConfig.ExpertUsedCount"/>
/// most probable experts, best first; their probabilities divided by their sum (norm_w, clamped below at 2⁻¹⁴ as
/// llama.cpp's); each chosen expert's down(silu(gate · x_norm) ⊙ (up · x_norm)) times its weight, summed best first;
/// plus the shared expert's SwiGLU where there is one.
/// </summary>
/// <remarks>
/// A batch is grouped by expert (llama.cpp's mul_mat_id does the same on the CPU): each expert with tokens multiplies
/// the activation rows of just those tokens, so its weights are read once per batch however many tokens chose it, and
/// every expert's gate and up products (then every expert's down product) are one parallel job of (expert, rows)
/// items, not one hand-off per expert. Each output element is one vec-dot of a converted activation row, as in
/// <see cref="MatMul"/>: a token's result does not depend on the batch or the thread count.
/// </remarks>
internal static unsafe class MixtureOfExperts
{
    /// <summary>The smallest sum of the chosen probabilities divided by (llama.cpp clamps to F16's smallest normal, 2⁻¹⁴).</summary>
    private const float MinWeightSum = 6.103515625e-5f;

    /// <summary>
    /// blk.<paramref name="il"/>.*: the attention as <see cref="DecoderBlocks.LoadAttention"/>, and the experts as
    /// <see cref="LoadExperts"/>.
    /// </summary>
    public static MoeLayerWeights LoadLayer(TensorLoader tensors, ModelConfig c, int il)
    {
        var a = DecoderBlocks.LoadAttention(tensors, c, il, qkvBias: c.HasQkvBias);
        return new MoeLayerWeights
        {
            AttnNorm = a.AttnNorm, Wq = a.Wq, Wk = a.Wk, Wv = a.Wv, Wo = a.Wo, Bq = a.Bq, Bk = a.Bk, Bv = a.Bv,
            QNorm = a.QNorm, KNorm = a.KNorm, AttnPostNorm = a.AttnPostNorm, Bo = a.Bo, Sinks = a.Sinks,
            Experts = LoadExperts(tensors, c, il),
        };
    }

    /// <summary>
    /// blk.<paramref name="il"/>.*: ffn_norm, the router and the experts' views, the shared expert when
    /// <see cref="ModelConfig.ExpertSharedFeedForwardLength"/> &gt; 0, and exp_probs_b when
    /// <see cref="ModelConfig.ExpertSelectionBias"/>.
    /// </summary>
    public static ExpertWeights LoadExperts(TensorLoader tensors, ModelConfig c, int il)
    {
        string arch = c.Architecture, p = $"blk.{il}.";
        var embd = new TensorLoader.Dim(c.EmbeddingLength, $"{arch}.embedding_length");
        var experts = new TensorLoader.Dim(c.ExpertCount, $"{arch}.expert_count");
        var ff = new TensorLoader.Dim(c.ExpertFeedForwardLength,
            arch is "qwen3moe" or "qwen2moe" or "lfm2moe" or "gpt-oss" ? $"{arch}.expert_feed_forward_length" : $"{arch}.feed_forward_length");
        WeightMatrix? shGate = null, shUp = null, shDown = null;
        float[]? shGateInput = null;
        if (c.ExpertSharedFeedForwardLength > 0)
        {
            var sff = new TensorLoader.Dim(c.ExpertSharedFeedForwardLength, $"{arch}.expert_shared_feed_forward_length");
            shGate = tensors.Matrix(p + "ffn_gate_shexp.weight", embd, sff);
            shUp = tensors.Matrix(p + "ffn_up_shexp.weight", embd, sff);
            shDown = tensors.Matrix(p + "ffn_down_shexp.weight", sff, embd);
            shGateInput = arch == "qwen2moe" ? tensors.Vector(p + "ffn_gate_inp_shexp.weight", embd) : null;
        }
        if (tensors.Has(p + "ffn_gate_inp.weight") && !tensors.Has(p + "ffn_gate_exps.weight") && tensors.Has(p + "ffn_up_exps.weight"))
            throw new ModelLoadException($"tensor {p}ffn_gate_exps.weight is missing: experts without a gate (silu of up alone) are not supported");
        bool oai = c.ExpertSwiGluOai;
        return new ExpertWeights
        {
            // (gpt-oss names the feed-forward norm post_attention_norm)
            FfnNorm = tensors.Vector(p + (arch == "gpt-oss" ? "post_attention_norm.weight" : "ffn_norm.weight"), embd),
            Router = tensors.Matrix(p + "ffn_gate_inp.weight", embd, experts),
            RouterBias = oai ? tensors.Vector(p + "ffn_gate_inp.bias", experts) : null,
            GateBias = oai ? tensors.VectorRows(p + "ffn_gate_exps.bias", ff, experts) : null,
            UpBias = oai ? tensors.VectorRows(p + "ffn_up_exps.bias", ff, experts) : null,
            DownBias = oai ? tensors.VectorRows(p + "ffn_down_exps.bias", embd, experts) : null,
            Gate = tensors.Experts(p + "ffn_gate_exps.weight", embd, ff, experts),
            Up = tensors.Experts(p + "ffn_up_exps.weight", embd, ff, experts),
            Down = tensors.Experts(p + "ffn_down_exps.weight", ff, embd, experts),
            SharedGate = shGate,
            SharedUp = shUp,
            SharedDown = shDown,
            SharedGateInput = shGateInput,
            SelectionBias = c.ExpertSelectionBias ? tensors.Vector(p + "exp_probs_b.bias", experts) : null,
        };
    }

    /// <summary>
    /// x += residual_scale × moe(rmsnorm(x) ⊙ ffn_norm) for the last <paramref name="keep"/> tokens of the batch
    /// (see the class summary).
    /// </summary>
    public static void FeedForward(ModelConfig c, ExpertWeights w, ForwardBatch b, int keep)
    {
        if (keep == 0) return;
        int embd = c.EmbeddingLength, nExperts = c.ExpertCount, k = c.ExpertUsedCount, ff = c.ExpertFeedForwardLength;
        float* x = b.X + (long)(b.Count - keep) * embd;
        DecoderBlocks.Norm(b, w.FfnNorm, x, keep, embd, c.RmsEps);

        // ffn_moe_logits, then each token's experts and weights, then the rows grouped by expert
        MatMul.Multiply(w.Router, b.Norm, keep, b.MoeProbs, b.MatScratch, b.Pool);
        if (w.RouterBias is not null) Activations.AddBias(b.MoeProbs, w.RouterBias, keep);
        int routed = keep * k;
        var offsets = new int[nExperts + 1];
        using (Profiler.Section(Profiler.Op.MoeRoute))
        {
            fixed (float* bias = w.SelectionBias)
                for (int t = 0; t < keep; t++)
                    if (c.ExpertGatingSoftmaxWeight) RouteSoftmaxWeight(b.MoeProbs + (long)t * nExperts, nExperts, k, b.MoeExpert + t * k, b.MoeWeight + t * k);
                    else Route(b.MoeProbs + (long)t * nExperts, nExperts, k, c.ExpertWeightsNorm, b.MoeExpert + t * k, b.MoeWeight + t * k,
                        c.ExpertGatingSigmoid, bias);
            for (int i = 0; i < routed; i++) offsets[b.MoeExpert[i] + 1]++;
            for (int e = 0; e < nExperts; e++) offsets[e + 1] += offsets[e];
            var fill = new int[nExperts];
            for (int i = 0; i < routed; i++)
            {
                int e = b.MoeExpert[i];
                b.MoeSlot[i] = offsets[e] + fill[e]++;
            }
        }

        // gate and up: x_norm converted once per token, copied to each of its slots
        var gateType = w.Gate[0].Format.VecDotType;
        var upType = w.Up[0].Format.VecDotType;
        long inBytes = ConvertGathered(b, gateType, keep, k, embd);
        if (upType == gateType)
        {
            Products(b.Pool, offsets, b.MoeActs, inBytes, keep, [w.Gate, w.Up], [(nint)b.MoeGate, (nint)b.MoeUp]);
        }
        else
        {
            Products(b.Pool, offsets, b.MoeActs, inBytes, keep, [w.Gate], [(nint)b.MoeGate]);
            inBytes = ConvertGathered(b, upType, keep, k, embd);
            Products(b.Pool, offsets, b.MoeActs, inBytes, keep, [w.Up], [(nint)b.MoeUp]);
        }
        // gpt-oss: each slot's expert's gate and up biases (ggml_add_id), then the clamped SwiGLU
        int[]? slotExpert = null;
        if (w.GateBias is not null && w.UpBias is not null)
        {
            slotExpert = new int[routed];
            for (int e = 0; e < nExperts; e++)
                for (int s = offsets[e]; s < offsets[e + 1]; s++) slotExpert[s] = e;
            AddExpertBias(b.MoeGate, w.GateBias, slotExpert, ff);
            AddExpertBias(b.MoeUp, w.UpBias, slotExpert, ff);
        }
        bool oai = c.ExpertSwiGluOai;
        using (Profiler.Section(Profiler.Op.SwiGlu))
            b.Pool.For(routed, ff, (start, end, _) =>
            {
                for (int s = start; s < end; s++)
                {
                    if (oai) Activations.SwiGluOai(b.MoeGate + (long)s * ff, b.MoeUp + (long)s * ff, ff);
                    else Activations.SwiGlu(b.MoeGate + (long)s * ff, b.MoeUp + (long)s * ff, ff);
                }
            }, minParallelWork: 1 << 16);

        // down: the activated rows are already grouped
        long downBytes = ConvertRows(b.Pool, w.Down[0].Format.VecDotType, b.MoeGate, routed, ff, b.MoeActs);
        Products(b.Pool, offsets, b.MoeActs, downBytes, keep, [w.Down], [(nint)b.MoeDown]);
        if (w.DownBias is not null && slotExpert is not null) AddExpertBias(b.MoeDown, w.DownBias, slotExpert, embd);

        // ffn_moe_weighted, summed best first (ggml_mul, then ggml_add of each expert's view in rank order)
        using (Profiler.Section(Profiler.Op.MoeRoute))
            b.Pool.For(keep, (long)k * embd, (start, end, _) =>
            {
                Span<float> term = embd <= 4096 ? stackalloc float[embd] : new float[embd];
                for (int t = start; t < end; t++)
                {
                    var y = new Span<float>(b.Proj + (long)t * embd, embd);
                    for (int r = 0; r < k; r++)
                    {
                        int i = t * k + r;
                        var d = new ReadOnlySpan<float>(b.MoeDown + (long)b.MoeSlot[i] * embd, embd);
                        if (r == 0) System.Numerics.Tensors.TensorPrimitives.Multiply(d, b.MoeWeight[i], y);
                        else
                        {
                            System.Numerics.Tensors.TensorPrimitives.Multiply(d, b.MoeWeight[i], term);
                            System.Numerics.Tensors.TensorPrimitives.Add(y, term, y);
                        }
                    }
                }
            }, minParallelWork: 1 << 16);

        // Granite MoE Shared, Qwen2 MoE: + down(silu(gate · x_norm) ⊙ (up · x_norm)), its result in MoeDown's first rows (free now)
        if (w.SharedGate is { } shGate && w.SharedUp is { } shUp && w.SharedDown is { } shDown)
        {
            int sff = c.ExpertSharedFeedForwardLength;
            MatMul.Multiply(shGate, b.Norm, keep, b.Gate, b.MatScratch, b.Pool);
            MatMul.Multiply(shUp, b.Norm, keep, b.Up, b.MatScratch, b.Pool);
            using (Profiler.Section(Profiler.Op.SwiGlu))
                for (int t = 0; t < keep; t++) Activations.SwiGlu(b.Gate + (long)t * sff, b.Up + (long)t * sff, sff);
            MatMul.Multiply(shDown, b.Gate, keep, b.MoeDown, b.MatScratch, b.Pool);
            if (w.SharedGateInput is { } gateInput)
            {
                // Qwen2 MoE: × silu(g)/g, g = ffn_gate_inp_shexp · x_norm, as llama.cpp writes sigmoid (ggml_silu then
                // ggml_div); its limit 1/2 where g = 0, for which llama.cpp's division gives NaN.
                using var _ = Profiler.Section(Profiler.Op.MoeRoute);
                for (int t = 0; t < keep; t++)
                {
                    float g = System.Numerics.Tensors.TensorPrimitives.Dot(gateInput, new ReadOnlySpan<float>(b.Norm + (long)t * embd, embd));
                    float gate = g == 0f ? 0.5f : g / (1f + MathF.Exp(-g)) / g;
                    Activations.Scale(b.MoeDown + (long)t * embd, embd, gate);
                }
            }
            using (Profiler.Section(Profiler.Op.Add))
                Activations.Add(b.Proj, b.MoeDown, (long)keep * embd);
        }

        if (c.ResidualScale != 1f) DecoderBlocks.ScaleResidual(b.Proj, (long)keep * embd, c.ResidualScale);
        using (Profiler.Section(Profiler.Op.Add))
            Activations.Add(x, b.Proj, (long)keep * embd);
    }

    /// <summary>
    /// probabilities = softmax(<paramref name="logits"/>) in place (ggml_soft_max: the exponentials of x − max summed in
    /// double, then × 1/sum), or sigmoid(<paramref name="logits"/>) when <paramref name="sigmoid"/> (ggml_sigmoid,
    /// 1 / (1 + e^−x)); the <paramref name="k"/> largest, best first (ties: the lower expert), into
    /// <paramref name="experts"/> with their probabilities in <paramref name="weights"/>, divided by their sum when
    /// <paramref name="normalize"/>. A <paramref name="bias"/> (LFM2-MoE's exp_probs_b) is added to the probabilities
    /// for the choice only, as llama.cpp's selection_probs: the weights stay the probabilities. A NaN logit (a broken
    /// model) routes to the lowest unchosen experts rather than to none.
    /// </summary>
    internal static void Route(float* logits, int n, int k, bool normalize, int* experts, float* weights, bool sigmoid = false, float* bias = null)
    {
        if (sigmoid)
        {
            for (int i = 0; i < n; i++) logits[i] = 1f / (1f + MathF.Exp(-logits[i]));
        }
        else Activations.Softmax(logits, n);

        float* select = logits;
        if (bias != null)
        {
            float* biased = stackalloc float[n]; // n ≤ 512 (ModelConfig.ReadExperts)
            for (int i = 0; i < n; i++) biased[i] = logits[i] + bias[i];
            select = biased;
        }
        Choose(select, n, k, experts);
        for (int r = 0; r < k; r++) weights[r] = logits[experts[r]];
        if (!normalize) return;
        float total = 0f;
        for (int r = 0; r < k; r++) total += weights[r];
        total = MathF.Max(total, MinWeightSum);
        for (int r = 0; r < k; r++) weights[r] /= total;
    }

    /// <summary>
    /// gpt-oss's routing (llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX_WEIGHT): the <paramref name="k"/> largest raw
    /// <paramref name="logits"/>, best first, and as weights the softmax of those k logits alone (ggml_soft_max over the
    /// chosen row: exponentials of x − max summed in double, × 1/sum); no renormalization after.
    /// </summary>
    internal static void RouteSoftmaxWeight(float* logits, int n, int k, int* experts, float* weights)
    {
        Choose(logits, n, k, experts);
        float max = float.NegativeInfinity;
        for (int r = 0; r < k; r++) max = MathF.Max(max, logits[experts[r]]);
        double sum = 0;
        for (int r = 0; r < k; r++)
        {
            float e = MathF.Exp(logits[experts[r]] - max);
            weights[r] = e;
            sum += e;
        }
        float scale = (float)(1.0 / sum);
        for (int r = 0; r < k; r++) weights[r] *= scale;
    }

    /// <summary>Adds to each row s of <paramref name="rows"/> (<paramref name="width"/> wide) its expert's row of <paramref name="bias"/> (ggml_add_id).</summary>
    private static void AddExpertBias(float* rows, float[] bias, int[] slotExpert, int width)
    {
        for (int s = 0; s < slotExpert.Length; s++)
        {
            var y = new Span<float>(rows + (long)s * width, width);
            System.Numerics.Tensors.TensorPrimitives.Add(y, new ReadOnlySpan<float>(bias, slotExpert[s] * width, width), y);
        }
    }

    /// <summary>The <paramref name="k"/> largest of <paramref name="scores"/>, best first (ties: the lower index; NaN: the lowest unchosen).</summary>
    private static void Choose(float* scores, int n, int k, int* experts)
    {
        for (int r = 0; r < k; r++)
        {
            int best = -1;
            for (int i = 0; i < n; i++)
            {
                if (best >= 0 && !(scores[i] > scores[best])) continue;
                bool taken = false;
                for (int j = 0; j < r && !taken; j++) taken = experts[j] == i;
                if (!taken) best = i;
            }
            experts[r] = best;
        }
    }

    /// <summary>
    /// The <paramref name="keep"/> rows of b.Norm converted to <paramref name="type"/> (into MatScratch), each copied
    /// to its <paramref name="k"/> slots of MoeActs; returns the converted row's bytes.
    /// </summary>
    private static long ConvertGathered(ForwardBatch b, GgmlType type, int keep, int k, int cols)
    {
        long rowBytes = ConvertRows(b.Pool, type, b.Norm, keep, cols, b.MatScratch);
        using (Profiler.Section(Profiler.Op.Quantize))
            for (int i = 0; i < keep * k; i++)
                Buffer.MemoryCopy(b.MatScratch + (i / k) * rowBytes, b.MoeActs + b.MoeSlot[i] * rowBytes, rowBytes, rowBytes);
        return rowBytes;
    }

    /// <summary><paramref name="rows"/> f32 rows of <paramref name="cols"/> converted to <paramref name="type"/> into <paramref name="dst"/>, in parallel; returns the converted row's bytes.</summary>
    private static long ConvertRows(WorkerPool pool, GgmlType type, float* src, int rows, int cols, byte* dst)
    {
        long rowBytes = ActivationQuantizer.RowBytes(type, cols);
        using (Profiler.Section(Profiler.Op.Quantize))
            pool.For(rows, cols, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                    ActivationQuantizer.QuantizeRow(type, src + (long)t * cols, dst + t * rowBytes, cols);
            }, minParallelWork: 1 << 16);
        return rowBytes;
    }

    /// <summary>
    /// Bytes of weights per work item of a one-token expert product: 128 KB, what the dense products
    /// used before their items grew to 512 KB (<see cref="MatMul.DecodeChunkBytes"/>). An expert's
    /// matrices are small and a job holds many; at 512 KB OLMoE and LFM2-8B-A1B decode measured 1–5%
    /// lower in two alternating rounds (2026-12-02, 2-core AVX-512 AMD EPYC, within that host's noise),
    /// so the experts keep 128 KB. <c>EDGELLM_DECODE_CHUNK_BYTES</c> sets both.
    /// </summary>
    internal static readonly long ExpertDecodeChunkBytes = Environment.GetEnvironmentVariable("EDGELLM_DECODE_CHUNK_BYTES") is null ? 128 << 10 : MatMul.DecodeChunkBytes;

    /// <summary>
    /// For each set (a matrix per expert in <paramref name="weights"/>, an output buffer in <paramref name="outputs"/>) and
    /// each expert e with tokens: the output rows offsets[e] … offsets[e + 1] − 1 = the activation rows there · W_eᵀ, all
    /// in one parallel job of (set, expert, rows) items. An expert with one token is a matrix-vector product in items of
    /// about <see cref="ExpertDecodeChunkBytes"/> balanced over the whole job, one with more is walked in
    /// <see cref="MatMul.BatchChunkRows"/> slices through the tile kernels, as
    /// <see cref="MatMul.Multiply(WeightMatrix, float*, int, float*, byte*, WorkerPool)"/>.
    /// </summary>
    /// <remarks>Items are four ints (set, expert, first row, end row), not a list of structs: each generic
    /// instantiation over a struct adds native code to the size-limited AOT binary.</remarks>
    private static void Products(WorkerPool pool, int[] offsets, byte* acts, long actBytes, int keep, WeightMatrix[][] weights, nint[] outputs)
    {
        int experts = offsets.Length - 1;
        int active = 0;
        for (int e = 0; e < experts; e++) if (offsets[e + 1] > offsets[e]) active++;
        var chunks = new int[weights.Length * experts];
        int count = 0;
        long work = 0;
        for (int s = 0; s < weights.Length; s++)
        {
            for (int e = 0; e < experts; e++)
            {
                int m = offsets[e + 1] - offsets[e];
                if (m == 0) continue;
                var w = weights[s][e];
                int chunk = MatMul.BatchChunkRows;
                if (m == 1)
                {
                    // One token: items of about ExpertDecodeChunkBytes, balanced over all the matrices of the job (not
                    // each alone: 64-row items of a small expert cut every worker's stream into short pieces).
                    int target = MatMul.DecodeChunkRows(w.RowBytes, w.Rows * active * weights.Length, pool.Threads, ExpertDecodeChunkBytes);
                    int pieces = (w.Rows + target - 1) / target;
                    chunk = ((w.Rows + pieces - 1) / pieces + 15) / 16 * 16; // even pieces of whole 16-row groups
                }
                chunks[s * experts + e] = chunk;
                count += (w.Rows + chunk - 1) / chunk;
                work += (long)w.Rows * w.Cols * m;
            }
        }
        var items = new int[4 * count];
        int n = 0;
        for (int s = 0; s < weights.Length; s++)
        {
            for (int e = 0; e < experts; e++)
            {
                int chunk = chunks[s * experts + e];
                if (chunk == 0) continue;
                int rows = weights[s][e].Rows;
                for (int r = 0; r < rows; r += chunk)
                {
                    items[n++] = s; items[n++] = e; items[n++] = r; items[n++] = Math.Min(rows, r + chunk);
                }
            }
        }
        using (Profiler.Section(keep == 1 ? Profiler.Op.MatVec : Profiler.Op.MatMat))
            pool.ForDynamic(count, 1, work / Math.Max(1, count), (start, end, _) =>
            {
                for (int i = start; i < end; i++)
                {
                    int s = items[4 * i], e = items[4 * i + 1];
                    var w = weights[s][e];
                    int first = offsets[e], m = offsets[e + 1] - first;
                    MatMul.RowRange(w, acts + first * actBytes, actBytes, m, (float*)outputs[s] + (long)first * w.Rows, items[4 * i + 2], items[4 * i + 3]);
                }
            });
    }
}
