using System.Runtime.InteropServices;

namespace EdgeLlm.Engine;

/// <summary>
/// The f16 key/value cache of one context. Per layer, K is stored transposed,
/// [kv_heads × head_dim, contextLength] (a row per dimension, positions contiguous), and V is
/// [contextLength, kv_heads × head_dim] (a row per position): the opposite of llama.cpp's layout,
/// so that <see cref="Kernels.Attention"/> computes 16 keys' scores, or 16 output dimensions, per
/// vector instead of ending every dot product in a horizontal sum. Values are rounded to f16 as
/// llama.cpp rounds them. Positions at or past the context's position are stale and never read.
/// </summary>
internal sealed unsafe class KvCache : IDisposable
{
    private Half* _kT;
    private Half* _v;

    public KvCache(int layers, int contextLength, int kvLength)
    {
        Layers = layers;
        ContextLength = contextLength;
        KvLength = kvLength;
        long perLayer = (long)contextLength * kvLength;
        _kT = (Half*)NativeMemory.AllocZeroed((nuint)(layers * perLayer), sizeof(ushort));
        _v = (Half*)NativeMemory.AllocZeroed((nuint)(layers * perLayer), sizeof(ushort));
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvLength { get; }

    /// <summary>Bytes a cache of these dimensions takes (K and V, f16).</summary>
    public static long Bytes(int layers, int contextLength, int kvLength) => 2L * layers * contextLength * kvLength * sizeof(ushort);

    /// <summary>Keys of <paramref name="layer"/>, transposed: [kvLength, contextLength].</summary>
    public Half* KT(int layer) => _kT + (long)layer * ContextLength * KvLength;

    /// <summary>Values of <paramref name="layer"/>: [contextLength, kvLength].</summary>
    public Half* V(int layer) => _v + (long)layer * ContextLength * KvLength;

    /// <summary>Rounds and stores the keys and values of <paramref name="n"/> tokens starting at <paramref name="pos"/>.</summary>
    public void Store(int layer, int pos, float* k, float* v, int n)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pos + n, ContextLength, nameof(n));
        Half* kc = KT(layer);
        Half* vc = V(layer);
        Half* row = stackalloc Half[Math.Min(KvLength, 4096)];
        for (int t = 0; t < n; t++)
        {
            Kernels.HalfMath.Round(v + (long)t * KvLength, vc + (long)(pos + t) * KvLength, KvLength);
            // K: round the row at once, then scatter it down the position column.
            for (int d0 = 0; d0 < KvLength; d0 += 4096)
            {
                int len = Math.Min(4096, KvLength - d0);
                Kernels.HalfMath.Round(k + (long)t * KvLength + d0, row, len);
                Half* col = kc + (long)d0 * ContextLength + pos + t;
                for (int d = 0; d < len; d++) col[(long)d * ContextLength] = row[d];
            }
        }
    }

    public void Dispose()
    {
        NativeMemory.Free(_kT);
        NativeMemory.Free(_v);
        _kT = null;
        _v = null;
    }
}
