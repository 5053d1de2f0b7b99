using System.CommandLine;
using EdgeLlm.Vulkan;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm devices</c>: the Vulkan devices (memory, subgroup size, fp16/int8) and which one
/// <c>--backend vulkan</c> and <c>--backend auto</c> would take. Exit 2 when Vulkan is unavailable.
/// </summary>
public static class DevicesCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var cmd = new Command("devices", "List the Vulkan devices the vulkan backend can use");
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            Console.Out.WriteLine("cpu: always available (--backend cpu)");
            var devices = VulkanDevice.EnumerateDevices();
            if (devices.Count == 0) throw new VulkanUnavailableException("the Vulkan driver reports no devices");
            foreach (var d in devices) Console.Out.WriteLine("vulkan " + d);
            bool gpu = devices.Any(d => d.IsGpu && d.HasComputeQueue);
            Console.Out.WriteLine(gpu ? "--backend auto uses the Vulkan GPU" : "--backend auto uses the CPU (no Vulkan GPU; software drivers are only used with --backend vulkan)");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
