using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using System.Numerics.Tensors;

namespace EdgeLlm.Synth;

/// <summary>Chooses the type of one tensor of a synthetic model from its name and ggml dims.</summary>
public delegate GgmlType SynthTypePlanner(string tensorName, long[] dims);

/// <summary>
/// Writes a GGUF model with random weights and the exact shape, metadata and vocabulary size of a
/// real model, so that speed can be measured at realistic sizes without downloading anything.
/// </summary>
/// <remarks>
/// Weights are drawn so that activations stay in a realistic range through every layer (as in
/// a trained model, each block is a moderate update of the residual stream):
/// <list type="bullet">
/// <item>projections: N(0, 1/√fan_in), so a unit-RMS input gives unit-RMS outputs;</item>
/// <item>the projections that write into the residual stream (attn_output, ffn_down): further
/// scaled by 1/√(2·layers) (GPT-2's residual scaling), so the stream grows slowly;</item>
/// <item>token_embd: N(0, 1); an untied output.weight: N(0, 1/√embd); Q/K/V biases N(0, 0.1);</item>
/// <item>norm weights 1, except Qwen3's per-head Q/K norm weights 1 + N(0, 0.2); rope_freqs.weight from Llama 3's formula.</item>
/// </list>
/// "Normal" here is the Irwin–Hall sum of four uniforms scaled to unit variance (bounded at
/// ±2√3σ): one 64-bit random number per value, which keeps a 1.1B-parameter model to seconds.
/// Every row has its own generator seeded from (seed, tensor, row), so the file is the same for a
/// seed whatever the thread count. Rows are generated and quantized in parallel, a chunk at a time,
/// and streamed to disk: the model is never held in memory.
/// </remarks>
public static unsafe class ModelSynthesizer
{
    /// <summary>ggml's GGML_QNT_VERSION, written as general.quantization_version (as the converter and llama-quantize do).</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>Bytes of output generated per parallel step (then written in order).</summary>
    private const long ChunkBytes = 8 << 20;

    /// <summary>
    /// Synthesizes a model shaped like <paramref name="likeName"/> (see <see cref="SynthShapes.Names"/>).
    /// </summary>
    /// <param name="likeName">tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, smollm2-360m, qwen3-0.6b or qwen3-1.7b.</param>
    /// <param name="typeName">
    /// A llama.cpp file type (F32, F16, BF16, Q4_0, Q8_0, Q4_K_M, Q6_K, ...: tensor types as
    /// <c>llama-quantize</c> chooses them) or any other ggml type the quantizer knows (Q4_K, Q5_K, ...:
    /// every weight matrix in that type); any case. See <see cref="CreatePlanner"/>.
    /// </param>
    /// <param name="outPath">The file to write (replaced).</param>
    /// <param name="seed">Random seed: the same seed gives the same file.</param>
    /// <param name="progress">Called after each tensor with (tensors done, tensor count, tensor name).</param>
    /// <exception cref="ArgumentException">unknown shape or type name.</exception>
    /// <exception cref="NotSupportedException">no quantizer is registered for a type the file needs.</exception>
    public static void Synthesize(string likeName, string typeName, string outPath, int seed, Action<int, int, string>? progress = null) =>
        Synthesize(SynthShapes.Find(likeName), typeName, outPath, seed, progress);

    /// <summary>Synthesizes a model of any <paramref name="shape"/> (e.g. a tiny one for tests).</summary>
    /// <param name="shape">The model's dimensions.</param>
    /// <param name="typeName">A llama.cpp file type or a ggml type name (see <see cref="CreatePlanner"/>).</param>
    /// <param name="outPath">The file to write (replaced).</param>
    /// <param name="seed">Random seed.</param>
    /// <param name="progress">Called after each tensor with (tensors done, tensor count, tensor name).</param>
    /// <param name="threads">Worker threads (0 = one per core).</param>
    public static void Synthesize(SynthShape shape, string typeName, string outPath, int seed, Action<int, int, string>? progress = null, int threads = 0)
    {
        var (planner, fileType) = CreatePlanner(shape, typeName);
        Synthesize(shape, planner, fileType, outPath, seed, progress, threads);
    }

