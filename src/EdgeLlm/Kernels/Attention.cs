namespace EdgeLlm.Kernels;

/// <summary>
/// Causal multi-head attention over an f16 KV cache, rounding where llama.cpp's non-flash path
/// rounds: kq = mul_mat(K_f16, Q) converts Q to f16; soft_max_ext scales, masks and normalizes in
/// f32 with a double sum; kqv = mul_mat(Vᵀ_f16, kq) converts the probabilities to f16.
/// </summary>
internal static unsafe class Attention
{
    /// <summary>Per-worker scratch bytes: scores/probabilities over the context and one query head, f32.</summary>
    public static long WorkerScratchBytes(int contextLength, int headDim) =>
        Align((long)contextLength * sizeof(float)) + Align((long)headDim * sizeof(float));

    private static long Align(long n) => (n + 63) & ~63L;

    /// <summary>
    /// out[t, h] = softmax(q[t, h] · K[0..pos]ᵀ / sqrt(head_dim)) · V[0..pos] for each query token
    /// t (at position startPos + t) and head h; head h reads KV head h / (heads / kv_heads).
    /// Splits the (token, head) items over <paramref name="threads"/> with <see cref="WorkSplit"/>.
    /// </summary>
    /// <param name="q">[nTokens, nHead * headDim] queries, after rope.</param>
    /// <param name="k">[contextLength, nHeadKv * headDim] cached keys for this layer.</param>
    /// <param name="vT">[nHeadKv * headDim, contextLength] cached values, transposed as llama.cpp stores them.</param>
    /// <param name="output">[nTokens, nHead * headDim].</param>
    /// <param name="scratch">threads × <see cref="WorkerScratchBytes"/> bytes.</param>
    public static void Forward(float* q, int nTokens, int startPos, Half* k, Half* vT, int contextLength,
        int nHead, int nHeadKv, int headDim, float* output, byte* scratch, int threads)
    {
        WorkSplit.For(nTokens * nHead, threads, (long)(startPos + nTokens) * headDim * 2, (start, end, worker) =>
            Items(q, startPos, k, vT, contextLength, nHead, nHeadKv, headDim, output, scratch + worker * WorkerScratchBytes(contextLength, headDim), start, end));
    }

