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
/// <para>
/// A quantized cache (<see cref="KvCacheType.Q8_0"/>, <see cref="KvCacheType.Q4_0"/>; llama.cpp's
/// <c>-ctk</c>/<c>-ctv</c>) keeps the same blocks of 64 positions, each block its quants then its f16 scales
/// (one per 32 consecutive dimensions of one position, as ggml's blocks quantize a row of the head):
/// keys' quants [head_dim, 64] (q8_0: a byte per position; q4_0: 32 bytes a dimension, position p in the
/// low nibble of byte p and position p + 32 in its high nibble) and scales [head_dim / 32, 64]; values'
/// quants [64, head_dim] (q4_0: each 32 dimensions as a ggml <c>block_q4_0</c>'s 16 bytes) and scales
/// [64, head_dim / 32]. <see cref="Kernels.Attention"/> dequantizes a block into the same f32 tile an f16
/// block widens into. Rows are quantized as llama.cpp stores them (<c>quantize_row_q8_0</c>'s SIMD
/// rounding, <c>quantize_row_q4_0_ref</c>).
/// </para>
/// <para>
/// Sliding-window layers (Gemma 2 and 3's local layers) keep only the positions their window can still
/// reach, in a ring of whole blocks (<see cref="RingBlocks"/>; llama.cpp's non-full SWA cache, its default):
/// position p lives in block (p / 64) mod ring, at p mod 64 in it. The ring holds the window plus a whole
/// batch (<see cref="RingPositions"/>), so a batch of up to <c>maxBatch</c> tokens stores its keys and
/// values before attending without evicting any key its first token still sees. Gemma 3 1B's local layers
/// (window 512) then hold 1,088 positions at any context length instead of the whole context. A ring layer
/// tracks which block each slot holds (<see cref="Intact"/>), so a caller that rewinds further back than the
/// ring reaches learns that the window's keys are gone and evaluates the tokens again
/// (<see cref="InferenceContext.Rewind"/>).
/// </para>
/// </summary>
internal sealed unsafe class KvCache : IDisposable
{
    /// <summary>Positions per block of keys (and the attention's position block).</summary>
    public const int BlockPositions = 64;

    private byte* _k;
    private byte* _v;
    private readonly long[] _kLayer, _vLayer;   // byte offset of each layer's keys / values
    private readonly int[] _ring;               // blocks of a ring layer, 0 for a layer that holds the whole context
    private readonly bool[] _none;              // a layer without keys and values (LFM2 convolution layers)
    private readonly int[][] _slotBlock;        // ring layers: the block each slot holds (-1: none yet)
    private readonly int[][] _slotFrom;         // ring layers: the first position of that block written since the slot took it

    /// <summary>Allocates a zeroed cache for <paramref name="contextLength"/> positions.</summary>
    /// <param name="window">the sliding window of the layers <paramref name="windowed"/> names (0: none); those layers keep a ring of
    /// <see cref="RingPositions"/> positions where that is less than the context.</param>
    /// <param name="windowed">which layers have the window (null: all of them when <paramref name="window"/> &gt; 0).</param>
    /// <param name="maxBatch">the most tokens one <see cref="Store"/> writes into a ring layer.</param>
    /// <exception cref="ArgumentException">a quantized type and a head size that is not a multiple of 32.</exception>
    public KvCache(int layers, int contextLength, int kvHeads, int headDim, KvCacheType keyType = KvCacheType.F16, KvCacheType valueType = KvCacheType.F16,
        int window = 0, Predicate<int>? windowed = null, int maxBatch = InferenceContext.MaxBatch, Predicate<int>? uncached = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        CheckHeadDim(keyType, headDim, "K");
        CheckHeadDim(valueType, headDim, "V");
        Layers = layers;
        ContextLength = contextLength;
        KvHeads = kvHeads;
        HeadDim = headDim;
        KeyType = keyType;
        ValueType = valueType;
        HeadStride = (long)PaddedPositions(contextLength) * headDim;
        KeyRotation = Rotation(keyType, headDim, key: true);
        ValueRotation = Rotation(valueType, headDim, key: false);
        KeyHeadBytes = keyType.Bytes(HeadStride);
        ValueHeadBytes = valueType.Bytes(HeadStride);
        MaxBatch = maxBatch;
        Window = window;
        _ring = new int[layers];
        _none = new bool[layers];
        _kLayer = new long[layers + 1];
        _vLayer = new long[layers + 1];
        _slotBlock = new int[layers][];
        _slotFrom = new int[layers][];
        for (int l = 0; l < layers; l++)
        {
            _none[l] = uncached is not null && uncached(l);
            _ring[l] = _none[l] ? 0 : RingBlocksOf(contextLength, window, maxBatch, window > 0 && (windowed is null || windowed(l)));
            if (_ring[l] > 0)
            {
                _slotBlock[l] = new int[_ring[l]];
                _slotFrom[l] = new int[_ring[l]];
                Array.Fill(_slotBlock[l], -1);
            }
            _kLayer[l + 1] = _kLayer[l] + kvHeads * KeyHeadBytesOf(l);
            _vLayer[l + 1] = _vLayer[l] + kvHeads * ValueHeadBytesOf(l);
        }
        _k = (byte*)NativeMemory.AllocZeroed((nuint)_kLayer[layers]);
        _v = (byte*)NativeMemory.AllocZeroed((nuint)_vLayer[layers]);
    }