    /// <summary>
    /// The per-tensor types of a model of <paramref name="shape"/> in <paramref name="typeName"/>, and
    /// the general.file_type it carries. Vectors (norms, biases, rope factors) are F32, as the
    /// converter writes them. Weight matrices:
    /// <list type="bullet">
    /// <item>a llama.cpp file type name (<see cref="LlamaFileTypes.Names"/>: F16, Q4_0, Q8_0, Q4_K_M,
    /// Q6_K, ...) gets exactly the types <c>llama-quantize</c> would give an F16 original
    /// (<see cref="TensorTypePlanner"/>: e.g. output.weight Q6_K in a Q4_0 file, the _M mixes'
    /// attn_v/ffn_down rules, fallbacks for rows that do not divide into blocks), so the file matches
    /// what one downloads;</item>
    /// <item>any other ggml type name (Q4_K, Q5_K, Q3_K, ...) is used for every matrix
    /// (<c>llama-quantize --pure</c>), except that rows which do not divide into its blocks fall back
    /// as llama.cpp's quantizer does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL,
    /// else F16); general.file_type is the matching _M mix's number.</item>
    /// </list>
    /// </summary>
    /// <exception cref="ArgumentException">the name is neither a file type nor a ggml type.</exception>
    /// <exception cref="NotSupportedException">a planned type cannot be written (no quantizer registered).</exception>
    public static (SynthTypePlanner Planner, uint FileType) CreatePlanner(SynthShape shape, string typeName)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(typeName);
        shape.Validate();
        SynthTypePlanner planner;
        uint fileType;
        if (LlamaFileTypes.Names.Contains(typeName, StringComparer.OrdinalIgnoreCase))
        {
            var ftype = LlamaFileTypes.Parse(typeName);
            var types = LlamaQuantizeTypes(shape, ftype);
            planner = (name, dims) => IsVector(dims) || IsKeptF32(name) ? GgmlType.F32 : types[name];
            fileType = (uint)ftype;
        }
        else if (GgmlTypes.TryParse(typeName, out var type))
        {
            if (!s_pureFileTypes.TryGetValue(type, out fileType))
                throw new NotSupportedException($"cannot write weights of type {GgmlTypes.Name(type)}: EdgeLlm has no quantizer for it");
            planner = (name, dims) => IsKeptF32(name) ? GgmlType.F32 : PureType(type, dims);
        }
        else
        {
            throw new ArgumentException($"unknown weight type '{typeName}'; expected a llama.cpp file type ({string.Join(", ", LlamaFileTypes.Names)}) or a ggml type such as Q4_K");
        }

