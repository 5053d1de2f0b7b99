using System.CommandLine;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Vulkan;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>--backend cpu|vulkan|auto</c> (default cpu). <c>vulkan</c> is strict: no usable device is an
/// error (exit 2), never a silent CPU run. <c>auto</c> takes Vulkan only on a discrete or
/// integrated GPU (not a software driver such as lavapipe) and otherwise says on stderr that it
/// runs on the CPU.
/// </summary>
public static class BackendOption
{
    public static Option<string> Create()
    {
        var o = new Option<string>("--backend") { Description = "Where to run the model: cpu, vulkan (fails without a Vulkan device) or auto (a Vulkan GPU if there is one, else the CPU)", DefaultValueFactory = _ => "cpu" };
        o.AcceptOnlyFromAmong("cpu", "vulkan", "auto");
        return o;
    }

    /// <summary>
    /// False only for the strict <c>vulkan</c> backend, which reads the weights from the file itself:
    /// the model then skips the CPU's load-time repacking (<see cref="ModelLoadOptions.RepackWeights"/>).
    /// </summary>
    public static bool MayRunOnCpu(string? backend) => backend != "vulkan";

    /// <summary>
    /// Creates the context for <paramref name="backend"/>, its KV cache as <paramref name="cache"/> says (<c>-ctk</c>/<c>-ctv</c>;
    /// <c>--swa-full</c>: sliding-window layers keep every position instead of a ring of their window).
    /// </summary>
    /// <exception cref="VulkanUnavailableException">backend is vulkan and no usable device exists.</exception>
    /// <exception cref="UsageException">backend is vulkan and the cache is quantized (the Vulkan backend keeps an f16 cache).</exception>
    internal static IEvalContext CreateContext(string? backend, Model model, int contextLength, int threads, KvCacheTypePair cache = default)
    {
        KvCacheType typeK = cache.K, typeV = cache.V;
        bool quantized = typeK != KvCacheType.F16 || typeV != KvCacheType.F16;
        string cacheFlags = $"-ctk {typeK.Name()} -ctv {typeV.Name()}";
        if (quantized && backend == "vulkan")
            throw new UsageException($"{cacheFlags}: a quantized KV cache runs on the CPU backend only (the Vulkan backend keeps an f16 cache); use --backend cpu or -ctk f16 -ctv f16");
        if (quantized && backend == "auto")
        {
            Console.Error.WriteLine($"edgellm: --backend auto: {cacheFlags} runs on the CPU (the Vulkan backend keeps an f16 cache)");
            return new InferenceContext(model, contextLength, threads, typeK, typeV, cache.FullSwa);
        }
        switch (backend ?? "cpu")
        {
            case "vulkan":
                return new VulkanInferenceContext(model, contextLength, options: new VulkanContextOptions { FullSlidingWindowCache = cache.FullSwa });
            case "auto":
                VulkanDevice? device = null;
                try
                {
                    device = VulkanDevice.Open();
                    if (device.Info.IsGpu)
                    {
                        var ctx = new VulkanInferenceContext(model, contextLength, device, options: new VulkanContextOptions { FullSlidingWindowCache = cache.FullSwa });
                        return new VulkanEval(ctx, device);
                    }
                    Console.Error.WriteLine($"edgellm: --backend auto: the only Vulkan device is {device.Info.Name} ({device.Info.Type.ToString().ToLowerInvariant()}), not a GPU; running on the CPU");
                }
                catch (VulkanUnavailableException e)
                {
                    Console.Error.WriteLine($"edgellm: --backend auto: Vulkan unavailable ({e.Message}); running on the CPU");
                }
                device?.Dispose();
                return new InferenceContext(model, contextLength, threads);
            default:
                return new InferenceContext(model, contextLength, threads, typeK, typeV, cache.FullSwa);
        }
    }

    /// <summary>A Vulkan context that also owns the device it was opened on.</summary>
    private sealed class VulkanEval(VulkanInferenceContext ctx, VulkanDevice? ownedDevice = null) : IEvalContext
    {
        public int Position => ctx.Position;
        public int ContextLength => ctx.ContextLength;
        public string Description => ctx.Description;
        public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false) => ctx.Eval(tokens, allLogits);
        public void Reset() => ctx.Reset();
        public void Rewind(int position) => ctx.Rewind(position);
        public bool CanResumeAt(int position) => ctx.CanResumeAt(position);
        public void Dispose()
        {
            ctx.Dispose();
            ownedDevice?.Dispose();
        }
    }
}
