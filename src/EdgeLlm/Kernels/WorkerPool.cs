namespace EdgeLlm.Kernels;

/// <summary>
/// A fixed team of threads for the forward pass: <see cref="Threads"/> − 1 dedicated workers,
/// created once (per <see cref="Engine.InferenceContext"/>), plus the calling thread, which takes
/// part as worker 0. Handing out a job is a generation counter bump: idle workers spin briefly
/// on it (the next operation usually follows within microseconds) and then block on a monitor,
/// so that an idle context costs no CPU. Completion is a countdown the caller spins on. Unlike
/// Parallel.For there is no per-operation Task, closure queueing or thread injection.
/// </summary>
/// <remarks>
/// Not re-entrant and not thread-safe: one caller at a time (the context's own thread). Which
/// worker computes an item never changes what is computed, so results do not depend on
/// <see cref="Threads"/>. Every job (also one run inline) gets an id in
/// <see cref="Quant.TileScratch.CurrentJob"/> on the threads running it: a job must not change
/// the activations it hands to tile kernels while it runs (tile kernels reuse their packing of
/// them within the job).
/// </remarks>
internal sealed class WorkerPool : IDisposable
{
    /// <summary>Body of a job: runs on every worker with its index (0 = the caller) and the team size.</summary>
    public delegate void JobBody(int worker, int workers);

    /// <summary>SpinWait iterations a worker polls for the next job before it blocks.</summary>
    private const int SpinIterations = 2000;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private JobBody? _job;
    private long _jobId;
    private int _generation;
    private int _pending;
    private int _sleeping;
    private volatile bool _disposed;
    private Exception? _failure;

    // Each worker's run of unclaimed chunks in a ForDynamic job ([front, back), see PackRun), RunStride apart.
    private readonly long[] _runs;

    /// <summary>Starts <paramref name="threads"/> − 1 worker threads.</summary>
    /// <exception cref="ArgumentOutOfRangeException">threads is less than 1.</exception>
    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _runs = new long[threads * RunStride];
        _threads = new Thread[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"EdgeLlm worker {worker}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Team size: the dedicated workers plus the calling thread.</summary>
    public int Threads { get; }

    /// <summary>Runs <paramref name="body"/> once on each of the <see cref="Threads"/> workers and waits for all of them.</summary>
    /// <exception cref="AggregateException">a worker threw (the first failure, wrapped).</exception>
    public void Run(JobBody body)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Threads == 1)
        {
            body(0, 1);
            return;
        }
        _job = body;
        _jobId = Quant.TileScratch.NewJob();
        _failure = null;
        Volatile.Write(ref _pending, Threads - 1);
        Interlocked.Increment(ref _generation);
        // A worker registers as sleeping (full fence) before it re-reads the generation; the bump
        // above is a full fence too, so either it sees the new generation or we see it sleeping.
        if (Volatile.Read(ref _sleeping) > 0)
            lock (_gate) Monitor.PulseAll(_gate);

