using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Quant;

namespace EdgeLlm.Specialized;

/// <summary>
/// The fused steps generated forward passes call. Each keeps the generic path's arithmetic per
/// value (the same RmsNorm, activation quantizers, VecDot/VecDotTile, Rope and SwiGlu, and x + y
/// for residuals) and changes only how many passes over memory and how many thread hand-offs a
/// layer takes. Products are split the way <see cref="MatMul"/> splits them (chunks of weight rows
/// handed out from a shared counter, <see cref="MatMul.TileActs"/> activation rows per tile), so a
/// prompt gets the same cache behaviour and tile kernels as the generic path.
/// </summary>
internal static unsafe class SpecializedKernels
{
    /// <summary>Norm/quantize/rope passes over a batch run on the pool from this many values (the generic path's threshold).</summary>
    private const long MinParallelElements = 1 << 16;

    /// <summary>Weight rows per work item: the generic path's chunks (decode and batch).</summary>
    public static int ChunkRows(int n, long rowBytes, int rows, int threads) => n == 1 ? MatMul.DecodeChunkRows(rowBytes, rows, threads) : MatMul.BatchChunkRows;

    /// <summary>
    /// The format generated code computes <paramref name="type"/> with (kept in a static readonly
    /// field): the registered one. <see cref="Q4_0Avx512Format"/> (bit-identical, tested) is wired
    /// through <see cref="Dots"/> but not handed out yet: measured on 2 shared cores its tile was
    /// slower than the registered register tile (it unpacks each weight block once per activation
    /// row, not once per four), and its decode gain was within the noise. Set
    /// EDGELLM_SPECIALIZED_Q4_0_AVX512=1 to try it.
    /// </summary>
    public static WeightFormat Format(GgmlType type)
    {
        // Matrices the loader repacks (WeightPacking) run with the repacked format; the load-time
        // match checks that the model's matrices really are in that layout.
        if (WeightPacking.PackedFormat(type) is { } packed) return packed;
        if (!WeightFormat.TryGet(type, out var f)) throw new NotSupportedException($"no weight format for {GgmlTypes.Name(type)}");
        if (type == GgmlType.Q4_0 && Environment.GetEnvironmentVariable("EDGELLM_SPECIALIZED_Q4_0_AVX512") == "1" && Q4_0Avx512.AgreesWith(f))
            return new Q4_0Avx512Format(f);
        return f;
    }

    /// <summary>y[r] = VecDot(row r, act) for <paramref name="nRows"/> consecutive rows (a single token's product).</summary>
    private static void Dots(WeightFormat fmt, int cols, byte* w, long rowBytes, int nRows, byte* act, float* y) =>
        fmt.VecDotRows(cols, w, rowBytes, nRows, act, y);

    /// <summary>Activation rows in one vec-dot type: where they go and how far apart they are.</summary>
    public readonly struct ActRows(GgmlType type, byte* data, long rowBytes)
    {
        public GgmlType Type { get; } = type;
        public byte* Data { get; } = data;
        public long RowBytes { get; } = rowBytes;
        public bool IsSet => Data != null;
    }

    /// <summary>
    /// dst = convert(rmsnorm(x) ⊙ g) to <paramref name="vecDotType"/>; <paramref name="tmp"/> holds the
    /// normalized row on its way (skipped for F32, where the normalized row is the activation row).
    /// </summary>
    public static void NormQuantize(float* x, float* g, float* tmp, int n, float eps, GgmlType vecDotType, byte* dst)
    {
        if (vecDotType == GgmlType.F32)
        {
            RmsNorm.Forward(x, g, (float*)dst, n, eps);
            return;
        }
        RmsNorm.Forward(x, g, tmp, n, eps);
        ActivationQuantizer.QuantizeRow(vecDotType, tmp, dst, n);
    }

