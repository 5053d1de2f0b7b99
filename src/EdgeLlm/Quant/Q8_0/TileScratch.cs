using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Per-thread, 64-byte aligned buffers for the AVX-512 register tiles, which repack activation
/// rows into the layout their inner loop reads (see <c>Q4_0.DotTileAvx512Fma</c>). Pinned
/// managed arrays, so that a worker thread's buffers go away with the thread (worker pools come
/// and go with inference contexts; native per-thread buffers would leak).
/// </summary>
/// <remarks>
/// <para>
/// Callers often hand the same activations to many tile calls of a few weight rows each: a
/// forward pass walks a matrix in slices of 64 rows (or a head at a time), and per slice it walks
/// the prompt in tiles of <see cref="Kernels.MatMul.TileActs"/> activation rows, so the same
/// activation tiles come back once per slice. Packing is a pure function of the activation
/// bytes, so <see cref="Packed"/> keeps this thread's recent packings and reuses one when the
/// layout, the address and the bytes are the same.
/// </para>
/// <para>
/// Inside a job of a <see cref="Kernels.WorkerPool"/> (<see cref="CurrentJob"/> set) the bytes
/// are known to be the same: a job's inputs do not change while it runs (the forward pass writes
/// the activations of a product in an earlier job), so a packing made earlier in the same job is
/// reused without comparing, and a job keeps up to <see cref="MaxSlots"/> packings, one per
/// activation tile of a long prompt. Outside a job (tests, direct calls) a packing is reused only
/// after a byte compare against a copy of its source, from the last <see cref="Slots"/>.
/// </para>
/// </remarks>
internal static unsafe class TileScratch
{
    /// <summary>Packs <paramref name="na"/> (≤ 8) activation rows of <paramref name="nb"/> blocks into one tile at <paramref name="pack"/>.</summary>
    public delegate void PackTile(int nb, byte* acts, long actStride, int na, byte* pack);

    /// <summary>Packings kept per thread for byte-compared reuse (outside a job).</summary>
    internal const int Slots = 8;

    /// <summary>Most packings a thread keeps within one job (a 1024-token batch in tiles of 16).</summary>
    internal const int MaxSlots = 64;

    /// <summary>Nonzero while this thread runs a worker-pool job: the job's id, unique in the process.</summary>
    [ThreadStatic] internal static long CurrentJob;

    private static long s_lastJob;

    /// <summary>A fresh job id (<see cref="Kernels.WorkerPool"/> assigns one per job).</summary>
    internal static long NewJob() => Interlocked.Increment(ref s_lastJob);

    private sealed class Slot
    {
        public byte[]? Pack;
        public byte[]? Source;
        public PackTile? Packer; // null: empty, or invalid while being rebuilt
        public nint Acts;
        public int Nb, NActs;
        public long RowBytes, TileBytes, LastUse;
        public long Job;        // the job that packed it (0: outside a job)
        public bool HasSource;  // Source holds a copy of the packed bytes (packings made in a job keep none)
    }

    [ThreadStatic] private static List<Slot>? t_slots;
    [ThreadStatic] private static long t_clock;

    /// <summary>
    /// The activation tiles of rows [0, <paramref name="nActs"/>) (8 per tile, <paramref name="tileBytes"/>
    /// apart), packed by <paramref name="packer"/>, from this thread's cache when the same packer
    /// packed byte-identical rows at the same address recently; valid until this thread's next call.
    /// </summary>
    public static byte* Packed(PackTile packer, int nb, byte* acts, long actStride, long actRowBytes, int nActs, long tileBytes)
    {
        var slots = t_slots ??= CreateSlots();
        long now = ++t_clock;
        long job = CurrentJob;
        Slot victim = slots[0];
        int fromThisJob = 0;
        foreach (var slot in slots)
        {
            if (ReferenceEquals(packer, slot.Packer) && slot.Acts == (nint)acts && nb == slot.Nb && nActs == slot.NActs
                && actRowBytes == slot.RowBytes && tileBytes == slot.TileBytes
                && (job != 0 && slot.Job == job || slot.HasSource && SameSource(slot.Source!, acts, actStride, actRowBytes, nActs)))
            {
                slot.LastUse = now;
                return Aligned(slot.Pack!);
            }
            if (job != 0 && slot.Job == job) fromThisJob++;
            if (slot.LastUse < victim.LastUse) victim = slot;
        }
        // Within a job, every slot holding one of its packings is still wanted: add one.
        if (job != 0 && fromThisJob == slots.Count && slots.Count < MaxSlots)
        {
            victim = new Slot();
            slots.Add(victim);
        }

        int tiles = (nActs + 7) / 8;
        victim.Packer = null; // invalid while being rebuilt (an exception must not leave a stale key)
        if (victim.Pack is null || victim.Pack.Length < tiles * tileBytes + 64)
            victim.Pack = GC.AllocateUninitializedArray<byte>(checked((int)Math.Max(tiles * tileBytes + 64, (victim.Pack?.Length ?? 0) * 2L)), pinned: true);
        byte* pack = Aligned(victim.Pack);
        victim.HasSource = job == 0;
        if (job == 0)
        {
            if (victim.Source is null || victim.Source.Length < actRowBytes * nActs)
                victim.Source = GC.AllocateUninitializedArray<byte>(checked((int)(actRowBytes * nActs)));
            fixed (byte* src = victim.Source)
                for (int a = 0; a < nActs; a++)
                    Buffer.MemoryCopy(acts + a * actStride, src + a * actRowBytes, actRowBytes, actRowBytes);
        }
        for (int t = 0; t < tiles; t++)
            packer(nb, acts + 8L * t * actStride, actStride, Math.Min(8, nActs - 8 * t), pack + t * tileBytes);
        (victim.Acts, victim.Nb, victim.NActs, victim.RowBytes, victim.TileBytes, victim.LastUse, victim.Job) = ((nint)acts, nb, nActs, actRowBytes, tileBytes, now, job);
        victim.Packer = packer;
        return pack;
    }

    private static List<Slot> CreateSlots()
    {
        var slots = new List<Slot>(Slots);
        for (int i = 0; i < Slots; i++) slots.Add(new Slot());
        return slots;
    }

    private static bool SameSource(byte[] source, byte* acts, long actStride, long actRowBytes, int nActs)
    {
        for (int a = 0; a < nActs; a++)
        {
            if (!new ReadOnlySpan<byte>(acts + a * actStride, (int)actRowBytes).SequenceEqual(source.AsSpan((int)(a * actRowBytes), (int)actRowBytes)))
                return false;
        }
        return true;
    }

    /// <summary>The 64-byte aligned start of a pinned buffer (pinned arrays never move, so the address stays valid).</summary>
    private static byte* Aligned(byte[] buffer)
    {
        byte* p = (byte*)Unsafe.AsPointer(ref buffer[0]);
        return (byte*)(((nint)p + 63) & ~(nint)63);
    }
}
