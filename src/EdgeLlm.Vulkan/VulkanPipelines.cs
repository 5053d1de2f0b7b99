using EdgeLlm.Gguf;
using EdgeLlm.Models;

namespace EdgeLlm.Vulkan;

/// <summary>
/// One compute pipeline of the forward pass: what it is for (<paramref name="Role"/>), which
/// shader variant it runs (<paramref name="Shader"/>, an embedded .spv without the feature
/// suffix: the subgroup variant is chosen at pipeline creation) and its specialization constants
/// (constant_id 0.. in the shader; 0 is always the workgroup size, float constants are their
/// IEEE-754 bits). Roles: <c>get_rows</c>, <c>rms_norm</c>, <c>rms_norm.head</c> (Qwen3's per-head Q/K norms), <c>rope.q</c>, <c>rope.k</c>,
/// <c>kv_store</c>, <c>attention</c>, <c>swiglu</c>, <c>add</c>, and per weight tensor kind and
/// type <c>vec.KIND.TYPE</c> (mul_mat_vec) and <c>mat.KIND.TYPE</c> (mul_mat), e.g.
/// <c>vec.attn_v.q6_k</c>.
/// </summary>
/// <param name="Role">What the forward pass uses the pipeline for.</param>
/// <param name="Shader">Shader variant, e.g. <c>mul_mat_vec_q4_0</c>.</param>
/// <param name="Constants">Specialization constant values, constant_id 0 first.</param>
public sealed record VulkanPipelineSpec(string Role, string Shader, IReadOnlyList<uint> Constants)
{
    /// <summary>Value equality, constants included.</summary>
    public bool Equals(VulkanPipelineSpec? other) =>
        other is not null && Role == other.Role && Shader == other.Shader && Constants.SequenceEqual(other.Constants);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Role, Shader, Constants.Count);

    /// <summary>"role: shader [c0, c1, ...]".</summary>
    public override string ToString() => $"{Role}: {Shader} [{string.Join(", ", Constants)}]";
}

/// <summary>
/// The pipelines of one specialized model, emitted at compile time by the source generator
/// (generators/EdgeLlm.Generators, VulkanPipelineGenerator) from a config in
/// src/EdgeLlm/Specialized/Configs and registered from a module initializer. A context whose
/// model matches <see cref="Shape"/> builds its pipelines from <see cref="Pipelines"/> rather
/// than deriving them from the loaded model.
/// </summary>
public sealed class VulkanPipelineTable
{
    internal VulkanPipelineTable(string name, VulkanModelShape shape, IReadOnlyList<VulkanPipelineSpec> pipelines)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(pipelines);
        var dup = pipelines.GroupBy(p => p.Role).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"pipeline table {name} lists role {dup.Key} twice", nameof(pipelines));
        Name = name;
        Shape = shape;
        Pipelines = pipelines;
    }

    /// <summary>The config's name (edgellm.name), e.g. <c>syn-llama-q4_0</c>.</summary>
    public string Name { get; }

    /// <summary>The pipelines, in the order the generator lists them.</summary>
    public IReadOnlyList<VulkanPipelineSpec> Pipelines { get; }

    internal VulkanModelShape Shape { get; }

    /// <summary>The bits of a float specialization constant (generated tables call it).</summary>
    internal static uint Bits(float v) => BitConverter.SingleToUInt32Bits(v);
}

