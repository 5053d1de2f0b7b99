using EdgeLlm.Gguf;
using Silk.NET.Vulkan;

namespace EdgeLlm.Vulkan;

/// <summary>
/// The shader variants and how each is dispatched: one place for workgroup sizes,
/// specialization constants (0 = workgroup size via local_size_x_id, then the shapes fixed per
/// model) and push constants (per-call values only), shared by the forward pass, the generic
/// pipeline plan and the shader tests. The generator (VulkanPipelineEmitter) emits the same
/// constants for specialized models; a test checks they agree.
/// </summary>
internal static class VulkanKernels
{
    /// <summary>Workgroup size of the row-parallel kernels (matrix-vector, norms, rope, ...).</summary>
    public const uint Block = 64;

    /// <summary>Workgroup size of the element-wise kernels (add, swiglu).</summary>
    public const uint ElementBlock = 256;

    /// <summary>Workgroup size of the tiled mul_mat (mul_mat.comp assumes exactly this).</summary>
    public const uint MatMulBlock = 128;

    /// <summary>Output tile of one mul_mat workgroup: TM weight rows × TN tokens (TM = TN here).</summary>
    public const uint MatMulTile = 32;

    /// <summary>Activation rows (tokens) one mul_mat_vec workgroup multiplies at once (NCOLS in the shader).</summary>
    public const uint MatVecColumns = 8;

