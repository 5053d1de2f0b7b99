using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Benchmarks;

/// <summary>
/// Memory read bandwidth, measured here: threads sum disjoint slices of a 1 GiB array with
/// 256-bit loads (far larger than any cache, so every byte comes from DRAM), best of several
/// runs. Token generation reads every weight once per token, so this is its speed limit.
/// </summary>
internal static unsafe class MemoryBandwidth
{
    public const long DefaultBytes = 1L << 30;

    /// <summary>Best read bandwidth in GB/s (10^9 bytes per second) with <paramref name="threads"/> threads.</summary>
    public static double Measure(int threads, long bytes = DefaultBytes, int runs = 5)
    {
        byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            // Touch every page first (and give the data non-zero values) so page faults are not timed.
            for (long off = 0; off < bytes; off += 1 << 30)
                new Span<byte>(data + off, (int)Math.Min(1 << 30, bytes - off)).Fill(1);

            double best = 0;
            long sink = 0;
            for (int r = 0; r < runs; r++)
            {
                long slice = bytes / threads / 128 * 128;
                var partial = new long[threads];
                using var start = new Barrier(threads + 1);
                var workers = new Thread[threads];
                for (int t = 0; t < threads; t++)
                {
                    int id = t;
                    workers[t] = new Thread(() =>
                    {
                        start.SignalAndWait();
                        partial[id] = Sum(data + id * slice, slice);
                    }) { IsBackground = true };
                    workers[t].Start();
                }
                start.SignalAndWait();
                var sw = Stopwatch.StartNew();
                foreach (var w in workers) w.Join();
                double seconds = sw.Elapsed.TotalSeconds;
                foreach (long x in partial) sink = unchecked(sink + x); // the sums wrap: LINQ's checked Sum would throw
                best = Math.Max(best, slice * threads / seconds / 1e9);
            }
            GC.KeepAlive(sink);
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>Sums <paramref name="bytes"/> (a multiple of 128) as 64-bit lanes, four independent accumulators to keep loads in flight.</summary>
    private static long Sum(byte* p, long bytes)
    {
        var a0 = Vector256<long>.Zero;
        var a1 = Vector256<long>.Zero;
        var a2 = Vector256<long>.Zero;
        var a3 = Vector256<long>.Zero;
        byte* end = p + bytes;
        for (; p < end; p += 128)
        {
            a0 += Vector256.LoadAligned((long*)p);
            a1 += Vector256.LoadAligned((long*)(p + 32));
            a2 += Vector256.LoadAligned((long*)(p + 64));
            a3 += Vector256.LoadAligned((long*)(p + 96));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }
}
