namespace EdgeLlm.Native;

/// <summary>
/// Maps the opaque handles given to C (<c>edgellm_model_t*</c>, <c>edgellm_context_t*</c>) to managed objects.
/// A handle is not a pointer: it packs a slot index (low bits, +1 so no handle is NULL) and the slot's
/// generation (high bits), which advances every time the slot is freed. A freed handle, a handle from
/// another slot's past, or any value never issued therefore fails the lookup instead of touching memory,
/// which is how double frees and use-after-free are reported as EDGELLM_ERROR_INVALID_HANDLE.
/// </summary>
internal static class HandleTable
{
    // 64-bit: 32 bits of slot, 32 of generation. 32-bit: 20 and 12 (generations then wrap after 4096 reuses of one slot).
    private static readonly int s_slotBits = IntPtr.Size == 8 ? 32 : 20;
    private static readonly ulong s_slotMask = (1UL << s_slotBits) - 1;
    private static readonly uint s_generationMask = IntPtr.Size == 8 ? uint.MaxValue : (1u << 12) - 1;

    private static readonly Lock s_lock = new();
    private static Entry[] s_entries = new Entry[16];
    private static int s_used;                        // slots ever used: [0, s_used)
    private static readonly Stack<int> s_freeSlots = new();

    private struct Entry
    {
        public object? Target;
        public uint Generation;
    }

    /// <summary>The lock every lookup takes; callers hold it to look up and claim an object atomically.</summary>
    public static Lock Sync => s_lock;

    /// <summary>Registers <paramref name="target"/> and returns its new handle.</summary>
    public static nint Add(object target)
    {
        lock (s_lock)
        {
            int slot;
            if (s_freeSlots.Count > 0) slot = s_freeSlots.Pop();
            else
            {
                if ((ulong)s_used + 1 >= s_slotMask) throw new OutOfMemoryException("too many live handles");
                if (s_used == s_entries.Length) Array.Resize(ref s_entries, s_entries.Length * 2);
                slot = s_used++;
                s_entries[slot].Generation = 1;
            }
            s_entries[slot].Target = target;
            return (nint)(long)(((ulong)s_entries[slot].Generation << s_slotBits) | (uint)(slot + 1));
        }
    }

    /// <summary>The object behind <paramref name="handle"/>; the caller holds <see cref="Sync"/>.</summary>
    /// <exception cref="EdgeLlmException">NULL_HANDLE for 0; INVALID_HANDLE for a freed, unknown or wrong-kind handle.</exception>
    public static T GetLocked<T>(nint handle, string kind) where T : class
    {
        if (handle == 0) throw new EdgeLlmException(EdgeLlmError.NullHandle, $"the {kind} handle is NULL");
        ulong h = (ulong)(long)handle;
        if (IntPtr.Size == 4) h &= uint.MaxValue;
        long slot = (long)(h & s_slotMask) - 1;
        uint generation = (uint)(h >> s_slotBits);
        if (slot < 0 || slot >= s_used || s_entries[slot].Generation != generation || s_entries[slot].Target is null)
            throw new EdgeLlmException(EdgeLlmError.InvalidHandle, $"the {kind} handle 0x{h:x} is not valid (already freed, or never created)");
        if (s_entries[slot].Target is not T target)
            throw new EdgeLlmException(EdgeLlmError.InvalidHandle, $"the handle 0x{h:x} is not a {kind} handle");
        return target;
    }

    /// <summary>Removes <paramref name="handle"/>'s entry (it becomes invalid); the caller holds <see cref="Sync"/> and has validated it.</summary>
    public static void RemoveLocked(nint handle)
    {
        ulong h = (ulong)(long)handle;
        int slot = (int)((h & s_slotMask) - 1);
        s_entries[slot].Target = null;
        // A new generation so the old handle value never matches again; skip 0 so no handle has generation 0.
        uint next = (s_entries[slot].Generation + 1) & s_generationMask;
        s_entries[slot].Generation = next == 0 ? 1 : next;
        s_freeSlots.Push(slot);
    }
}
