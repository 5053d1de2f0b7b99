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
