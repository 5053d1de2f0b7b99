using EdgeLlm.Engine;

namespace EdgeLlm.Cli.Server;

/// <summary>
/// One generation slot: an inference context (its own KV cache and scratch; the model's weights are
/// shared by all slots) and the <see cref="TextGenerator"/> over it, which remembers the tokens the
/// cache holds so that a request sharing a prefix with the slot's last one evaluates only the rest.
/// </summary>
public sealed class Slot(int id, IEvalContext context, TextGenerator generator)
{
    /// <summary>0-based slot number (for logs).</summary>
    public int Id { get; } = id;

    /// <summary>The slot's context.</summary>
    public IEvalContext Context { get; } = context;

    /// <summary>The slot's generator.</summary>
    public TextGenerator Generator { get; } = generator;

    /// <summary>When the slot was last handed out (a tick counter): the least recently used wins ties.</summary>
    internal long LastUsed { get; set; }
}

/// <summary>The server is at capacity: every slot busy and the queue full (HTTP 503 with Retry-After).</summary>
public sealed class ServerBusyException(string message) : Exception(message);

/// <summary>
/// Hands slots to requests: a free slot at once (the one whose cached tokens share the longest
/// prefix with the request's prompt, as llama-server's slot selection does), else a place in a
/// bounded FIFO queue; a full queue refuses the request (<see cref="ServerBusyException"/>).
/// Thread-safe.
/// </summary>
public sealed class SlotPool : IDisposable
{
    private readonly object _lock = new();
    private readonly List<Slot> _all;
    private readonly List<Slot> _free;
    private readonly LinkedList<TaskCompletionSource<Slot>> _waiters = new();
    private long _clock;
    private bool _disposed;

    /// <summary>Creates a pool over <paramref name="slots"/> (which it owns: <see cref="Dispose"/> disposes their contexts).</summary>
    /// <param name="slots">at least one slot</param>
    /// <param name="maxQueue">requests that may wait for a slot (0: none wait; a request finding every slot busy is refused)</param>
    public SlotPool(IReadOnlyList<Slot> slots, int maxQueue)
    {
        ArgumentNullException.ThrowIfNull(slots);
        if (slots.Count == 0) throw new ArgumentException("a pool needs at least one slot", nameof(slots));
        ArgumentOutOfRangeException.ThrowIfNegative(maxQueue);
        _all = [.. slots];
        _free = [.. slots];
        MaxQueue = maxQueue;
    }

    /// <summary>A pool of no slots: an embedding server's, whose encoder runs outside slots (nothing acquires from it).</summary>
    internal static SlotPool Empty() => new();

    private SlotPool()
    {
        _all = [];
        _free = [];
    }

    /// <summary>Requests that may wait.</summary>
    public int MaxQueue { get; }

    /// <summary>The slots.</summary>
    public IReadOnlyList<Slot> Slots => _all;

    /// <summary>(idle slots, busy slots, waiting requests) at this moment.</summary>
    public (int Idle, int Busy, int Queued) State()
    {
        lock (_lock) return (_free.Count, _all.Count - _free.Count, _waiters.Count);
    }

    /// <summary>
    /// A slot for a request whose prompt is <paramref name="prompt"/>; give it back with <see cref="Release"/>.
    /// Waits in the queue when every slot is busy; <paramref name="cancellationToken"/> (the client went away) leaves the queue.
    /// </summary>
    /// <exception cref="ServerBusyException">every slot is busy and the queue is full</exception>
    /// <exception cref="OperationCanceledException">cancelled while waiting</exception>
    public Task<Slot> AcquireAsync(IReadOnlyList<int> prompt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        TaskCompletionSource<Slot> waiter;
        LinkedListNode<TaskCompletionSource<Slot>> node;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            cancellationToken.ThrowIfCancellationRequested();
            if (_free.Count > 0)
            {
                var best = Best(prompt);
                _free.Remove(best);
                best.LastUsed = ++_clock;
                return Task.FromResult(best);
            }
            if (_waiters.Count >= MaxQueue)
                throw new ServerBusyException($"all {_all.Count} slots are busy and {_waiters.Count} requests are queued (the limit); retry later");
            // Continuations run asynchronously: Release completes waiters under the lock.
            waiter = new TaskCompletionSource<Slot>(TaskCreationOptions.RunContinuationsAsynchronously);
            node = _waiters.AddLast(waiter);
        }
        if (cancellationToken.CanBeCanceled)
        {
            var registration = cancellationToken.Register(() =>
            {
                lock (_lock)
                {
                    // Still queued: leave the queue. Already handed a slot: the caller gets it and releases it.
                    if (node.List is not null)
                    {
                        _waiters.Remove(node);
                        waiter.TrySetCanceled(cancellationToken);
                    }
                }
            });
            waiter.Task.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        return waiter.Task;
    }

    /// <summary>Gives a slot back: to the oldest waiting request, else to the free list.</summary>
    public void Release(Slot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        lock (_lock)
        {
            if (!_all.Contains(slot) || _free.Contains(slot)) throw new InvalidOperationException($"slot {slot.Id} is not handed out by this pool");
            while (_waiters.First is { } first)
            {
                _waiters.RemoveFirst();
                slot.LastUsed = ++_clock;
                if (first.Value.TrySetResult(slot)) return;
            }
            _free.Add(slot);
        }
    }

    /// <summary>
    /// The free slot whose cached tokens share the longest prefix with <paramref name="prompt"/>, when
    /// that prefix covers at least half the prompt (llama-server's default slot similarity, 0.5);
    /// otherwise, and on ties, the least recently used slot, so that a prompt sharing only a BOS token
    /// or a template header does not evict another conversation's cache while an idle slot exists.
    /// </summary>
    private Slot Best(IReadOnlyList<int> prompt)
    {
        Slot best = _free[0], lru = _free[0];
        int bestLen = -1;
        foreach (var s in _free)
        {
            int len = CommonPrefix(s.Generator.CachedTokens, prompt);
            if (len > bestLen || (len == bestLen && s.LastUsed < best.LastUsed))
            {
                best = s;
                bestLen = len;
            }
            if (s.LastUsed < lru.LastUsed) lru = s;
        }
        return bestLen * 2 >= prompt.Count ? best : lru;
    }

    /// <summary>Length of the common prefix of two token sequences.</summary>
    public static int CommonPrefix(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        int n = Math.Min(a.Count, b.Count), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    /// <summary>Fails every waiting request and disposes the slots' contexts (call once no generation runs).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var w in _waiters) w.TrySetException(new ObjectDisposedException(nameof(SlotPool), "the server is shutting down"));
            _waiters.Clear();
        }
        foreach (var s in _all) s.Context.Dispose();
    }
}
