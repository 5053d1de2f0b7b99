using EdgeLlm.Models;
using EdgeLlm.Quant;

namespace EdgeLlm.Kernels;

/// <summary>
/// Y = X · Wᵀ for a batch of activation rows, through the weight's <see cref="WeightFormat"/>
/// (ggml_compute_forward_mul_mat's scheme): each activation row is converted once to the
/// format's vec-dot type, then every weight row is dotted with every converted activation row.
/// Every output element is one <see cref="WeightFormat.VecDot"/> (or the bit-identical
/// <see cref="WeightFormat.VecDotTile"/>), so the result does not depend on the thread count.
/// </summary>
internal static unsafe class MatMul
{
    /// <summary>
    /// Bytes of weights per work item of a single-token product (decode), see <see cref="DecodeChunkRows"/>.
    /// 128 KB until 2026-12-02, when work items became owned runs (<see cref="WorkerPool.ForDynamic"/>):
    /// since then the generic products measure the same at 128 and 512 KB, while the specialized
    /// gate/up pass, which alternates between the two matrices once per item, was 5–8% slower than the
    /// generic products at 128 KB and even at 512 KB (2026-12-02, the 2-core AVX-512 AMD EPYC,
    /// x64-avx512 NativeAOT build, <c>bench -t 2 -p 0 -n 32 -r 6 --vs-generic</c>, two alternating
    /// rounds, specialized / generic t/s: TinyLlama Q4_0 59.4 / 60.7 and 56.9 / 59.7 at 128 KB, 60.7 /
    /// 59.3 and 60.3 / 59.8 at 512 KB; Q8_0 35.7 / 38.7, 34.7 / 38.1 against 40.5 / 40.2, 37.7 / 36.6;
    /// qwen2.5-0.5b Q4_0 and TinyLlama Q4_K_M even at both).
    /// </summary>
    internal static readonly int DecodeChunkBytes = int.TryParse(Environment.GetEnvironmentVariable("EDGELLM_DECODE_CHUNK_BYTES"), out var c) ? c : 512 << 10;

    /// <summary>
    /// Weight rows per work item of a single-token product (decode) over <paramref name="rows"/>
    /// rows on <paramref name="threads"/> workers: about <see cref="DecodeChunkBytes"/> of weights,
    /// but at least 4 items per worker, a multiple of 16 rows (of every
    /// <see cref="WeightFormat.RowGroup"/>), at most 1024. Each item is one run of contiguous memory
    /// for the worker streaming it: items of 16 rows (8 KB on a 896-wide Q4_0 matrix) broke every
    /// worker's stream into pieces the hardware prefetcher restarted on, and measured ~10% slower
    /// on qwen2.5-0.5b decode at 2 threads than items of 128–512 rows.
    /// </summary>
    internal static int DecodeChunkRows(long rowBytes, int rows, int threads) => DecodeChunkRows(rowBytes, rows, threads, DecodeChunkBytes);

    /// <summary><see cref="DecodeChunkRows(long, int, int)"/> for items of about <paramref name="chunkBytes"/>.</summary>
    internal static int DecodeChunkRows(long rowBytes, int rows, int threads, long chunkBytes)
    {
        long byBytes = chunkBytes / Math.Max(1, rowBytes);
        long byBalance = rows / (4L * Math.Max(1, threads));
        return (int)Math.Clamp((Math.Min(byBytes, byBalance) + 15) / 16 * 16, 16, 1024);
    }

    /// <summary>Weight rows per work item of a batch product: the rows of one chunk stay in L2 while every activation tile passes, and a tile kernel that repacks activations (AVX-512 Q4_0/Q8_0) repacks once per 64 rows.</summary>
    internal const int BatchChunkRows = 64;

    /// <summary>Activation rows per <see cref="WeightFormat.VecDotTile"/> call.</summary>
    internal const int TileActs = 16;

    /// <summary>Bytes of activation scratch <see cref="Multiply(WeightMatrix, float*, int, float*, byte*, int)"/> needs for <paramref name="nTokens"/> rows.</summary>
    public static long ScratchBytes(WeightMatrix w, int nTokens) =>
        nTokens * ActivationQuantizer.RowBytes(w.Format.VecDotType, w.Cols);

