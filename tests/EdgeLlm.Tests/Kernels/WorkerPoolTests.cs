using EdgeLlm.Kernels;
using Xunit;

namespace EdgeLlm.Tests.Kernels;

public class WorkerPoolTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void ManySmallJobs_EveryItemExactlyOnce(int threads)
    {
        using var pool = new WorkerPool(threads);
        var rng = new Random(threads);
        for (int job = 0; job < 5000; job++)
        {
            int count = rng.Next(1, 200);
            var hits = new int[count];
            var workersSeen = new int[threads];
            if (job % 2 == 0)
            {
                pool.For(count, 1, (start, end, w) =>
                {
                    Interlocked.Increment(ref workersSeen[w]);
                    for (int i = start; i < end; i++) Interlocked.Increment(ref hits[i]);
                }, minParallelWork: 0);
            }
            else
            {
                pool.ForDynamic(count, rng.Next(1, 8), 1, (start, end, w) =>
                {
                    Assert.InRange(w, 0, threads - 1);
                    for (int i = start; i < end; i++) Interlocked.Increment(ref hits[i]);
                }, minParallelWork: 0);
            }
            Assert.All(hits, h => Assert.Equal(1, h));
            if (job % 2 == 0) Assert.All(workersSeen, s => Assert.InRange(s, 0, 1));
        }
    }

    [Fact]
    public void ForDynamic_ChunksStartOnMultiples_AndEachWorkerWalksItsOwnRunInOrder()
    {
        using var pool = new WorkerPool(2);
        for (int rep = 0; rep < 200; rep++)
        {
            const int count = 1000, chunk = 16;
            var starts = new List<int>[2] { new(), new() };
            pool.ForDynamic(count, chunk, 1, (start, end, w) =>
            {
                Assert.Equal(0, start % chunk);
                Assert.Equal(Math.Min(count, start + chunk), end);
                lock (starts[w]) starts[w].Add(start);
            }, minParallelWork: 0);
            Assert.Equal(Enumerable.Range(0, (count + chunk - 1) / chunk).Select(c => c * chunk), starts[0].Concat(starts[1]).Order());
            // Worker 0 owns the first half of the chunks and worker 1 the second; each takes its own
            // in ascending order, so whatever it did not steal is an ascending run of consecutive chunks
            // from the start of its half (a thief takes from the back of the other's half).
            int half = (count + chunk - 1) / chunk / 2 * chunk;
            foreach (var (w, first) in new[] { (0, 0), (1, half) })
            {
                var own = starts[w].Where(s => (s < half) == (w == 0)).ToList();
                Assert.Equal(Enumerable.Range(0, own.Count).Select(i => first + i * chunk), own);
            }
        }
    }

    [Fact]
    public void ForDynamic_AFreeWorkerTakesFromTheBackOfABusyOnesRun()
    {
        using var pool = new WorkerPool(2);
        const int count = 64, chunk = 1;
        var by = new int[count];
        pool.ForDynamic(count, chunk, 1, (start, end, w) =>
        {
            // Worker 1 stalls on its first chunk (as on a core another process holds) until every later chunk
            // is done: only worker 0, done with its own half, taking them from the back of worker 1's run can
            // do that. Without stealing the wait times out and worker 1 takes them itself (the test fails).
            if (w == 1 && start == count / 2)
                SpinWait.SpinUntil(() => Enumerable.Range(count / 2 + 1, count / 2 - 1).All(i => Volatile.Read(ref by[i]) != 0), 10_000);
            Volatile.Write(ref by[start], w + 1);
        }, minParallelWork: 0);
        Assert.All(by, b => Assert.NotEqual(0, b));
        Assert.All(by[..(count / 2)], b => Assert.Equal(1, b));
        // Chunk 32 is worker 1's (or worker 0's, had worker 1 not started before 0 took everything); all after it
        // were taken by worker 0.
        Assert.All(by[(count / 2 + 1)..], b => Assert.Equal(1, b));
    }

    [Fact]
    public void Run_EveryWorkerOnceWithItsIndex()
    {
        using var pool = new WorkerPool(3);
        for (int rep = 0; rep < 1000; rep++)
        {
            var seen = new int[3];
            pool.Run((w, n) =>
            {
                Assert.Equal(3, n);
                Interlocked.Increment(ref seen[w]);
            });
            Assert.Equal([1, 1, 1], seen);
        }
    }

    [Fact]
    public void WorkersThatSlept_WakeForTheNextJob()
    {
        using var pool = new WorkerPool(2);
        for (int rep = 0; rep < 5; rep++)
        {
            Thread.Sleep(50); // long enough for the worker to stop spinning and block
            int workerRan = 0;
            pool.Run((w, _) => { if (w == 1) Interlocked.Exchange(ref workerRan, 1); });
            Assert.Equal(1, workerRan);
        }
    }

    [Fact]
    public void WorkerException_SurfacesOnTheCaller_AndPoolStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<AggregateException>(() => pool.Run((w, _) =>
        {
            if (w == 1) throw new InvalidOperationException("boom");
        }));
        Assert.IsType<InvalidOperationException>(e.InnerException);
        int sum = 0;
        pool.For(100, 1, (s, end, _) => Interlocked.Add(ref sum, end - s), minParallelWork: 0);
        Assert.Equal(100, sum);
    }

    [Fact]
    public void Dispose_StopsThreads_ThenRunThrows()
    {
        var pool = new WorkerPool(4);
        pool.Run((_, _) => { });
        pool.Dispose();
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Run((_, _) => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0));
    }
}
