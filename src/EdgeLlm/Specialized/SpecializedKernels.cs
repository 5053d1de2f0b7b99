using EdgeLlm.Gguf;
using EdgeLlm.Kernels;
using EdgeLlm.Quant;

namespace EdgeLlm.Specialized;

/// <summary>
/// The fused steps generated forward passes call. Each keeps the generic path's arithmetic per
/// value (the same RmsNorm, activation quantizers, VecDotTile and SwiGlu, and x + y for residuals)
/// and changes only how many passes over memory and how many thread hand-offs a layer takes.
/// </summary>
internal static unsafe class SpecializedKernels
{
    /// <summary>Rows per tile when a tile's results are post-processed on the stack (residual add, SwiGLU).</summary>
    private const int TileRows = 8;

    /// <summary>The registered format of <paramref name="type"/> (generated code keeps it in a static readonly field).</summary>
    public static WeightFormat Format(GgmlType type) =>
        WeightFormat.TryGet(type, out var f) ? f : throw new NotSupportedException($"no weight format for {GgmlTypes.Name(type)}");

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

    /// <summary>One projection of a fused Q/K/V pass: y[t, r] = W[r] · act[t] (+ bias[r]).</summary>
    public readonly struct Projection(WeightFormat Fmt, byte* Weights, long RowBytes, int Rows, byte* Act, long ActBytes, float[]? Bias, float* Y)
    {
        public WeightFormat Fmt { get; } = Fmt;
        public byte* Weights { get; } = Weights;
        public long RowBytes { get; } = RowBytes;
        public int Rows { get; } = Rows;
        public byte* Act { get; } = Act;
        public long ActBytes { get; } = ActBytes;
        public float[]? Bias { get; } = Bias;
        public float* Y { get; } = Y;
    }

    /// <summary>
    /// Q, K and V in one parallel pass: their rows are one range split across threads, so there is
    /// one hand-off instead of three, and each reads the activations converted once.
    /// </summary>
    public static void Qkv(int cols, int n, WorkerPool pool, Projection q, Projection k, Projection v)
    {
        int total = q.Rows + k.Rows + v.Rows;
        pool.For(total, (long)cols * n, (start, end, _) =>
        {
            Segment(q, cols, n, start, end, 0);
            Segment(k, cols, n, start, end, q.Rows);
            Segment(v, cols, n, start, end, q.Rows + k.Rows);
        });
    }

    private static void Segment(in Projection p, int cols, int n, int start, int end, int offset)
    {
        int lo = Math.Max(start, offset), hi = Math.Min(end, offset + p.Rows);
        if (lo >= hi) return;
        int r0 = lo - offset, rows = hi - lo;
        p.Fmt.VecDotTile(cols, p.Weights + r0 * p.RowBytes, p.RowBytes, rows, p.Act, p.ActBytes, n, p.Y + r0, p.Rows);
        if (p.Bias is null) return;
        // + bias while the rows are hot (generic: Activations.AddBias afterwards; same single addition)
        fixed (float* bias = p.Bias)
            for (int t = 0; t < n; t++)
            {
                float* y = p.Y + (long)t * p.Rows;
                for (int r = r0; r < r0 + rows; r++) y[r] += bias[r];
            }
    }

    /// <summary>y[t, r] = W[r] · act[t] for all <paramref name="rows"/> rows (y rows <paramref name="yStride"/> apart).</summary>
    public static void Project(WeightFormat fmt, byte* w, long rowBytes, int rows, int cols, byte* act, long actBytes, int n, float* y, int yStride, WorkerPool pool)
    {
        pool.For(rows, (long)cols * n, (start, end, _) =>
            fmt.VecDotTile(cols, w + start * rowBytes, rowBytes, end - start, act, actBytes, n, y + start, yStride));
    }

    /// <summary>
    /// x[t, r] += W[r] · act[t]: the projection and the residual add in one pass (generic: the
    /// projection to a buffer, then a pass adding the buffer to x; same x + y per value).
    /// </summary>
    public static void Residual(WeightFormat fmt, byte* w, long rowBytes, int rows, int cols, byte* act, long actBytes, int n, float* x, int xStride, WorkerPool pool)
    {
        pool.For(rows, (long)cols * n, (start, end, _) =>
        {
            float* tile = stackalloc float[TileRows * n];
            for (int r0 = start; r0 < end; r0 += TileRows)
            {
                int nr = Math.Min(TileRows, end - r0);
                fmt.VecDotTile(cols, w + r0 * rowBytes, rowBytes, nr, act, actBytes, n, tile, nr);
                for (int t = 0; t < n; t++)
                {
                    float* xr = x + (long)t * xStride + r0;
                    float* tr = tile + t * nr;
                    for (int r = 0; r < nr; r++) xr[r] += tr[r];
                }
            }
        });
    }

    /// <summary>
    /// gate[t, r] = silu(Wgate[r] · act[t]) · (Wup[r] · act[t]) in one pass: each tile of gate and
    /// up rows is combined on the stack, so neither product is written out and read back.
    /// </summary>
    public static void GateUpSwiGlu(int cols, int ffn, int n, WorkerPool pool,
        WeightFormat fg, byte* wg, long gRowBytes, byte* gAct, long gActBytes,
        WeightFormat fu, byte* wu, long uRowBytes, byte* uAct, long uActBytes,
        float* gateOut)
    {
        pool.For(ffn, 2L * cols * n, (start, end, _) =>
        {
            float* tg = stackalloc float[TileRows * n];
            float* tu = stackalloc float[TileRows * n];
            for (int r0 = start; r0 < end; r0 += TileRows)
            {
                int nr = Math.Min(TileRows, end - r0);
                fg.VecDotTile(cols, wg + r0 * gRowBytes, gRowBytes, nr, gAct, gActBytes, n, tg, nr);
                fu.VecDotTile(cols, wu + r0 * uRowBytes, uRowBytes, nr, uAct, uActBytes, n, tu, nr);
                Activations.SwiGlu(tg, tu, nr * n);
                for (int t = 0; t < n; t++)
                    Buffer.MemoryCopy(tg + t * nr, gateOut + (long)t * ffn + r0, nr * sizeof(float), nr * sizeof(float));
            }
        });
    }
}