/// <summary>What a model must be for a <see cref="VulkanPipelineTable"/> to apply: the hyper-parameters and tensor types its constants derive from.</summary>
internal sealed record VulkanModelShape
{
    public required string Architecture { get; init; }
    public required int Vocab { get; init; }
    public required int Dim { get; init; }
    public required int LayerCount { get; init; }
    public required int FeedForward { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required float RmsEps { get; init; }
    public required float RopeBase { get; init; }
    public required bool RopeNeox { get; init; }
    public required bool RopeFactors { get; init; }
    public required GgmlType TokenEmbd { get; init; }
    public required GgmlType Output { get; init; }

    /// <summary>Per layer, in order: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.</summary>
    public required GgmlType[] LayerTypes { get; init; }

    /// <summary>Null when <paramref name="model"/> matches, else the first difference.</summary>
    public string? Mismatch(Model model)
    {
        var c = model.Config;
        var f = model.File;
        if (c.Architecture != Architecture) return $"architecture {c.Architecture}, not {Architecture}";
        if (c.IsMixtureOfExperts) return $"a mixture of {c.ExpertCount} experts";
        if (!c.PreNorms) return "no pre-norms (post-norms only)";
        if (c.VocabSize != Vocab) return $"vocabulary {c.VocabSize}, not {Vocab}";
        if (c.EmbeddingLength != Dim) return $"embedding length {c.EmbeddingLength}, not {Dim}";
        if (c.BlockCount != LayerCount) return $"{c.BlockCount} layers, not {LayerCount}";
        if (c.FeedForwardLength != FeedForward) return $"feed-forward length {c.FeedForwardLength}, not {FeedForward}";
        if (c.HeadCount != Heads || c.HeadCountKv != KvHeads || c.HeadDim != HeadDim)
            return $"heads {c.HeadCount}/{c.HeadCountKv}×{c.HeadDim}, not {Heads}/{KvHeads}×{HeadDim}";
        if (c.RopeDimensionCount != HeadDim) return $"rope dimension count {c.RopeDimensionCount}, not {HeadDim}";
        if (c.RmsEps != RmsEps) return $"rms epsilon {c.RmsEps}, not {RmsEps}";
        if (c.RopeFreqBase != RopeBase) return $"rope base {c.RopeFreqBase}, not {RopeBase}";
        if (c.RopeYarn.ExtFactor != 0f) return "YaRN rope scaling";
        if (c.RopeFreqScale != 1f) return "linear rope scaling";
        if (c.RopeNeox != RopeNeox) return "rope layout";
        bool factors = f.FindTensor("rope_freqs.weight") is not null;
        if (factors != RopeFactors) return factors ? "rope frequency factors" : "no rope frequency factors";
        var tok = f.FindTensor("token_embd.weight")?.Type;
        if (tok != TokenEmbd) return $"token_embd.weight is {tok}, not {TokenEmbd}";
        var output = f.FindTensor("output.weight")?.Type ?? tok;
        if (output != Output) return $"the output projection is {output}, not {Output}";
        for (int il = 0; il < LayerCount; il++)
        {
            for (int k = 0; k < VulkanPipelinePlan.LayerTensors.Length; k++)
            {
                string name = $"blk.{il}.{VulkanPipelinePlan.LayerTensors[k]}.weight";
                var t = f.FindTensor(name)?.Type;
                if (t != LayerTypes[il * 7 + k]) return $"{name} is {t?.ToString() ?? "missing"}, not {LayerTypes[il * 7 + k]}";
            }
        }
        return null;
    }
}

/// <summary>
/// The Vulkan pipeline tables compiled into this build (one per specialized config; generated
/// module initializers add them, no reflection) and the lookup a context does at load.
/// </summary>
public static class VulkanPipelineRegistry
{
    private static readonly List<VulkanPipelineTable> s_all = [];

    /// <summary>Adds a table (called by generated module initializers).</summary>
    /// <exception cref="ArgumentException">a table of the same name is already registered.</exception>
    public static void Register(VulkanPipelineTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        lock (s_all)
        {
            if (s_all.Any(t => string.Equals(t.Name, table.Name, StringComparison.OrdinalIgnoreCase)))
                throw new ArgumentException($"a Vulkan pipeline table named {table.Name} is already registered", nameof(table));
            s_all.Add(table);
        }
    }

    /// <summary>Every table in this build.</summary>
    public static IReadOnlyList<VulkanPipelineTable> All
    {
        get { lock (s_all) return s_all.ToArray(); }
    }

    /// <summary>The table with this name, or null.</summary>
    public static VulkanPipelineTable? Get(string name) =>
        All.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The table whose shape <paramref name="model"/> matches exactly, or null (a mismatch is never an error).</summary>
    public static VulkanPipelineTable? Find(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        foreach (var t in All)
            if (t.Shape.Mismatch(model) is null) return t;
        return null;
    }
}

/// <summary>
/// The pipelines of a model derived at run time from the loaded model (the generic path), in
/// the order and with the constants the generator emits for a specialized one.
/// </summary>
internal static class VulkanPipelinePlan
{
    /// <summary>The seven matrices of a block, in the order of <see cref="VulkanModelShape.LayerTypes"/>.</summary>
    public static readonly string[] LayerTensors = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    public static string VecRole(string kind, GgmlType t) => $"vec.{kind}.{VulkanKernels.Suffix(t)}";

    public static string MatRole(string kind, GgmlType t) => $"mat.{kind}.{VulkanKernels.Suffix(t)}";

