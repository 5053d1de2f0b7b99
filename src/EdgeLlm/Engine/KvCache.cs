using System.Runtime.InteropServices;

namespace EdgeLlm.Engine;

/// <summary>
/// The f16 key/value cache of one context, as llama.cpp lays it out: per layer, K is
/// [contextLength, kv_heads × head_dim] (one row per position) and V is stored transposed,
/// [kv_heads × head_dim, contextLength], so that the probability-weighted sum over positions is a
/// contiguous dot product. Positions at or past the context's position are stale and never read.
/// </summary>
internal sealed unsafe class KvCache : IDisposable
{
    private Half* _k;
    private Half* _vT;

    public KvCache(int layers, int contextLength, int kvLength)
    {
        Layers = layers;
        ContextLength = contextLength;
        KvLength = kvLength;
        long perLayer = (long)contextLength * kvLength;
        _k = (Half*)NativeMemory.AllocZeroed((nuint)(layers * perLayer), sizeof(ushort));
        _vT = (Half*)NativeMemory.AllocZeroed((nuint)(layers * perLayer), sizeof(ushort));
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvLength { get; }

    /// <summary>Bytes a cache of these dimensions takes (K and V, f16).</summary>
    public static long Bytes(int layers, int contextLength, int kvLength) => 2L * layers * contextLength * kvLength * sizeof(ushort);

    /// <summary>Keys of <paramref name="layer"/>: [contextLength, kvLength].</summary>
    public Half* K(int layer) => _k + (long)layer * ContextLength * KvLength;

    /// <summary>Values of <paramref name="layer"/>, transposed: [kvLength, contextLength].</summary>
    public Half* VT(int layer) => _vT + (long)layer * ContextLength * KvLength;

    /// <summary>Rounds and stores the keys and values of <paramref name="n"/> tokens starting at <paramref name="pos"/>.</summary>
    public void Store(int layer, int pos, float* k, float* v, int n)
    {
        Half* kc = K(layer);
        Half* vc = VT(layer);
        for (int t = 0; t < n; t++)
        {
            Kernels.HalfMath.Round(k + (long)t * KvLength, kc + (long)(pos + t) * KvLength, KvLength);
            float* vr = v + (long)t * KvLength;
            for (int d = 0; d < KvLength; d++) vc[(long)d * ContextLength + pos + t] = (Half)vr[d];
        }
    }

    public void Dispose()
    {
        NativeMemory.Free(_k);
        NativeMemory.Free(_vT);
        _k = null;
        _vT = null;
    }
}
