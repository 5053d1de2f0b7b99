namespace EdgeLlm.Engine;

/// <summary>
/// A context that times the steps of its forward pass itself (the Vulkan context, with device
/// timestamps); the CPU context reports through <see cref="ForwardProfiler"/> instead.
/// </summary>
public interface IProfiledContext
{
    /// <summary>The per-step times since the last <see cref="ResetProfile"/>, one line each, or null when not profiling.</summary>
    string? ProfileReport();

    /// <summary>Clears the totals.</summary>
    void ResetProfile();
}
