using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Tests;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The tiled mul_mat shader against a CPU reference (double dot products of the CPU's
/// dequantized weights) on random activations, and the optional subgroup variants against the
/// plain ones (the plain path forced, as on a Vulkan 1.1 device without subgroup arithmetic).
/// </summary>
public unsafe class MatMulAndVariantTests(DeviceFixture fixture, ITestOutputHelper output) : IClassFixture<DeviceFixture>
{
    private const double Tolerance = 1e-4;

    /// <summary>
    /// Two correct forward passes that sum in different orders (subgroup vs shared-memory tree,
    /// tiles vs strided threads) differ by f32 rounding amplified through the layers: about 2e-4 of
    /// the logits' spread on the synthetic models; a broken reduction is off by O(1).
    /// </summary>
    internal const double PathBound = 1e-3;

    [Theory]
    [InlineData("syn-llama-f32", GgmlType.F32)]
    [InlineData("syn-llama-f16", GgmlType.F16)]
    [InlineData("syn-llama-bf16", GgmlType.BF16)]
    [InlineData("syn-llama-q8_0", GgmlType.Q8_0)]
    [InlineData("syn-llama-q4_0", GgmlType.Q4_0)]
    [InlineData("syn-llama-q4_1", GgmlType.Q4_1)]
    [InlineData("syn-llama-q5_0", GgmlType.Q5_0)]
    [InlineData("syn-llama-q5_1", GgmlType.Q5_1)]
    [InlineData("syn-llama-q4_k_m", GgmlType.Q4_K)]
    [InlineData("syn-llama-q5_k_m", GgmlType.Q5_K)]
    [InlineData("syn-llama-q6_k", GgmlType.Q6_K)]
    [InlineData("syn-llama-q2_k", GgmlType.Q2_K)]
    [InlineData("syn-llama-q3_k_m", GgmlType.Q3_K)]
    [InlineData("syn-llama-iq4_nl", GgmlType.IQ4_NL)]
    public void MulMat_MatchesCpuReference(string model, GgmlType type)
    {
        using var file = GgufFile.Open(SharedData.Model(model));
        var t = file.Tensors.First(x => x.Type == type && x.Dims.Length == 2);
        int rows = (int)Math.Min(t.RowCount, 80); // two full 32-row tiles and a partial one
        int cols = (int)t.RowLength;
        long rowBytes = GgmlTypes.Info(type).RowBytes(cols);
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var w = new float[rows * cols];
        fixed (float* wp = w)
            for (int r = 0; r < rows; r++) fmt.DequantizeRow(file.GetTensorPointer(t) + r * rowBytes, wp + (long)r * cols, cols);
        var raw = new byte[rows * rowBytes];
        new ReadOnlySpan<byte>(file.GetTensorPointer(t), raw.Length).CopyTo(raw);
        double worst = Check(type, raw, w, rows, cols, ncols: 45, seed: 11);
        output.WriteLine($"mul_mat_{VulkanKernels.Suffix(type)} on {t.Name} [{rows}x{cols}] x 45 tokens: max error / sum|terms| {worst:G3}");
    }

    /// <summary>Random f32 weights whose row length (172, stories260K's FFN) is no multiple of the 32-wide tile.</summary>
    [Fact]
    public void MulMat_F32_RaggedShapes_MatchCpuReference()
    {
        const int rows = 70, cols = 172;
        var rng = new Random(5);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        var raw = new byte[w.Length * 4];
        Buffer.BlockCopy(w, 0, raw, 0, raw.Length);
        double worst = Check(GgmlType.F32, raw, w, rows, cols, ncols: 33, seed: 6);
        output.WriteLine($"mul_mat_f32 random [{rows}x{cols}] x 33 tokens: max error / sum|terms| {worst:G3}");
    }

    private double Check(GgmlType type, byte[] raw, float[] w, int rows, int cols, int ncols, int seed)
    {
        var d = fixture.Device;
        var rng = new Random(seed);
        const int xOffRows = 2; // the activations start two rows into the buffer, as the logits' rows do
        var x = new float[(ncols + xOffRows) * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        using var wb = d.CreateBuffer(raw.Length, host: true, "weights");
        fixed (byte* r = raw) d.Upload(wb, 0, r, raw.Length);
        using var xb = d.CreateBuffer(x.Length * 4L, host: true, "x");
        x.CopyTo(xb.AsFloats());
        using var yb = d.CreateBuffer(ncols * rows * 4L, host: true, "y");
        var k = VulkanKernels.Create(d, VulkanKernels.MatMulSpec("mat", type, cols, rows));
        Assert.Equal("mul_mat_" + VulkanKernels.Suffix(type), k.Variant);
        var cb = d.AllocateCommandBuffer();
        d.Begin(cb, oneShot: true);
        VulkanKernels.RecordMatMul(d, cb, k, d.CreateSet(k.Kernel, wb, xb, yb), ncols, (long)xOffRows * cols, 0);
        d.Barrier(cb);
        d.SubmitAndWait(cb);
        d.FreeCommandBuffer(cb);
        double worst = 0;
        var y = yb.AsFloats();
        for (int c = 0; c < ncols; c++)
            for (int r = 0; r < rows; r++)
            {
                double refDot = 0, mag = 0;
                for (int i = 0; i < cols; i++)
                {
                    double term = (double)w[r * cols + i] * x[(c + xOffRows) * cols + i];
                    refDot += term;
                    mag += Math.Abs(term);
                }
                worst = Math.Max(worst, Math.Abs(y[c * rows + r] - refDot) / Math.Max(mag, 1e-30));
            }
        Assert.True(worst <= Tolerance, $"mul_mat_{VulkanKernels.Suffix(type)}: error {worst:G3} exceeds {Tolerance}");
        return worst;
    }

    [Fact]
    public void Lavapipe_HasSubgroupArithmetic_SoTheFastPathIsChosen()
    {
        var info = fixture.Device.Info;
        output.WriteLine(info.ToString());
        Assert.True(info.SubgroupArithmetic, "lavapipe reports subgroup arithmetic in compute shaders");
        Assert.Equal("mul_mat_vec_q4_0_sg", VulkanKernels.Variant("mul_mat_vec_q4_0", info, allowSubgroup: true));
        Assert.Equal("rms_norm_sg", VulkanKernels.Variant("rms_norm", info, allowSubgroup: true));
        Assert.Equal("mul_mat_vec_q4_0", VulkanKernels.Variant("mul_mat_vec_q4_0", info, allowSubgroup: false));
        Assert.Equal("mul_mat_q4_0", VulkanKernels.Variant("mul_mat_q4_0", info, allowSubgroup: true)); // no subgroup variant

        // a Vulkan 1.1 device without subgroup arithmetic gets the plain variants whatever is allowed
        var plainDevice = info with { SubgroupArithmetic = false };
        Assert.Equal("mul_mat_vec_q4_0", VulkanKernels.Variant("mul_mat_vec_q4_0", plainDevice, allowSubgroup: true));
        Assert.Equal("rms_norm", VulkanKernels.Variant("rms_norm", plainDevice, allowSubgroup: true));
    }

    /// <summary>The whole forward pass with the plain reductions forced equals the subgroup one within f32 rounding.</summary>
    [Theory]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-qwen2-f32")]
    public void PlainPath_Forced_EqualsSubgroupPath(string model)
    {
        var golden = GoldenCase.Load(model, "p1");
        using var m = Model.Load(SharedData.Model(model));
        using var fast = new VulkanInferenceContext(m, contextLength: 64, fixture.Device);
        using var plain = new VulkanInferenceContext(m, contextLength: 64, fixture.Device, options: new VulkanContextOptions { UseSubgroupOps = false });
        Assert.Contains(fast.Variants.Values, v => v.EndsWith("_sg", StringComparison.Ordinal));
        Assert.Equal("rms_norm_sg", fast.Variants["rms_norm"]);
        Assert.DoesNotContain(plain.Variants.Values, v => v.EndsWith("_sg", StringComparison.Ordinal));

        // token by token (mul_mat_vec and rms_norm every step), then one batch
        int vocab = m.Config.VocabSize;
        int n = golden.PromptIds.Length;
        var a = new float[n * vocab];
        var b = new float[n * vocab];
        for (int i = 0; i < n; i++)
        {
            fast.Eval(golden.PromptIds.AsSpan(i, 1)).CopyTo(a, i * vocab);
            plain.Eval(golden.PromptIds.AsSpan(i, 1)).CopyTo(b, i * vocab);
        }
        double figure = GoldenCase.Figure(a, b);
        output.WriteLine($"{model}: subgroup vs plain figure {figure:G4}; fast variants: {string.Join(", ", fast.Variants.Values.Where(v => v.EndsWith("_sg", StringComparison.Ordinal)).Distinct())}");
        Assert.True(figure <= PathBound, $"subgroup and plain paths differ: figure {figure:G4}");
        Assert.True(GoldenCase.Figure(a, golden.Logits) <= 0.1, "the subgroup path still matches llama.cpp");
    }
}