        try
        {
            Quant.TileScratch.CurrentJob = _jobId;
            body(0, Threads);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
        }
        finally
        {
            Quant.TileScratch.CurrentJob = 0;
        }

        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        if (_failure is { } f) throw new AggregateException("a worker of the forward pass failed", f);
    }

    /// <summary>
    /// Items [0, <paramref name="count"/>) in <see cref="Threads"/> contiguous, equal chunks (worker
    /// w takes the w-th), inline when <paramref name="count"/> × <paramref name="workPerItem"/>
    /// is below <paramref name="minParallelWork"/>.
    /// </summary>
    public void For(int count, long workPerItem, WorkSplit.ChunkBody body, long minParallelWork = WorkSplit.MinParallelWork)
    {
        if (count <= 0) return;
        int chunks = Math.Min(Threads, count);
        if (chunks <= 1 || count * workPerItem < minParallelWork)
        {
            Inline(body, count);
            return;
        }
        Run((w, _) =>
        {
            if (w >= chunks) return;
            int start = (int)((long)count * w / chunks);
            int end = (int)((long)count * (w + 1) / chunks);
            body(start, end, w);
        });
    }

    /// <summary>
    /// Items [0, <paramref name="count"/>) in chunks of <paramref name="chunk"/> (every chunk starts at a
    /// multiple of <paramref name="chunk"/>). Each worker owns a contiguous run of chunks and takes them
    /// in order from its front; a worker done with its own run takes chunks from the back of the others'
    /// (balances uneven progress, e.g. a core shared with another process). Inline when the whole job is
    /// a single chunk or below <paramref name="minParallelWork"/>.
    /// <para>
    /// Why owned runs rather than one shared counter (which it was until 2026-12-02): a decode product
    /// streams its weights, and a worker that takes chunk 0, then 2, then 5 ... starts a new stream at
    /// every chunk, where the decode kernels' software prefetch (which runs ahead past a chunk's end,
    /// into the next chunk of the matrix) and the hardware prefetcher both had to start over. In an owned
    /// run the next chunk is the memory right after the last one, already on its way. Measured on the
    /// 2-core AVX-512 AMD EPYC (TinyLlama-shape Q4_0, tg32 at 2 threads): see README "Performance".
    /// </para>
    /// </summary>
    public void ForDynamic(int count, int chunk, long workPerItem, WorkSplit.ChunkBody body, long minParallelWork = WorkSplit.MinParallelWork)
    {
        if (count <= 0) return;
        ArgumentOutOfRangeException.ThrowIfLessThan(chunk, 1);
        if (Threads == 1 || count <= chunk || count * workPerItem < minParallelWork)
        {
            Inline(body, count);
            return;
        }
        int chunks = (int)(((long)count + chunk - 1) / chunk);
        for (int w = 0; w < Threads; w++)
            _runs[w * RunStride] = PackRun((int)((long)chunks * w / Threads), (int)((long)chunks * (w + 1) / Threads));
        // Run publishes the runs: its generation bump is a full fence before any worker starts.
        Run((w, workers) =>
        {
            while (Take(w, fromBack: false, out int c))
                body(c * chunk, (int)Math.Min(count, (long)c * chunk + chunk), w);
            for (int i = 1; i < workers; i++)
            {
                int other = (w + i) % workers;
                while (Take(other, fromBack: true, out int c))
                    body(c * chunk, (int)Math.Min(count, (long)c * chunk + chunk), w);
            }
        });
    }

    /// <summary>Longs between two workers' runs in <see cref="_runs"/>: 128 bytes, so no two share a cache line (or an adjacent-line prefetch pair).</summary>
    private const int RunStride = 16;

    /// <summary>A run of chunk indices [front, back) as one word, so that its owner and a thief claim chunks with one compare-exchange.</summary>
    private static long PackRun(int front, int back) => ((long)front << 32) | (uint)back;

    /// <summary>Claims the front chunk of <paramref name="worker"/>'s run (its owner), or with <paramref name="fromBack"/> the back one (a thief); false once the run is empty.</summary>
    private bool Take(int worker, bool fromBack, out int chunk)
    {
        ref long run = ref _runs[worker * RunStride];
        while (true)
        {
            long v = Volatile.Read(ref run);
            int front = (int)(v >> 32), back = (int)v;
            if (front >= back)
            {
                chunk = -1;
                return false;
            }
            long rest = fromBack ? PackRun(front, back - 1) : PackRun(front + 1, back);
            if (Interlocked.CompareExchange(ref run, rest, v) == v)
            {
                chunk = fromBack ? back - 1 : front;
                return true;
            }
        }
    }

    /// <summary>A job run on the calling thread alone, as worker 0 (with its own job id).</summary>
    private static void Inline(WorkSplit.ChunkBody body, int count)
    {
        long outer = Quant.TileScratch.CurrentJob;
        Quant.TileScratch.CurrentJob = Quant.TileScratch.NewJob();
        try
        {
            body(0, count, 0);
        }
        finally
        {
            Quant.TileScratch.CurrentJob = outer;
        }
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            var spin = new SpinWait();
            int polls = 0;
            while (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                if (++polls < SpinIterations)
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                    continue;
                }
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleeping);
                    while (Volatile.Read(ref _generation) == seen && !_disposed) Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleeping);
                }
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            try
            {
                Quant.TileScratch.CurrentJob = Volatile.Read(ref _jobId);
                _job!(worker, Threads);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            finally
            {
                Quant.TileScratch.CurrentJob = 0;
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    /// <summary>Stops and joins the worker threads.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_gate) Monitor.PulseAll(_gate);
        foreach (var t in _threads) t.Join();
    }
}
