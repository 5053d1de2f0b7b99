using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Engine;

namespace EdgeLlm.Kernels;

/// <summary>
/// Causal multi-head attention over an f16 KV cache, rounding where llama.cpp's non-flash path
/// rounds: kq = mul_mat(K_f16, Q) converts Q to f16; soft_max_ext scales, masks and normalizes in
/// f32 with a double sum; kqv = mul_mat(V_f16, kq) converts the probabilities to f16.
/// </summary>
/// <remarks>
/// <para>
/// The products are laid out so that no dot product ends in a horizontal sum (which cost more than
/// the multiplications: ~14 cycles for a 16-lane sum, once per key and head). The cache keeps K in
/// blocks of 64 positions, a row per dimension (<see cref="KvCache.Keys"/>), so a vector holds one
/// dimension of 16 consecutive keys: the scores of 16 keys are 16 lanes accumulated over the head's
/// dimensions with fused multiply-adds of a broadcast query value. V is kept a row per position
/// (<see cref="KvCache.Values"/>), so the output of a head is a vector of dimensions accumulated
/// over positions with broadcast probabilities. Each KV head's block of keys, and its values, are
/// one contiguous run, which a token's attention streams once for all the heads of its group.
/// </para>
/// <para>
/// Summation order, which fixes every result bit (the same on AVX-512, AVX2, NEON and scalar
/// code, since each lane runs the same chain): a score is the fused multiply-add chain over
/// dimensions 0, 1, …, head_dim − 1 from zero, then × 1/√head_dim; an output value is two chains
/// over positions, the even ones and the odd ones, each from zero in position order, then
/// even + odd. llama.cpp sums in other orders (its own SIMD lanes), so the logits agree with it to
/// rounding, as before this layout, not to the bit.
/// </para>
/// </remarks>
internal static unsafe class Attention
{
    /// <summary>Query heads an item of a prompt computes together: they share every key and value they load.</summary>
    internal const int HeadBlock = 4;

    /// <summary>
    /// Most query heads an item of a single token computes together (a scratch bound). A token's
    /// item widens each block of f16 keys and values once for all its heads, so it takes a whole
    /// KV group where that leaves every worker an item (<see cref="DecodeHeads"/>).
    /// </summary>
    internal const int MaxDecodeHeads = 8;

    /// <summary>
    /// Query tokens an item of a prompt computes together, each with the item's block of heads: they
    /// share every block of keys and values it loads. An item of one token read its KV head's keys
    /// and values (f32, 512 KiB each at 2048 positions and head_dim 64, more than L2) once per token
    /// and block of heads, so long prompts streamed them from L3 over and over.
    /// </summary>
    internal const int TokenBlock = 4;

    /// <summary>Most query rows (tokens × heads) an item computes: the bound of its scratch.</summary>
    internal const int MaxItemRows = TokenBlock * HeadBlock > MaxDecodeHeads ? TokenBlock * HeadBlock : MaxDecodeHeads;

    /// <summary>
    /// Query heads per item of a single token: the whole group (up to <see cref="MaxDecodeHeads"/>)
    /// when the KV heads alone give every worker an item, else the group split so that they do.
    /// Widening f16 to f32 costs about one instruction per value (no f16 conversion instruction
    /// in .NET's API), against one fused multiply-add per 16 values and head; widening once per
    /// block of 4 heads took 58% of qwen2.5-0.5b's decode attention at 2048 positions.
    /// </summary>
    internal static int DecodeHeads(int group, int nHeadKv, int threads)
    {
        int splits = Math.Max(1, (threads + nHeadKv - 1) / nHeadKv); // items wanted per KV head
        int heads = (group + splits - 1) / splits;
        return Math.Clamp(heads, 1, MaxDecodeHeads);
    }

    /// <summary>Positions (and keys) per block: a head block meets one block of K or V while it is in L1; the cache's blocks of keys.</summary>
    private const int PositionBlock = KvCache.BlockPositions;

    /// <summary>
    /// Per-worker scratch bytes, f32: for each query row of an item (a token's head), scores/probabilities
    /// over the context, its query (then its output), and its partial output sums.
    /// </summary>
    public static long WorkerScratchBytes(int contextLength, int headDim) =>
        MaxItemRows * (ScoreStride(contextLength) * sizeof(float) + Align((long)headDim * sizeof(float)) + RowPartialFloats(headDim) * sizeof(float))
        + TileFloats(headDim) * sizeof(float);

    /// <summary>
    /// Floats between a row's scores in the scratch: the context rounded up to whole position blocks
    /// (a decode item scores every key of the last block of the cache, stale ones too, and drops them).
    /// </summary>
    private static long ScoreStride(int contextLength) => Align((long)KvCache.PaddedPositions(contextLength) * sizeof(float)) / sizeof(float);

    /// <summary>
    /// Floats of the f32 tile a decode item widens one block of f16 keys or values into, once for all
    /// the heads of its block (<see cref="Scores{T}"/>, <see cref="Values{T}"/>): head_dim rows of
    /// <see cref="PositionBlock"/> keys, or <see cref="PositionBlock"/> rows of up to 64 dimensions.
    /// </summary>
    private static int TileFloats(int headDim) => PositionBlock * Math.Max(headDim, 64);

    /// <summary>Floats of one head's partial output sums over a column chunk between position blocks: even chains at [0, 64), odd at [64, 128).</summary>
    private const int PartialFloats = 128;

    /// <summary>
    /// Column chunks a row's outputs are cut into at most, over the vector widths: <see cref="Values{T}"/>
    /// keeps every chunk's partial sums at once, as it walks positions outside and columns inside.
    /// </summary>
    private static int ValueChunks(int headDim) =>
        Math.Max(1, Math.Max(Chunks(headDim, 64, 16), Math.Max(Chunks(headDim, 32, 8), Chunks(headDim, 16, 4))));

    /// <summary>Chunks of <paramref name="width"/> columns, then of <paramref name="narrow"/>, that <see cref="Values{T}"/> cuts a row into.</summary>
    private static int Chunks(int headDim, int width, int narrow)
    {
        int chunks = 0;
        for (int d = 0; d + narrow <= headDim; d += d + width <= headDim ? width : narrow) chunks++;
        return chunks;
    }

    /// <summary>Floats of one query row's partial output sums: <see cref="PartialFloats"/> per column chunk.</summary>
    internal static long RowPartialFloats(int headDim) => (long)PartialFloats * ValueChunks(headDim);