        foreach (var (name, dims) in TensorLayout(shape))
        {
            var t = planner(name, dims);
            if (!CanWrite(t))
                throw new NotSupportedException($"tensor {name}: cannot write type {GgmlTypes.Name(t)} (no quantizer registered)");
        }
        return (planner, fileType);
    }

    // general.file_type (llama.h enum llama_ftype) of a file whose weight matrices are all of one
    // type; a pure K-quant file carries the _M mixture's number, as llama-quantize --pure writes it.
    private static readonly Dictionary<GgmlType, uint> s_pureFileTypes = new()
    {
        [GgmlType.F32] = 0, [GgmlType.F16] = 1, [GgmlType.Q4_0] = 2, [GgmlType.Q4_1] = 3, [GgmlType.Q8_0] = 7,
        [GgmlType.Q5_0] = 8, [GgmlType.Q5_1] = 9, [GgmlType.Q2_K] = 10, [GgmlType.Q3_K] = 12, [GgmlType.Q4_K] = 15,
        [GgmlType.Q5_K] = 17, [GgmlType.Q6_K] = 18, [GgmlType.IQ4_NL] = 25, [GgmlType.BF16] = 32, [GgmlType.MXFP4] = 38,
    };

    private static bool CanWrite(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 || RowQuantizer.TryGet(t, out _);

    private static bool IsVector(long[] dims) => dims.Length < 2 || dims.Skip(1).All(d => d == 1);

    /// <summary>Small matrices the converter writes in F32 whatever the file's type (LFM2's convolution taps, as Mamba's conv1d).</summary>
    private static bool IsKeptF32(string name) =>
        name.EndsWith("shortconv.conv.weight", StringComparison.Ordinal) || name.EndsWith("ffn_gate_inp.weight", StringComparison.Ordinal)
        || name.EndsWith(".bias", StringComparison.Ordinal) || name.EndsWith("attn_sinks.weight", StringComparison.Ordinal); // (gpt-oss's per-expert biases are 2-D)

    private static GgmlType PureType(GgmlType type, long[] dims)
    {
        if (IsVector(dims)) return GgmlType.F32;
        long row = dims[0];
        if (row % GgmlTypes.Info(type).BlockSize == 0) return type;
        var fallback = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.IQ4_NL,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16,
        };
        return row % GgmlTypes.Info(fallback).BlockSize == 0 && CanWrite(fallback) ? fallback : GgmlType.F16;
    }

    /// <summary>
    /// The type <see cref="TensorTypePlanner"/> (llama-quantize's rules) gives each weight matrix of
    /// <paramref name="shape"/>. The planner reads a GGUF file, so it gets a skeleton: the metadata
    /// its rules look at and the tensor directory, with the data section left as a hole in a sparse
    /// temporary file (one byte per value as I8; never read, so nothing is written to disk).
    /// </summary>
    private static Dictionary<string, GgmlType> LlamaQuantizeTypes(SynthShape shape, LlamaFileType ftype)
    {
        var w = new GgufWriter();
        string a = shape.Architecture;
        w.Set("general.architecture", a);
        w.Set($"{a}.block_count", (uint)shape.BlockCount);
        w.Set($"{a}.attention.head_count", (uint)shape.HeadCount);
        w.Set($"{a}.attention.head_count_kv", (uint)shape.HeadCountKv);
        if (shape.Experts is { } experts) w.Set($"{a}.expert_count", (uint)experts.Count);
        foreach (var (name, dims) in TensorLayout(shape))
        {
            long bytes = dims.Aggregate(1L, (x, d) => x * d);
            w.AddTensor(name, GgmlType.I8, dims, s => s.Seek(bytes, SeekOrigin.Current));
        }
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-synth-plan-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        try
        {
            using (var fs = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
            {
                w.Write(fs);
                fs.SetLength(fs.Position); // the last tensor's data may be only a seek: make the hole part of the file
            }
            using var file = GgufFile.Open(path);
            return TensorTypePlanner.Plan(file, ftype, pure: false)
                .ToDictionary(p => p.Tensor.Name, p => p.Target, StringComparer.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Synthesizes a model with an explicit per-tensor type rule.</summary>
    /// <param name="shape">The model's dimensions.</param>
    /// <param name="planner">The type of each tensor.</param>
    /// <param name="fileType">general.file_type (llama.h llama_ftype).</param>
    /// <param name="outPath">The file to write (replaced; deleted again if writing fails).</param>
    /// <param name="seed">Random seed.</param>
    /// <param name="progress">Called after each tensor with (tensors done, tensor count, tensor name).</param>
    /// <param name="threads">Worker threads (0 = one per core).</param>
    public static void Synthesize(SynthShape shape, SynthTypePlanner planner, uint fileType, string outPath, int seed,
        Action<int, int, string>? progress = null, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(planner);
        ArgumentNullException.ThrowIfNull(outPath);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        shape.Validate();
        if (threads == 0) threads = Environment.ProcessorCount;

        var writer = new GgufWriter();
        WriteMetadata(writer, shape, fileType, seed);
        var tensors = Layout(shape);
        int done = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            var type = planner(t.Name, t.Dims);
            if (!CanWrite(type))
                throw new NotSupportedException($"tensor {t.Name}: cannot write type {GgmlTypes.Name(type)} (no quantizer registered)");
            if (t.Dims[0] % GgmlTypes.Info(type).BlockSize != 0)
                throw new ArgumentException($"tensor {t.Name}: row length {t.Dims[0]} is not a multiple of the {GgmlTypes.Name(type)} block size {GgmlTypes.Info(type).BlockSize}");
            int index = i;
            writer.AddTensor(t.Name, type, t.Dims, stream =>
            {
                WriteTensor(stream, t, index, type, seed, threads);
                progress?.Invoke(++done, tensors.Count, t.Name);
            });
        }

        try
        {
            writer.Write(outPath);
        }
        catch
        {
            try { File.Delete(outPath); } catch (IOException) { } // leave no half-written model behind
            throw;
        }
    }

    private static void WriteMetadata(GgufWriter w, SynthShape s, uint fileType, int seed)
    {
        string a = s.Architecture;
        // Keys and order as convert_hf_to_gguf.py writes them for LlamaModel / Qwen2Model.
        w.Set("general.architecture", a);
        w.Set("general.type", "model");
        w.Set("general.name", s.DisplayName);
        w.Set($"{a}.block_count", (uint)s.BlockCount);
        w.Set($"{a}.context_length", (uint)s.ContextLength);
        w.Set($"{a}.embedding_length", (uint)s.EmbeddingLength);
        w.Set($"{a}.feed_forward_length", (uint)s.FeedForwardLength);
        w.Set($"{a}.attention.head_count", (uint)s.HeadCount);
        if (s.IsLfm2)
        {
            // LFM2Model.set_gguf_parameters: the KV head count per layer, 0 for the convolution layers, and the taps.
            w.Set($"{a}.attention.head_count_kv", GgufValue.From(Enumerable.Range(0, s.BlockCount).Select(l => s.IsShortConvLayer(l) ? 0 : s.HeadCountKv).ToArray()));
            w.Set($"{a}.shortconv.l_cache", (uint)SynthShape.ShortConvTaps);
        }
        else w.Set($"{a}.attention.head_count_kv", (uint)s.HeadCountKv);
        w.Set($"{a}.rope.freq_base", s.RopeFreqBase);
        w.Set($"{a}.attention.layer_norm_rms_epsilon", s.RmsEps);
        if (s.WriteHeadLengths)
        {
            w.Set($"{a}.attention.key_length", (uint)s.HeadDim);
            w.Set($"{a}.attention.value_length", (uint)s.HeadDim);
        }
        w.Set("general.file_type", fileType);
        if (a == "phi3")
        {
            // Phi3MiniModel.set_gguf_parameters: the original context, rope dimensions, the sliding window
            // (0 when config.json has none); LongRoPE adds attn_factor (add_rope_scaling_attn_factors).
            w.Set($"{a}.rope.scaling.original_context_length", (uint)(s.LongRope?.OriginalContextLength ?? s.ContextLength));
            w.Set($"{a}.rope.dimension_count", (uint)s.RopeDims); // int(partial_rotary_factor · n_embd) // n_head
            w.Set($"{a}.attention.sliding_window", (uint)s.SlidingWindow);
            if (s.LongRope is { } longRope) w.Set($"{a}.rope.scaling.attn_factor", longRope.AttnFactor(s.ContextLength));
        }
        if (s.GemmaPostNorms)
        {
            // Gemma2Model / Gemma3Model.set_gguf_parameters: the window, and the soft-caps config.json sets.
            w.Set($"{a}.attention.sliding_window", (uint)s.SlidingWindow);
            if (s.AttnLogitSoftcap > 0) w.Set($"{a}.attn_logit_softcapping", s.AttnLogitSoftcap);
            if (s.FinalLogitSoftcap > 0) w.Set($"{a}.final_logit_softcapping", s.FinalLogitSoftcap);
        }
        if (s.IsGptOss) w.Set($"{a}.attention.sliding_window", (uint)s.SlidingWindow); // GptOssModel.set_gguf_parameters
        if (a == "olmo2" && s.SlidingWindow > 0)
        {
            // Olmo2Model.set_gguf_parameters (OLMo 3): the window and one flag per layer, every fourth layer global.
            w.Set($"{a}.attention.sliding_window", (uint)s.SlidingWindow);
            w.Set($"{a}.attention.sliding_window_pattern",
                new GgufValue(GgufValueType.Array, Enumerable.Range(0, s.BlockCount).Select(l => (l + 1) % 4 != 0).ToArray(), GgufValueType.Bool));
        }
        if (s.Yarn is { } yarn)
        {
            // TextModel.set_gguf_parameters for rope_scaling {"rope_type": "yarn", "factor", "original_max_position_embeddings"}
            w.Set($"{a}.rope.scaling.type", "yarn");
            w.Set($"{a}.rope.scaling.factor", yarn.Factor);
            w.Set($"{a}.rope.scaling.original_context_length", (uint)yarn.OriginalContextLength);
            if (yarn.AttnFactor > 0) w.Set($"{a}.rope.scaling.attn_factor", yarn.AttnFactor);
            if (a == "mistral3")
            {
                // Mistral3 (Ministral 3): rope_parameters' beta_fast / beta_slow, and llama_4_scaling_beta as the temperature.
                w.Set($"{a}.rope.scaling.yarn_beta_fast", 32f);
                w.Set($"{a}.rope.scaling.yarn_beta_slow", 1f);
                if (s.AttnTemperatureScale != 0) w.Set($"{a}.attention.temperature_scale", s.AttnTemperatureScale);
            }
        }
        if (s.Experts is { } x)
        {
            // TextModel.set_gguf_parameters: num_experts / num_local_experts and num_experts_per_tok; Qwen2MoeModel (and
            // Qwen3MoeModel after it) adds moe_intermediate_size.
            w.Set($"{a}.expert_count", (uint)x.Count);
            w.Set($"{a}.expert_used_count", (uint)x.Used);
            if (a is "qwen3moe" or "qwen2moe" or "lfm2moe" or "gpt-oss") w.Set($"{a}.expert_feed_forward_length", (uint)x.FeedForwardLength);
            if (a == "lfm2moe")
            {
                // LFM2MoeModel.set_gguf_parameters: num_dense_layers, and the sigmoid router (ExpertGatingFuncType.SIGMOID).
                w.Set($"{a}.leading_dense_block_count", (uint)x.LeadingDenseBlocks);
                w.Set($"{a}.expert_gating_func", 2u);
            }
            // GraniteMoeModel and Qwen2MoeModel: the shared expert's shared_intermediate_size / shared_expert_intermediate_size
            if (x.SharedFeedForwardLength > 0) w.Set($"{a}.expert_shared_feed_forward_length", (uint)x.SharedFeedForwardLength);
        }
        if (a is "llama" or "smollm3" or "granite" or "granitemoe")
        {
            // LlamaModel.set_gguf_parameters adds these two (SmolLM3Model and GraniteModel derive from it); Qwen2Model does
            // not (llama.cpp then uses head_dim).
            w.Set($"{a}.vocab_size", (uint)s.VocabSize);
            w.Set($"{a}.rope.dimension_count", (uint)s.RopeDims);
        }
        if (s.Granite is { } g)
        {
            // GraniteModel.set_gguf_parameters: the four multipliers of config.json.
            w.Set($"{a}.attention.scale", g.Attention);
            w.Set($"{a}.embedding_scale", g.Embedding);
            w.Set($"{a}.residual_scale", g.Residual);
            w.Set($"{a}.logit_scale", g.Logits);
        }
        if (s.IsEmbeddingGemma)
        {
            // EmbeddingGemma (the converter's EmbeddingGemma, --sentence-transformers-dense-modules): mean pooling, and the
            // dense layers' widths.
            w.Set($"{a}.pooling_type", 1u);
            if (s.DenseProjection > 0)
            {
                w.Set($"{a}.dense_2_feat_in", (uint)s.EmbeddingLength);
                w.Set($"{a}.dense_2_feat_out", (uint)s.DenseProjection);
                w.Set($"{a}.dense_3_feat_in", (uint)s.DenseProjection);
                w.Set($"{a}.dense_3_feat_out", (uint)s.EmbeddingLength);
            }
        }
        SynthVocab.Create(s).WriteTo(w);
        w.Set("general.quantization_version", QuantizationVersion);
        // Marks the file as synthetic (random weights) for anyone who finds it later.
        w.Set("edgellm.synth.like", s.Name);
        w.Set("edgellm.synth.seed", seed);
    }

    /// <summary>How one tensor's values are made.</summary>
    private enum Init { Ones, Normal, Constant, OnePlusNormal }

    private sealed class TensorSpec(string name, long[] dims, Init init, float std, float[]? values = null)
    {
        public string Name => name;
        public long[] Dims => dims;
        public Init Init => init;
        public float Std => std;
        public float[]? Values => values;
    }

    /// <summary>The names and ggml dims of the tensors a model of <paramref name="shape"/> holds, in file order.</summary>
    internal static IReadOnlyList<(string Name, long[] Dims)> TensorLayout(SynthShape shape) =>
        Layout(shape).Select(t => (t.Name, t.Dims)).ToArray();

    /// <summary>The tensors of <paramref name="s"/>, named and shaped as llama.cpp expects (ggml dims: row length first).</summary>
    private static List<TensorSpec> Layout(SynthShape s)
    {
        long embd = s.EmbeddingLength, ff = s.FeedForwardLength, vocab = s.VocabSize;
        long q = (long)s.HeadCount * s.HeadDim, kv = (long)s.HeadCountKv * s.HeadDim;
        float Proj(long fanIn) => 1f / MathF.Sqrt(fanIn);
        float residual = 1f / MathF.Sqrt(2f * s.BlockCount);

        var list = new List<TensorSpec>
        {
            new("token_embd.weight", [embd, vocab], Init.Normal, 1f),
        };
        if (s.RopeScaling is { } scaling)
            list.Add(new("rope_freqs.weight", [s.HeadDim / 2], Init.Constant, 0, Llama3RopeFactors(s.RopeFreqBase, s.HeadDim, scaling)));
        if (s.LongRope is not null)
        {
            // One factor per rotated pair (rope_dims / 2: 48 for Phi-4-mini's 96 of 128).
            list.Add(new("rope_factors_long.weight", [s.RopeDims / 2], Init.Constant, 0, LongRopeScaling.LongFactors(s.RopeDims / 2)));
            list.Add(new("rope_factors_short.weight", [s.RopeDims / 2], Init.Constant, 0, LongRopeScaling.ShortFactors(s.RopeDims / 2)));
        }
        if (s.Architecture == "phi3")
        {
            // Phi-3's checkpoints fuse qkv_proj and gate_up_proj; the converter keeps them fused.
            for (int l = 0; l < s.BlockCount; l++)
            {
                string p = $"blk.{l}.";
                list.Add(new(p + "attn_norm.weight", [embd], Init.Ones, 0));
                list.Add(new(p + "attn_qkv.weight", [embd, q + 2 * kv], Init.Normal, Proj(embd)));
                list.Add(new(p + "attn_output.weight", [q, embd], Init.Normal, Proj(q) * residual));
                list.Add(new(p + "ffn_norm.weight", [embd], Init.Ones, 0));
                list.Add(new(p + "ffn_up.weight", [embd, 2 * ff], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_down.weight", [ff, embd], Init.Normal, Proj(ff) * residual));
            }
        }
        else if (s.IsLfm2)
        {
            // LFM2: the final norm is token_embd_norm (written below instead of output_norm); convolution layers
            // have shortconv.in_proj (B, C, x), shortconv.conv (taps per channel) and shortconv.out_proj.
            for (int l = 0; l < s.BlockCount; l++)
            {
                string p = $"blk.{l}.";
                list.Add(new(p + "attn_norm.weight", [embd], Init.Ones, 0));
                if (s.IsShortConvLayer(l))
                {
                    list.Add(new(p + "shortconv.conv.weight", [SynthShape.ShortConvTaps, embd], Init.Normal, 0.5f));
                    list.Add(new(p + "shortconv.in_proj.weight", [embd, 3 * embd], Init.Normal, Proj(embd)));
                    list.Add(new(p + "shortconv.out_proj.weight", [embd, embd], Init.Normal, Proj(embd) * residual));
                }
                else
                {
                    list.Add(new(p + "attn_q.weight", [embd, q], Init.Normal, Proj(embd)));
                    list.Add(new(p + "attn_k.weight", [embd, kv], Init.Normal, Proj(embd)));
                    list.Add(new(p + "attn_q_norm.weight", [s.HeadDim], Init.OnePlusNormal, 0.2f));
                    list.Add(new(p + "attn_k_norm.weight", [s.HeadDim], Init.OnePlusNormal, 0.2f));
                    list.Add(new(p + "attn_v.weight", [embd, kv], Init.Normal, Proj(embd)));
                    list.Add(new(p + "attn_output.weight", [q, embd], Init.Normal, Proj(q) * residual));
                }
                list.Add(new(p + "ffn_norm.weight", [embd], Init.Ones, 0));
                if (s.HasExperts(l))
                {
                    // LFM2-MoE: as the other mixtures (below), and the per-expert bias on the choice (expert_bias →
                    // exp_probs_b.bias): N(0, 0.1) against sigmoid probabilities of about 0.3–0.7, so it changes some choices.
                    long eff = s.Experts!.FeedForwardLength, n = s.Experts.Count;
                    list.Add(new(p + "ffn_gate_inp.weight", [embd, n], Init.Normal, Proj(embd)));
                    list.Add(new(p + "exp_probs_b.bias", [n], Init.Normal, 0.1f));
                    list.Add(new(p + "ffn_gate_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                    list.Add(new(p + "ffn_down_exps.weight", [eff, embd, n], Init.Normal, Proj(eff) * residual));
                    list.Add(new(p + "ffn_up_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                    continue;
                }
                list.Add(new(p + "ffn_gate.weight", [embd, ff], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_up.weight", [embd, ff], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_down.weight", [ff, embd], Init.Normal, Proj(ff) * residual));
            }
        }
        else for (int l = 0; l < s.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            if (!s.PostNormsOnly) list.Add(new(p + "attn_norm.weight", [embd], Init.Ones, 0));
            list.Add(new(p + "attn_q.weight", [embd, q], Init.Normal, Proj(embd)));
            if (s.QkvBias) list.Add(new(p + "attn_q.bias", [q], Init.Normal, 0.1f));
            list.Add(new(p + "attn_k.weight", [embd, kv], Init.Normal, Proj(embd)));
            if (s.QkvBias) list.Add(new(p + "attn_k.bias", [kv], Init.Normal, 0.1f));
            if (s.QkNorm)
            {
                // Not all ones, so that a wrong weight index or a skipped norm changes the logits (OLMoE's span the whole rows).
                bool full = s.QkNormFullWidth;
                list.Add(new(p + "attn_q_norm.weight", [full ? q : s.HeadDim], Init.OnePlusNormal, 0.2f));
                list.Add(new(p + "attn_k_norm.weight", [full ? kv : s.HeadDim], Init.OnePlusNormal, 0.2f));
            }
            list.Add(new(p + "attn_v.weight", [embd, kv], Init.Normal, Proj(embd)));
            if (s.QkvBias) list.Add(new(p + "attn_v.bias", [kv], Init.Normal, 0.1f));
            list.Add(new(p + "attn_output.weight", [q, embd], Init.Normal, Proj(q) * residual));
            if (s.IsGptOss)
            {
                // gpt-oss: the output projection's bias, and one sink logit per head (N(0, 1): about the scores' own spread,
                // so the sink takes a real share of each softmax); its feed-forward norm is post_attention_norm.
                list.Add(new(p + "attn_output.bias", [embd], Init.Normal, 0.1f));
                list.Add(new(p + "attn_sinks.weight", [s.HeadCount], Init.Normal, 1f));
                list.Add(new(p + "post_attention_norm.weight", [embd], Init.Ones, 0));
                long eff = s.Experts!.FeedForwardLength, n = s.Experts.Count;
                // The router at 4× the others' spread: gpt-oss takes the top-k of raw logits, and logits of unit spread put
                // near-ties (margins of 1e-4) among 8 experts in a short test's routings, where two engines' last bits choose differently.
                list.Add(new(p + "ffn_gate_inp.weight", [embd, n], Init.Normal, 4 * Proj(embd)));
                list.Add(new(p + "ffn_gate_inp.bias", [n], Init.Normal, 0.1f));
                list.Add(new(p + "ffn_gate_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_gate_exps.bias", [eff, n], Init.Normal, 0.1f));
                list.Add(new(p + "ffn_up_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_up_exps.bias", [eff, n], Init.Normal, 0.1f));
                list.Add(new(p + "ffn_down_exps.weight", [eff, embd, n], Init.Normal, Proj(eff) * residual));
                list.Add(new(p + "ffn_down_exps.bias", [embd, n], Init.Normal, 0.1f));
                continue;
            }
            // Gemma's post-norms (1 + w as the converter stores them): not all ones, so that each matters.
            if (s.GemmaPostNorms || s.PostNormsOnly) list.Add(new(p + "post_attention_norm.weight", [embd], Init.OnePlusNormal, 0.2f));
            if (!s.PostNormsOnly) list.Add(new(p + "ffn_norm.weight", [embd], Init.Ones, 0));
            if (s.Experts is { } x)
            {
                // The router (N(0, 1/√embd): logits of about unit spread, so a token's experts differ clearly) and each
                // expert's matrices as one 3-D tensor, {in, out, experts}.
                long eff = x.FeedForwardLength, n = x.Count;
                list.Add(new(p + "ffn_gate_inp.weight", [embd, n], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_gate_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                list.Add(new(p + "ffn_down_exps.weight", [eff, embd, n], Init.Normal, Proj(eff) * residual));
                list.Add(new(p + "ffn_up_exps.weight", [embd, eff, n], Init.Normal, Proj(embd)));
                if (x.SharedFeedForwardLength > 0)
                {
                    long sff = x.SharedFeedForwardLength;
                    list.Add(new(p + "ffn_gate_shexp.weight", [embd, sff], Init.Normal, Proj(embd)));
                    list.Add(new(p + "ffn_up_shexp.weight", [embd, sff], Init.Normal, Proj(embd)));
                    list.Add(new(p + "ffn_down_shexp.weight", [sff, embd], Init.Normal, Proj(sff) * residual));
                    // Qwen2 MoE gates the shared expert by sigmoid(g · x): N(0, 1/√embd) puts g around ±1.
                    if (s.Architecture == "qwen2moe") list.Add(new(p + "ffn_gate_inp_shexp.weight", [embd], Init.Normal, Proj(embd)));
                }
                continue;
            }
            list.Add(new(p + "ffn_gate.weight", [embd, ff], Init.Normal, Proj(embd)));
            list.Add(new(p + "ffn_up.weight", [embd, ff], Init.Normal, Proj(embd)));
            list.Add(new(p + "ffn_down.weight", [ff, embd], Init.Normal, Proj(ff) * residual));
            if (s.GemmaPostNorms || s.PostNormsOnly) list.Add(new(p + "post_ffw_norm.weight", [embd], Init.OnePlusNormal, 0.2f));
        }
        list.Add(new(s.IsLfm2 ? "token_embd_norm.weight" : "output_norm.weight", [embd], Init.Ones, 0));
        if (!s.TiedEmbeddings) list.Add(new("output.weight", [embd, vocab], Init.Normal, Proj(embd)));
        if (s.DenseProjection > 0)
        {
            // EmbeddingGemma's sentence-transformers dense layers (no biases), applied to the pooled vector.
            long dense = s.DenseProjection;
            list.Add(new("dense_2.weight", [embd, dense], Init.Normal, Proj(embd)));
            list.Add(new("dense_3.weight", [dense, embd], Init.Normal, Proj(dense)));
        }
        return list;
    }

    /// <summary>
    /// Llama 3's rope frequency factors, as convert_hf_to_gguf.py's LlamaModel computes them (in
    /// float32, like its torch code): for each rotary frequency f = base^(-2i/d), wavelength
    /// 2π/f; short wavelengths keep factor 1, long ones get <c>factor</c>, and those between are
    /// smoothly interpolated.
    /// </summary>
    internal static float[] Llama3RopeFactors(float freqBase, int headDim, Llama3RopeScaling sc)
    {
        float lowFreqWavelen = sc.OriginalContextLength / sc.LowFreqFactor;
        float highFreqWavelen = sc.OriginalContextLength / sc.HighFreqFactor;
        var factors = new float[headDim / 2];
        for (int i = 0; i < factors.Length; i++)
        {
            float freq = 1f / MathF.Pow(freqBase, (2f * i) / headDim);
            float wavelen = (float)(2 * Math.PI) / freq;
            if (wavelen < highFreqWavelen) factors[i] = 1f;
            else if (wavelen > lowFreqWavelen) factors[i] = sc.Factor;
            else
            {
                float smooth = (sc.OriginalContextLength / wavelen - sc.LowFreqFactor) / (sc.HighFreqFactor - sc.LowFreqFactor);
                factors[i] = 1f / ((1 - smooth) / sc.Factor + smooth);
            }
        }
        return factors;
    }

    private static void WriteTensor(Stream stream, TensorSpec t, int tensorIndex, GgmlType type, int seed, int threads)
    {
        long n = t.Dims[0];
        long rows = 1;
        for (int d = 1; d < t.Dims.Length; d++) rows *= t.Dims[d];
        long rowBytes = GgmlTypes.Info(type).RowBytes(n);
        long chunkRows = Math.Clamp(ChunkBytes / rowBytes, 1, rows);
        RowQuantizer.QuantizeRowFn? quantize = null;
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) && !RowQuantizer.TryGet(type, out quantize))
            throw new NotSupportedException($"tensor {t.Name}: no quantizer for {GgmlTypes.Name(type)}");

        byte* chunk = (byte*)NativeMemory.Alloc((nuint)(chunkRows * rowBytes));
        try
        {
            var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
            for (long first = 0; first < rows; first += chunkRows)
            {
                long count = Math.Min(chunkRows, rows - first);
                long start = first;
                Parallel.For(0L, count, options,
                    () => (IntPtr)NativeMemory.Alloc((nuint)(n * sizeof(float))),
                    (r, _, scratch) =>
                    {
                        float* x = (float*)scratch;
                        long row = start + r;
                        FillRow(x, n, t, RowSeed(seed, tensorIndex, row));
                        Encode(x, chunk + r * rowBytes, n, type, quantize);
                        return scratch;
                    },
                    scratch => NativeMemory.Free((void*)scratch));
                stream.Write(new ReadOnlySpan<byte>(chunk, checked((int)(count * rowBytes))));
            }
        }
        finally
        {
            NativeMemory.Free(chunk);
        }
    }

    private static void Encode(float* x, byte* dst, long n, GgmlType type, RowQuantizer.QuantizeRowFn? quantize)
    {
        switch (type)
        {
            case GgmlType.F32:
                Buffer.MemoryCopy(x, dst, n * 4, n * 4);
                break;
            case GgmlType.F16:
                TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x, (int)n), new Span<Half>(dst, (int)n));
                break;
            case GgmlType.BF16:
                var bf = (ushort*)dst;
                for (long i = 0; i < n; i++) bf[i] = BFloat16Converter.FromSingle(x[i]);
                break;
            default:
                quantize!(x, dst, n);
                break;
        }
    }

    private static void FillRow(float* x, long n, TensorSpec t, ulong state)
    {
        switch (t.Init)
        {
            case Init.Ones:
                new Span<float>(x, (int)n).Fill(1f);
                break;
            case Init.Constant:
                t.Values.AsSpan().CopyTo(new Span<float>(x, (int)n));
                break;
            default:
                // Irwin–Hall: the sum of four uniforms on 0..65535 has mean 4·32767.5 = 131070 and
                // variance 4·(65536² - 1)/12 ≈ 65536²/3, so (sum - 131070)·√3/65536 has mean 0, variance ≈ 1.
                float scale = t.Std * 1.7320508f / 65536f;
                for (long i = 0; i < n; i++)
                {
                    ulong r = SplitMix64(ref state);
                    long sum = (long)(r & 0xFFFF) + (long)((r >> 16) & 0xFFFF) + (long)((r >> 32) & 0xFFFF) + (long)(r >> 48);
                    x[i] = (sum - 131070) * scale + (t.Init == Init.OnePlusNormal ? 1f : 0f);
                }
                break;
        }
    }

    /// <summary>A generator state unique to (seed, tensor, row): independent of chunking and thread count.</summary>
    private static ulong RowSeed(int seed, int tensorIndex, long row)
    {
        ulong s = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)tensorIndex << 40) ^ (ulong)row;
        return SplitMix64(ref s);
    }

    /// <summary>SplitMix64 (Steele, Lea and Flood 2014): a fast, well-mixed 64-bit generator.</summary>
    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
