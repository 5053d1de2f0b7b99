namespace EdgeLlm.Engine;

/// <summary>
/// Time per operation type of the forward pass (matrix-vector, matrix-matrix, activation
/// quantization, attention, norms, …), for benchmarks. Off unless the environment variable
/// <c>EDGELLM_PROFILE=1</c> is set or <see cref="Enabled"/> is switched on; totals are process-wide.
/// </summary>
public static class ForwardProfiler
{
    /// <summary>Whether sections are timed.</summary>
    public static bool Enabled
    {
        get => Kernels.Profiler.Enabled;
        set => Kernels.Profiler.Enabled = value;
    }

    /// <summary>Clears the totals.</summary>
    public static void Reset() => Kernels.Profiler.Reset();

    /// <summary>One line per operation type: milliseconds, share of the timed total, calls.</summary>
    public static string Report() => Kernels.Profiler.Report();
}
