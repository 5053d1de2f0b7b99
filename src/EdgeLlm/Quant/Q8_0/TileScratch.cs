using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Per-thread, 64-byte aligned buffers for the AVX-512 register tiles, which repack activation
/// rows into the layout their inner loop reads (see <c>Q4_0.DotTileAvx512Fma</c>). Pinned
/// managed arrays, so that a worker thread's buffers go away with the thread (worker pools come
/// and go with inference contexts; native per-thread buffers would leak).
/// </summary>
/// <remarks>
/// Callers often hand the same activations to many consecutive tile calls of a few weight rows
/// each (a forward pass walks a matrix in slices). Packing is a pure function of the activation
/// bytes, so <see cref="Packed"/> keeps the last packing with a copy of its source and reuses it
/// when the layout and every source byte are the same (a compare is far cheaper than a repack).
/// </remarks>
internal static unsafe class TileScratch
{
    /// <summary>Packs <paramref name="na"/> (≤ 8) activation rows of <paramref name="nb"/> blocks into one tile at <paramref name="pack"/>.</summary>
    public delegate void PackTile(int nb, byte* acts, long actStride, int na, byte* pack);

    [ThreadStatic] private static byte[]? t_pack;
    [ThreadStatic] private static byte[]? t_source;
    [ThreadStatic] private static PackTile? t_packer;
    [ThreadStatic] private static int t_nb, t_nActs;
    [ThreadStatic] private static long t_rowBytes, t_tileBytes;

    /// <summary>
    /// The activation tiles of rows [0, <paramref name="nActs"/>) (8 per tile, <paramref name="tileBytes"/>
    /// apart), packed by <paramref name="packer"/>, from this thread's cache when the same packer last
    /// packed byte-identical rows; valid until this thread's next call.
    /// </summary>
    public static byte* Packed(PackTile packer, int nb, byte* acts, long actStride, long actRowBytes, int nActs, long tileBytes)
    {
        int tiles = (nActs + 7) / 8;
        byte* pack = Aligned(ref t_pack, tiles * tileBytes);
        if (ReferenceEquals(packer, t_packer) && nb == t_nb && nActs == t_nActs && actRowBytes == t_rowBytes && tileBytes == t_tileBytes
            && SameSource(acts, actStride, actRowBytes, nActs))
            return pack;
        t_packer = null; // invalid while being rebuilt (an exception must not leave a stale key)
        var source = t_source is { } s && s.Length >= actRowBytes * nActs ? s : t_source = GC.AllocateUninitializedArray<byte>(checked((int)(actRowBytes * nActs)));
        fixed (byte* src = source)
            for (int a = 0; a < nActs; a++)
                Buffer.MemoryCopy(acts + a * actStride, src + a * actRowBytes, actRowBytes, actRowBytes);
        for (int t = 0; t < tiles; t++)
            packer(nb, acts + 8L * t * actStride, actStride, Math.Min(8, nActs - 8 * t), pack + t * tileBytes);
        (t_packer, t_nb, t_nActs, t_rowBytes, t_tileBytes) = (packer, nb, nActs, actRowBytes, tileBytes);
        return pack;
    }

    private static bool SameSource(byte* acts, long actStride, long actRowBytes, int nActs)
    {
        var source = t_source!;
        for (int a = 0; a < nActs; a++)
        {
            if (!new ReadOnlySpan<byte>(acts + a * actStride, (int)actRowBytes).SequenceEqual(source.AsSpan((int)(a * actRowBytes), (int)actRowBytes)))
                return false;
        }
        return true;
    }

    private static byte* Aligned(ref byte[]? buffer, long bytes)
    {
        if (buffer is null || buffer.Length < bytes + 64)
        {
            t_packer = null; // the packed contents go with the old buffer
            buffer = GC.AllocateUninitializedArray<byte>(checked((int)Math.Max(bytes + 64, (buffer?.Length ?? 0) * 2L)), pinned: true);
        }
        // Pinned (POH) arrays never move, so the address stays valid.
        byte* p = (byte*)Unsafe.AsPointer(ref buffer[0]);
        return (byte*)(((nint)p + 63) & ~(nint)63);
    }
}
