using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Specialized;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Specialized;

/// <summary>
/// The kernels only generated code uses: the AVX-512 Q4_0 rows/tile kernels against the registered
/// Q4_0 format bit for bit, and the fused forward pass against the generic one on batches long
/// enough to cross several activation tiles and weight-row chunks.
/// </summary>
public unsafe class SpecializedKernelTests(ITestOutputHelper output)
{
    private static WeightFormat Q4_0Format => WeightFormat.TryGet(GgmlType.Q4_0, out var f) ? f : throw new InvalidOperationException("Q4_0 is not registered");

    /// <summary>Random Q4_0 weight rows and Q8_0 activation rows, with −128/127 activations and zero scales mixed in.</summary>
    private static (byte[] W, byte[] A) RandomRows(int n, int rows, int acts, int seed)
    {
        var rng = new Random(seed);
        int nb = n / 32;
        var w = new byte[rows * nb * 18];
        var a = new byte[acts * nb * 34];
        rng.NextBytes(w);
        rng.NextBytes(a);
        fixed (byte* wp = w)
        fixed (byte* ap = a)
        {
            var wb = (BlockQ4_0*)wp;
            for (int i = 0; i < rows * nb; i++) wb[i].D = QuantMath.Fp32ToFp16(i % 13 == 0 ? 0f : (float)(rng.NextDouble() * 0.1 + 1e-3));
            var ab = (BlockQ8_0*)ap;
            for (int i = 0; i < acts * nb; i++)
            {
                ab[i].D = QuantMath.Fp32ToFp16((float)(rng.NextDouble() * 0.05 + 1e-4));
                if (i % 5 == 0) for (int j = 0; j < 32; j++) ab[i].Qs[j] = j % 2 == 0 ? (sbyte)-128 : (sbyte)127;
            }
        }
        return (w, a);
    }

    [Theory]
    [InlineData(32, 1)]
    [InlineData(96, 7)]      // odd block count: the last block goes to the lower accumulator only
    [InlineData(2048, 16)]
    [InlineData(896, 9)]     // Qwen2.5-0.5B's width
    [InlineData(5632, 5)]    // TinyLlama's FFN width
    public void Q4_0Avx512_Rows_AreBitIdenticalToVecDot(int n, int rows)
    {
        if (!Q4_0Avx512.IsSupported)
        {
            output.WriteLine("no AVX-512BW: the specialized Q4_0 kernels are not used on this CPU");
            Assert.False(Q4_0Avx512.AgreesWith(Q4_0Format));
            return;
        }
        var (w, a) = RandomRows(n, rows, 1, n + rows);
        long rowBytes = n / 32 * 18;
        var got = new float[rows];
        fixed (byte* wp = w)
        fixed (byte* ap = a)
        fixed (float* yp = got)
        {
            Q4_0Avx512.Rows(n, wp, rowBytes, rows, ap, yp);
            for (int r = 0; r < rows; r++)
                Assert.Equal(BitConverter.SingleToInt32Bits(Q4_0Format.VecDot(n, wp + r * rowBytes, ap)), BitConverter.SingleToInt32Bits(got[r]));
        }
        Assert.True(Q4_0Avx512.AgreesWith(Q4_0Format));
    }

    [Theory]
    [InlineData(2048, 16, 16)]
    [InlineData(160, 6, 5)]
    public void Q4_0Avx512_Tile_IsBitIdenticalToTheRegisteredTile(int n, int rows, int acts)
    {
        if (!Q4_0Avx512.IsSupported) return;
        var (w, a) = RandomRows(n, rows, acts, 7);
        long rowBytes = n / 32 * 18, actBytes = n / 32 * 34;
        var mine = new float[rows * acts];
        var theirs = new float[rows * acts];
        fixed (byte* wp = w)
        fixed (byte* ap = a)
        fixed (float* m = mine)
        fixed (float* t = theirs)
        {
            new Q4_0Avx512Format(Q4_0Format).VecDotTile(n, wp, rowBytes, rows, ap, actBytes, acts, m, rows);
            Q4_0Format.VecDotTile(n, wp, rowBytes, rows, ap, actBytes, acts, t, rows);
        }
        Assert.Equal(theirs, mine);
    }

    [Fact]
    public void Format_IsTheRegisteredOne_UnlessTheAvx512KernelIsAskedFor()
    {
        var f = SpecializedKernels.Format(GgmlType.Q4_0);
        output.WriteLine($"Q4_0 in generated code: {f.GetType().Name}");
        bool asked = Environment.GetEnvironmentVariable("EDGELLM_SPECIALIZED_Q4_0_AVX512") == "1";
        Assert.Equal(asked && Q4_0Avx512.IsSupported, f is Q4_0Avx512Format);
        Assert.Same(WeightPacking.PackedFormat(GgmlType.Q8_0) ?? (WeightFormat.TryGet(GgmlType.Q8_0, out var q8) ? q8 : null), SpecializedKernels.Format(GgmlType.Q8_0));
    }

    /// <summary>
    /// A 45-token batch (two full activation tiles and a partial one), then single tokens: every
    /// logit of the specialized pass equals the generic pass's (all kernels keep the generic order).
    /// </summary>
    [Theory]
    [InlineData("syn-llama-q4_0")]
    [InlineData("syn-qwen2-q4_0")]
    [InlineData("syn-llama-q8_0")]
    [InlineData("syn-llama-f32")]
    public void LongBatch_Specialized_IsBitIdenticalToGeneric(string model)
    {
        using var file = GgufFile.Open(SharedData.Model(model));
        using var spec = Model.Load(file);
        using var generic = Model.Load(file, new ModelLoadOptions { Generic = true });
        Assert.NotNull(spec.Specialization);
        var rng = new Random(5);
        int[] prompt = Enumerable.Range(0, 45).Select(_ => rng.Next(spec.Config.VocabSize)).ToArray();
        long before = spec.Specialization!.Runs;
        float[] a = Run(spec, prompt);
        Assert.True(spec.Specialization.Runs >= before + 3);
        float[] b = Run(generic, prompt);
        int differing = a.Zip(b).Count(p => p.First != p.Second);
        output.WriteLine($"{model}: {differing}/{a.Length} logits differ");
        Assert.Equal(b, a);
    }

    private static float[] Run(Model m, int[] prompt)
    {
        using var ctx = new InferenceContext(m, contextLength: 64, threads: 2);
        var all = new List<float>(ctx.Eval(prompt, allLogits: true));
        all.AddRange(ctx.Eval([3]));
        all.AddRange(ctx.Eval([4]));
        return all.ToArray();
    }
}
