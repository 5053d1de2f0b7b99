using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Vulkan;

namespace EdgeLlm.Native;

/// <summary>
/// Creates the inference context of <c>edgellm_context_create</c> on the backend that
/// <c>edgellm_context_params.backend</c> asks for, with the CLI's <c>--backend</c> semantics
/// (EdgeLlm.Cli's BackendOption): CPU by default; VULKAN is strict (no usable device is
/// EDGELLM_ERROR_BACKEND_UNAVAILABLE, never a silent CPU run); AUTO takes Vulkan only on a discrete or
/// integrated GPU, not on a CPU driver such as lavapipe, and otherwise runs on the CPU.
/// </summary>
internal static class Backends
{
    /// <summary>A created context, the backend it really runs on, and the Vulkan device it owns (null on the CPU).</summary>
    public readonly record struct Created(IEvalContext Context, NativeBackend Backend, VulkanDevice? Device);

    /// <param name="model">the model.</param>
    /// <param name="backend">CPU, VULKAN or AUTO.</param>
    /// <param name="device">the Vulkan device index, or null for the best device.</param>
    /// <param name="contextLength">KV cache size in tokens.</param>
    /// <param name="threads">CPU worker threads (0 = one per processor); the Vulkan backend does not use them.</param>
    /// <param name="typeK">the K cache type; a quantized cache (K or V) runs on the CPU, so AUTO then picks the CPU (VULKAN is refused before this).</param>
    /// <param name="typeV">the V cache type.</param>
    /// <param name="fullSlidingWindowCache">sliding-window layers keep every position (swa_full) instead of a ring of their window.</param>
    /// <exception cref="EdgeLlmException">BACKEND_UNAVAILABLE: backend VULKAN and the Vulkan backend cannot run this model here (the message says why).</exception>
    public static Created Create(Model model, NativeBackend backend, int? device, int contextLength, int threads,
        KvCacheType typeK = KvCacheType.F16, KvCacheType typeV = KvCacheType.F16, bool fullSlidingWindowCache = false)
    {
        if (typeK != KvCacheType.F16 || typeV != KvCacheType.F16) return OnCpu(model, contextLength, threads, typeK, typeV, fullSlidingWindowCache);
        switch (backend)
        {
            case NativeBackend.Vulkan:
                try
                {
                    return OnVulkan(model, device, contextLength, requireGpu: false, fullSlidingWindowCache)!.Value;
                }
                catch (VulkanUnavailableException e)
                {
                    throw new EdgeLlmException(EdgeLlmError.BackendUnavailable, $"backend EDGELLM_BACKEND_VULKAN: {e.Message}");
                }
            case NativeBackend.Auto:
                try
                {
                    if (OnVulkan(model, device, contextLength, requireGpu: true, fullSlidingWindowCache) is Created gpu) return gpu;
                }
                catch (VulkanUnavailableException)
                {
                    // AUTO: no loader, no driver, no device, a weight type without shaders or too little device
                    // memory all mean "run on the CPU"; edgellm_context_backend tells the caller which it got.
                }
                return OnCpu(model, contextLength, threads, fullSlidingWindowCache: fullSlidingWindowCache);
            default:
                return OnCpu(model, contextLength, threads, fullSlidingWindowCache: fullSlidingWindowCache);
        }
    }

    private static Created OnCpu(Model model, int contextLength, int threads, KvCacheType typeK = KvCacheType.F16, KvCacheType typeV = KvCacheType.F16,
        bool fullSlidingWindowCache = false)
    {
        // The first CPU context on a model repacks its weights (Model.RepackWeights runs once, under a
        // lock; later calls return at once). It finishes before that context exists, so no CPU context on
        // the model can be computing while the layout changes; Vulkan contexts read the file, not the copy.
        model.RepackWeights();
        return new(new InferenceContext(model, contextLength, threads, typeK, typeV, fullSlidingWindowCache), NativeBackend.Cpu, null);
    }

    /// <summary>The context on Vulkan device <paramref name="index"/> (or the best one); null when <paramref name="requireGpu"/> and that device is no GPU.</summary>
    /// <exception cref="VulkanUnavailableException">no usable device, or the context does not fit / is not supported on it.</exception>
    private static Created? OnVulkan(Model model, int? index, int contextLength, bool requireGpu, bool fullSlidingWindowCache)
    {
        var device = VulkanDevice.Open(index);
        try
        {
            if (requireGpu && !device.Info.IsGpu)
            {
                device.Dispose();
                return null;
            }
            // The context borrows the device (it does not dispose a device it was given): NativeContext
            // disposes it after the context.
            return new Created(new VulkanInferenceContext(model, contextLength, device,
                options: new VulkanContextOptions { FullSlidingWindowCache = fullSlidingWindowCache }), NativeBackend.Vulkan, device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }
}
