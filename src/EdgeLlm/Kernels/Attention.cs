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
/// the multiplications: ~14 cycles for a 16-lane sum, once per key and head). The cache keeps K
/// transposed (<see cref="KvCache.KT"/>: a row per dimension, positions contiguous), so a vector
/// holds one dimension of 16 consecutive keys: the scores of 16 keys are 16 lanes accumulated
/// over the head's dimensions with fused multiply-adds of a broadcast query value. V is kept a
/// row per position (<see cref="KvCache.V"/>), so the output of a head is a vector of dimensions
/// accumulated over positions with broadcast probabilities.
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
    /// <summary>Per-worker scratch bytes: scores/probabilities over the context and one query head, f32.</summary>
    public static long WorkerScratchBytes(int contextLength, int headDim) =>
        Align((long)contextLength * sizeof(float)) + Align((long)headDim * sizeof(float));

    private static long Align(long n) => (n + 63) & ~63L;

    /// <summary>
    /// out[t, h] = softmax(q[t, h] · K[0..pos]ᵀ / sqrt(head_dim)) · V[0..pos] for each query token
    /// t (at position startPos + t) and head h, over layer <paramref name="layer"/> of
    /// <paramref name="kv"/>; head h reads KV head h / (heads / kv_heads). Workers of
    /// <paramref name="pool"/> take (token, head) items from a shared counter.
    /// </summary>
    /// <param name="q">[nTokens, nHead * headDim] queries, after rope.</param>
    /// <param name="output">[nTokens, nHead * headDim].</param>
    /// <param name="scratch">pool.Threads × <see cref="WorkerScratchBytes"/> bytes.</param>
    public static void Forward(float* q, int nTokens, int startPos, KvCache kv, int layer,
        int nHead, int nHeadKv, int headDim, float* output, byte* scratch, WorkerPool pool)
    {
        int items = nTokens * nHead;
        int chunk = Math.Max(1, items / (pool.Threads * 4));
        int nKv = startPos + nTokens;
        int kvLen = nHeadKv * headDim;
        int ctx = kv.ContextLength;
        Half* kT = kv.KT(layer), v = kv.V(layer);
        long ws = WorkerScratchBytes(ctx, headDim);
        if (nTokens == 1)
        {
            // One token: every cached value is read once per head of its group; widening in
            // registers as it is read costs less than writing and re-reading an f32 copy.
            pool.ForDynamic(items, chunk, (long)nKv * headDim * 2, (start, end, worker) =>
                Items(q, startPos, kT, ctx, v, nHead, nHeadKv, headDim, output, scratch + worker * ws, start, end),
                minParallelWork: 1 << 14);
            return;
        }
        // A prompt: every cached key and value is met by several query tokens and by every head
        // of its group, so widen them to f32 once (exact; the same arithmetic follows).
        float[] kw = System.Buffers.ArrayPool<float>.Shared.Rent(nKv * kvLen);
        float[] vw = System.Buffers.ArrayPool<float>.Shared.Rent(nKv * kvLen);
        try
        {
            fixed (float* kf = kw)
            fixed (float* vf = vw)
            {
                float* kfp = kf, vfp = vf;
                // kvLen rows of Kᵀ (nKv positions each), then V's rows in chunks of 16 positions.
                int vChunks = (nKv + 15) / 16;
                pool.For(kvLen + vChunks, Math.Max(nKv, 16 * kvLen), (start, end, _) =>
                {
                    for (int r = start; r < end; r++)
                    {
                        if (r < kvLen)
                        {
                            HalfMath.Widen(kT + (long)r * ctx, kfp + (long)r * nKv, nKv);
                        }
                        else
                        {
                            int p0 = (r - kvLen) * 16, np = Math.Min(16, nKv - p0);
                            HalfMath.Widen(v + (long)p0 * kvLen, vfp + (long)p0 * kvLen, np * kvLen);
                        }
                    }
                });
                pool.ForDynamic(items, chunk, (long)nKv * headDim * 2, (start, end, worker) =>
                    Items(q, startPos, kfp, nKv, vfp, nHead, nHeadKv, headDim, output, scratch + worker * ws, start, end),
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
    /// Items [start, end) of the (token, head) grid with one worker's scratch, over keys
    /// <paramref name="kT"/> [kvLen, kStride] (f16 cache rows or their f32 copy) and values
    /// <paramref name="v"/> [positions, kvLen].
    /// </summary>
    // AggressiveOptimization here and below: a prompt's attention runs a few dozen calls, too few
    // for tiering to replace the unoptimized first compile before the prompt is done.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Items<T>(float* q, int startPos, T* kT, long kStride, T* v,
        int nHead, int nHeadKv, int headDim, float* output, byte* ws, int start, int end)
        where T : unmanaged
    {
        int qLen = nHead * headDim;
        int kvLen = nHeadKv * headDim;
        int group = nHead / nHeadKv;
        float scale = 1.0f / MathF.Sqrt(headDim);
        int lanes = Lanes;
        float* scores = (float*)ws;
        float* qh = (float*)(ws + Align(kStride * sizeof(float)));
        for (int item = start; item < end; item++)
        {
            int t = item / nHead;
            int h = item % nHead;
            int kvh = h / group;
            int nKv = startPos + t + 1; // causal: positions after this token are masked out
            // Q rounded to f16 values but kept as f32 (exact), as ggml converts it for the f16 product.
            Buffer.MemoryCopy(q + (long)t * qLen + h * headDim, qh, headDim * sizeof(float), headDim * sizeof(float));
            HalfMath.RoundInPlace(qh, headDim);

            float max = Scores(qh, kT + (long)kvh * headDim * kStride, kStride, nKv, headDim, scale, scores, lanes);
            Softmax.ExpNormalize(scores, nKv, max);
            HalfMath.RoundInPlace(scores, nKv);
            Values(scores, v + kvh * headDim, kvLen, nKv, headDim, output + (long)t * qLen + h * headDim, lanes);
        }
    }

    /// <summary>The widest vectors this machine runs (16, 8, 4 or 1 lane).</summary>
    internal static int Lanes =>
        Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : Vector128.IsHardwareAccelerated ? 4 : 1;

    /// <summary>
    /// scores[j] = (Σ_d q[d]·kT[d, j], one fused multiply-add chain in d) · scale for keys j in
    /// [0, n), in vectors of <paramref name="lanes"/> (<see cref="Lanes"/>; tests pass each width,
    /// every width gives the same bits); returns their maximum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Scores<T>(float* q, T* kT, long kStride, int n, int headDim, float scale, float* scores, int lanes)
        where T : unmanaged
    {
        int j = 0;
        if (lanes == 16)
        {
            for (; j + 64 <= n; j += 64) Scores4x512(q, kT + j, kStride, headDim, scale, scores + j);
            for (; j + 16 <= n; j += 16) Scores1x512(q, kT + j, kStride, headDim, scale, scores + j);
        }
        else if (lanes == 8)
        {
            for (; j + 32 <= n; j += 32) Scores4x256(q, kT + j, kStride, headDim, scale, scores + j);
            for (; j + 8 <= n; j += 8) Scores1x256(q, kT + j, kStride, headDim, scale, scores + j);
        }
        else if (lanes == 4)
        {
            for (; j + 4 <= n; j += 4) Scores1x128(q, kT + j, kStride, headDim, scale, scores + j);
        }
        for (; j < n; j++)
        {
            float s = 0;
            for (int d = 0; d < headDim; d++) s = MathF.FusedMultiplyAdd(q[d], Load1(kT, d * kStride + j), s);
            scores[j] = s * scale;
        }
        // The maximum only shifts the exponent: with a NaN score every probability is NaN whichever
        // maximum is taken, and ±0 shift alike, so the vector Max's NaN and zero rules change nothing.
        float max = float.NegativeInfinity;
        j = 0;
        if (lanes >= 8 && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; j + 8 <= n; j += 8) m = Vector256.Max(m, Vector256.Load(scores + j));
            for (int l = 0; l < 8; l++) max = MathF.Max(max, m[l]);
        }
        for (; j < n; j++) max = MathF.Max(max, scores[j]);
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores1x512<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector512<float> a0 = default;
        for (int d = 0; d < headDim; d++, k += stride)
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d]), Load512(k), a0);
        (a0 * Vector512.Create(scale)).Store(s);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4x256<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d++, k += stride)
        {
            var qd = Vector256.Create(q[d]);
            a0 = Vector256.FusedMultiplyAdd(qd, Load256(k), a0);
            a1 = Vector256.FusedMultiplyAdd(qd, Load256(k + 8), a1);
            a2 = Vector256.FusedMultiplyAdd(qd, Load256(k + 16), a2);
            a3 = Vector256.FusedMultiplyAdd(qd, Load256(k + 24), a3);
        }
        var sc = Vector256.Create(scale);
        (a0 * sc).Store(s);
        (a1 * sc).Store(s + 8);
        (a2 * sc).Store(s + 16);
        (a3 * sc).Store(s + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores1x256<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector256<float> a0 = default;
        for (int d = 0; d < headDim; d++, k += stride)
            a0 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d]), Load256(k), a0);
        (a0 * Vector256.Create(scale)).Store(s);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores1x128<T>(float* q, T* k, long stride, int headDim, float scale, float* s) where T : unmanaged
    {
        Vector128<float> a0 = default;
        for (int d = 0; d < headDim; d++, k += stride)
            a0 = Vector128.FusedMultiplyAdd(Vector128.Create(q[d]), Load128(k), a0);
        (a0 * Vector128.Create(scale)).Store(s);
    }

    /// <summary>
    /// o[d] = even + odd, where even (odd) is the fused multiply-add chain of p[j]·v[j, d] over the
    /// even (odd) positions j in [0, n) in order, for dimensions d in [0, headDim); rows of
    /// <paramref name="v"/> are <paramref name="vStride"/> apart. Vectors of <paramref name="lanes"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Values<T>(float* p, T* v, long vStride, int n, int headDim, float* o, int lanes) where T : unmanaged
    {
        int d = 0;
        if (lanes == 16)
        {
            for (; d + 64 <= headDim; d += 64) Values4x512(p, v + d, vStride, n, o + d);
            for (; d + 16 <= headDim; d += 16) Values1x512(p, v + d, vStride, n, o + d);
        }
        else if (lanes == 8)
        {
            for (; d + 32 <= headDim; d += 32) Values4x256(p, v + d, vStride, n, o + d);
            for (; d + 8 <= headDim; d += 8) Values1x256(p, v + d, vStride, n, o + d);
        }
        else if (lanes == 4)
        {
            for (; d + 4 <= headDim; d += 4) Values1x128(p, v + d, vStride, n, o + d);
        }
        for (; d < headDim; d++)
        {
            float even = 0, odd = 0;
            int j = 0;
            for (; j + 2 <= n; j += 2)
            {
                even = MathF.FusedMultiplyAdd(p[j], Load1(v, j * vStride + d), even);
                odd = MathF.FusedMultiplyAdd(p[j + 1], Load1(v, (j + 1) * vStride + d), odd);
            }
            if (j < n) even = MathF.FusedMultiplyAdd(p[j], Load1(v, j * vStride + d), even);
            o[d] = even + odd;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values4x512<T>(float* p, T* v, long stride, int n, float* o) where T : unmanaged
    {
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default;
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
        (e0 + d0).Store(o);
        (e1 + d1).Store(o + 16);
        (e2 + d2).Store(o + 32);
        (e3 + d3).Store(o + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x512<T>(float* p, T* v, long stride, int n, float* o) where T : unmanaged
    {
        Vector512<float> e0 = default, d0 = default;
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Load512(v), e0);
            d0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j + 1]), Load512(v + stride), d0);
        }
        if (j < n) e0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Load512(v), e0);
        (e0 + d0).Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values4x256<T>(float* p, T* v, long stride, int n, float* o) where T : unmanaged
    {
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default;
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            var pe = Vector256.Create(p[j]);
            var po = Vector256.Create(p[j + 1]);
            T* w = v + stride;
            e0 = Vector256.FusedMultiplyAdd(pe, Load256(v), e0);
            e1 = Vector256.FusedMultiplyAdd(pe, Load256(v + 8), e1);
            e2 = Vector256.FusedMultiplyAdd(pe, Load256(v + 16), e2);
            e3 = Vector256.FusedMultiplyAdd(pe, Load256(v + 24), e3);
            d0 = Vector256.FusedMultiplyAdd(po, Load256(w), d0);
            d1 = Vector256.FusedMultiplyAdd(po, Load256(w + 8), d1);
            d2 = Vector256.FusedMultiplyAdd(po, Load256(w + 16), d2);
            d3 = Vector256.FusedMultiplyAdd(po, Load256(w + 24), d3);
        }
        if (j < n)
        {
            var pe = Vector256.Create(p[j]);
            e0 = Vector256.FusedMultiplyAdd(pe, Load256(v), e0);
            e1 = Vector256.FusedMultiplyAdd(pe, Load256(v + 8), e1);
            e2 = Vector256.FusedMultiplyAdd(pe, Load256(v + 16), e2);
            e3 = Vector256.FusedMultiplyAdd(pe, Load256(v + 24), e3);
        }
        (e0 + d0).Store(o);
        (e1 + d1).Store(o + 8);
        (e2 + d2).Store(o + 16);
        (e3 + d3).Store(o + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x256<T>(float* p, T* v, long stride, int n, float* o) where T : unmanaged
    {
        Vector256<float> e0 = default, d0 = default;
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), Load256(v), e0);
            d0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j + 1]), Load256(v + stride), d0);
        }
        if (j < n) e0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), Load256(v), e0);
        (e0 + d0).Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values1x128<T>(float* p, T* v, long stride, int n, float* o) where T : unmanaged
    {
        Vector128<float> e0 = default, d0 = default;
        int j = 0;
        for (; j + 2 <= n; j += 2, v += 2 * stride)
        {
            e0 = Vector128.FusedMultiplyAdd(Vector128.Create(p[j]), Load128(v), e0);
            d0 = Vector128.FusedMultiplyAdd(Vector128.Create(p[j + 1]), Load128(v + stride), d0);
        }
        if (j < n) e0 = Vector128.FusedMultiplyAdd(Vector128.Create(p[j]), Load128(v), e0);
        (e0 + d0).Store(o);
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
    private static Vector128<float> Load128<T>(T* p) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Vector128.Load((float*)p);
        var h = (Half*)p;
        return Vector128.Create((float)h[0], (float)h[1], (float)h[2], (float)h[3]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Load1<T>(T* p, long i) where T : unmanaged =>
        typeof(T) == typeof(float) ? ((float*)p)[i] : (float)((Half*)p)[i];
}
