using System.Runtime.InteropServices;

namespace EdgeLlm.Engine;

/// <summary>
/// The f16 key/value cache of one context, laid out so that a token's attention reads each KV
/// head's keys and values as one contiguous stream. Per layer and KV head:
/// <list type="bullet">
/// <item>K in blocks of <see cref="BlockPositions"/> positions, each block [head_dim, 64]: a row per
/// dimension holding 64 consecutive positions (<see cref="Keys"/>). A vector then holds one
/// dimension of consecutive keys, so <see cref="Kernels.Attention"/> computes 16 keys' scores per
/// vector instead of ending every dot product in a horizontal sum, and a block is one 8 KiB run
/// (head_dim 64) that the attention widens to f32 in one pass.</item>
/// <item>V as [positions, head_dim] (<see cref="Values"/>): a row per position, so a head's output
/// is a vector of dimensions accumulated over positions.</item>
/// </list>
/// The cache used to keep K as [kv_heads × head_dim, context] rows and V as [context, kv_heads ×
/// head_dim] rows: a block of keys was then head_dim rows of 128 bytes, each in its own page at long
/// contexts, more streams than the hardware prefetcher follows, and decode spent a third of a token
/// at 4000 positions waiting on them (see README, "Long prompts"). Values are rounded to f16 as
/// llama.cpp rounds them. Positions at or past the context's position are stale and never used.
/// </summary>
internal sealed unsafe class KvCache : IDisposable
{
    /// <summary>Positions per block of keys (and the attention's position block).</summary>
    public const int BlockPositions = 64;

    private Half* _k;
    private Half* _v;

    /// <summary>Allocates a zeroed cache for <paramref name="contextLength"/> positions.</summary>
    public KvCache(int layers, int contextLength, int kvHeads, int headDim)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        Layers = layers;
        ContextLength = contextLength;
        KvHeads = kvHeads;
        HeadDim = headDim;
        HeadStride = (long)PaddedPositions(contextLength) * headDim;
        long halves = layers * kvHeads * HeadStride;
        _k = (Half*)NativeMemory.AllocZeroed((nuint)halves, sizeof(ushort));
        _v = (Half*)NativeMemory.AllocZeroed((nuint)halves, sizeof(ushort));
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>Width of a token's keys (or values): kv_heads × head_dim.</summary>
    public int KvLength => KvHeads * HeadDim;

    /// <summary>Halves between one KV head's keys (or values) and the next's: the context rounded up to whole blocks, × head_dim.</summary>
    public long HeadStride { get; }

    /// <summary>The context rounded up to whole blocks of <see cref="BlockPositions"/>.</summary>
    public static int PaddedPositions(int contextLength) => (contextLength + BlockPositions - 1) / BlockPositions * BlockPositions;

    /// <summary>Bytes a cache of these dimensions takes (K and V, f16, the context rounded up to whole blocks).</summary>
    public static long Bytes(int layers, int contextLength, int kvLength) => 2L * layers * PaddedPositions(contextLength) * kvLength * sizeof(ushort);

    /// <summary>
    /// Keys of KV head <paramref name="kvHead"/> of <paramref name="layer"/>: block b (positions
    /// [64b, 64b + 64)) at b × 64 × head_dim, dimension d of position p at
    /// (p / 64) × 64 × head_dim + d × 64 + p % 64.
    /// </summary>
    public Half* Keys(int layer, int kvHead) => _k + ((long)layer * KvHeads + kvHead) * HeadStride;

    /// <summary>Values of KV head <paramref name="kvHead"/> of <paramref name="layer"/>: [positions, head_dim].</summary>
    public Half* Values(int layer, int kvHead) => _v + ((long)layer * KvHeads + kvHead) * HeadStride;

    /// <summary>
    /// Rounds and stores the keys and values of <paramref name="n"/> tokens starting at
    /// <paramref name="pos"/>: <paramref name="k"/> and <paramref name="v"/> are [n, kv_heads × head_dim].
    /// </summary>
    public void Store(int layer, int pos, float* k, float* v, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pos);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pos + n, ContextLength, nameof(n));
        if ((uint)layer >= (uint)Layers) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"the cache has {Layers} layers");
        Half* row = stackalloc Half[Math.Min(HeadDim, 4096)];
        for (int t = 0; t < n; t++)
        {
            int p = pos + t;
            long inBlock = (long)(p / BlockPositions) * BlockPositions * HeadDim + p % BlockPositions;
            for (int h = 0; h < KvHeads; h++)
            {
                float* src = v + (long)t * KvLength + h * HeadDim;
                Kernels.HalfMath.Round(src, Values(layer, h) + (long)p * HeadDim, HeadDim);
                // K: round the head's row at once, then scatter it down the block's position column.
                Half* col = Keys(layer, h) + inBlock;
                for (int d0 = 0; d0 < HeadDim; d0 += 4096)
                {
                    int len = Math.Min(4096, HeadDim - d0);
                    Kernels.HalfMath.Round(k + (long)t * KvLength + h * HeadDim + d0, row, len);
                    for (int d = 0; d < len; d++) col[(long)(d0 + d) * BlockPositions] = row[d];
                }
            }
        }
    }

    public void Dispose()
    {
        NativeMemory.Free(_k);
        NativeMemory.Free(_v);
        _k = null;
        _v = null;
    }
}
