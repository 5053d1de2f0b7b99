namespace EdgeLlm.Vulkan;

/// <summary>Kind of a Vulkan physical device (VkPhysicalDeviceType).</summary>
public enum VulkanDeviceType
{
    /// <summary>VK_PHYSICAL_DEVICE_TYPE_OTHER.</summary>
    Other,
    /// <summary>A GPU sharing memory with the CPU.</summary>
    Integrated,
    /// <summary>A separate GPU with its own memory.</summary>
    Discrete,
    /// <summary>A virtualized GPU.</summary>
    Virtual,
    /// <summary>A software rasterizer on the CPU (lavapipe/llvmpipe, SwiftShader).</summary>
    Cpu,
}

/// <summary>What a Vulkan physical device offers the backend.</summary>
/// <param name="Index">Position in vkEnumeratePhysicalDevices' list (what <see cref="VulkanDevice.Open(int?)"/> takes).</param>
/// <param name="Name">deviceName, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".</param>
/// <param name="Type">discrete, integrated, CPU, ...</param>
/// <param name="ApiVersion">The Vulkan version the device supports, e.g. "1.3.230".</param>
/// <param name="DeviceLocalMemory">Bytes of the largest device-local memory heap.</param>
/// <param name="SubgroupSize">Threads per subgroup (1 when the device does not report it).</param>
/// <param name="SubgroupArithmetic">Subgroup arithmetic operations are supported in compute shaders.</param>
/// <param name="Float16">shaderFloat16 (16-bit float arithmetic).</param>
/// <param name="Int8">shaderInt8 (8-bit integer arithmetic).</param>
/// <param name="Storage16Bit">storageBuffer16BitAccess.</param>
/// <param name="Storage8Bit">storageBuffer8BitAccess.</param>
/// <param name="HasComputeQueue">A queue family supports compute (the backend needs one).</param>
public sealed record VulkanDeviceInfo(
    int Index,
    string Name,
    VulkanDeviceType Type,
    string ApiVersion,
    long DeviceLocalMemory,
    int SubgroupSize,
    bool SubgroupArithmetic,
    bool Float16,
    bool Int8,
    bool Storage16Bit,
    bool Storage8Bit,
    bool HasComputeQueue)
{
    /// <summary>True for a real GPU (discrete or integrated), which <c>--backend auto</c> prefers to the CPU.</summary>
    public bool IsGpu => Type is VulkanDeviceType.Discrete or VulkanDeviceType.Integrated;

    /// <summary>One line for <c>edgellm devices</c>.</summary>
    public override string ToString() =>
        $"{Index}: {Name} ({Type.ToString().ToLowerInvariant()}, Vulkan {ApiVersion}) memory {DeviceLocalMemory >> 20} MiB, subgroup {SubgroupSize}" +
        $"{(SubgroupArithmetic ? " (arithmetic)" : "")}, fp16 {(Float16 ? "yes" : "no")}, int8 {(Int8 ? "yes" : "no")}" +
        (HasComputeQueue ? "" : ", no compute queue");
}