    /// <summary>
    /// y[t, r] = Σ_c W[r, c] · x[t, c] for t &lt; <paramref name="nTokens"/>, r &lt; W.Rows.
    /// x rows are W.Cols floats apart, y rows W.Rows floats apart. Splits the rows over
    /// <paramref name="threads"/> with <see cref="WorkSplit"/> (no persistent pool); the forward
    /// pass uses the <see cref="WorkerPool"/> overload.
    /// </summary>
    /// <param name="scratch">at least <see cref="ScratchBytes"/> bytes for the converted activations.</param>
    public static void Multiply(WeightMatrix w, float* x, int nTokens, float* y, byte* scratch, int threads)
    {
        var fmt = w.Format;
        int cols = w.Cols;
        long actBytes = ActivationQuantizer.RowBytes(fmt.VecDotType, cols);
        for (int t = 0; t < nTokens; t++)
            ActivationQuantizer.QuantizeRow(fmt.VecDotType, x + (long)t * cols, scratch + t * actBytes, cols);
        // A repacked format computes whole groups of rows: split in groups.
        int group = fmt.RowGroup;
        int units = (w.Rows + group - 1) / group;
        WorkSplit.For(units, threads, (long)cols * nTokens * group,
            (start, end, _) => RowRange(w, scratch, actBytes, nTokens, y, start * group, Math.Min(w.Rows, end * group)));
    }

    /// <summary>
    /// As <see cref="Multiply(WeightMatrix, float*, int, float*, byte*, int)"/> on the team of
    /// <paramref name="pool"/>: the activation rows are converted in parallel (when there are
    /// several), then workers take chunks of weight rows from a shared counter. A single token
    /// (decode) is a matrix-vector product bound by reading the weights; a batch goes through
    /// <see cref="WeightFormat.VecDotTile"/> so each chunk of weight rows is read once per
    /// tile of activation rows.
    /// </summary>
    public static void Multiply(WeightMatrix w, float* x, int nTokens, float* y, byte* scratch, WorkerPool pool)
    {
        var fmt = w.Format;
        int cols = w.Cols;
        long actBytes = ActivationQuantizer.RowBytes(fmt.VecDotType, cols);
        var activationType = fmt.VecDotType;
        using (Profiler.Section(Profiler.Op.Quantize))
        {
            pool.For(nTokens, cols, (start, end, _) =>
            {
                for (int t = start; t < end; t++)
                    ActivationQuantizer.QuantizeRow(activationType, x + (long)t * cols, scratch + t * actBytes, cols);
            }, minParallelWork: 1 << 16);
        }

        using (Profiler.Section(nTokens == 1 ? Profiler.Op.MatVec : Profiler.Op.MatMat))
        {
            int chunk = nTokens == 1 ? DecodeChunkRows(w.RowBytes, w.Rows, pool.Threads) : BatchChunkRows;
            pool.ForDynamic(w.Rows, chunk, (long)cols * nTokens,
                (start, end, _) => RowRange(w, scratch, actBytes, nTokens, y, start, end));
        }
    }

    /// <summary>Output columns [start, end) (weight rows) for every token.</summary>
    internal static void RowRange(WeightMatrix w, byte* acts, long actBytes, int nTokens, float* y, int start, int end)
    {
        var fmt = w.Format;
        int cols = w.Cols;
        int rows = w.Rows;
        if (nTokens == 1)
        {
            fmt.VecDotRows(cols, w.At(start), w.RowBytes, end - start, acts, y + start);
            return;
        }
        // A slice of BatchChunkRows weight rows stays cached while each tile of activation rows meets it.
        // The range is walked a slice at a time: on one thread (or for a small job) ForDynamic hands the
        // whole matrix over as one range, and meeting every tile with all of it re-read the matrix from
        // memory once per tile (the specialized path always walked slices: it measured 1.17x this
        // path's pp128 on one thread, TinyLlama-shape Q8_0, before this loop).
        for (int c = start; c < end; c += BatchChunkRows)
        {
            int nr = Math.Min(BatchChunkRows, end - c);
            for (int a0 = 0; a0 < nTokens; a0 += TileActs)
            {
                int nActs = Math.Min(TileActs, nTokens - a0);
                fmt.VecDotTile(cols, w.At(c), w.RowBytes, nr, acts + a0 * actBytes, actBytes, nActs,
                    y + (long)a0 * rows + c, rows);
            }
        }
    }
}
