namespace EdgeLlm.Vulkan;

/// <summary>
/// The Vulkan backend cannot run here: no Vulkan loader or driver, no device with a compute
/// queue, a driver call that failed, too little device memory, or a weight type the shaders do
/// not cover. The message says which, so that a caller can report it (or fall back to the CPU).
/// </summary>
public sealed class VulkanUnavailableException : Exception
{
    /// <summary>Creates the exception with its message.</summary>
    public VulkanUnavailableException(string message) : base(message) { }

    /// <summary>Creates the exception with its message and the error that caused it.</summary>
    public VulkanUnavailableException(string message, Exception inner) : base(message, inner) { }

    /// <summary>Creates the exception with a generic message.</summary>
    public VulkanUnavailableException() : base("the Vulkan backend is unavailable") { }
}
