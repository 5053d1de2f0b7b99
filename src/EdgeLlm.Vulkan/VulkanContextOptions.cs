namespace EdgeLlm.Vulkan;

/// <summary>How a <see cref="VulkanInferenceContext"/> builds and chooses its pipelines.</summary>
public sealed class VulkanContextOptions
{
    /// <summary>Default smallest batch that takes the tiled matrix-matrix shader (mul_mat).</summary>
    public const int DefaultMatMulMinTokens = 8;

    /// <summary>
    /// Use the generated pipeline table when the model matches a specialized config (default
    /// true); false derives every pipeline from the loaded model, as for any other model.
    /// </summary>
    public bool UseSpecialization { get; init; } = true;

    /// <summary>
    /// Use the subgroupAdd reductions where the device supports subgroup arithmetic in compute
    /// shaders (default true); false forces the plain shared-memory variants every Vulkan 1.1
    /// device runs.
    /// </summary>
    public bool UseSubgroupOps { get; init; } = true;

    /// <summary>
    /// Batches of at least this many tokens multiply with the tiled mul_mat shader, shorter ones
    /// (and generation) with mul_mat_vec. <see cref="int.MaxValue"/> never uses mul_mat.
    /// </summary>
    public int MatMulMinTokens { get; init; } = DefaultMatMulMinTokens;

    /// <summary>
    /// Time each step of the forward pass on the device with timestamp queries (see
    /// <see cref="VulkanInferenceContext.ProfileReport"/>). Default: on when <c>EDGELLM_PROFILE=1</c>
    /// (<see cref="Engine.ForwardProfiler.Enabled"/>), as the CPU's per-op profile. A device whose
    /// compute queue writes no timestamps runs unprofiled.
    /// </summary>
    public bool Profile { get; init; } = Engine.ForwardProfiler.Enabled;

    /// <summary>
    /// Sliding-window layers (Gemma) keep every position instead of a ring of their window and a batch
    /// (<see cref="VulkanInferenceContext.SlidingWindowCacheRows"/>), as llama.cpp's <c>--swa-full</c>. Default false.
    /// </summary>
    public bool FullSlidingWindowCache { get; init; }
}