    /// <summary>The pipelines for <paramref name="model"/>, from its config and tensor types.</summary>
    public static List<VulkanPipelineSpec> ForModel(Model model)
    {
        var c = model.Config;
        var f = model.File;
        var tok = Tensor(f, "token_embd.weight");
        // Llama 3's rope_freqs or Phi-3's LongRoPE pair (the context picks one of the two; both are one buffer's worth).
        bool factors = model.RopeFactors is not null || model.RopeFactorsLong is not null || model.RopeFactorsShort is not null;
        var list = new List<VulkanPipelineSpec>
        {
            VulkanKernels.GetRowsSpec(tok.Type, c.EmbeddingLength),
            VulkanKernels.RmsNormSpec(c.EmbeddingLength, c.RmsEps),
            VulkanKernels.RopeSpec("rope.q", c.RopeNeox, c.HeadDim, c.RopeDimensionCount, c.HeadCount, c.RopeFreqBase, c.RopeFreqScale, factors, c.RopeAttnFactor, c.RopeYarn,
                c.AttnTemperatureScale, c.AttnTemperatureFloor),
            VulkanKernels.RopeSpec("rope.k", c.RopeNeox, c.HeadDim, c.RopeDimensionCount, c.HeadCountKv, c.RopeFreqBase, c.RopeFreqScale, factors, c.RopeAttnFactor, c.RopeYarn),
            VulkanKernels.KvStoreSpec(c.KvLength),
            VulkanKernels.AttentionSpec(c.HeadDim, c.HeadCount, c.HeadCountKv, c.AttentionScale, 0, c.AttnLogitSoftcap),
            c.GeluGate ? VulkanKernels.GeGluSpec() : VulkanKernels.SwiGluSpec(),
            VulkanKernels.AddSpec(),
        };
        // Gemma: the sliding-window layers' attention and rope (their own base, no scaling), the embedding scale.
        if (c.SlidingWindow > 0)
        {
            list.Add(VulkanKernels.AttentionSpec(c.HeadDim, c.HeadCount, c.HeadCountKv, c.AttentionScale, c.SlidingWindow, c.AttnLogitSoftcap, "attention.swa"));
            // (gpt-oss rotates them as the others, RopeSwaScaled: its mixture of experts keeps it off the device anyway)
            float swaFactor = c.RopeAttnFactorSwa ?? c.RopeAttnFactor;
            float swaScale = c.RopeSwaScaled ? c.RopeFreqScale : 1f;
            var swaYarn = c.RopeSwaScaled ? c.RopeYarn : default;
            list.Add(VulkanKernels.RopeSpec("rope.q.swa", c.RopeNeox, c.HeadDim, c.RopeDimensionCount, c.HeadCount, c.RopeFreqBaseSwa, swaScale, factors, swaFactor, swaYarn,
                c.AttnTemperatureScale, c.AttnTemperatureFloor));
            list.Add(VulkanKernels.RopeSpec("rope.k.swa", c.RopeNeox, c.HeadDim, c.RopeDimensionCount, c.HeadCountKv, c.RopeFreqBaseSwa, swaScale, factors, swaFactor, swaYarn));
        }
        if (c.EmbeddingScale != 1f || c.ResidualScale != 1f) list.Add(VulkanKernels.MulSpec());
        if (c.HasQkNorm && c.QkNormFullWidth)
        {
            // OLMo 2: the norms span the whole query and key rows
            list.Add(VulkanKernels.RmsNormSpec(c.QueryLength, c.RmsEps) with { Role = "rms_norm.q" });
            list.Add(VulkanKernels.RmsNormSpec(c.KvLength, c.RmsEps) with { Role = "rms_norm.k" });
        }
        else if (c.HasQkNorm) list.Add(VulkanKernels.RmsNormSpec(c.HeadDim, c.RmsEps) with { Role = "rms_norm.head" });
        var seen = new HashSet<string>();
        void Matrix(string kind, GgmlType type, long cols, long rows)
        {
            if (!seen.Add(VecRole(kind, type))) return;
            list.Add(VulkanKernels.MatVecSpec(VecRole(kind, type), type, (int)cols, (int)rows));
            list.Add(VulkanKernels.MatMulSpec(MatRole(kind, type), type, (int)cols, (int)rows));
        }
        // The model's matrices, not the file's tensor names: Phi-3's Q/K/V and gate/up are parts of fused tensors.
        foreach (var l in model.Layers)
        {
            WeightMatrix[] m = [l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down];
            for (int k = 0; k < m.Length; k++) Matrix(LayerTensors[k], m[k].Tensor.Type, m[k].Cols, m[k].Rows);
        }
        // LFM2: attention and convolution layers; the convolution's own pipelines come with the context (their ring's rows).
        if (model is Lfm2 hybrid)
        {
            // (Plain calls, not a LINQ chain over tuples: each generic instantiation over a struct adds native code to the AOT binary.)
            void Of(string kind, WeightMatrix w) => Matrix(kind, w.Tensor.Type, w.Cols, w.Rows);
            foreach (var l in hybrid.HybridLayers)
            {
                if (l.Attention is { } a)
                {
                    Of("attn_q", a.Wq); Of("attn_k", a.Wk); Of("attn_v", a.Wv); Of("attn_output", a.Wo);
                }
                else
                {
                    Of("shortconv.in_proj", l.InProj!); Of("shortconv.out_proj", l.OutProj!);
                }
                if (l.Gate is { } gate && l.Up is { } up && l.Down is { } down)
                {
                    Of("ffn_gate", gate); Of("ffn_up", up); Of("ffn_down", down);
                }
            }
        }
        var output = f.FindTensor("output.weight") ?? tok;
        Matrix("output", output.Type, output.RowLength, output.RowCount);
        return list;
    }

    private static GgufTensorInfo Tensor(GgufFile f, string name) =>
        f.FindTensor(name) ?? throw new VulkanUnavailableException($"tensor {name} is missing");
}
