using EdgeLlm.Engine;
using EdgeLlm.Kernels;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Models;
using System.Runtime.InteropServices;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Kernels;

public unsafe class MatMulTests(ITestOutputHelper output)
{
    /// <summary>
    /// The pooled product (decode path for 1 token, VecDotTile tiles for a batch) gives exactly
    /// the per-row VecDot of every (weight row, activation row) pair, for every weight format of
    /// the shared files and 1–3 threads.
    /// </summary>
    [Theory]
    [InlineData("syn-llama-f32")]
    [InlineData("syn-llama-f16")]
    [InlineData("syn-llama-bf16")]
    [InlineData("syn-llama-q4_0")]
    [InlineData("syn-llama-q8_0")]
    [InlineData("syn-llama-q4_1")]
    [InlineData("syn-llama-q5_0")]
    [InlineData("syn-llama-q5_1")]
    [InlineData("syn-llama-q2_k")]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-llama-q6_k")]
    [InlineData("syn-llama-iq4_nl")]
    public void PooledTiles_EqualPerRowVecDot_Bitwise(string model)
    {
        using var m = Model.Load(SharedData.Model(model));
        var matrices = new[] { m.Layers[0].Wq, m.Layers[0].Down, m.Output };
        var rng = new Random(5);
        foreach (var w in matrices)
        {
            foreach (int nTokens in new[] { 1, 3, 17, 40 })
            {
                var x = new float[nTokens * w.Cols];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                long actBytes = ActivationQuantizer.RowBytes(w.Format.VecDotType, w.Cols);
                byte* acts = (byte*)NativeMemory.AlignedAlloc((nuint)(nTokens * actBytes), 64);
                byte* scratch = (byte*)NativeMemory.AlignedAlloc((nuint)MatMul.ScratchBytes(w, nTokens), 64);
                try
                {
                    var expected = new float[nTokens * w.Rows];
                    fixed (float* px = x)
                    {
                        for (int t = 0; t < nTokens; t++)
                            ActivationQuantizer.QuantizeRow(w.Format.VecDotType, px + t * w.Cols, acts + t * actBytes, w.Cols);
                        // The decode product over the whole matrix in one call (per-row VecDot for the GGUF
                        // layout; whole groups for a repacked one, e.g. Q4_0 as q4_0x8).
                        fixed (float* pe = expected)
                            for (int t = 0; t < nTokens; t++)
                                w.Format.VecDotRows(w.Cols, w.At(0), w.RowBytes, w.Rows, acts + t * actBytes, pe + t * w.Rows);
                        for (int threads = 1; threads <= 3; threads++)
                        {
                            using var pool = new WorkerPool(threads);
                            var y = new float[expected.Length];
                            fixed (float* py = y) MatMul.Multiply(w, px, nTokens, py, scratch, pool);
                            Assert.Equal(expected, y);
                        }
                        var legacy = new float[expected.Length];
                        fixed (float* py = legacy) MatMul.Multiply(w, px, nTokens, py, scratch, threads: 2);
                        Assert.Equal(expected, legacy);
                    }
                }
                finally
                {
                    NativeMemory.AlignedFree(acts);
                    NativeMemory.AlignedFree(scratch);
                }
            }
        }
        output.WriteLine($"{model}: {string.Join(", ", matrices.Select(w => $"{w.Name} {w.Type} [{w.Rows}×{w.Cols}]"))} bit-identical");
    }

    /// <summary>The whole forward pass gives the same logits bit for bit on 1, 2 and 3 threads (prompt batch and decode steps).</summary>
    [Theory]
    [InlineData("stories260K")]
    [InlineData("syn-llama-q4_0")]
    [InlineData("syn-qwen2-q8_0")]
    [InlineData("syn-llama3-q4_k_m")]
    public void Logits_AreBitIdentical_AcrossThreadCounts(string model)
    {
        var golden = GoldenCase.Load(model, "p2");
        using var m = Model.Load(SharedData.Model(model));
        float[]? reference = null;
        for (int threads = 1; threads <= 3; threads++)
        {
            using var ctx = new InferenceContext(m, contextLength: 128, threads: threads);
            var batch = ctx.Eval(golden.PromptIds, allLogits: true);
            var steps = new List<float>();
            for (int i = 0; i < 5; i++) steps.AddRange(ctx.Eval([(i * 7 + 3) % m.Config.VocabSize]));
            var all = batch.Concat(steps).ToArray();
            if (reference is null) reference = all;
            else Assert.Equal(reference, all);
        }
        output.WriteLine($"{model}: {reference!.Length} logits identical on 1, 2 and 3 threads");
    }
}
