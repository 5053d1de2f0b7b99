namespace EdgeLlm.Kernels;

/// <summary>
/// Splits a range of independent items across threads: one contiguous chunk per worker on the
/// shared thread pool (Parallel.For), or inline when the work is too small to pay for the hand-off.
/// Kept for the kernels' thread-count overloads; the forward pass runs on a
/// <see cref="WorkerPool"/> instead (no per-operation scheduling).
/// </summary>
internal static class WorkSplit
{
    /// <summary>Below this many scalar operations a job runs on the calling thread (default for <see cref="WorkerPool"/> too).</summary>
    internal const long MinParallelWork = 1 << 18;

    /// <summary>Processes one chunk: items [start, end), run by worker <c>worker</c> (0 ≤ worker &lt; threads).</summary>
    public delegate void ChunkBody(int start, int end, int worker);

    /// <summary>
    /// Runs <paramref name="body"/> over [0, <paramref name="count"/>) in at most
    /// <paramref name="threads"/> chunks; <paramref name="workPerItem"/> (roughly the
    /// multiply-adds per item) decides whether splitting is worth it.
    /// </summary>
    public static void For(int count, int threads, long workPerItem, ChunkBody body)
    {
        if (count <= 0) return;
        int chunks = Math.Min(threads, count);
        if (chunks <= 1 || count * workPerItem < MinParallelWork)
        {
            body(0, count, 0);
            return;
        }
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = chunks }, c =>
        {
            int start = (int)((long)count * c / chunks);
            int end = (int)((long)count * (c + 1) / chunks);
            body(start, end, c);
        });
    }
}
