using EdgeLlm.Models;
using EdgeLlm.Quant;

namespace EdgeLlm.Kernels;

/// <summary>
/// Y = X · Wᵀ for a batch of activation rows, through the weight's <see cref="WeightFormat"/>
/// (ggml_compute_forward_mul_mat's scheme): each activation row is converted once to the
/// format's vec-dot type, then every weight row is dotted with every converted activation row.
/// </summary>
internal static unsafe class MatMul
{
    /// <summary>Bytes of activation scratch <see cref="Multiply"/> needs for <paramref name="nTokens"/> rows.</summary>
    public static long ScratchBytes(WeightMatrix w, int nTokens) =>
        nTokens * ActivationQuantizer.RowBytes(w.Format.VecDotType, w.Cols);

    /// <summary>
    /// y[t, r] = Σ_c W[r, c] · x[t, c] for t &lt; <paramref name="nTokens"/>, r &lt; W.Rows.
    /// x rows are W.Cols floats apart, y rows W.Rows floats apart.
    /// </summary>
    /// <param name="scratch">at least <see cref="ScratchBytes"/> bytes for the converted activations.</param>
    public static void Multiply(WeightMatrix w, float* x, int nTokens, float* y, byte* scratch, int threads)
    {
        var fmt = w.Format;
        int cols = w.Cols;
        int rows = w.Rows;
        long actBytes = ActivationQuantizer.RowBytes(fmt.VecDotType, cols);
        for (int t = 0; t < nTokens; t++)
            ActivationQuantizer.QuantizeRow(fmt.VecDotType, x + (long)t * cols, scratch + t * actBytes, cols);

        // Weight rows are the outer loop so that each row is read from memory once for all tokens
        // of the batch; threads take disjoint ranges of rows.
        WorkSplit.For(rows, threads, (long)cols * nTokens, (start, end, _) =>
        {
            for (int r = start; r < end; r++)
            {
                byte* wr = w.Row(r);
                for (int t = 0; t < nTokens; t++)
                    y[(long)t * rows + r] = fmt.VecDot(cols, wr, scratch + t * actBytes);
            }
        });
    }
}
