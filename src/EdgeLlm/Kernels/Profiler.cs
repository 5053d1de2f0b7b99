using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace EdgeLlm.Kernels;

/// <summary>
/// Wall-clock time per operation type of the forward pass, switched on with the environment
/// variable <c>EDGELLM_PROFILE=1</c> (read once). Sections are timed on the calling thread around
/// whole (parallel) operations, so the figures add up to the forward pass's wall time. Off, a
/// section costs one static bool test.
/// </summary>
internal static class Profiler
{
    /// <summary>The operation types timed.</summary>
    public enum Op
    {
        Embed, RmsNorm, Quantize, MatVec, MatMat, Rope, KvStore, Attention, SwiGlu, Add,

        // The specialized path's fused steps (src/EdgeLlm/Specialized/SpecializedKernels.cs).

        /// <summary>RMSNorm fused with the activation conversion.</summary>
        NormQuantize,

        /// <summary>Q, K and V products in one pass, with bias and rope.</summary>
        QkvRope,

        /// <summary>Gate and up products, SiLU·mul and the conversion for ffn_down.</summary>
        GateUpSwiGlu,

        /// <summary>A product with the residual add fused (attn_output, ffn_down).</summary>
        MatAdd,

        /// <summary>LFM2's short causal convolution and its gates (the in_proj/out_proj products count as products).</summary>
        ShortConv,

        /// <summary>A mixture-of-experts block's routing: softmax, top-k, grouping the tokens by expert and the weighted sum (the products count as products).</summary>
        MoeRoute,
    }

    private static readonly long[] s_ticks = new long[Enum.GetValues<Op>().Length];
    private static readonly long[] s_calls = new long[s_ticks.Length];

    /// <summary>True when EDGELLM_PROFILE is set to 1 (or when a test switches it on).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("EDGELLM_PROFILE") == "1";

    /// <summary>Starts timing <paramref name="op"/> until the returned value is disposed.</summary>
    public static Scope Section(Op op) => Enabled ? new Scope(op, Stopwatch.GetTimestamp()) : default;

    /// <summary>Clears the totals.</summary>
    public static void Reset()
    {
        Array.Clear(s_ticks);
        Array.Clear(s_calls);
    }

    /// <summary>Sections of <paramref name="op"/> timed since the last <see cref="Reset"/>.</summary>
    public static long Calls(Op op) => Interlocked.Read(ref s_calls[(int)op]);

    /// <summary>One line per operation: total milliseconds, share and calls since the last <see cref="Reset"/>.</summary>
    public static string Report()
    {
        var ci = CultureInfo.InvariantCulture;
        long total = s_ticks.Sum();
        var sb = new StringBuilder();
        foreach (var op in Enum.GetValues<Op>().OrderByDescending(o => s_ticks[(int)o]))
        {
            long t = s_ticks[(int)op];
            if (s_calls[(int)op] == 0) continue;
            sb.AppendLine(ci, $"  {op,-10} {t * 1000.0 / Stopwatch.Frequency,10:F1} ms {100.0 * t / Math.Max(1, total),5:F1} %  {s_calls[(int)op],8} calls");
        }
        return sb.ToString();
    }

    /// <summary>An open section.</summary>
    public readonly struct Scope(Op op, long start) : IDisposable
    {
        public void Dispose()
        {
            if (start == 0) return;
            s_ticks[(int)op] += Stopwatch.GetTimestamp() - start;
            s_calls[(int)op]++;
        }
    }
}