    /// <summary>Positions a sliding-window layer's ring holds: the window and a batch of <paramref name="maxBatch"/> tokens, in whole blocks.</summary>
    /// <remarks>
    /// A batch at positions [P, P + n) stores its keys first, then its first token reads back to P + 1 − window:
    /// (n + window − 2) / 64 + 2 blocks at most (⌊b / 64⌋ − ⌊a / 64⌋ ≤ ⌊(b − a) / 64⌋ + 1), so none of them is a
    /// block the batch evicts.
    /// </remarks>
    public static int RingPositions(int window, int maxBatch) => ((maxBatch + window - 2) / BlockPositions + 2) * BlockPositions;

    /// <summary>Blocks of a ring layer, or 0 when the layer keeps every position (no window, or the ring would not be smaller).</summary>
    private static int RingBlocksOf(int contextLength, int window, int maxBatch, bool windowed)
    {
        if (!windowed || window <= 0) return 0;
        int ring = RingPositions(window, maxBatch);
        return ring < PaddedPositions(contextLength) ? ring / BlockPositions : 0;
    }

    /// <summary>The sliding window of the ring layers (0: none).</summary>
    public int Window { get; }

    /// <summary>The most tokens one <see cref="Store"/> may write into a ring layer.</summary>
    public int MaxBatch { get; }

    /// <summary>Blocks of <paramref name="layer"/>'s ring, 0 when it holds every position of the context.</summary>
    public int RingBlocks(int layer) => _ring[layer];

    /// <summary>True when some layer keeps a ring instead of the whole context.</summary>
    public bool HasRing => Array.Exists(_ring, r => r > 0);

    /// <summary>Where position <paramref name="p"/> lives in <paramref name="layer"/>'s keys and values (itself, outside a ring).</summary>
    public int Slot(int layer, int p) => Wrap(p, _ring[layer]);

    /// <summary>Position <paramref name="p"/>'s place in a ring of <paramref name="ring"/> blocks (0: no ring).</summary>
    public static int Wrap(int p, int ring) => ring == 0 ? p : p / BlockPositions % ring * BlockPositions + p % BlockPositions;

    /// <summary>
    /// True when every ring layer still holds positions [<paramref name="from"/>, <paramref name="to"/>) as
    /// last written (layers without a ring always do): false after a rewind to before what a ring reaches.
    /// Positions from <paramref name="to"/> on are not asked about (the caller's stale ones).
    /// </summary>
    public bool Intact(int from, int to)
    {
        from = Math.Max(0, from);
        for (int l = 0; l < Layers; l++)
        {
            int ring = _ring[l];
            if (ring == 0 || from >= to) continue;
            for (int b = from / BlockPositions; b <= (to - 1) / BlockPositions; b++)
            {
                int slot = b % ring;
                if (_slotBlock[l][slot] != b || _slotFrom[l][slot] > Math.Max(from, b * BlockPositions)) return false;
            }
        }
        return true;
    }

