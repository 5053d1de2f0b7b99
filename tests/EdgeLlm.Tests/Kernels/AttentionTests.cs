using System.Runtime.Intrinsics;
using EdgeLlm.Engine;
using EdgeLlm.Kernels;
using Xunit;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The attention's summation order is a definition (Attention's remarks): every vector width, the
/// f16 (decode) and f32 (prompt) operand paths, and a batch or token-by-token run must all give
/// its bits exactly. Golden tests and the specialized-vs-generic equivalence rely on that.
/// </summary>
public unsafe class AttentionTests
{
    public static TheoryData<int, int> Shapes()
    {
        var data = new TheoryData<int, int>();
        foreach (int lanes in new[] { 16, 8, 4, 1 })
            foreach (int headDim in new[] { 8, 16, 32, 48, 64, 80, 128 })
                data.Add(lanes, headDim);
        return data;
    }

    private static bool Runs(int lanes) => lanes switch
    {
        16 => Vector512.IsHardwareAccelerated,
        8 => Vector256.IsHardwareAccelerated,
        4 => Vector128.IsHardwareAccelerated,
        _ => true,
    };

    /// <summary>Where key j's dimension d sits in the cache's layout of keys (KvCache.Keys): blocks of 64 positions, [head_dim, 64] each.</summary>
    private static int KeyAt(int j, int d, int headDim) => j / 64 * 64 * headDim + d * 64 + j % 64;

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ScoresAndValues_GiveTheDefinedBits_InEveryWidth_FromF32AndF16(int lanes, int headDim)
    {
        if (!Runs(lanes)) return; // this CPU has no such vectors (CI's has all four)
        var rng = new Random(lanes * 1000 + headDim);
        const int maxKeys = 150, paddedKeys = 192, sStride = paddedKeys + 8, heads = 3;
        var q = Halves(rng, heads * headDim);
        var kh = Halves(rng, paddedKeys * headDim); // whole blocks: the keys past maxKeys are stale entries, scored and dropped
        var vh = Halves(rng, maxKeys * headDim);
        var p = Halves(rng, heads * maxKeys);
        float[] kf = kh.Select(x => (float)x).ToArray(), vf = vh.Select(x => (float)x).ToArray(), qf = q.Select(x => (float)x).ToArray(), pf = p.Select(x => (float)x).ToArray();
        var got = new float[heads * sStride];
        var gotH = new float[heads * sStride];
        var o = new float[heads * headDim];
        var oH = new float[heads * headDim];
        var max = new float[heads];
        var maxH = new float[heads];
        var partial = new float[heads * Attention.RowPartialFloats(headDim)];
        var tileBuf = new float[64 * Math.Max(headDim, 64)];
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* qp = qf, kp = kf, vp = vf, pp = pf, g = got, gh = gotH, op = o, oh = oH, mp = max, mh = maxH, part = partial, tp = tileBuf)
        fixed (Half* khp = kh, vhp = vh)
        {
            foreach (int n in new[] { 1, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 150 })
            {
                // f32 blocks in place (a prompt's copy), f16 blocks widened once into the tile for all heads (decode).
                Attention.Scores(qp, headDim, heads, kp, n, headDim, scale, g, sStride, mp, lanes, tp);
                Attention.Scores(qp, headDim, heads, khp, n, headDim, scale, gh, sStride, mh, lanes, tp);
                Attention.Values(pp, maxKeys, heads, vp, n, headDim, op, headDim, part, lanes, tp);
                Attention.Values(pp, maxKeys, heads, vhp, n, headDim, oh, headDim, part, lanes, tp);
                for (int i = 0; i < heads; i++)
                {
                    float wantMax = float.NegativeInfinity;
                    for (int j = 0; j < n; j++)
                    {
                        float s = 0;
                        for (int d = 0; d < headDim; d++) s = MathF.FusedMultiplyAdd(qf[i * headDim + d], kf[KeyAt(j, d, headDim)], s);
                        s *= scale;
                        Same(s, got[i * sStride + j], $"head {i} score {j} of {n}, f32");
                        Same(s, gotH[i * sStride + j], $"head {i} score {j} of {n}, f16");
                        wantMax = Math.Max(wantMax, s);
                    }
                    Assert.Equal(wantMax, max[i]);
                    Assert.Equal(wantMax, maxH[i]);
                    for (int d = 0; d < headDim; d++)
                    {
                        float even = 0, odd = 0;
                        for (int j = 0; j < n; j++)
                        {
                            if (j % 2 == 0) even = MathF.FusedMultiplyAdd(pf[i * maxKeys + j], vf[j * headDim + d], even);
                            else odd = MathF.FusedMultiplyAdd(pf[i * maxKeys + j], vf[j * headDim + d], odd);
                        }
                        Same(even + odd, o[i * headDim + d], $"head {i} value dim {d}, {n} keys, f32");
                        Same(even + odd, oH[i * headDim + d], $"head {i} value dim {d}, {n} keys, f16");
                    }
                }
            }
        }
    }

    /// <summary>
    /// A prompt item's rows (several tokens of a head block) share each block of keys and values but
    /// keep their own causal lengths: with per-row lengths, every row's maximum and output are the
    /// bits of that row computed alone over its own keys (odd row counts leave one row out of the pairs).
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void RowsWithTheirOwnLengths_GiveEachRowsBitsAlone(int lanes, int headDim)
    {
        if (!Runs(lanes)) return;
        var rng = new Random(lanes * 77 + headDim);
        const int maxKeys = 200, paddedKeys = 256, sStride = paddedKeys, rows = 7;
        float[] q = Halves(rng, rows * headDim).Select(x => (float)x).ToArray();
        float[] k = Halves(rng, paddedKeys * headDim).Select(x => (float)x).ToArray();
        float[] v = Halves(rng, maxKeys * headDim).Select(x => (float)x).ToArray();
        float[] p = Halves(rng, rows * maxKeys).Select(x => (float)x).ToArray();
        var s = new float[rows * sStride];
        var sAlone = new float[sStride];
        var o = new float[rows * headDim];
        var oAlone = new float[headDim];
        var max = new float[rows];
        var maxAlone = new float[1];
        var partial = new float[rows * Attention.RowPartialFloats(headDim)];
        var tileBuf = new float[64 * Math.Max(headDim, 64)];
        var rowN = new int[rows];
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* qp = q, kp = k, vp = v, pp = p, sp = s, sa = sAlone, op = o, oa = oAlone, mp = max, ma = maxAlone, part = partial, tp = tileBuf)
        fixed (int* np = rowN)
        {
            foreach (int n in new[] { 4, 7, 32, 33, 64, 65, 66, 67, 128, 130, 200 })
            {
                for (int r = 0; r < rows; r++) rowN[r] = Math.Max(1, n - (rows - 1 - r) / 2); // token-major: two rows a token, the last longest
                Attention.Scores(qp, headDim, rows, kp, n, headDim, scale, sp, sStride, mp, lanes, tp, np);
                Attention.Values(pp, maxKeys, rows, vp, n, headDim, op, headDim, part, lanes, tp, np);
                for (int r = 0; r < rows; r++)
                {
                    Attention.Scores(qp + r * headDim, headDim, 1, kp, rowN[r], headDim, scale, sa, sStride, ma, lanes, tp);
                    Attention.Values(pp + r * maxKeys, maxKeys, 1, vp, rowN[r], headDim, oa, headDim, part, lanes, tp);
                    for (int j = 0; j < rowN[r]; j++) Same(sAlone[j], s[r * sStride + j], $"row {r} score {j} of {rowN[r]} ({n})");
                    Assert.Equal(maxAlone[0], max[r]);
                    for (int d = 0; d < headDim; d++) Same(oAlone[d], o[r * headDim + d], $"row {r} value dim {d} of {rowN[r]} positions ({n})");
                }
            }
        }
    }

    [Theory]
    [InlineData(4, 4, 64, 23, 2)]   // MHA
    [InlineData(14, 2, 64, 40, 3)]  // Qwen2.5-0.5B's grouping (blocks of 4 + 3 heads)
    [InlineData(14, 2, 64, 150, 2)] // ... past several position blocks
    [InlineData(14, 2, 64, 160, 2)] // ... up to the end of the context (160: two and a half blocks)
    [InlineData(8, 2, 128, 70, 2)]  // Llama-3 head size
    [InlineData(6, 3, 48, 17, 2)]   // a head size outside the 64-wide blocks
    [InlineData(2, 1, 8, 33, 1)]    // stories260K-like tiny heads
    [InlineData(16, 1, 32, 70, 1)]  // a group larger than a decode item takes (MaxDecodeHeads)
    [InlineData(32, 4, 64, 66, 2)]  // TinyLlama's grouping: whole groups of 8 per decode item
    [InlineData(14, 2, 64, 12, 2)]  // a prompt of 7 tokens after the prefix of 5: token blocks of 4 + 3
    [InlineData(4, 2, 8, 6, 1)]     // one token after the prefix: a single-token item
    public void Batch_TokenByToken_AndScalarDefinition_Agree_BitForBit(int nHead, int nHeadKv, int headDim, int nTokens, int threads)
    {
        const int contextLength = 160;
        int kvLen = nHeadKv * headDim, qLen = nHead * headDim;
        var rng = new Random(nHead * 31 + headDim + nTokens);
        float[] q = Floats(rng, nTokens * qLen), k = Floats(rng, nTokens * kvLen), v = Floats(rng, nTokens * kvLen);
        float[] batch = BatchEqualsTokenByToken(q, k, v, nTokens, nHead, nHeadKv, headDim, threads, contextLength, KvCacheType.F16, KvCacheType.F16);

        // The scalar definition, with Softmax.ExpNormalize and f16 rounding as in the kernel.
        var want = new float[qLen];
        var scores = new float[nTokens];
        float scale = 1f / MathF.Sqrt(headDim);
        for (int t = 0; t < nTokens; t++)
            for (int h = 0; h < nHead; h++)
            {
                int kvh = h / (nHead / nHeadKv), n = t + 1;
                float max = float.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    float s = 0;
                    for (int d = 0; d < headDim; d++)
                        s = MathF.FusedMultiplyAdd((float)(Half)q[t * qLen + h * headDim + d], (float)(Half)k[j * kvLen + kvh * headDim + d], s);
                    scores[j] = s * scale;
                    max = Math.Max(max, scores[j]);
                }
                fixed (float* sp = scores)
                {
                    Softmax.ExpNormalize(sp, n, max);
                    HalfMath.RoundInPlaceReference(sp, n);
                }
                for (int d = 0; d < headDim; d++)
                {
                    float even = 0, odd = 0;
                    for (int j = 0; j < n; j++)
                    {
                        float x = (float)(Half)v[j * kvLen + kvh * headDim + d];
                        if (j % 2 == 0) even = MathF.FusedMultiplyAdd(scores[j], x, even);
                        else odd = MathF.FusedMultiplyAdd(scores[j], x, odd);
                    }
                    Same(even + odd, batch[t * qLen + h * headDim + d], $"token {t} head {h} dim {d} against the definition");
                }
            }
        Assert.Contains(batch, x => x != 0);
    }

    /// <summary>
    /// Attention over layer 1 of two caches of the types given: a prefix of 5 tokens, then the rest as one batch
    /// (the prompt path, on an f32 copy), and one token at a time (the decode path, on the cache's own blocks);
    /// asserts the two give the same bits and returns the batch's outputs.
    /// </summary>
    private static float[] BatchEqualsTokenByToken(float[] q, float[] k, float[] v, int nTokens, int nHead, int nHeadKv, int headDim, int threads,
        int contextLength, KvCacheType kType, KvCacheType vType)
    {
        int kvLen = nHeadKv * headDim, qLen = nHead * headDim;
        var batch = new float[nTokens * qLen];
        var single = new float[nTokens * qLen];
        var scratch = new byte[Attention.WorkerScratchBytes(contextLength, headDim) * threads];
        using var pool = new WorkerPool(threads);
        using var cacheA = new KvCache(2, contextLength, nHeadKv, headDim, kType, vType);
        using var cacheB = new KvCache(2, contextLength, nHeadKv, headDim, kType, vType);
        fixed (float* qp = q, kp = k, vp = v, bp = batch, sp = single)
        fixed (byte* wsp = scratch)
        {
            cacheA.Store(1, 0, kp, vp, nTokens);
            Attention.Forward(qp, 5, 0, cacheA, 1, nHead, nHeadKv, headDim, bp, wsp, pool);
            Attention.Forward(qp + 5 * qLen, nTokens - 5, 5, cacheA, 1, nHead, nHeadKv, headDim, bp + 5 * qLen, wsp, pool);
            for (int t = 0; t < nTokens; t++)
            {
                cacheB.Store(1, t, kp + t * kvLen, vp + t * kvLen, 1);
                Attention.Forward(qp + t * qLen, 1, t, cacheB, 1, nHead, nHeadKv, headDim, sp + t * qLen, wsp, pool);
            }
        }
        for (int i = 0; i < batch.Length; i++) Same(single[i], batch[i], $"output {i}");
        return batch;
    }

    [Fact]
    public void Store_PastTheContext_Throws()
    {
        using var cache = new KvCache(1, 8, 1, 4);
        var x = new float[3 * 4];
        fixed (float* p = x)
        {
            float* pp = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => cache.Store(0, 6, pp, pp, 3));
        }
    }

    /// <summary>The cache's layout as KvCache documents it: keys in blocks of 64 positions ([head_dim, 64]), values [positions, head_dim], per layer and KV head, rounded to f16.</summary>
    [Fact]
    public void Store_PutsKeysInBlocks_AndValuesInRows()
    {
        const int layers = 2, ctx = 70, kvHeads = 3, headDim = 5, n = 4, pos = 62; // across a block boundary
        using var cache = new KvCache(layers, ctx, kvHeads, headDim);
        Assert.Equal(128L * headDim, cache.HeadStride);
        Assert.Equal(2L * layers * 128 * kvHeads * headDim * 2, KvCache.Bytes(layers, ctx, kvHeads * headDim));
        var rng = new Random(5);
        float[] k = Floats(rng, n * kvHeads * headDim), v = Floats(rng, n * kvHeads * headDim);
        fixed (float* kp = k, vp = v)
            cache.Store(1, pos, kp, vp, n);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < kvHeads; h++)
                for (int d = 0; d < headDim; d++)
                {
                    int p = pos + t, x = t * kvHeads * headDim + h * headDim + d;
                    Assert.Equal((Half)k[x], cache.Keys(1, h)[p / 64 * 64 * headDim + d * 64 + p % 64]);
                    Assert.Equal((Half)v[x], cache.Values(1, h)[p * headDim + d]);
                    Assert.Equal((Half)0, cache.Keys(0, h)[p / 64 * 64 * headDim + d * 64 + p % 64]); // the other layer untouched
                }
    }

    /// <summary>A row of <paramref name="n"/> values quantized as ggml stores them in a q8_0 or q4_0 cache, then dequantized.</summary>
    /// <summary>With <paramref name="rotation"/>, the row is first rotated in Walsh-Hadamard blocks of that size, as a quantized cache stores it.</summary>
    private static float[] Quantized(KvCacheType type, float[] x, int offset, int n, int rotation = 0)
    {
        var r = new float[n];
        var buf = new byte[n / 32 * 34];
        var src = x.AsSpan(offset, n).ToArray();
        fixed (float* xp = src, rp = r)
        fixed (byte* b = buf)
        {
            if (rotation > 0) KvBlocks.Hadamard(xp, n, rotation);
            if (type == KvCacheType.Q8_0)
            {
                EdgeLlm.Quant.Q8_0.QuantizeActivationRowScalar(xp, b, n);
                EdgeLlm.Quant.Q8_0.DequantizeRowReference(b, rp, n);
            }
            else
            {
                EdgeLlm.Quant.Q4_0.QuantizeRowReference(xp, b, n);
                EdgeLlm.Quant.Q4_0.DequantizeRowReference(b, rp, n);
            }
        }
        return r;
    }

    public static TheoryData<KvCacheType, KvCacheType> CacheTypes() => new()
    {
        { KvCacheType.Q8_0, KvCacheType.Q8_0 }, { KvCacheType.Q4_0, KvCacheType.Q4_0 }, { KvCacheType.Q8_0, KvCacheType.F16 },
        { KvCacheType.F16, KvCacheType.Q8_0 }, { KvCacheType.Q4_0, KvCacheType.Q8_0 }, { KvCacheType.F16, KvCacheType.Q4_0 },
    };

    /// <summary>
    /// A quantized cache stores each head's row as ggml's blocks (q8_0 with the SIMD quantizer's rounding,
    /// q4_0 with the reference one) in KvCache's layout: KvBlocks.Value reads back exactly the dequantized
    /// row, and KvBlocks.Keys/Values (the vector dequantizers) give the same bits, across a block boundary.
    /// </summary>
    [Theory]
    [InlineData(KvCacheType.Q8_0, 32)]  // no rotation
    [InlineData(KvCacheType.Q8_0, 128)]
    [InlineData(KvCacheType.Q4_0, 64)]
    [InlineData(KvCacheType.Q4_0, 256)]
    public void QuantizedStore_HoldsGgmlsBlocks_InTheLayout(KvCacheType type, int headDim)
    {
        const int layers = 2, ctx = 140, kvHeads = 2, n = 90, pos = 30;
        using var cache = new KvCache(layers, ctx, kvHeads, headDim, type, type);
        Assert.Equal(type.Bytes(192L * headDim), cache.KeyHeadBytes);
        Assert.Equal(headDim == 32 ? 0 : headDim, cache.KeyRotation); // llama.cpp's attn_rot_k: the largest power of two from 64 dividing the head
        Assert.Equal(headDim == 32 ? 0 : 64, cache.ValueRotation);   // attn_rot_v: 64
        Assert.Equal(2 * type.Bytes((long)layers * 192 * kvHeads * headDim), KvCache.Bytes(layers, ctx, kvHeads * headDim, type, type));
        var rng = new Random(headDim);
        float[] k = Floats(rng, n * kvHeads * headDim), v = Floats(rng, n * kvHeads * headDim);
        fixed (float* kp = k, vp = v)
            cache.Store(1, pos, kp, vp, n);
        var tile = new float[64 * headDim];
        for (int h = 0; h < kvHeads; h++)
            for (int t = 0; t < n; t++)
            {
                int p = pos + t, x = t * kvHeads * headDim + h * headDim;
                float[] wantK = Quantized(type, k, x, headDim, cache.KeyRotation), wantV = Quantized(type, v, x, headDim, cache.ValueRotation);
                for (int d = 0; d < headDim; d++)
                {
                    Same(wantK[d], KvBlocks.Value(type, cache.KeyBytes(1, h), p, d, headDim, key: true), $"key {p} dim {d}");
                    Same(wantV[d], KvBlocks.Value(type, cache.ValueBytes(1, h), p, d, headDim, key: false), $"value {p} dim {d}");
                }
            }
        bool avx2 = KvBlocks.UseAvx2;
        try
        {
            // The AVX2 steps where this CPU has them, then the portable Vector128 ones (NEON's on arm64).
            foreach (bool useAvx2 in avx2 ? new[] { true, false } : new[] { false })
            {
                KvBlocks.UseAvx2 = useAvx2;
                CheckTiles();
            }
        }
        finally
        {
            KvBlocks.UseAvx2 = avx2;
        }
        void CheckTiles()
        {
        fixed (float* tp = tile)
            for (int h = 0; h < kvHeads; h++)
                for (int b = 0; b < 3; b++)
                {
                    byte* kb = cache.KeyBytes(1, h) + b * KvCache.BlockBytes(type, headDim), vb = cache.ValueBytes(1, h) + b * KvCache.BlockBytes(type, headDim);
                    KvBlocks.Keys(type, kb, headDim, tp);
                    for (int d = 0; d < headDim; d++)
                        for (int j = 0; j < 64; j++) Same(KvBlocks.Value(type, cache.KeyBytes(1, h), b * 64 + j, d, headDim, true), tile[d * 64 + j], $"key tile {b}");
                    KvBlocks.Values(type, vb, 64, headDim, tp);
                    for (int j = 0; j < 64; j++)
                        for (int d = 0; d < headDim; d++) Same(KvBlocks.Value(type, cache.ValueBytes(1, h), b * 64 + j, d, headDim, false), tile[j * headDim + d], $"value tile {b}");
                }
        }
        Assert.All(Enumerable.Range(0, 64), d => Assert.Equal(0f, KvBlocks.Value(type, cache.KeyBytes(0, 0), 40, d % headDim, headDim, true))); // layer 0 untouched
        Assert.Throws<ArgumentException>(() => new KvCache(1, 8, 1, 48, type, KvCacheType.F16)); // heads must be whole blocks of 32
    }

    /// <summary>The rotation is the orthonormal natural-order Walsh-Hadamard matrix, block by block, and its own inverse.</summary>
    [Theory]
    [InlineData(64, 64)]
    [InlineData(128, 64)]
    [InlineData(256, 128)]
    [InlineData(256, 256)]
    public void Hadamard_IsTheNaturalOrderWalshHadamardMatrix_PerBlock(int n, int block)
    {
        var rng = new Random(n + block);
        float[] x = Floats(rng, n), y = (float[])x.Clone();
        fixed (float* yp = y) KvBlocks.Hadamard(yp, n, block);
        for (int b = 0; b < n; b += block)
            for (int i = 0; i < block; i++)
            {
                double want = 0;
                for (int j = 0; j < block; j++)
                    want += (System.Numerics.BitOperations.PopCount((uint)(i & j)) % 2 == 0 ? 1.0 : -1.0) * x[b + j];
                want /= Math.Sqrt(block);
                Assert.True(Math.Abs(want - y[b + i]) < 1e-5, $"element {b + i}: {y[b + i]} vs {want}");
            }
        fixed (float* yp = y) KvBlocks.Hadamard(yp, n, block);
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(x[i] - y[i]) < 1e-5, $"twice: element {i}: {y[i]} vs {x[i]}");
    }

    /// <summary>The products over quantized blocks give the defined bits in every vector width (the scalar width reads the cache in place).</summary>
    [Theory]
    [InlineData(16, KvCacheType.Q8_0)]
    [InlineData(8, KvCacheType.Q8_0)]
    [InlineData(4, KvCacheType.Q8_0)]
    [InlineData(1, KvCacheType.Q8_0)]
    [InlineData(8, KvCacheType.Q4_0)]
    [InlineData(1, KvCacheType.Q4_0)]
    public void ScoresAndValues_OverQuantizedBlocks_GiveTheDefinedBits(int lanes, KvCacheType type)
    {
        if (!Runs(lanes)) return;
        const int headDim = 64, heads = 3, n = 150, sStride = 200;
        using var cache = new KvCache(1, 192, 1, headDim, type, type);
        var rng = new Random(lanes);
        float[] k = Floats(rng, n * headDim), v = Floats(rng, n * headDim), q = Floats(rng, heads * headDim), p = Floats(rng, heads * n);
        var got = new float[heads * sStride];
        var o = new float[heads * headDim];
        var max = new float[heads];
        var partial = new float[heads * Attention.RowPartialFloats(headDim)];
        var tileBuf = new float[64 * headDim];
        fixed (float* kp = k, vp = v, qp = q, pp = p, g = got, op = o, mp = max, part = partial, tp = tileBuf)
        {
            cache.Store(0, 0, kp, vp, n);
            if (type == KvCacheType.Q8_0)
            {
                Attention.Scores(qp, headDim, heads, (KvQ8_0*)cache.KeyBytes(0, 0), n, headDim, 0.125f, g, sStride, mp, lanes, tp);
                Attention.Values(pp, n, heads, (KvQ8_0*)cache.ValueBytes(0, 0), n, headDim, op, headDim, part, lanes, tp);
            }
            else
            {
                Attention.Scores(qp, headDim, heads, (KvQ4_0*)cache.KeyBytes(0, 0), n, headDim, 0.125f, g, sStride, mp, lanes, tp);
                Attention.Values(pp, n, heads, (KvQ4_0*)cache.ValueBytes(0, 0), n, headDim, op, headDim, part, lanes, tp);
            }
        }
        for (int i = 0; i < heads; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float[] kj = Quantized(type, k, j * headDim, headDim, cache.KeyRotation);
                float s = 0;
                for (int d = 0; d < headDim; d++) s = MathF.FusedMultiplyAdd(q[i * headDim + d], kj[d], s);
                Same(s * 0.125f, got[i * sStride + j], $"head {i} score {j}");
            }
            var vq = Enumerable.Range(0, n).Select(j => Quantized(type, v, j * headDim, headDim, cache.ValueRotation)).ToArray();
            for (int d = 0; d < headDim; d++)
            {
                float even = 0, odd = 0;
                for (int j = 0; j < n; j++)
                {
                    if (j % 2 == 0) even = MathF.FusedMultiplyAdd(p[i * n + j], vq[j][d], even);
                    else odd = MathF.FusedMultiplyAdd(p[i * n + j], vq[j][d], odd);
                }
                Same(even + odd, o[i * headDim + d], $"head {i} value dim {d}");
            }
        }
    }

    /// <summary>
    /// Attention over a quantized cache, as a batch (each block dequantized once into an f32 copy) and
    /// token by token (blocks dequantized into the item's tile), gives the bits of its definition: the
    /// query rounded to q8_0 where the keys are quantized (else f16), keys and values as ggml's blocks
    /// dequantize them, the probabilities rounded to f16 only where the values are f16.
    /// </summary>
    [Theory]
    [MemberData(nameof(CacheTypes))]
    public void QuantizedCache_Batch_TokenByToken_AndDefinition_Agree_BitForBit(KvCacheType kType, KvCacheType vType)
    {
        const int contextLength = 160, nHead = 6, nHeadKv = 2, headDim = 64, nTokens = 140, threads = 2;
        int kvLen = nHeadKv * headDim, qLen = nHead * headDim;
        var rng = new Random((int)kType * 3 + (int)vType);
        float[] q = Floats(rng, nTokens * qLen), k = Floats(rng, nTokens * kvLen), v = Floats(rng, nTokens * kvLen);
        float[] batch = BatchEqualsTokenByToken(q, k, v, nTokens, nHead, nHeadKv, headDim, threads, contextLength, kType, vType);

        int kRot = KvCache.Rotation(kType, headDim, key: true), vRot = KvCache.Rotation(vType, headDim, key: false);
        Assert.Equal(kType == KvCacheType.F16 ? 0 : 64, kRot);
        Assert.Equal(vType == KvCacheType.F16 ? 0 : 64, vRot);
        float[] Row(KvCacheType type, float[] x, int offset, int rotation) =>
            type == KvCacheType.F16 ? x.Skip(offset).Take(headDim).Select(f => (float)(Half)f).ToArray() : Quantized(type, x, offset, headDim, rotation);
        var scores = new float[nTokens];
        float scale = 1f / MathF.Sqrt(headDim);
        for (int t = 0; t < nTokens; t += 7)
            for (int h = 0; h < nHead; h++)
            {
                int kvh = h / (nHead / nHeadKv), n = t + 1;
                float[] qr = Row(kType == KvCacheType.F16 ? kType : KvCacheType.Q8_0, q, t * qLen + h * headDim, kRot); // rotated and q8_0 against quantized keys, else f16
                float max = float.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    float[] kj = Row(kType, k, j * kvLen + kvh * headDim, kRot);
                    float s = 0;
                    for (int d = 0; d < headDim; d++) s = MathF.FusedMultiplyAdd(qr[d], kj[d], s);
                    scores[j] = s * scale;
                    max = Math.Max(max, scores[j]);
                }
                fixed (float* scp = scores)
                {
                    Softmax.ExpNormalize(scp, n, max);
                    if (vType == KvCacheType.F16) HalfMath.RoundInPlaceReference(scp, n);
                }
                var vj = Enumerable.Range(0, n).Select(j => Row(vType, v, j * kvLen + kvh * headDim, vRot)).ToArray();
                var outRow = new float[headDim];
                for (int d = 0; d < headDim; d++)
                {
                    float even = 0, odd = 0;
                    for (int j = 0; j < n; j++)
                    {
                        if (j % 2 == 0) even = MathF.FusedMultiplyAdd(scores[j], vj[j][d], even);
                        else odd = MathF.FusedMultiplyAdd(scores[j], vj[j][d], odd);
                    }
                    outRow[d] = even + odd;
                }
                if (vRot > 0)
                    fixed (float* op = outRow) KvBlocks.Hadamard(op, headDim, vRot); // rotated back
                for (int d = 0; d < headDim; d++)
                    Same(outRow[d], batch[t * qLen + h * headDim + d], $"{kType}/{vType}: token {t} head {h} dim {d} against the definition");
            }
    }

    [Theory]
    [InlineData(7, 2, 1, 7)]   // qwen2.5-0.5b: a whole group per item on 1 or 2 threads ...
    [InlineData(7, 2, 2, 7)]
    [InlineData(7, 2, 4, 4)]   // ... split in two on 4 threads (4 + 3 heads)
    [InlineData(7, 2, 8, 2)]
    [InlineData(8, 4, 2, 8)]   // TinyLlama
    [InlineData(16, 1, 1, 8)]  // at most MaxDecodeHeads
    [InlineData(1, 12, 16, 1)] // no grouping
    public void DecodeHeads_TakesWholeGroups_UnlessThreadsWouldIdle(int group, int nHeadKv, int threads, int want) =>
        Assert.Equal(want, Attention.DecodeHeads(group, nHeadKv, threads));

    private static void Same(float want, float got, string what) =>
        Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got), $"{what}: {got} vs {want}");

    private static Half[] Halves(Random rng, int n)
    {
        var a = new Half[n];
        for (int i = 0; i < n; i++) a[i] = (Half)(rng.NextSingle() * 4 - 2);
        return a;
    }

    private static float[] Floats(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = rng.NextSingle() * 4 - 2;
        return a;
    }
}