    /// <summary>Weight types with mul_mat_vec, mul_mat and get_rows variants.</summary>
    public static IReadOnlyList<GgmlType> SupportedTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1,
        GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL,
    ];

    public static bool IsSupported(GgmlType t) => SupportedTypes.Contains(t);

    /// <summary>Variant suffix of a weight type: "q4_0", "f16", ...</summary>
    public static string Suffix(GgmlType t) => GgmlTypes.Info(t).Name.ToLowerInvariant();

    /// <summary>Values one thread dequantizes at a time (UNIT in dequant.glsl).</summary>
    public static uint Unit(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? 1u : 16u;

    private static uint Bits(float v) => BitConverter.SingleToUInt32Bits(v);

    private static uint RowBytes(GgmlType t, int cols) => (uint)GgmlTypes.Info(t).RowBytes(cols);

    // ---- pipeline specs (the constants) ----

    public static VulkanPipelineSpec MatVecSpec(string role, GgmlType t, int cols, int rows) =>
        new(role, "mul_mat_vec_" + Suffix(t), [Block, (uint)cols, RowBytes(t, cols), (uint)rows]);

    public static VulkanPipelineSpec MatMulSpec(string role, GgmlType t, int cols, int rows) =>
        new(role, "mul_mat_" + Suffix(t), [MatMulBlock, (uint)cols, RowBytes(t, cols), (uint)rows]);

    public static VulkanPipelineSpec GetRowsSpec(GgmlType t, int cols) =>
        new("get_rows", "get_rows_" + Suffix(t), [Block, (uint)cols, RowBytes(t, cols)]);

    public static VulkanPipelineSpec RmsNormSpec(int n, float eps) => new("rms_norm", "rms_norm", [Block, (uint)n, Bits(eps)]);

    /// <summary>
    /// theta_scale = powf(base, -2/n_dims) on the host, as ggml_rope_cache_init computes it, so the
    /// shader's running product matches the CPU's bit for bit.
    /// </summary>
    /// <summary>
    /// The rope pipeline; <paramref name="attnFactor"/> (LongRoPE's rope.scaling.attn_factor) becomes an
    /// eighth constant only when it is not 1, so the constants of every other model (and the source
    /// generator's tables) stay as they were; the shader's default for it is 1.
    /// </summary>
    public static VulkanPipelineSpec RopeSpec(string role, bool neox, int headDim, int nDims, int nHeads, float freqBase, float freqScale, bool hasFactors,
        float attnFactor = 1f, EdgeLlm.Kernels.YarnRope yarn = default, float temperatureScale = 0f, int temperatureFloor = 0)
    {
        uint[] plain = [Block, (uint)headDim, (uint)nDims, (uint)nHeads, Bits(MathF.Pow(freqBase, -2.0f / nDims)), Bits(freqScale), hasFactors ? 1u : 0u];
        if (yarn.ExtFactor != 0f || temperatureScale != 0f)
        {
            // YaRN: three more constants, the magnitude correction multiplied in here as Rope.Angles does it; the
            // queries' attention temperature (Ministral 3): two more.
            float mscale = attnFactor;
            if (yarn.ExtFactor != 0f) mscale *= 1.0f + 0.1f * MathF.Log(1.0f / freqScale);
            uint[] withYarn = [.. plain, Bits(mscale), Bits(yarn.ExtFactor), Bits(yarn.CorrLow), Bits(yarn.CorrHigh)];
            return new(role, neox ? "rope_neox" : "rope_norm",
                temperatureScale == 0f ? withYarn : [.. withYarn, Bits(temperatureScale), Bits((float)temperatureFloor)]);
        }
        return new(role, neox ? "rope_neox" : "rope_norm", attnFactor == 1f ? plain : [.. plain, Bits(attnFactor)]);
    }

    public static VulkanPipelineSpec KvStoreSpec(int kvLen) => new("kv_store", "kv_store", [Block, (uint)kvLen]);

    /// <summary>The store into a sliding-window layer's ring of <paramref name="ring"/> rows (position p in row p mod ring).</summary>
    public static VulkanPipelineSpec KvStoreRingSpec(int kvLen, int ring) => new("kv_store.swa", "kv_store", [Block, (uint)kvLen, (uint)ring]);

    /// <summary><paramref name="attention"/> (a sliding-window attention spec) reading a ring of <paramref name="ring"/> rows.</summary>
    public static VulkanPipelineSpec AttentionRing(VulkanPipelineSpec attention, int ring) =>
        attention with { Constants = [.. attention.Constants, (uint)ring] };

    /// <summary>Workgroup of the attention kernel: a power of two ≥ max(64, head_dim) (thread d owns output dimension d).</summary>
    public static uint AttentionBlock(int headDim) => Math.Max(64u, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)headDim));

    /// <summary>
    /// The attention pipeline. <paramref name="scale"/> 0 means 1 / √head_dim; a sliding
    /// <paramref name="window"/> and a score <paramref name="softcap"/> (Gemma) become the sixth and seventh
    /// constants only when set, so the constants of every other model (and the generator's tables) stay as they were.
    /// </summary>
    public static VulkanPipelineSpec AttentionSpec(int headDim, int nHead, int nHeadKv, float scale = 0, int window = 0, float softcap = 0,
        string role = "attention")
    {
        uint[] constants = [AttentionBlock(headDim), (uint)headDim, (uint)nHead, (uint)nHeadKv, Bits(scale != 0 ? scale : 1.0f / MathF.Sqrt(headDim))];
        if (window != 0 || softcap != 0) constants = [.. constants, (uint)window, Bits(softcap)];
        return new(role, "attention", constants);
    }

    public static VulkanPipelineSpec SwiGluSpec() => new("swiglu", "swiglu", [ElementBlock]);

    /// <summary>GeGLU (Gemma) in the role of the feed-forward gate ("swiglu"), from swiglu.comp built with -DGELU.</summary>
    public static VulkanPipelineSpec GeGluSpec() => new("swiglu", "geglu", [ElementBlock]);

    public static VulkanPipelineSpec AddSpec() => new("add", "add", [ElementBlock]);

    /// <summary>x *= y broadcast (add.comp built with -DMUL): Gemma's embedding scale.</summary>
    public static VulkanPipelineSpec MulSpec() => new("mul", "mul", [ElementBlock]);

    /// <summary>LFM2: the gated inputs B ⊙ x of a batch into a convolution layer's ring of <paramref name="ring"/> rows.</summary>
    public static VulkanPipelineSpec ShortConvStoreSpec(int embd, int taps, int ring) => new("shortconv.store", "shortconv_store", [Block, (uint)embd, (uint)taps, (uint)ring]);

    /// <summary>LFM2: y = C ⊙ (the causal convolution of <paramref name="taps"/> taps over the ring).</summary>
    public static VulkanPipelineSpec ShortConvSpec(int embd, int taps, int ring) => new("shortconv", "shortconv", [Block, (uint)embd, (uint)taps, (uint)ring]);

    // ---- pipeline creation ----

    /// <summary>Storage buffers a shader binds (its descriptor-set layout).</summary>
    public static int Bindings(string shader) => shader switch
    {
        "attention" or "shortconv" => 5,
        "swiglu" or "geglu" or "add" or "mul" => 2,
        _ => 3,
    };

    /// <summary>
    /// The variant actually built for <paramref name="shader"/>: the subgroupAdd reduction
    /// ("_sg") of mul_mat_vec and rms_norm when the device has subgroup arithmetic in compute
    /// shaders and <paramref name="allowSubgroup"/>, else the plain shared-memory one (which any
    /// Vulkan 1.1 device runs).
    /// </summary>
    public static string Variant(string shader, VulkanDeviceInfo device, bool allowSubgroup)
    {
        bool hasSg = shader == "rms_norm" || shader.StartsWith("mul_mat_vec_", StringComparison.Ordinal);
        return hasSg && allowSubgroup && device.SubgroupArithmetic ? shader + "_sg" : shader;
    }

    /// <summary>Builds (or finds in the device's cache) the pipeline of <paramref name="spec"/>.</summary>
    public static VulkanOp Create(VulkanDevice d, VulkanPipelineSpec spec, bool allowSubgroup = true)
    {
        string variant = Variant(spec.Shader, d.Info, allowSubgroup);
        return new VulkanOp(spec, variant, d.Kernel(variant, Bindings(spec.Shader), [.. spec.Constants]));
    }

    private static uint C(VulkanOp op, int i) => op.Spec.Constants[i];

    // ---- dispatch (per-call values only) ----

    /// <summary>y[c][r] = W[r]·x[c] for <paramref name="ncols"/> activation rows starting at float <paramref name="xOff"/> (mul_mat_vec).</summary>
    public static void RecordMatVec(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int ncols, long xOff, long yOff)
    {
        uint rows = C(op, 3);
        uint x = Math.Min(rows, 65535);
        uint y = (rows + x - 1) / x;
        uint z = (uint)((ncols + MatVecColumns - 1) / MatVecColumns);
        d.Dispatch(cb, op.Kernel, set, [(uint)ncols, (uint)xOff, (uint)yOff], x, y, z);
    }

    /// <summary>The same product with the tiled mul_mat: one workgroup per 32×32 output tile.</summary>
    public static void RecordMatMul(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int ncols, long xOff, long yOff)
    {
        uint rows = C(op, 3);
        d.Dispatch(cb, op.Kernel, set, [(uint)ncols, (uint)xOff, (uint)yOff], (rows + MatMulTile - 1) / MatMulTile, ((uint)ncols + MatMulTile - 1) / MatMulTile);
    }

    public static void RecordGetRows(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int n)
    {
        string type = op.Spec.Shader["get_rows_".Length..];
        uint unit = type is "f32" or "f16" or "bf16" ? 1u : 16u;
        uint units = C(op, 1) / unit;
        d.Dispatch(cb, op.Kernel, set, [], (units + Block - 1) / Block, (uint)n);
    }

    public static void RecordRmsNorm(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int row0, int rows) =>
        d.Dispatch(cb, op.Kernel, set, [(uint)row0], (uint)rows);

    public static void RecordRope(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int n)
    {
        uint pairs = C(op, 2) / 2 * C(op, 3);
        d.Dispatch(cb, op.Kernel, set, [], (pairs + Block - 1) / Block, (uint)n);
    }

    public static void RecordKvStore(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int n) =>
        d.Dispatch(cb, op.Kernel, set, [], (C(op, 1) / 2 + Block - 1) / Block, (uint)n);

    /// <summary>Either short-convolution kernel over <paramref name="n"/> tokens: one invocation per channel and token.</summary>
    public static void RecordShortConv(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int n) =>
        d.Dispatch(cb, op.Kernel, set, [], (C(op, 1) + Block - 1) / Block, (uint)n);

    public static void RecordAttention(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, int n) =>
        d.Dispatch(cb, op.Kernel, set, [], C(op, 2), (uint)n);

    /// <summary>An element-wise kernel over <paramref name="n"/> values (x-by-y grid past 65535 workgroups).</summary>
    public static void RecordElementwise(VulkanDevice d, CommandBuffer cb, VulkanOp op, DescriptorSet set, long n, uint extra = 0)
    {
        long groups = (n + ElementBlock - 1) / ElementBlock;
        uint x = (uint)Math.Min(groups, 65535);
        uint y = (uint)((groups + x - 1) / x);
        d.Dispatch(cb, op.Kernel, set, [(uint)n, extra], x, y);
    }
}

/// <summary>A built pipeline with the spec it came from and the variant chosen for the device.</summary>
internal sealed class VulkanOp(VulkanPipelineSpec spec, string variant, VulkanKernel kernel)
{
    public VulkanPipelineSpec Spec => spec;
    public string Variant => variant;
    public VulkanKernel Kernel => kernel;
}
