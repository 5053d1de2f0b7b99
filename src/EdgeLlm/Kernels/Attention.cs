namespace EdgeLlm.Kernels;

/// <summary>
/// Causal multi-head attention over an f16 KV cache, rounding where llama.cpp's non-flash path
/// rounds: kq = mul_mat(K_f16, Q) converts Q to f16; soft_max_ext scales, masks and normalizes in
/// f32 with a double sum; kqv = mul_mat(Vᵀ_f16, kq) converts the probabilities to f16.
/// </summary>
internal static unsafe class Attention
{
    /// <summary>Per-worker scratch bytes: scores (f32) and probabilities (f16) over the context, and one f16 query head.</summary>
    public static long WorkerScratchBytes(int contextLength, int headDim) =>
        Align((long)contextLength * sizeof(float)) + Align((long)contextLength * sizeof(ushort)) + Align((long)headDim * sizeof(ushort));

    private static long Align(long n) => (n + 63) & ~63L;

    /// <summary>
    /// out[t, h] = softmax(q[t, h] · K[0..pos]ᵀ / sqrt(head_dim)) · V[0..pos] for each query token
    /// t (at position startPos + t) and head h; head h reads KV head h / (heads / kv_heads).
    /// </summary>
    /// <param name="q">[nTokens, nHead * headDim] queries, after rope.</param>
    /// <param name="k">[contextLength, nHeadKv * headDim] cached keys for this layer.</param>
    /// <param name="vT">[nHeadKv * headDim, contextLength] cached values, transposed as llama.cpp stores them.</param>
    /// <param name="output">[nTokens, nHead * headDim].</param>
    /// <param name="scratch">threads × <see cref="WorkerScratchBytes"/> bytes.</param>
    public static void Forward(float* q, int nTokens, int startPos, Half* k, Half* vT, int contextLength,
        int nHead, int nHeadKv, int headDim, float* output, byte* scratch, int threads)
    {
        int qLen = nHead * headDim;
        int kvLen = nHeadKv * headDim;
        int group = nHead / nHeadKv;
        float scale = 1.0f / MathF.Sqrt(headDim);
        long workerBytes = WorkerScratchBytes(contextLength, headDim);

        WorkSplit.For(nTokens * nHead, threads, (long)(startPos + nTokens) * headDim * 2, (start, end, worker) =>
        {
            byte* ws = scratch + worker * workerBytes;
            float* scores = (float*)ws;
            Half* probs = (Half*)(ws + Align((long)contextLength * sizeof(float)));
            Half* qh = (Half*)(ws + Align((long)contextLength * sizeof(float)) + Align((long)contextLength * sizeof(ushort)));
            for (int item = start; item < end; item++)
            {
                int t = item / nHead;
                int h = item % nHead;
                int kvh = h / group;
                int nKv = startPos + t + 1; // causal: positions after this token are masked out
                HalfMath.Round(q + (long)t * qLen + h * headDim, qh, headDim);

                float max = float.NegativeInfinity;
                for (int j = 0; j < nKv; j++)
                {
                    float s = HalfMath.Dot(qh, k + (long)j * kvLen + kvh * headDim, headDim) * scale;
                    scores[j] = s;
                    if (s > max) max = s;
                }
                double sum = 0;
                for (int j = 0; j < nKv; j++)
                {
                    float e = MathF.Exp(scores[j] - max);
                    scores[j] = e;
                    sum += e;
                }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j < nKv; j++) probs[j] = (Half)(scores[j] * inv);

                float* o = output + (long)t * qLen + h * headDim;
                for (int d = 0; d < headDim; d++)
                    o[d] = HalfMath.Dot(probs, vT + (long)(kvh * headDim + d) * contextLength, nKv);
            }
        });
    }
}