    private static long Align(long n) => (n + 63) & ~63L;

    /// <summary>
    /// out[t, h] = softmax(q[t, h] · K[0..pos]ᵀ / sqrt(head_dim)) · V[0..pos] for each query token
    /// t (at position startPos + t) and head h, over layer <paramref name="layer"/> of
    /// <paramref name="kv"/>; head h reads KV head h / (heads / kv_heads). Workers of
    /// <paramref name="pool"/> take (token, KV head, block of up to <see cref="HeadBlock"/> query
    /// heads; for a single token <see cref="DecodeHeads"/>) items from a shared counter, the last tokens first;
    /// a prompt's items take <see cref="TokenBlock"/> consecutive tokens each.
    /// </summary>
    /// <param name="q">[nTokens, nHead * headDim] queries, after rope.</param>
    /// <param name="output">[nTokens, nHead * headDim].</param>
    /// <param name="scratch">pool.Threads × <see cref="WorkerScratchBytes"/> bytes.</param>
    /// <param name="window">Sliding window (llama.cpp's LLAMA_SWA_TYPE_STANDARD): a query at position p sees
    /// the keys at positions p - window + 1 .. p; 0 for all of them.</param>
    /// <param name="scale">The scores' scale; 0 for 1 / sqrt(head_dim).</param>
    /// <param name="softcap">Scores become softcap · tanh(score / softcap) before the softmax (Gemma 2); 0 for none.</param>
    public static void Forward(float* q, int nTokens, int startPos, KvCache kv, int layer,
        int nHead, int nHeadKv, int headDim, float* output, byte* scratch, WorkerPool pool, int window = 0, float scale = 0, float softcap = 0, float* sinks = null)
    {
        if (scale == 0) scale = 1.0f / MathF.Sqrt(headDim);
        int group = nHead / nHeadKv;
        int block = nTokens == 1 ? DecodeHeads(group, nHeadKv, pool.Threads) : HeadBlock;
        int tokenBlock = nTokens == 1 ? 1 : TokenBlock;
        int items = (nTokens + tokenBlock - 1) / tokenBlock * nHeadKv * ((group + block - 1) / block);
        int chunk = Math.Max(1, items / (pool.Threads * 4));
        int nKv = startPos + nTokens;
        int kvLen = nHeadKv * headDim;
        int ctx = kv.ContextLength;
        if (kv.KvHeads != nHeadKv || kv.HeadDim != headDim)
            throw new ArgumentException($"the cache holds {kv.KvHeads} KV heads of {kv.HeadDim}, the attention asks for {nHeadKv} of {headDim}", nameof(kv));
        byte* k0 = kv.KeyBytes(layer, 0), v0 = kv.ValueBytes(layer, 0);
        KvCacheType kType = kv.KeyType, vType = kv.ValueType;
        long kStride = kv.KeyHeadBytesOf(layer), vStride = kv.ValueHeadBytesOf(layer);
        int ring = kv.RingBlocks(layer); // a sliding-window layer's ring (KvCache.Slot): block b of positions at b mod ring
        if (ring > 0 && (window <= 0 || window > kv.Window))
            throw new ArgumentException($"layer {layer} keeps the last {kv.RingBlocks(layer) * PositionBlock} positions of a window of {kv.Window}; the attention asks for a window of {window}", nameof(window));
        var rounding = new Rounding(kType.IsQuantized(), vType == KvCacheType.F16, kv.KeyRotation, kv.ValueRotation);
        long ws = WorkerScratchBytes(ctx, headDim);
        if (nTokens == 1)
        {
            // One token: each item widens (or dequantizes) every 64-position block of its KV head's keys
            // and values (one contiguous run each in the cache) once, into an L1 tile its heads share
            // (Scores/Values); that costs less than writing and re-reading an f32
            // copy of the whole layer, as a prompt does below.
            pool.ForDynamic(items, chunk, (long)nKv * headDim * 2 * Math.Min(group, block), (start, end, worker) =>
                Items(q, nTokens, startPos, new Operand(k0, kStride, OperandOf(kType), ring), new Operand(v0, vStride, OperandOf(vType), ring), ctx, nHead, nHeadKv, headDim, block, 1, output, scratch + worker * ws, start, end, window, scale, softcap, rounding, sinks),
                minParallelWork: 1 << 14);
            return;
        }
        // A prompt: every cached key and value is met by several query tokens and by every head
        // of its group, so widen (or dequantize) them to f32 once (exact; the same arithmetic follows), in
        // the cache's layout: a block of keys and its values are each one contiguous run, in the cache
        // and in the copy. The last block of keys is widened whole (stale or zero keys past nKv,
        // whose scores are dropped), so that every block is scored the same way. With a sliding window the
        // blocks before the first token's window are not read and not widened (a ring no longer holds them).
        int kBlocks = (nKv + PositionBlock - 1) / PositionBlock;
        int fromBlock = window > 0 ? Math.Max(0, startPos + 1 - window) / PositionBlock : 0;
        long headFloats = (long)kBlocks * PositionBlock * headDim;
        float[] kw = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)(nHeadKv * headFloats)));
        float[] vw = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)(nHeadKv * headFloats)));
        try
        {
            fixed (float* kf = kw)
            fixed (float* vf = vw)
            {
                float* kfp = kf, vfp = vf;
                long kHeadBytes = kStride, vHeadBytes = vStride;
                int kBlockBytes = KvCache.BlockBytes(kType, headDim), vBlockBytes = KvCache.BlockBytes(vType, headDim);
                int live = kBlocks - fromBlock;
                pool.For(nHeadKv * live, 2L * PositionBlock * headDim, (start, end, _) =>
                {
                    for (int r = start; r < end; r++)
                    {
                        int kvh = r / live, b = fromBlock + r % live, j0 = b * PositionBlock, rows = Math.Min(PositionBlock, nKv - j0);
                        long at = (long)j0 * headDim;
                        int slot = ring > 0 ? b % ring : b;
                        byte* kb = k0 + kvh * kHeadBytes + (long)slot * kBlockBytes, vb = v0 + kvh * vHeadBytes + (long)slot * vBlockBytes;
                        if (kType == KvCacheType.F16) HalfMath.Widen((Half*)kb, kfp + kvh * headFloats + at, PositionBlock * headDim);
                        else KvBlocks.Keys(kType, kb, headDim, kfp + kvh * headFloats + at);
                        if (vType == KvCacheType.F16) HalfMath.Widen((Half*)vb, vfp + kvh * headFloats + at, rows * headDim);
                        else KvBlocks.Values(vType, vb, rows, headDim, vfp + kvh * headFloats + at);
                    }
                });
                pool.ForDynamic(items, chunk, (long)nKv * headDim * 2 * Math.Min(group, block) * tokenBlock, (start, end, worker) =>
                    Items(q, nTokens, startPos, new Operand((byte*)kfp, headFloats * sizeof(float), OperandKind.F32), new Operand((byte*)vfp, headFloats * sizeof(float), OperandKind.F32),
                        ctx, nHead, nHeadKv, headDim, block, tokenBlock, output, scratch + worker * ws, start, end, window, scale, softcap, rounding, sinks),
                    minParallelWork: 1 << 14);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(kw);
            System.Buffers.ArrayPool<float>.Shared.Return(vw);
        }
    }

    /// <summary>
    /// How the operands are rounded before their products, as llama.cpp's CPU backend rounds them for the
    /// cache's types: the query to q8_0 (keys in q8_0 or q4_0: ggml's vec_dot_type) or to f16; the
    /// probabilities to f16 (values in f16: <c>mul_mat(V, kq)</c>) or not at all (quantized values: the
    /// flash-attention path llama.cpp requires for them, which accumulates f32 probabilities). With
    /// <paramref name="KeyRotation"/> the query is rotated as the cache's keys were before that rounding; with
    /// <paramref name="ValueRotation"/> each output row is rotated back as the values were rotated
    /// (<see cref="KvCache.KeyRotation"/>, <see cref="KvCache.ValueRotation"/>).
    /// </summary>
    internal readonly record struct Rounding(bool QueryToQ8_0, bool ProbabilitiesToF16, int KeyRotation = 0, int ValueRotation = 0);

    /// <summary>What an attention operand holds: f32 (a prompt's copy), or the cache's f16 or quantized blocks.</summary>
    internal enum OperandKind { F32, F16, Q8_0, Q4_0 }

    /// <summary>KV head 0's keys or values, the next head's <paramref name="headStride"/> bytes further; in a ring of <paramref name="ring"/> blocks (0: none).</summary>
    internal readonly struct Operand(byte* head0, long headStride, OperandKind kind, int ring = 0)
    {
        public byte* Head0 { get; } = head0;
        public long HeadStride { get; } = headStride;
        public OperandKind Kind { get; } = kind;
        public int Ring { get; } = ring;
    }

    private static OperandKind OperandOf(KvCacheType t) => t switch
    {
        KvCacheType.F16 => OperandKind.F16,
        KvCacheType.Q8_0 => OperandKind.Q8_0,
        _ => OperandKind.Q4_0,
    };

    /// <summary><see cref="Scores{T}"/> over an operand of any kind (one instantiation per kind, not per pair of kinds in <see cref="Items"/>).</summary>
    private static void ScoresOf(OperandKind kind, float* q, long qStride, int heads, byte* k, int n, int headDim, float scale,
        float* scores, long sStride, float* max, int lanes, float* tile, int* rowN, int from, int ring)
    {
        switch (kind)
        {
            case OperandKind.F32: Scores(q, qStride, heads, (float*)k, n, headDim, scale, scores, sStride, max, lanes, tile, rowN, from, ring); break;
            case OperandKind.F16: Scores(q, qStride, heads, (Half*)k, n, headDim, scale, scores, sStride, max, lanes, tile, rowN, from, ring); break;
            case OperandKind.Q8_0: Scores(q, qStride, heads, (KvQ8_0*)k, n, headDim, scale, scores, sStride, max, lanes, tile, rowN, from, ring); break;
            default: Scores(q, qStride, heads, (KvQ4_0*)k, n, headDim, scale, scores, sStride, max, lanes, tile, rowN, from, ring); break;
        }
    }

    /// <summary><see cref="Values{T}"/> over an operand of any kind.</summary>
    private static void ValuesOf(OperandKind kind, float* p, long pStride, int heads, byte* v, int n, int headDim,
        float* o, long oStride, float* partial, int lanes, float* tile, int* rowN, int from, int ring)
    {
        switch (kind)
        {
            case OperandKind.F32: Values(p, pStride, heads, (float*)v, n, headDim, o, oStride, partial, lanes, tile, rowN, from, ring); break;
            case OperandKind.F16: Values(p, pStride, heads, (Half*)v, n, headDim, o, oStride, partial, lanes, tile, rowN, from, ring); break;
            case OperandKind.Q8_0: Values(p, pStride, heads, (KvQ8_0*)v, n, headDim, o, oStride, partial, lanes, tile, rowN, from, ring); break;
            default: Values(p, pStride, heads, (KvQ4_0*)v, n, headDim, o, oStride, partial, lanes, tile, rowN, from, ring); break;
        }
    }

    /// <summary>
    /// Items [start, end) of the (block of up to <paramref name="tokenBlock"/> tokens, KV head, block of up to
    /// <paramref name="block"/> query heads) grid with one worker's scratch, over the keys <paramref name="k"/> and values
    /// <paramref name="v"/> in the cache's layout (the cache's f16 or quantized blocks, or a prompt's f32 copy).
    /// An item's query rows (token-major) meet each block of keys and values together; each row keeps
    /// its own causal length, so every result is the one a single-token item gives.
    /// </summary>
    // AggressiveOptimization here and below: a prompt's attention runs a few dozen calls, too few
    // for tiering to replace the unoptimized first compile before the prompt is done.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Items(float* q, int nTokens, int startPos, Operand k, Operand v,
        int contextLength, int nHead, int nHeadKv, int headDim, int block, int tokenBlock, float* output, byte* ws, int start, int end,
        int window, float scale, float softcap, Rounding rounding, float* sinks)
    {
        int qLen = nHead * headDim;
        int group = nHead / nHeadKv;
        int blocks = (group + block - 1) / block;
        int lanes = Lanes;
        long sStride = ScoreStride(contextLength);
        long hStride = Align((long)headDim * sizeof(float)) / sizeof(float);
        float* scores = (float*)ws;
        float* qh = scores + MaxItemRows * sStride;
        float* partial = qh + MaxItemRows * hStride;
        float* tile = partial + MaxItemRows * RowPartialFloats(headDim);
        float* max = stackalloc float[MaxItemRows];
        int* rowN = stackalloc int[MaxItemRows];
        for (int item = start; item < end; item++)
        {
            // The last tokens first: they attend to the most keys, and the shared counter then
            // hands the light items out at the end, where they even out the workers' finish.
            // Token blocks are cut from the end, so a short one holds the first tokens.
            int tEnd = nTokens - item / (nHeadKv * blocks) * tokenBlock;
            int t0 = Math.Max(0, tEnd - tokenBlock);
            int nt = tEnd - t0;
            int kvh = item % (nHeadKv * blocks) / blocks;
            int h0 = kvh * group + item % blocks * block;
            int heads = Math.Min(block, (kvh + 1) * group - h0);
            int rows = nt * heads;
            int nKv = startPos + tEnd; // causal: the last token's keys; row r's own are rowN[r]
            for (int ti = 0; ti < nt; ti++)
                for (int i = 0; i < heads; i++)
                {
                    // Q rounded to f16 values (or to q8_0 ones, for quantized keys) but kept as f32 (exact),
                    // as ggml converts it for the product with the cache's keys.
                    float* qr = qh + (ti * heads + i) * hStride;
                    Buffer.MemoryCopy(q + (long)(t0 + ti) * qLen + (h0 + i) * headDim, qr, headDim * sizeof(float), headDim * sizeof(float));
                    if (rounding.KeyRotation > 0) KvBlocks.Hadamard(qr, headDim, rounding.KeyRotation);
                    if (rounding.QueryToQ8_0) KvBlocks.RoundToQ8_0(qr, headDim);
                    else HalfMath.RoundInPlace(qr, headDim);
                    rowN[ti * heads + i] = startPos + t0 + ti + 1;
                }
            int* ns = nt > 1 ? rowN : null;
            byte* kHead = k.Head0 + kvh * k.HeadStride, vHead = v.Head0 + kvh * v.HeadStride;
            // A sliding window: the blocks before the first row's window are neither scored nor read.
            int from = window > 0 ? Math.Max(0, startPos + t0 + 1 - window) / PositionBlock * PositionBlock : 0;
            ScoresOf(k.Kind, qh, hStride, rows, kHead, nKv, headDim, scale, scores, sStride, max, lanes, tile, ns, from, k.Ring);
            for (int r = 0; r < rows; r++)
            {
                float* sr = scores + r * sStride;
                // A sliding window: the keys before it get probability 0 (llama.cpp's -inf in the mask),
                // the softmax runs over the window alone.
                int lo = window > 0 ? Math.Max(0, rowN[r] - window) : 0;
                // Gemma 2's soft-capping of the scores (ggml_scale, ggml_tanh, ggml_scale before the softmax).
                if (softcap > 0) Activations.Softcap(sr + lo, rowN[r] - lo, softcap);
                if (lo > 0 || softcap > 0)
                {
                    max[r] = Max(sr + lo, rowN[r] - lo, lanes);
                    new Span<float>(sr, lo).Clear();
                }
                if (sinks != null)
                {
                    // gpt-oss's attention sinks: one learned logit per head (unscaled) that takes part in the
                    // maximum and the denominator and adds no value (ggml_soft_max_add_sinks).
                    float sink = sinks[h0 + r % heads];
                    float m = MathF.Max(max[r], sink);
                    Softmax.ExpNormalize(sr + lo, rowN[r] - lo, m, MathF.Exp(sink - m));
                }
                else Softmax.ExpNormalize(sr + lo, rowN[r] - lo, max[r]);
                if (rounding.ProbabilitiesToF16) HalfMath.RoundInPlace(sr, rowN[r]);
            }
            if (nt == 1)
            {
                float* o = output + (long)t0 * qLen + h0 * headDim;
                ValuesOf(v.Kind, scores, sStride, heads, vHead, nKv, headDim, o, headDim, partial, lanes, tile, null, from, v.Ring);
                if (rounding.ValueRotation > 0) KvBlocks.Hadamard(o, heads * headDim, rounding.ValueRotation);
                continue;
            }
            // Several tokens: the rows' outputs into their query rows (done with), then to each token's row.
            ValuesOf(v.Kind, scores, sStride, rows, vHead, nKv, headDim, qh, hStride, partial, lanes, tile, ns, from, v.Ring);
            if (rounding.ValueRotation > 0)
                for (int r = 0; r < rows; r++) KvBlocks.Hadamard(qh + r * hStride, headDim, rounding.ValueRotation);
            for (int ti = 0; ti < nt; ti++)
                for (int i = 0; i < heads; i++)
                    Buffer.MemoryCopy(qh + (ti * heads + i) * hStride, output + (long)(t0 + ti) * qLen + (h0 + i) * headDim, headDim * sizeof(float), headDim * sizeof(float));
        }
    }

    /// <summary>The widest vectors this machine runs (16, 8, 4 or 1 lane).</summary>
    internal static int Lanes =>
        Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : Vector128.IsHardwareAccelerated ? 4 : 1;

    /// <summary>
    /// For query rows i in [0, <paramref name="heads"/>) (<paramref name="qStride"/> apart):
    /// scores_i[j] = (Σ_d q_i[d]·k[d, j], one fused multiply-add chain in d from zero) · scale for
    /// keys j in [0, n), and max_i their maximum, over one KV head's keys in the cache's blocks
    /// (<see cref="KvCache.Keys"/>: block b, [head_dim, 64], at b × 64 × head_dim), f16 (the cache)
    /// or f32 (a prompt's copy). An f16 block, one contiguous run, is widened into
    /// <paramref name="tile"/> ([head_dim, 64] floats, exact) once for all the rows; a vector holds
    /// one dimension of consecutive keys, so no dot product ends in a horizontal sum. Vectors of
    /// <paramref name="lanes"/> (<see cref="Lanes"/>; tests pass each width; every width gives the
    /// same bits). The last block is scored whole: its keys past <paramref name="n"/> are stale or
    /// zero, their scores land in the row's padding (<see cref="ScoreStride"/>) and nothing reads
    /// them. With <paramref name="rowN"/>, row i's maximum is over its first rowN[i] (≤ n) keys only;
    /// its scores past those are computed too and are the caller's to ignore (the rows of a prompt
    /// item's earlier tokens).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Scores<T>(float* q, long qStride, int heads, T* k, int n, int headDim, float scale,
        float* scores, long sStride, float* max, int lanes, float* tile, int* rowN = null, int from = 0, int ring = 0)
        where T : unmanaged
    {
        // from (a multiple of PositionBlock; a sliding window's first block): the keys before it are not scored.
        // ring: the keys are a sliding-window layer's ring of blocks (KvCache.Slot), key j at Wrap(j).
        for (int j = from; j < n; j += PositionBlock)
        {
            float* kb = KeyBlock(k, (long)KvCache.Wrap(j, ring) * headDim, headDim, tile);
            ScoresTile(q, qStride, heads, kb, headDim, scale, scores + j, sStride, lanes, Math.Min(PositionBlock, n - j));
        }
        for (int i = 0; i < heads; i++) max[i] = Max(scores + i * sStride + from, (rowN == null ? n : rowN[i]) - from, lanes);
    }

    /// <summary>
    /// The f32 block of keys at <paramref name="offset"/> values into <paramref name="src"/> (a multiple of
    /// 64 × head_dim): in place for f32, widened (f16) or dequantized (q8_0, q4_0) into <paramref name="tile"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* KeyBlock<T>(T* src, long offset, int headDim, float* tile) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return (float*)src + offset;
        if (typeof(T) == typeof(Half)) HalfMath.Widen((Half*)src + offset, tile, PositionBlock * headDim);
        else KvBlocks.Keys(QuantType<T>(), QuantBlock(src, offset, headDim), headDim, tile);
        return tile;
    }

    /// <summary>The f32 values of <paramref name="rows"/> positions from <paramref name="offset"/> values into <paramref name="src"/> (a multiple of 64 × head_dim), as <see cref="KeyBlock{T}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* ValueBlock<T>(T* src, long offset, int rows, int headDim, float* tile) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return (float*)src + offset;
        if (typeof(T) == typeof(Half)) HalfMath.Widen((Half*)src + offset, tile, rows * headDim);
        else KvBlocks.Values(QuantType<T>(), QuantBlock(src, offset, headDim), rows, headDim, tile);
        return tile;
    }

    /// <summary>The cache type a quantized operand marker stands for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static KvCacheType QuantType<T>() where T : unmanaged =>
        typeof(T) == typeof(KvQ8_0) ? KvCacheType.Q8_0 : typeof(T) == typeof(KvQ4_0) ? KvCacheType.Q4_0 : throw new NotSupportedException($"attention operands of {typeof(T).Name}");

    /// <summary>The quantized block holding the value at <paramref name="offset"/> (position × head_dim + dimension).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* QuantBlock<T>(T* src, long offset, int headDim) where T : unmanaged =>
        (byte*)src + offset / ((long)PositionBlock * headDim) * KvCache.BlockBytes(QuantType<T>(), headDim);

    /// <summary>
    /// Scores of every head against one widened block of keys, [head_dim, 64] floats: the vector widths
    /// score all 64 keys (heads in pairs where two are left: eight independent chains), the scalar
    /// width the first <paramref name="n"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoresTile(float* q, long qStride, int heads, float* tile, int headDim, float scale, float* scores, long sStride, int lanes, int n)
    {
        int i = 0;
        if (lanes >= 4)
            for (; i + 2 <= heads; i += 2)
            {
                float* qi = q + i * qStride, si = scores + i * sStride;
                if (lanes == 16)
                {
                    Scores2x4x512(qi, qi + qStride, tile, PositionBlock, headDim, scale, si, si + sStride);
                }
                else if (lanes == 4)
                {
                    for (int jj = 0; jj < PositionBlock; jj += 16)
                        Scores2x4x128(qi, qi + qStride, tile + jj, PositionBlock, headDim, scale, si + jj, si + sStride + jj);
                }
                else
                {
                    Scores2x4x256(qi, qi + qStride, tile, PositionBlock, headDim, scale, si, si + sStride);
                    Scores2x4x256(qi, qi + qStride, tile + 32, PositionBlock, headDim, scale, si + 32, si + sStride + 32);
                }
            }
        for (; i < heads; i++)
        {
            float* qi = q + i * qStride, si = scores + i * sStride;
            if (lanes == 16)
            {
                Scores4x512(qi, tile, PositionBlock, headDim, scale, si);
            }
            else if (lanes == 8)
            {
                Scores4x256(qi, tile, PositionBlock, headDim, scale, si);
                Scores4x256(qi, tile + 32, PositionBlock, headDim, scale, si + 32);
            }
            else if (lanes == 4)
            {
                for (int jj = 0; jj < PositionBlock; jj += 16) Scores4x128(qi, tile + jj, PositionBlock, headDim, scale, si + jj);
            }
            else
            {
                for (int jj = 0; jj < n; jj++)
                {
                    float s = 0;
                    for (int d = 0; d < headDim; d++) s = MathF.FusedMultiplyAdd(qi[d], tile[d * PositionBlock + jj], s);
                    si[jj] = s * scale;
                }
            }
        }
    }

    /// <summary>
    /// For query rows i in [0, <paramref name="heads"/>): o_i[d] = Σ_j p_i[j]·v[j, d] over positions
    /// j in [0, n), as two fused multiply-add chains, the even positions and the odd ones, each from
    /// zero in position order, then even + odd; over one KV head's values in the cache's layout
    /// ([positions, head_dim], <see cref="KvCache.Values"/>), f16 or f32. Positions go outside, in
    /// blocks of 64 that every row meets while the block is in L1 (an f16 block, one contiguous run,
    /// widened into <paramref name="tile"/> once for all the rows), and column chunks inside (four
    /// vectors where the head has room, else one), each with its partial chains in
    /// <paramref name="partial"/> (<see cref="RowPartialFloats"/> a row) between blocks; columns past
    /// the last whole vector (head sizes that are not a multiple of 4) take the scalar chains. The
    /// chains are the same in every width, so every output has the same bits. With
    /// <paramref name="rowN"/>, row i sums over its first rowN[i] (≤ n) positions only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Values<T>(float* p, long pStride, int heads, T* v, int n, int headDim,
        float* o, long oStride, float* partial, int lanes, float* tile, int* rowN = null, int from = 0, int ring = 0)
        where T : unmanaged
    {
        // from (a multiple of PositionBlock): the probabilities before it are zero and are skipped, which
        // changes no bit (adding 0 · v leaves a sum as it is, and the scalar pairs keep their parity).
        long rowPartial = RowPartialFloats(headDim);
        int width = lanes == 16 ? 64 : lanes == 8 ? 32 : 16;
        int narrow = lanes == 16 ? 16 : lanes == 8 ? 8 : 4;
        int dVec = 0;
        if (lanes >= 4 && headDim >= narrow)
        {
            for (int j0 = from; j0 < n; j0 += PositionBlock)
            {
                int len = Math.Min(PositionBlock, n - j0);
                bool first = j0 == from;
                float* vb = ValueBlock(v, (long)KvCache.Wrap(j0, ring) * headDim, len, headDim, tile);
                int d = 0;
                for (int c = 0; d + narrow <= headDim; c++)
                {
                    bool wide = d + width <= headDim;
                    for (int i = 0; i < heads; i++)
                    {
                        int ni = rowN == null ? n : rowN[i];
                        if (j0 >= ni) continue; // this row's last block was the one before
                        int li = Math.Min(len, ni - j0);
                        ValuesBlock(lanes, wide, p + i * pStride + j0, vb + d, headDim, li, partial + i * rowPartial + c * PartialFloats, first, j0 + li == ni, o + i * oStride + d);
                    }
                    d += wide ? width : narrow;
                }
                dVec = d;
            }
        }
        for (int d = dVec; d < headDim; d++)
            for (int i = 0; i < heads; i++)
            {
                float* pi = p + i * pStride;
                int ni = rowN == null ? n : rowN[i];
                float even = 0, odd = 0;
                int j = from;
                for (; j + 2 <= ni; j += 2)
                {
                    even = MathF.FusedMultiplyAdd(pi[j], Load1(v, KvCache.Wrap(j, ring), d, headDim), even);
                    odd = MathF.FusedMultiplyAdd(pi[j + 1], Load1(v, KvCache.Wrap(j + 1, ring), d, headDim), odd);
                }
                if (j < ni) even = MathF.FusedMultiplyAdd(pi[j], Load1(v, KvCache.Wrap(j, ring), d, headDim), even);
                o[i * oStride + d] = even + odd;
            }
    }

    /// <summary>
    /// The maximum only shifts the exponent: with a NaN score every probability is NaN whichever
    /// maximum is taken, and ±0 shift alike, so the vector Max's NaN and zero rules change nothing.
    /// </summary>
    private static float Max(float* s, int n, int lanes)
    {
        float max = float.NegativeInfinity;
        int j = 0;
        if (lanes >= 8 && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; j + 8 <= n; j += 8) m = Vector256.Max(m, Vector256.Load(s + j));
            for (int l = 0; l < 8; l++) max = MathF.Max(max, m[l]);
        }
        for (; j < n; j++) max = MathF.Max(max, s[j]);
        return max;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4x512<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var qd = Vector512.Create(q[d]);
            a0 = Vector512.FusedMultiplyAdd(qd, Load512(k), a0);
            a1 = Vector512.FusedMultiplyAdd(qd, Load512(k + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(qd, Load512(k + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(qd, Load512(k + 48), a3);
        }
        var sc = Vector512.Create(scale);
        (a0 * sc).Store(s);
        (a1 * sc).Store(s + 16);
        (a2 * sc).Store(s + 32);
        (a3 * sc).Store(s + 48);
    }

    /// <summary>
    /// <see cref="Scores4x512{T}"/> for two queries at once: each key vector loaded once for both, and
    /// eight independent chains, enough to keep both FMA pipes busy through the FMA latency (four chains
    /// waited on it: a score block ran at about half the FMA rate).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores2x4x512<T>(float* qa, float* qb, T* k, long stride, int headDim, float scale, float* sa, float* sb) where T : unmanaged
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var x0 = Load512(k); var x1 = Load512(k + 16); var x2 = Load512(k + 32); var x3 = Load512(k + 48);
            var qd = Vector512.Create(qa[d]);
            a0 = Vector512.FusedMultiplyAdd(qd, x0, a0);
            a1 = Vector512.FusedMultiplyAdd(qd, x1, a1);
            a2 = Vector512.FusedMultiplyAdd(qd, x2, a2);
            a3 = Vector512.FusedMultiplyAdd(qd, x3, a3);
            var rd = Vector512.Create(qb[d]);
            b0 = Vector512.FusedMultiplyAdd(rd, x0, b0);
            b1 = Vector512.FusedMultiplyAdd(rd, x1, b1);
            b2 = Vector512.FusedMultiplyAdd(rd, x2, b2);
            b3 = Vector512.FusedMultiplyAdd(rd, x3, b3);
        }
        var sc = Vector512.Create(scale);
        (a0 * sc).Store(sa); (a1 * sc).Store(sa + 16); (a2 * sc).Store(sa + 32); (a3 * sc).Store(sa + 48);
        (b0 * sc).Store(sb); (b1 * sc).Store(sb + 16); (b2 * sc).Store(sb + 32); (b3 * sc).Store(sb + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4x256<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var qd = Vector256.Create(q[d]);
            a0 = ExactFma.MultiplyAdd(qd, Load256(k), a0);
            a1 = ExactFma.MultiplyAdd(qd, Load256(k + 8), a1);
            a2 = ExactFma.MultiplyAdd(qd, Load256(k + 16), a2);
            a3 = ExactFma.MultiplyAdd(qd, Load256(k + 24), a3);
        }
        var sc = Vector256.Create(scale);
        (a0 * sc).Store(s);
        (a1 * sc).Store(s + 8);
        (a2 * sc).Store(s + 16);
        (a3 * sc).Store(s + 24);
    }

    /// <summary><see cref="Scores4x256{T}"/> for two queries at once (see <see cref="Scores2x4x512{T}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Scores2x4x256<T>(float* qa, float* qb, T* k, long stride, int headDim, float scale, float* sa, float* sb) where T : unmanaged
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var x0 = Load256(k); var x1 = Load256(k + 8); var x2 = Load256(k + 16); var x3 = Load256(k + 24);
            var qd = Vector256.Create(qa[d]);
            a0 = ExactFma.MultiplyAdd(qd, x0, a0);
            a1 = ExactFma.MultiplyAdd(qd, x1, a1);
            a2 = ExactFma.MultiplyAdd(qd, x2, a2);
            a3 = ExactFma.MultiplyAdd(qd, x3, a3);
            var rd = Vector256.Create(qb[d]);
            b0 = ExactFma.MultiplyAdd(rd, x0, b0);
            b1 = ExactFma.MultiplyAdd(rd, x1, b1);
            b2 = ExactFma.MultiplyAdd(rd, x2, b2);
            b3 = ExactFma.MultiplyAdd(rd, x3, b3);
        }
        var sc = Vector256.Create(scale);
        (a0 * sc).Store(sa); (a1 * sc).Store(sa + 8); (a2 * sc).Store(sa + 16); (a3 * sc).Store(sa + 24);
        (b0 * sc).Store(sb); (b1 * sc).Store(sb + 8); (b2 * sc).Store(sb + 16); (b3 * sc).Store(sb + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4x128<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var qd = Vector128.Create(q[d]);
            a0 = ExactFma.MultiplyAdd(qd, Load128(k), a0);
            a1 = ExactFma.MultiplyAdd(qd, Load128(k + 4), a1);
            a2 = ExactFma.MultiplyAdd(qd, Load128(k + 8), a2);
            a3 = ExactFma.MultiplyAdd(qd, Load128(k + 12), a3);
        }
        var sc = Vector128.Create(scale);
        (a0 * sc).Store(s);
        (a1 * sc).Store(s + 4);
        (a2 * sc).Store(s + 8);
        (a3 * sc).Store(s + 12);
    }

    /// <summary><see cref="Scores4x128{T}"/> for two queries at once (see <see cref="Scores2x4x512{T}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores2x4x128<T>(float* qa, float* qb, T* k, long stride, int headDim, float scale, float* sa, float* sb) where T : unmanaged
    {
        Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector128<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var x0 = Load128(k); var x1 = Load128(k + 4); var x2 = Load128(k + 8); var x3 = Load128(k + 12);
            var qd = Vector128.Create(qa[d]);
            a0 = ExactFma.MultiplyAdd(qd, x0, a0);
            a1 = ExactFma.MultiplyAdd(qd, x1, a1);
            a2 = ExactFma.MultiplyAdd(qd, x2, a2);
            a3 = ExactFma.MultiplyAdd(qd, x3, a3);
            var rd = Vector128.Create(qb[d]);
            b0 = ExactFma.MultiplyAdd(rd, x0, b0);
            b1 = ExactFma.MultiplyAdd(rd, x1, b1);
            b2 = ExactFma.MultiplyAdd(rd, x2, b2);
            b3 = ExactFma.MultiplyAdd(rd, x3, b3);
        }
        var sc = Vector128.Create(scale);
        (a0 * sc).Store(sa); (a1 * sc).Store(sa + 4); (a2 * sc).Store(sa + 8); (a3 * sc).Store(sa + 12);
        (b0 * sc).Store(sb); (b1 * sc).Store(sb + 4); (b2 * sc).Store(sb + 8); (b3 * sc).Store(sb + 12);
    }

    /// <summary>One head's values over one position block, in the width <paramref name="lanes"/> (four vectors where <paramref name="wide"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ValuesBlock<T>(int lanes, bool wide, float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        if (lanes == 16)
        {
            if (wide) Values4x512(p, v, stride, n, acc, first, last, o);
            else Values1x512(p, v, stride, n, acc, first, last, o);
        }
        else if (lanes == 8)
        {
            if (wide) Values4x256(p, v, stride, n, acc, first, last, o);
            else Values1x256(p, v, stride, n, acc, first, last, o);
        }
        else
        {
            if (wide) Values4x128(p, v, stride, n, acc, first, last, o);
            else Values1x128(p, v, stride, n, acc, first, last, o);
        }
    }

    // The blocks below run positions [0, n) of one position block (n even except in the last
    // block): the even/odd chains start from zero in the first block, else from acc (even sums
    // at acc[0..], odd at acc[64..]); the last block writes even + odd to o, the others their
    // chains back to acc.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values4x512<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default;
        if (!first)
        {
            e0 = Vector512.Load(acc); e1 = Vector512.Load(acc + 16); e2 = Vector512.Load(acc + 32); e3 = Vector512.Load(acc + 48);
            d0 = Vector512.Load(acc + 64); d1 = Vector512.Load(acc + 80); d2 = Vector512.Load(acc + 96); d3 = Vector512.Load(acc + 112);
        }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            var pe = Vector512.Create(p[j]);
            var po = Vector512.Create(p[j + 1]);
            T* w = v + stride;
            e0 = Vector512.FusedMultiplyAdd(pe, Load512(v), e0);
            e1 = Vector512.FusedMultiplyAdd(pe, Load512(v + 16), e1);
            e2 = Vector512.FusedMultiplyAdd(pe, Load512(v + 32), e2);
            e3 = Vector512.FusedMultiplyAdd(pe, Load512(v + 48), e3);
            d0 = Vector512.FusedMultiplyAdd(po, Load512(w), d0);
            d1 = Vector512.FusedMultiplyAdd(po, Load512(w + 16), d1);
            d2 = Vector512.FusedMultiplyAdd(po, Load512(w + 32), d2);
            d3 = Vector512.FusedMultiplyAdd(po, Load512(w + 48), d3);
        }
        if (j < n)
        {
            var pe = Vector512.Create(p[j]);
            e0 = Vector512.FusedMultiplyAdd(pe, Load512(v), e0);
            e1 = Vector512.FusedMultiplyAdd(pe, Load512(v + 16), e1);
            e2 = Vector512.FusedMultiplyAdd(pe, Load512(v + 32), e2);
            e3 = Vector512.FusedMultiplyAdd(pe, Load512(v + 48), e3);
        }
        if (last)
        {
            (e0 + d0).Store(o); (e1 + d1).Store(o + 16); (e2 + d2).Store(o + 32); (e3 + d3).Store(o + 48);
            return;
        }
        e0.Store(acc); e1.Store(acc + 16); e2.Store(acc + 32); e3.Store(acc + 48);
        d0.Store(acc + 64); d1.Store(acc + 80); d2.Store(acc + 96); d3.Store(acc + 112);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x512<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector512<float> e0 = default, d0 = default;
        if (!first) { e0 = Vector512.Load(acc); d0 = Vector512.Load(acc + 64); }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Load512(v), e0);
            d0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j + 1]), Load512(v + stride), d0);
        }
        if (j < n) e0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Load512(v), e0);
        if (last) { (e0 + d0).Store(o); return; }
        e0.Store(acc); d0.Store(acc + 64);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values4x256<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default;
        if (!first)
        {
            e0 = Vector256.Load(acc); e1 = Vector256.Load(acc + 8); e2 = Vector256.Load(acc + 16); e3 = Vector256.Load(acc + 24);
            d0 = Vector256.Load(acc + 64); d1 = Vector256.Load(acc + 72); d2 = Vector256.Load(acc + 80); d3 = Vector256.Load(acc + 88);
        }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            var pe = Vector256.Create(p[j]);
            var po = Vector256.Create(p[j + 1]);
            T* w = v + stride;
            e0 = ExactFma.MultiplyAdd(pe, Load256(v), e0);
            e1 = ExactFma.MultiplyAdd(pe, Load256(v + 8), e1);
            e2 = ExactFma.MultiplyAdd(pe, Load256(v + 16), e2);
            e3 = ExactFma.MultiplyAdd(pe, Load256(v + 24), e3);
            d0 = ExactFma.MultiplyAdd(po, Load256(w), d0);
            d1 = ExactFma.MultiplyAdd(po, Load256(w + 8), d1);
            d2 = ExactFma.MultiplyAdd(po, Load256(w + 16), d2);
            d3 = ExactFma.MultiplyAdd(po, Load256(w + 24), d3);
        }
        if (j < n)
        {
            var pe = Vector256.Create(p[j]);
            e0 = ExactFma.MultiplyAdd(pe, Load256(v), e0);
            e1 = ExactFma.MultiplyAdd(pe, Load256(v + 8), e1);
            e2 = ExactFma.MultiplyAdd(pe, Load256(v + 16), e2);
            e3 = ExactFma.MultiplyAdd(pe, Load256(v + 24), e3);
        }
        if (last)
        {
            (e0 + d0).Store(o); (e1 + d1).Store(o + 8); (e2 + d2).Store(o + 16); (e3 + d3).Store(o + 24);
            return;
        }
        e0.Store(acc); e1.Store(acc + 8); e2.Store(acc + 16); e3.Store(acc + 24);
        d0.Store(acc + 64); d1.Store(acc + 72); d2.Store(acc + 80); d3.Store(acc + 88);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x256<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector256<float> e0 = default, d0 = default;
        if (!first) { e0 = Vector256.Load(acc); d0 = Vector256.Load(acc + 64); }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = ExactFma.MultiplyAdd(Vector256.Create(p[j]), Load256(v), e0);
            d0 = ExactFma.MultiplyAdd(Vector256.Create(p[j + 1]), Load256(v + stride), d0);
        }
        if (j < n) e0 = ExactFma.MultiplyAdd(Vector256.Create(p[j]), Load256(v), e0);
        if (last) { (e0 + d0).Store(o); return; }
        e0.Store(acc); d0.Store(acc + 64);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values4x128<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector128<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector128<float> d0 = default, d1 = default, d2 = default, d3 = default;
        if (!first)
        {
            e0 = Vector128.Load(acc); e1 = Vector128.Load(acc + 4); e2 = Vector128.Load(acc + 8); e3 = Vector128.Load(acc + 12);
            d0 = Vector128.Load(acc + 64); d1 = Vector128.Load(acc + 68); d2 = Vector128.Load(acc + 72); d3 = Vector128.Load(acc + 76);
        }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            var pe = Vector128.Create(p[j]);
            var po = Vector128.Create(p[j + 1]);
            T* w = v + stride;
            e0 = ExactFma.MultiplyAdd(pe, Load128(v), e0);
            e1 = ExactFma.MultiplyAdd(pe, Load128(v + 4), e1);
            e2 = ExactFma.MultiplyAdd(pe, Load128(v + 8), e2);
            e3 = ExactFma.MultiplyAdd(pe, Load128(v + 12), e3);
            d0 = ExactFma.MultiplyAdd(po, Load128(w), d0);
            d1 = ExactFma.MultiplyAdd(po, Load128(w + 4), d1);
            d2 = ExactFma.MultiplyAdd(po, Load128(w + 8), d2);
            d3 = ExactFma.MultiplyAdd(po, Load128(w + 12), d3);
        }
        if (j < n)
        {
            var pe = Vector128.Create(p[j]);
            e0 = ExactFma.MultiplyAdd(pe, Load128(v), e0);
            e1 = ExactFma.MultiplyAdd(pe, Load128(v + 4), e1);
            e2 = ExactFma.MultiplyAdd(pe, Load128(v + 8), e2);
            e3 = ExactFma.MultiplyAdd(pe, Load128(v + 12), e3);
        }
        if (last)
        {
            (e0 + d0).Store(o); (e1 + d1).Store(o + 4); (e2 + d2).Store(o + 8); (e3 + d3).Store(o + 12);
            return;
        }
        e0.Store(acc); e1.Store(acc + 4); e2.Store(acc + 8); e3.Store(acc + 12);
        d0.Store(acc + 64); d1.Store(acc + 68); d2.Store(acc + 72); d3.Store(acc + 76);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x128<T>(float* p, T* v, long stride, int n, float* acc, bool first, bool last, float* o) where T : unmanaged
    {
        Vector128<float> e0 = default, d0 = default;
        if (!first) { e0 = Vector128.Load(acc); d0 = Vector128.Load(acc + 64); }
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = ExactFma.MultiplyAdd(Vector128.Create(p[j]), Load128(v), e0);
            d0 = ExactFma.MultiplyAdd(Vector128.Create(p[j + 1]), Load128(v + stride), d0);
        }
        if (j < n) e0 = ExactFma.MultiplyAdd(Vector128.Create(p[j]), Load128(v), e0);
        if (last) { (e0 + d0).Store(o); return; }
        e0.Store(acc); d0.Store(acc + 64);
    }

    // Loads of f32 values, or of f16 values widened exactly (the JIT compiles one body per T and
    // drops the other branch).

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load512<T>(T* p) where T : unmanaged =>
        typeof(T) == typeof(float) ? Vector512.Load((float*)p) : HalfMath.Widen512(Vector256.Load((ushort*)p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load256<T>(T* p) where T : unmanaged =>
        typeof(T) == typeof(float) ? Vector256.Load((float*)p) : HalfMath.Widen256(Vector128.Load((ushort*)p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Load128<T>(T* p) where T : unmanaged =>
        typeof(T) == typeof(float) ? Vector128.Load((float*)p) : HalfMath.Widen128((ushort*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Load1<T>(T* p, long j, int d, int headDim) where T : unmanaged =>
        typeof(T) == typeof(float) ? ((float*)p)[j * headDim + d]
        : typeof(T) == typeof(Half) ? (float)((Half*)p)[j * headDim + d]
        : KvBlocks.Value(QuantType<T>(), (byte*)p, j, d, headDim, key: false);
}