    /// <summary>
    /// For each of <paramref name="n"/> tokens: rmsnorm(x) ⊙ g, converted once per activation type
    /// (<paramref name="a0"/>, and <paramref name="a1"/>/<paramref name="a2"/> when set) while the row
    /// is in L1. Tokens run in parallel when the batch is large (the generic path's norm and
    /// quantize passes, in one hand-off instead of two per matrix).
    /// </summary>
    public static void NormQuantizeRows(WorkerPool pool, int n, float* x, float* g, float* norm, int dim, float eps, ActRows a0, ActRows a1 = default, ActRows a2 = default)
    {
        using var _ = Profiler.Section(Profiler.Op.NormQuantize);
        pool.For(n, dim, (start, end, _) =>
        {
            for (int t = start; t < end; t++)
            {
                float* xr = x + (long)t * dim, tmp = norm + (long)t * dim;
                NormQuantize(xr, g, tmp, dim, eps, a0.Type, a0.Data + t * a0.RowBytes);
                // Further types reuse the normalized row (F32 targets never need it: they were first).
                if (a1.IsSet) Quantize(a0, t, tmp, dim, a1);
                if (a2.IsSet) Quantize(a0, t, tmp, dim, a2);
            }
        }, minParallelWork: MinParallelElements);
    }

    private static void Quantize(in ActRows first, int t, float* tmp, int dim, in ActRows target)
    {
        // When the first target was F32, the normalized row lives in its activation row, not tmp.
        float* src = first.Type == GgmlType.F32 ? (float*)(first.Data + t * first.RowBytes) : tmp;
        ActivationQuantizer.QuantizeRow(target.Type, src, target.Data + t * target.RowBytes, dim);
    }

    /// <summary>act[t] = convert(x[t]) for <paramref name="n"/> rows of <paramref name="cols"/> floats (parallel for a large batch, as MatMul's conversion).</summary>
    public static void QuantizeRows(WorkerPool pool, int n, float* x, int cols, ActRows act)
    {
        using var _ = Profiler.Section(Profiler.Op.Quantize);
        pool.For(n, cols, (start, end, _) =>
        {
            for (int t = start; t < end; t++)
                ActivationQuantizer.QuantizeRow(act.Type, x + (long)t * cols, act.Data + t * act.RowBytes, cols);
        }, minParallelWork: MinParallelElements);
    }

    /// <summary>
    /// y[t, r] for weight rows [r0, r1) and every token: one VecDot per row for a single token,
    /// else tiles of <see cref="MatMul.TileActs"/> activation rows (MatMul.RowRange's order).
    /// </summary>
    private static void Rows(WeightFormat fmt, byte* w, long rowBytes, int cols, int r0, int r1, byte* act, long actBytes, int n, float* y, long yStride)
    {
        if (n == 1)
        {
            Dots(fmt, cols, w + r0 * rowBytes, rowBytes, r1 - r0, act, y + r0);
            return;
        }
        // A slice at a time, every activation tile meeting it while it is cached (a whole range per tile
        // would re-read the matrix once per tile when ForDynamic runs a job inline as one range).
        for (int c = r0; c < r1; c += MatMul.BatchChunkRows)
        {
            int nr = Math.Min(MatMul.BatchChunkRows, r1 - c);
            for (int a0 = 0; a0 < n; a0 += MatMul.TileActs)
            {
                int nActs = Math.Min(MatMul.TileActs, n - a0);
                fmt.VecDotTile(cols, w + c * rowBytes, rowBytes, nr, act + a0 * actBytes, actBytes, nActs, y + a0 * yStride + c, yStride);
            }
        }
    }

    /// <summary>
    /// One projection of a fused Q/K/V pass: y[t − First, r] = W[r] · act[t] (+ bias[r]) for tokens
    /// t from <see cref="First"/> to the end of the batch, rows <see cref="Rows"/> floats apart.
    /// </summary>
    public readonly struct Projection(WeightFormat Fmt, byte* Weights, long RowBytes, int Rows, byte* Act, long ActBytes, float[]? Bias, float* Y, int First = 0, float[]? Norm = null)
    {
        /// <summary>Per-head RMSNorm weights applied to every head after the bias and before rope (Qwen3's attn_q_norm / attn_k_norm), or null.</summary>
        public float[]? Norm { get; } = Norm;

        /// <summary>The first token projected (the last block's queries start at the first row whose logits are asked for).</summary>
        public int First { get; } = First;
        public WeightFormat Fmt { get; } = Fmt;
        public byte* Weights { get; } = Weights;
        public long RowBytes { get; } = RowBytes;
        public int Rows { get; } = Rows;
        public byte* Act { get; } = Act;
        public long ActBytes { get; } = ActBytes;
        public float[]? Bias { get; } = Bias;
        public float* Y { get; } = Y;
    }

