using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Per-thread, 64-byte aligned scratch for the AVX-512 register tiles, which repack a few
/// activation rows into the layout their inner loop reads (see <c>Q4_0.DotTileAvx512Fma</c>).
/// A pinned managed array, so that a worker thread's buffer goes away with the thread (worker
/// pools come and go with inference contexts; native per-thread buffers would leak).
/// </summary>
internal static unsafe class TileScratch
{
    [ThreadStatic] private static byte[]? t_buffer;

    /// <summary>At least <paramref name="bytes"/> bytes, 64-byte aligned, valid until this thread's next call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* Get(long bytes)
    {
        var b = t_buffer;
        if (b is null || b.Length < bytes + 64) b = Grow(bytes);
        // Pinned (POH) arrays never move, so the address stays valid.
        byte* p = (byte*)Unsafe.AsPointer(ref b[0]);
        return (byte*)(((nint)p + 63) & ~(nint)63);
    }

    private static byte[] Grow(long bytes)
    {
        long size = Math.Max(bytes + 64, (t_buffer?.Length ?? 0) * 2L);
        t_buffer = GC.AllocateUninitializedArray<byte>(checked((int)size), pinned: true);
        return t_buffer;
    }
}
