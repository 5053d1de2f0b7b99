using EdgeLlm.Vulkan;
using Xunit;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The device the tests run on: lavapipe (Mesa's llvmpipe Vulkan driver) in CI. Opening it fails
/// the test (never skips) when there is no Vulkan device, and so does any other device, unless
/// EDGELLM_VULKAN_ANY_DEVICE=1 lets the suite run on a real GPU.
/// </summary>
internal static class Lavapipe
{
    public static VulkanDevice Open()
    {
        VulkanDevice device;
        try
        {
            device = VulkanDevice.Open();
        }
        catch (VulkanUnavailableException e)
        {
            Assert.Fail($"no Vulkan device: {e.Message} (CI installs lavapipe: see .ci/apt-packages)");
            throw;
        }
        if (Environment.GetEnvironmentVariable("EDGELLM_VULKAN_ANY_DEVICE") != "1")
        {
            Assert.True(device.Info.Name.Contains("llvmpipe", StringComparison.OrdinalIgnoreCase), $"expected lavapipe (llvmpipe), found {device.Info.Name}");
            Assert.Equal(VulkanDeviceType.Cpu, device.Info.Type);
        }
        return device;
    }
}

/// <summary>One lavapipe device shared by a test class (pipelines compile once).</summary>
public sealed class DeviceFixture : IDisposable
{
    private readonly Lazy<VulkanDevice> _device = new(Lavapipe.Open);

    internal VulkanDevice Device => _device.Value;

    public void Dispose()
    {
        if (_device.IsValueCreated) _device.Value.Dispose();
    }
}