    /// <summary>Rotary embedding applied in the Q/K epilogue: each token's angles and the pair layout.</summary>
    public readonly struct RopeAngles(float* Cos, float* Sin, int Pairs, bool Neox)
    {
        public float* Cos { get; } = Cos;
        public float* Sin { get; } = Sin;
        public int Pairs { get; } = Pairs;
        public bool Neox { get; } = Neox;
    }

    /// <summary>
    /// Q, K and V in one parallel pass, bias and rope included: their rows form one range that
    /// workers take a head (<paramref name="headDim"/> rows) at a time, so there is one hand-off
    /// instead of three (plus the rope pass), each reads the activations converted once, and each
    /// Q/K head is rotated while its rows are hot. Per value: the same dot products, then + bias,
    /// then the head's RMSNorm (<see cref="Projection.Norm"/>, with <paramref name="headNormEps"/>),
    /// then Rope.Apply on the head, as the generic path does in separate passes. A projection with
    /// <see cref="Projection.First"/> = n (no tokens) is skipped.
    /// </summary>
    public static void Qkv(int cols, int n, int headDim, WorkerPool pool, Projection q, Projection k, Projection v, RopeAngles rope, float headNormEps = 0)
    {
        int heads = (q.Rows + k.Rows + v.Rows) / headDim;
        int qHeads = q.Rows / headDim, kHeads = k.Rows / headDim;
        using var _ = Profiler.Section(Profiler.Op.QkvRope);
        pool.ForDynamic(heads, 1, (long)headDim * cols * n, (start, end, _) =>
        {
            for (int h = start; h < end; h++)
            {
                if (h < qHeads) Head(q, cols, n, h * headDim, headDim, rope, headNormEps);
                else if (h < qHeads + kHeads) Head(k, cols, n, (h - qHeads) * headDim, headDim, rope, headNormEps);
                else Head(v, cols, n, (h - qHeads - kHeads) * headDim, headDim, default, 0);
            }
        });
    }

    private static void Head(in Projection p, int cols, int batch, int r0, int headDim, in RopeAngles rope, float normEps)
    {
        int n = batch - p.First;
        if (n <= 0) return;
        byte* act = p.Act + p.First * p.ActBytes;
        // Chunks of the generic size inside the head, so a batch meets the same tiles.
        int chunk = n == 1 ? headDim : MatMul.BatchChunkRows; // a head is one work item: one call per head in decode
        for (int c = r0; c < r0 + headDim; c += chunk)
            Rows(p.Fmt, p.Weights, p.RowBytes, cols, c, Math.Min(r0 + headDim, c + chunk), act, p.ActBytes, n, p.Y, p.Rows);
        if (p.Bias is not null)
        {
            // + bias while the rows are hot (generic: Activations.AddBias afterwards; same single addition)
            fixed (float* bias = p.Bias)
                for (int t = 0; t < n; t++)
                {
                    float* y = p.Y + (long)t * p.Rows;
                    for (int r = r0; r < r0 + headDim; r++) y[r] += bias[r];
                }
        }
        if (p.Norm is not null)
        {
            // the head's RMSNorm while it is hot (generic: DecoderBlocks.HeadNorm over all heads afterwards; same RmsNorm.Forward per head)
            fixed (float* g = p.Norm)
                for (int t = 0; t < n; t++)
                {
                    float* head = p.Y + (long)t * p.Rows + r0;
                    RmsNorm.Forward(head, g, head, headDim, normEps);
                }
        }
        if (rope.Cos == null) return;
        for (int t = 0; t < n; t++)
        {
            long angle = (long)(p.First + t) * rope.Pairs; // row t is token First + t
            Rope.Apply(p.Y + (long)t * p.Rows + r0, 1, headDim, headDim, rope.Cos + angle, rope.Sin + angle, rope.Neox);
        }
    }

    /// <summary>y[t, r] = W[r] · act[t] for all <paramref name="rows"/> rows (y rows <paramref name="yStride"/> apart).</summary>
    public static void Project(WeightFormat fmt, byte* w, long rowBytes, int rows, int cols, byte* act, long actBytes, int n, float* y, int yStride, WorkerPool pool)
    {
        using var _ = Profiler.Section(n == 1 ? Profiler.Op.MatVec : Profiler.Op.MatMat);
        pool.ForDynamic(rows, ChunkRows(n, rowBytes, rows, pool.Threads), (long)cols * n, (start, end, _) =>
            Rows(fmt, w, rowBytes, cols, start, end, act, actBytes, n, y, yStride));
    }

