using EdgeLlm.Gguf;
using Silk.NET.Vulkan;

namespace EdgeLlm.Vulkan;

/// <summary>
/// The shader variants and how each is dispatched: one place for workgroup sizes,
/// specialization constants (0 = workgroup size via local_size_x_id, then the shapes) and push
/// constants, shared by the forward pass and the shader tests.
/// </summary>
internal static class VulkanKernels
{
    /// <summary>Workgroup size of the row-parallel kernels (matrix-vector, norms, rope, ...).</summary>
    public const uint Block = 64;

    /// <summary>Workgroup size of the element-wise kernels (add, swiglu).</summary>
    public const uint ElementBlock = 256;

    /// <summary>Activation rows (tokens) one mul_mat_vec workgroup multiplies at once (NCOLS in the shader).</summary>
    public const uint MatVecColumns = 8;

    /// <summary>Weight types with mul_mat_vec and get_rows variants.</summary>
    public static IReadOnlyList<GgmlType> SupportedTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1,
        GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    public static bool IsSupported(GgmlType t) => SupportedTypes.Contains(t);

    /// <summary>Variant suffix of a weight type: "q4_0", "f16", ...</summary>
    public static string Suffix(GgmlType t) => GgmlTypes.Info(t).Name.ToLowerInvariant();

    /// <summary>Values one thread dequantizes at a time (UNIT in dequant.glsl).</summary>
    public static uint Unit(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? 1u : 16u;

    public static VulkanKernel MatVec(VulkanDevice d, GgmlType t, int cols) =>
        d.Kernel("mul_mat_vec_" + Suffix(t), 3, Block, (uint)cols, (uint)GgmlTypes.Info(t).RowBytes(cols));

    /// <summary>y[c][r] = W[r]·x[c] for <paramref name="ncols"/> activation rows starting at float <paramref name="xOff"/>.</summary>
    public static void RecordMatVec(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, int rows, int ncols, long xOff, long yOff)
    {
        uint x = (uint)Math.Min(rows, 65535);
        uint y = (uint)((rows + x - 1) / x);
        uint z = (uint)((ncols + MatVecColumns - 1) / MatVecColumns);
        d.Dispatch(cb, k, set, [(uint)rows, (uint)ncols, (uint)xOff, (uint)yOff], x, y, z);
    }

    public static VulkanKernel GetRows(VulkanDevice d, GgmlType t, int cols) =>
        d.Kernel("get_rows_" + Suffix(t), 3, Block, (uint)cols, (uint)GgmlTypes.Info(t).RowBytes(cols));

    public static void RecordGetRows(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, GgmlType t, int cols, int n)
    {
        uint units = (uint)cols / Unit(t);
        d.Dispatch(cb, k, set, [], (units + Block - 1) / Block, (uint)n);
    }

    public static VulkanKernel RmsNorm(VulkanDevice d, int n) => d.Kernel("rms_norm", 3, Block, (uint)n);

    public static void RecordRmsNorm(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, int row0, int rows, float eps) =>
        d.Dispatch(cb, k, set, [(uint)row0, BitConverter.SingleToUInt32Bits(eps)], (uint)rows);

    public static VulkanKernel Rope(VulkanDevice d, bool neox, int headDim, int nDims) =>
        d.Kernel(neox ? "rope_neox" : "rope_norm", 3, Block, (uint)headDim, (uint)nDims);

    public static void RecordRope(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, int nHeads, int nDims, int n,
        float freqBase, float freqScale, bool hasFactors)
    {
        // powf on the host, as ggml_rope_cache_init computes it, so the running product matches the CPU's bit for bit
        float thetaScale = MathF.Pow(freqBase, -2.0f / nDims);
        uint pairs = (uint)(nDims / 2 * nHeads);
        d.Dispatch(cb, k, set, [(uint)nHeads, BitConverter.SingleToUInt32Bits(thetaScale), BitConverter.SingleToUInt32Bits(freqScale), hasFactors ? 1u : 0u],
            (pairs + Block - 1) / Block, (uint)n);
    }

    public static VulkanKernel KvStore(VulkanDevice d, int kvLen) => d.Kernel("kv_store", 3, Block, (uint)kvLen);

    public static void RecordKvStore(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, int kvLen, int n) =>
        d.Dispatch(cb, k, set, [], ((uint)kvLen / 2 + Block - 1) / Block, (uint)n);

    /// <summary>Workgroup of the attention kernel: a power of two ≥ max(64, head_dim) (thread d owns output dimension d).</summary>
    public static uint AttentionBlock(int headDim) => Math.Max(64u, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)headDim));

    public static VulkanKernel Attention(VulkanDevice d, int headDim, int nHead, int nHeadKv) =>
        d.Kernel("attention", 5, AttentionBlock(headDim), (uint)headDim, (uint)nHead, (uint)nHeadKv);

    public static void RecordAttention(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, int headDim, int nHead, int n) =>
        d.Dispatch(cb, k, set, [BitConverter.SingleToUInt32Bits(1.0f / MathF.Sqrt(headDim))], (uint)nHead, (uint)n);

    public static VulkanKernel SwiGlu(VulkanDevice d) => d.Kernel("swiglu", 2, ElementBlock);

    public static VulkanKernel Add(VulkanDevice d) => d.Kernel("add", 2, ElementBlock);

    /// <summary>An element-wise kernel over <paramref name="n"/> values (x-by-y grid past 65535 workgroups).</summary>
    public static void RecordElementwise(VulkanDevice d, CommandBuffer cb, VulkanKernel k, DescriptorSet set, long n, uint extra = 0)
    {
        long groups = (n + ElementBlock - 1) / ElementBlock;
        uint x = (uint)Math.Min(groups, 65535);
        uint y = (uint)((groups + x - 1) / x);
        d.Dispatch(cb, k, set, [(uint)n, extra], x, y);
    }
}