    /// <summary>
    /// As the other overload, on the team of <paramref name="pool"/>: workers take (token, head)
    /// items from a shared counter; <paramref name="scratch"/> holds pool.Threads × <see cref="WorkerScratchBytes"/>.
    /// </summary>
    public static void Forward(float* q, int nTokens, int startPos, Half* k, Half* vT, int contextLength,
        int nHead, int nHeadKv, int headDim, float* output, byte* scratch, WorkerPool pool)
    {
        int items = nTokens * nHead;
        int chunk = Math.Max(1, items / (pool.Threads * 4));
        if (nTokens == 1)
        {
            pool.ForDynamic(items, chunk, (long)(startPos + nTokens) * headDim * 2, (start, end, worker) =>
                Items(q, startPos, k, vT, contextLength, nHead, nHeadKv, headDim, output, scratch + worker * WorkerScratchBytes(contextLength, headDim), start, end),
                minParallelWork: 1 << 14);
            return;
        }
        // A prompt: every cached key and value of this layer is met by several query tokens and by
        // every head of its group, so widen them to f32 once (exact) instead of once per dot.
        // Dots then run HalfMath.DotWidened, bit-identical to HalfMath.Dot on the f16 values.
        int nKv = startPos + nTokens;
        int kvLen = nHeadKv * headDim;
        float[] kw = System.Buffers.ArrayPool<float>.Shared.Rent(nKv * kvLen);
        float[] vw = System.Buffers.ArrayPool<float>.Shared.Rent(nKv * kvLen);
        try
        {
            fixed (float* kf = kw)
            fixed (float* vf = vw)
            {
                float* kfp = kf, vfp = vf;
                pool.For(nKv + kvLen, headDim, (start, end, _) =>
                {
                    for (int r = start; r < end; r++)
                    {
                        if (r < nKv) HalfMath.Widen(k + (long)r * kvLen, kfp + (long)r * kvLen, kvLen);          // K row of position r
                        else HalfMath.Widen(vT + (long)(r - nKv) * contextLength, vfp + (long)(r - nKv) * nKv, nKv); // Vᵀ row of dimension r - nKv
                    }
                });
                pool.ForDynamic(items, chunk, (long)nKv * headDim * 2, (start, end, worker) =>
                    ItemsWidened(q, startPos, kfp, vfp, nKv, nHead, nHeadKv, headDim, output, scratch + worker * WorkerScratchBytes(contextLength, headDim), start, end),
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
    /// <see cref="Items"/> over keys and values widened to f32: <paramref name="kf"/> [nKvAll, kvLen],
    /// <paramref name="vf"/> [kvLen, nKvAll]. Same arithmetic in the same order.
    /// </summary>
    private static void ItemsWidened(float* q, int startPos, float* kf, float* vf, int nKvAll,
        int nHead, int nHeadKv, int headDim, float* output, byte* ws, int start, int end)
    {
        int qLen = nHead * headDim;
        int kvLen = nHeadKv * headDim;
        int group = nHead / nHeadKv;
        float scale = 1.0f / MathF.Sqrt(headDim);
        float* scores = (float*)ws;
        float* qh = (float*)(ws + Align((long)nKvAll * sizeof(float)));
        for (int item = start; item < end; item++)
        {
            int t = item / nHead;
            int h = item % nHead;
            int kvh = h / group;
            int nKv = startPos + t + 1;
            Buffer.MemoryCopy(q + (long)t * qLen + h * headDim, qh, headDim * sizeof(float), headDim * sizeof(float));
            HalfMath.RoundInPlace(qh, headDim);

            float max = float.NegativeInfinity;
            float* kh = kf + kvh * headDim;
            for (int j = 0; j < nKv; j++)
            {
                float s = HalfMath.DotWidened(qh, kh + (long)j * kvLen, headDim) * scale;
                scores[j] = s;
                if (s > max) max = s;
            }
            Softmax.ExpNormalize(scores, nKv, max);
            HalfMath.RoundInPlace(scores, nKv);

            float* o = output + (long)t * qLen + h * headDim;
            float* vh = vf + (long)kvh * headDim * nKvAll;
            for (int d = 0; d < headDim; d++)
                o[d] = HalfMath.DotWidened(scores, vh + (long)d * nKvAll, nKv);
        }
    }

    /// <summary>Items [start, end) of the (token, head) grid, with one worker's scratch.</summary>
    private static void Items(float* q, int startPos, Half* k, Half* vT, int contextLength,
        int nHead, int nHeadKv, int headDim, float* output, byte* ws, int start, int end)
    {
        int qLen = nHead * headDim;
        int kvLen = nHeadKv * headDim;
        int group = nHead / nHeadKv;
        float scale = 1.0f / MathF.Sqrt(headDim);
        // Q and the probabilities are rounded to f16 values but kept as f32 (exact), so each is
        // widened once rather than once per dot product.
        float* scores = (float*)ws;
        float* qh = (float*)(ws + Align((long)contextLength * sizeof(float)));
        for (int item = start; item < end; item++)
        {
            int t = item / nHead;
            int h = item % nHead;
            int kvh = h / group;
            int nKv = startPos + t + 1; // causal: positions after this token are masked out
            Buffer.MemoryCopy(q + (long)t * qLen + h * headDim, qh, headDim * sizeof(float), headDim * sizeof(float));
            HalfMath.RoundInPlace(qh, headDim);

            float max = float.NegativeInfinity;
            Half* kh = k + kvh * headDim;
            for (int j = 0; j < nKv; j++)
            {
                float s = HalfMath.Dot(qh, kh + (long)j * kvLen, headDim) * scale;
                scores[j] = s;
                if (s > max) max = s;
            }
            Softmax.ExpNormalize(scores, nKv, max);
            HalfMath.RoundInPlace(scores, nKv);

            float* o = output + (long)t * qLen + h * headDim;
            Half* vh = vT + (long)kvh * headDim * contextLength;
            for (int d = 0; d < headDim; d++)
                o[d] = HalfMath.Dot(scores, vh + (long)d * contextLength, nKv);
        }
    }
}
