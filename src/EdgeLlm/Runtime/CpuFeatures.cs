using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Runtime;

/// <summary>
/// What the CPU (and, under NativeAOT, the compiled instruction set) lets the kernels use, and
/// the name of the kernel path that runs, as <c>edgellm info</c> and <c>edgellm bench</c> print it.
/// </summary>
public static class CpuFeatures
{
    /// <summary>
    /// The widest kernel path available: "avx512", "avx2", "neon-dotprod", "neon",
    /// "sse" or "scalar". Under the JIT this follows the CPU; under NativeAOT it follows the
    /// instruction set the binary was compiled for (the runtime still checks the CPU at start).
    /// </summary>
    public static string KernelPath
    {
        get
        {
            if (Avx512BW.IsSupported && Vector512.IsHardwareAccelerated) return "avx512";
            if (Avx2.IsSupported && Fma.IsSupported) return "avx2";
            if (AdvSimd.Arm64.IsSupported) return Dp.IsSupported ? "neon-dotprod" : "neon";
            if (Sse41.IsSupported) return "sse";
            return "scalar";
        }
    }

    /// <summary>A one-line list of the instruction sets that matter for the kernels.</summary>
    public static string Describe()
    {
        var parts = new List<string>();
        if (Avx512F.IsSupported) parts.Add("AVX-512F");
        if (Avx512BW.IsSupported) parts.Add("AVX-512BW");
        if (AvxVnni.IsSupported) parts.Add("AVX-VNNI");
        if (Avx2.IsSupported) parts.Add("AVX2");
        if (Fma.IsSupported) parts.Add("FMA");
        if (Sse41.IsSupported) parts.Add("SSE4.1");
        if (AdvSimd.IsSupported) parts.Add("NEON");
        if (Dp.IsSupported) parts.Add("DotProd");
        parts.Add($"Vector512 {(Vector512.IsHardwareAccelerated ? "on" : "off")}");
        parts.Add($"Vector256 {(Vector256.IsHardwareAccelerated ? "on" : "off")}");
        return string.Join(", ", parts);
    }

    /// <summary>Physical cores (for the default thread count): on Linux from /proc/cpuinfo, else the logical count.</summary>
    public static int PhysicalCores
    {
        get
        {
            try
            {
                if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo"))
                {
                    var cores = new HashSet<(string, string)>();
                    string phys = "0";
                    foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    {
                        int colon = line.IndexOf(':');
                        if (colon < 0) continue;
                        var key = line[..colon].Trim();
                        var val = line[(colon + 1)..].Trim();
                        if (key == "physical id") phys = val;
                        else if (key == "core id") cores.Add((phys, val));
                    }
                    if (cores.Count > 0) return Math.Min(cores.Count, Environment.ProcessorCount);
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return Environment.ProcessorCount;
        }
    }
}