    /// <summary>Positions <paramref name="layer"/> keeps per KV head, in whole blocks: the padded context, or its ring.</summary>
    public int LayerPositions(int layer) => _none[layer] ? 0 : _ring[layer] > 0 ? _ring[layer] * BlockPositions : PaddedPositions(ContextLength);

    /// <summary>Bytes between one KV head's keys and the next's in <paramref name="layer"/>.</summary>
    public long KeyHeadBytesOf(int layer) => KeyType.Bytes((long)LayerPositions(layer) * HeadDim);

    /// <summary>Bytes between one KV head's values and the next's in <paramref name="layer"/>.</summary>
    public long ValueHeadBytesOf(int layer) => ValueType.Bytes((long)LayerPositions(layer) * HeadDim);

    /// <summary>Bytes the whole cache holds (keys and values).</summary>
    public long TotalBytes => _kLayer[Layers] + _vLayer[Layers];

    /// <summary>Throws when <paramref name="type"/> cannot hold heads of <paramref name="headDim"/> values (ggml's rule: whole blocks of 32).</summary>
    public static void CheckHeadDim(KvCacheType type, int headDim, string which)
    {
        if (type.IsQuantized() && headDim % 32 != 0)
            throw new ArgumentException($"a {type.Name()} {which} cache quantizes each head in blocks of 32 values, but this model's heads have {headDim}; use f16");
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>How keys are stored.</summary>
    public KvCacheType KeyType { get; }

    /// <summary>How values are stored.</summary>
    public KvCacheType ValueType { get; }

    /// <summary>
    /// The Walsh-Hadamard block (<see cref="Kernels.KvBlocks.Hadamard"/>) the keys and queries are rotated in
    /// before a quantized K cache rounds them, 0 for none. As llama.cpp (<c>attn_rot_k</c>, its PR 21038, on by
    /// default): a quantized K cache with heads of a multiple of 64 rotates each head in the largest power of
    /// two that divides it (64, 128, 256); other heads and f16 caches are not rotated.
    /// </summary>
    public int KeyRotation { get; }

    /// <summary>
    /// The Walsh-Hadamard block the values are rotated in before a quantized V cache rounds them (and the
    /// attention's output rotated back), 0 for none: 64 for a quantized V cache with heads of a multiple of 64,
    /// as llama.cpp (<c>attn_rot_v</c>).
    /// </summary>
    public int ValueRotation { get; }

    /// <summary>llama.cpp's rotation rule (see <see cref="KeyRotation"/>, <see cref="ValueRotation"/>).</summary>
    public static int Rotation(KvCacheType type, int headDim, bool key)
    {
        if (!type.IsQuantized() || headDim % 64 != 0) return 0;
        if (!key) return 64;
        int n = 64;
        while (headDim % (n * 2) == 0) n *= 2;
        return n;
    }

    /// <summary>Width of a token's keys (or values): kv_heads × head_dim.</summary>
    public int KvLength => KvHeads * HeadDim;

    /// <summary>Values between one KV head's keys (or values) and the next's in a layer that keeps the whole context: the context rounded up to whole blocks, × head_dim (halves in an f16 cache).</summary>
    public long HeadStride { get; }

    /// <summary>Bytes between one KV head's keys and the next's in a layer that keeps the whole context (<see cref="KeyHeadBytesOf"/> for any layer).</summary>
    public long KeyHeadBytes { get; }

    /// <summary>Bytes between one KV head's values and the next's in a layer that keeps the whole context (<see cref="ValueHeadBytesOf"/> for any layer).</summary>
    public long ValueHeadBytes { get; }

    /// <summary>The context rounded up to whole blocks of <see cref="BlockPositions"/>.</summary>
    public static int PaddedPositions(int contextLength) => (contextLength + BlockPositions - 1) / BlockPositions * BlockPositions;

    /// <summary>Bytes a cache of these dimensions takes (K and V, the context rounded up to whole blocks).</summary>
    public static long Bytes(int layers, int contextLength, int kvLength, KvCacheType keyType = KvCacheType.F16, KvCacheType valueType = KvCacheType.F16)
    {
        long values = (long)layers * PaddedPositions(contextLength) * kvLength;
        return keyType.Bytes(values) + valueType.Bytes(values);
    }

    /// <summary>
    /// Bytes the cache of a model of <paramref name="config"/> takes for <paramref name="contextLength"/> tokens:
    /// sliding-window layers hold their ring (unless <paramref name="fullWindowLayers"/>), the others the whole context.
    /// </summary>
    public static long Bytes(Models.ModelConfig config, int contextLength, KvCacheType keyType, KvCacheType valueType, bool fullWindowLayers = false, int maxBatch = InferenceContext.MaxBatch)
    {
        long positions = 0;
        for (int l = 0; l < config.BlockCount; l++)
        {
            if (config.IsShortConvLayer(l)) continue; // LFM2's convolution layers keep no keys (ShortConvCache holds their state)
            int ring = fullWindowLayers ? 0 : RingBlocksOf(contextLength, config.SlidingWindow, maxBatch, config.IsSlidingWindowLayer(l));
            positions += ring > 0 ? ring * BlockPositions : PaddedPositions(contextLength);
        }
        long values = positions * config.KvLength;
        return keyType.Bytes(values) + valueType.Bytes(values);
    }

    /// <summary>Bytes of one block of <see cref="BlockPositions"/> positions of one head in a cache of <paramref name="type"/>.</summary>
    public static int BlockBytes(KvCacheType type, int headDim) => (int)type.Bytes((long)BlockPositions * headDim);

    /// <summary>The keys of KV head <paramref name="kvHead"/> of <paramref name="layer"/>, in <see cref="KeyType"/>'s layout.</summary>
    public byte* KeyBytes(int layer, int kvHead) => _k + _kLayer[layer] + kvHead * KeyHeadBytesOf(layer);

    /// <summary>The values of KV head <paramref name="kvHead"/> of <paramref name="layer"/>, in <see cref="ValueType"/>'s layout.</summary>
    public byte* ValueBytes(int layer, int kvHead) => _v + _vLayer[layer] + kvHead * ValueHeadBytesOf(layer);

    /// <summary>
    /// Keys of KV head <paramref name="kvHead"/> of <paramref name="layer"/> in an f16 cache: block b (positions
    /// [64b, 64b + 64)) at b × 64 × head_dim, dimension d of position p at
    /// (p / 64) × 64 × head_dim + d × 64 + p % 64.
    /// </summary>
    public Half* Keys(int layer, int kvHead) => KeyType == KvCacheType.F16 ? (Half*)KeyBytes(layer, kvHead) : throw new InvalidOperationException($"the K cache is {KeyType.Name()}, not f16");

    /// <summary>Values of KV head <paramref name="kvHead"/> of <paramref name="layer"/> in an f16 cache: [positions, head_dim].</summary>
    public Half* Values(int layer, int kvHead) => ValueType == KvCacheType.F16 ? (Half*)ValueBytes(layer, kvHead) : throw new InvalidOperationException($"the V cache is {ValueType.Name()}, not f16");

    /// <summary>
    /// Rounds (or quantizes) and stores the keys and values of <paramref name="n"/> tokens starting at
    /// <paramref name="pos"/>: <paramref name="k"/> and <paramref name="v"/> are [n, kv_heads × head_dim]
    /// (in a ring layer at their <see cref="Slot"/>s, at most <see cref="MaxBatch"/> of them).
    /// </summary>
    public void Store(int layer, int pos, float* k, float* v, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pos);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pos + n, ContextLength, nameof(n));
        if ((uint)layer >= (uint)Layers) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"the cache has {Layers} layers");
        int ring = _ring[layer];
        if (ring > 0 && n > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(n), n, $"a sliding-window layer's ring holds batches of up to {MaxBatch} tokens");
        int rowBytes = Math.Min(HeadDim, 4096) * sizeof(float);
        byte* row = stackalloc byte[rowBytes];
        for (int t = 0; t < n; t++)
        {
            int p = Wrap(pos + t, ring);
            if (ring > 0)
            {
                int b = (pos + t) / BlockPositions, slot = b % ring;
                if (_slotBlock[layer][slot] != b) (_slotBlock[layer][slot], _slotFrom[layer][slot]) = (b, pos + t);
                else _slotFrom[layer][slot] = Math.Min(_slotFrom[layer][slot], pos + t);
            }
            for (int h = 0; h < KvHeads; h++)
            {
                float* ks = k + (long)t * KvLength + h * HeadDim, vs = v + (long)t * KvLength + h * HeadDim;
                if (KeyType == KvCacheType.F16) StoreKeyF16((Half*)KeyBytes(layer, h), p, ks, (Half*)row);
                else StoreQuantized(KeyType, KeyBytes(layer, h), p, ks, key: true);
                if (ValueType == KvCacheType.F16) Kernels.HalfMath.Round(vs, (Half*)ValueBytes(layer, h) + (long)p * HeadDim, HeadDim);
                else StoreQuantized(ValueType, ValueBytes(layer, h), p, vs, key: false);
            }
        }
    }

    /// <summary>An f16 key: round the head's row at once, then scatter it down the block's position column.</summary>
    private void StoreKeyF16(Half* keys, int p, float* src, Half* row)
    {
        Half* col = keys + (long)(p / BlockPositions) * BlockPositions * HeadDim + p % BlockPositions;
        for (int d0 = 0; d0 < HeadDim; d0 += 4096)
        {
            int len = Math.Min(4096, HeadDim - d0);
            Kernels.HalfMath.Round(src + d0, row, len);
            for (int d = 0; d < len; d++) col[(long)(d0 + d) * BlockPositions] = row[d];
        }
    }

    /// <summary>Quantizes one head's row of position <paramref name="p"/> as ggml's blocks and puts its quants and scales where the layout keeps them.</summary>
    private void StoreQuantized(KvCacheType type, byte* head, int p, float* src, bool key)
    {
        int groups = HeadDim / 32, pp = p % BlockPositions;
        int rotation = key ? KeyRotation : ValueRotation;
        if (rotation > 0)
        {
            // Rotated first (llama.cpp's llama_mul_mat_hadamard on K and V before they are copied into the cache).
            float* rotated = stackalloc float[HeadDim];
            Buffer.MemoryCopy(src, rotated, HeadDim * sizeof(float), HeadDim * sizeof(float));
            Kernels.KvBlocks.Hadamard(rotated, HeadDim, rotation);
            src = rotated;
        }
        byte* block = head + (long)(p / BlockPositions) * BlockBytes(type, HeadDim);
        byte* quants = block;
        ushort* scales = (ushort*)(block + (type == KvCacheType.Q8_0 ? BlockPositions * HeadDim : BlockPositions * HeadDim / 2));
        if (type == KvCacheType.Q8_0)
        {
            var q = stackalloc Quant.BlockQ8_0[groups];
            Quant.Q8_0.QuantizeActivationRow(src, (byte*)q, HeadDim);
            for (int g = 0; g < groups; g++)
            {
                if (key)
                {
                    for (int i = 0; i < 32; i++) ((sbyte*)quants)[(g * 32 + i) * BlockPositions + pp] = q[g].Qs[i];
                    scales[g * BlockPositions + pp] = q[g].D;
                }
                else
                {
                    new ReadOnlySpan<byte>((byte*)q[g].Qs, 32).CopyTo(new Span<byte>(quants + pp * HeadDim + g * 32, 32));
                    scales[pp * groups + g] = q[g].D;
                }
            }
        }
        else
        {
            var q = stackalloc Quant.BlockQ4_0[groups];
            Quant.Q4_0.QuantizeRowReference(src, (byte*)q, HeadDim);
            for (int g = 0; g < groups; g++)
            {
                if (key)
                {
                    // Dimension d's 64 positions in 32 bytes: p in byte p's low nibble, p + 32 in its high one.
                    int shift = pp < 32 ? 0 : 4, at = pp % 32;
                    for (int i = 0; i < 32; i++)
                    {
                        int nib = i < 16 ? q[g].Qs[i] & 0x0F : q[g].Qs[i - 16] >> 4;
                        byte* b = quants + (g * 32 + i) * 32 + at;
                        *b = (byte)(*b & ~(0x0F << shift) | nib << shift);
                    }
                    scales[g * BlockPositions + pp] = q[g].D;
                }
                else
                {
                    new ReadOnlySpan<byte>(q[g].Qs, 16).CopyTo(new Span<byte>(quants + pp * HeadDim / 2 + g * 16, 16));
                    scales[pp * groups + g] = q[g].D;
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