    /// <summary>
    /// x[t, r] += W[r] · act[t], the same x + y per value as the generic path (the projection to a
    /// buffer, then a pass adding the buffer to x). A single token (decode) adds inside the product's
    /// work items, one hand-off for both. A batch computes the product into <paramref name="proj"/>
    /// ([n, xStride], the generic path's buffer) and adds it to x in a second pass, each thread over
    /// its own token rows: adding inside the tiles made both threads write every token's row of x,
    /// and measured 15–25% slower than the two passes on a 2-core AMD EPYC (attn_output and ffn_down,
    /// TinyLlama-shape Q8_0, pp128; 2026-11-30), more than the pass it saves.
    /// </summary>
    public static void Residual(WeightFormat fmt, byte* w, long rowBytes, int rows, int cols, byte* act, long actBytes, int n, float* x, int xStride, float* proj, WorkerPool pool)
    {
        int chunk = ChunkRows(n, rowBytes, rows, pool.Threads);
        using var _ = Profiler.Section(Profiler.Op.MatAdd);
        if (n > 1)
        {
            pool.ForDynamic(rows, chunk, (long)cols * n, (start, end, _) =>
                Rows(fmt, w, rowBytes, cols, start, end, act, actBytes, n, proj, xStride));
            pool.For(n, rows, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                    Activations.Add(x + (long)t * xStride, proj + (long)t * xStride, rows);
            }, minParallelWork: MinParallelElements);
            return;
        }
        pool.ForDynamic(rows, chunk, (long)cols * n, (start, end, _) =>
        {
            // ForDynamic runs a small job inline as one range: walk it a chunk at a time.
            float* tile = stackalloc float[MatMul.TileActs * chunk];
            for (int c = start; c < end; c += chunk)
            {
                int nr = Math.Min(chunk, end - c);
                for (int a0 = 0; a0 < n; a0 += MatMul.TileActs)
                {
                    int nActs = Math.Min(MatMul.TileActs, n - a0);
                    Tile(fmt, cols, w + c * rowBytes, rowBytes, nr, act + a0 * actBytes, actBytes, nActs, tile, nr);
                    for (int a = 0; a < nActs; a++)
                    {
                        float* xr = x + (long)(a0 + a) * xStride + c;
                        float* tr = tile + a * nr;
                        for (int r = 0; r < nr; r++) xr[r] += tr[r];
                    }
                }
            }
        });
    }

    /// <summary>
    /// K and V of the batch to the cache, then attention over it into <see cref="ForwardBatch.AttnOut"/>
    /// for the queries of tokens <paramref name="first"/> to the end of the batch (b.Q's rows from 0):
    /// the generic block's two steps, called and timed (EDGELLM_PROFILE) the same way.
    /// </summary>
    public static void Attend(ForwardBatch b, int il, int heads, int kvHeads, int headDim, int first = 0)
    {
        using (Profiler.Section(Profiler.Op.KvStore))
            b.Kv.Store(il, b.StartPos, b.K, b.V, b.Count);
        if (first == b.Count) return;
        using (Profiler.Section(Profiler.Op.Attention))
            Attention.Forward(b.Q, b.Count - first, b.StartPos + first, b.Kv, il, heads, kvHeads, headDim, b.AttnOut, b.AttnScratch, b.Pool);
    }

    /// <summary>Weight rows per work item of <see cref="GateUpSwiGlu"/>: the generic chunk for a row of gate and one of up, rounded up to whole activation blocks of the down projection.</summary>
    public static int GateUpChunkRows(int n, long rowBytes, int ffn, int threads, GgmlType downActType)
    {
        int block = GgmlTypes.Info(downActType).BlockSize;
        int chunk = ChunkRows(n, 2 * rowBytes, ffn, threads); // a row of each of gate and up
        return (chunk + block - 1) / block * block;
    }

    /// <summary>
    /// downAct[t] = convert(silu(Wgate · act[t]) ⊙ (Wup · act[t])) in one pass: each tile of gate and
    /// up rows is combined on the stack and converted straight to the down projection's activation
    /// type (whole blocks per work item, as a block only depends on its own values), so neither
    /// product nor the SwiGLU result is written out as floats and read back, and the conversion
    /// pass before ffn_down disappears. Per value: the same dots, the same SwiGlu, the same quantizer.
    /// That is the single-token (decode) path. A batch writes the SwiGLU rows as floats to
    /// <paramref name="swiglu"/> ([n, ffn]) and converts them in a second pass, each thread over its
    /// own token rows, as <see cref="Residual"/> does: converting inside the tiles has both threads
    /// write pieces of every token's activation row (a chunk of 64 values is 68 bytes of Q8_0, so
    /// neighbouring chunks share cache lines). On a 2-core AMD EPYC (TinyLlama-shape Q8_0, pp128;
    /// 2026-11-30) this pass took 1.15× the generic gate and up products with the conversion inside and
    /// 1.12× with it outside, within that host's noise; the rest of the gap is not explained yet.
    /// </summary>
    public static void GateUpSwiGlu(int cols, int ffn, int n, WorkerPool pool,
        WeightFormat fg, byte* wg, long gRowBytes, byte* gAct, long gActBytes,
        WeightFormat fu, byte* wu, long uRowBytes, byte* uAct, long uActBytes,
        ActRows downAct, float* swiglu)
    {
        int chunk = GateUpChunkRows(n, gRowBytes, ffn, pool.Threads, downAct.Type);
        var info = GgmlTypes.Info(downAct.Type);
        int sub = n == 1 ? chunk : MatMul.BatchChunkRows;
        if (ffn % info.BlockSize != 0) throw new ArgumentException($"feed-forward length {ffn} is not a whole number of {GgmlTypes.Name(downAct.Type)} blocks");
        using var _ = Profiler.Section(Profiler.Op.GateUpSwiGlu);
        pool.ForDynamic(ffn, chunk, 2L * cols * n, (start, end, _) =>
        {
            int tileActs = Math.Min(n, MatMul.TileActs);
            float* tg = stackalloc float[tileActs * chunk];
            float* tu = stackalloc float[tileActs * chunk];
            // ForDynamic runs a small job inline as one range: walk it a work item at a time.
            for (int c = start; c < end; c += chunk)
            {
                int nr = Math.Min(chunk, end - c);
                for (int a0 = 0; a0 < n; a0 += MatMul.TileActs)
                {
                    int nActs = Math.Min(MatMul.TileActs, n - a0);
                    for (int s = c; s < c + nr; s += sub)
                    {
                        int ns = Math.Min(sub, c + nr - s);
                        Tile(fg, cols, wg + s * gRowBytes, gRowBytes, ns, gAct + a0 * gActBytes, gActBytes, nActs, tg + (s - c), nr);
                        Tile(fu, cols, wu + s * uRowBytes, uRowBytes, ns, uAct + a0 * uActBytes, uActBytes, nActs, tu + (s - c), nr);
                    }
                    Activations.SwiGlu(tg, tu, nActs * nr);
                    if (n > 1)
                    {
                        for (int a = 0; a < nActs; a++)
                            new ReadOnlySpan<float>(tg + a * nr, nr).CopyTo(new Span<float>(swiglu + (long)(a0 + a) * ffn + c, nr));
                        continue;
                    }
                    long offset = (long)c / info.BlockSize * info.TypeSize;
                    for (int a = 0; a < nActs; a++)
                        ActivationQuantizer.QuantizeRow(downAct.Type, tg + a * nr, downAct.Data + (a0 + a) * downAct.RowBytes + offset, nr);
                }
            }
        });
        if (n > 1)
        {
            pool.For(n, ffn, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                    ActivationQuantizer.QuantizeRow(downAct.Type, swiglu + (long)t * ffn, downAct.Data + t * downAct.RowBytes, ffn);
            }, minParallelWork: MinParallelElements);
        }
    }

    private static void Tile(WeightFormat fmt, int cols, byte* w, long rowBytes, int nRows, byte* act, long actBytes, int nActs, float* y, long yStride)
    {
        if (nActs == 1)
            Dots(fmt, cols, w, rowBytes, nRows, act, y);
        else
            fmt.VecDotTile(cols, w, rowBytes, nRows, act, actBytes, nActs, y, yStride);
    }
}
