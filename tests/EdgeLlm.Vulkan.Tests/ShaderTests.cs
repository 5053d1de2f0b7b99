using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// Single shaders on the device against a CPU reference: mul_mat_vec for every weight type on
/// real tensors of the shared model files (dequantized on the CPU by WeightFormat, dot products
/// in double), with random activations; get_rows; rms_norm.
/// </summary>
public unsafe class ShaderTests(DeviceFixture fixture, ITestOutputHelper output) : IClassFixture<DeviceFixture>
{
    /// <summary>Relative error of a dot product in f32 against double (sums of a few hundred terms).</summary>
    private const double MatVecTolerance = 1e-4;
    private const double RmsNormTolerance = 1e-5;

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
    public void MulMatVec_And_GetRows_MatchCpuDequantization(string model, GgmlType type)
    {
        var d = fixture.Device;
        using var file = GgufFile.Open(SharedData.Model(model));
        var t = file.Tensors.First(x => x.Type == type && x.Dims.Length == 2);
        int rows = (int)Math.Min(t.RowCount, 96), cols = (int)t.RowLength;
        long rowBytes = GgmlTypes.Info(type).RowBytes(cols);
        Assert.True(WeightFormat.TryGet(type, out var fmt));
        var w = new float[rows * cols];
        fixed (float* wp = w)
            for (int r = 0; r < rows; r++) fmt.DequantizeRow(file.GetTensorPointer(t) + r * rowBytes, wp + (long)r * cols, cols);

        const int ncols = 11; // more than one group of 8 columns, not a multiple of it
        var rng = new Random(7);
        var x = new float[ncols * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);

        using var wb = d.CreateBuffer(rows * rowBytes, host: true, "weights");
        d.Upload(wb, 0, file.GetTensorPointer(t), rows * rowBytes);
        using var xb = d.CreateBuffer(x.Length * 4L, host: true, "x");
        x.CopyTo(xb.AsFloats());
        using var yb = d.CreateBuffer(ncols * rows * 4L, host: true, "y");
        var k = VulkanKernels.Create(d, VulkanKernels.MatVecSpec("vec", type, cols, rows));
        var cb = d.AllocateCommandBuffer();
        d.Begin(cb, oneShot: true);
        VulkanKernels.RecordMatVec(d, cb, k, d.CreateSet(k.Kernel, wb, xb, yb), ncols, 0, 0);
        d.Barrier(cb);
        d.SubmitAndWait(cb);
        d.FreeCommandBuffer(cb);
        double worst = 0;
        var y = yb.AsFloats();
        for (int c = 0; c < ncols; c++)
            for (int r = 0; r < rows; r++)
            {
                double refDot = 0, mag = 0;
                for (int i = 0; i < cols; i++) { refDot += (double)w[r * cols + i] * x[c * cols + i]; mag += Math.Abs((double)w[r * cols + i] * x[c * cols + i]); }
                worst = Math.Max(worst, Math.Abs(y[c * rows + r] - refDot) / Math.Max(mag, 1e-30));
            }
        output.WriteLine($"mul_mat_vec_{VulkanKernels.Suffix(type)} on {t.Name} [{rows}x{cols}]: max error / sum|terms| {worst:G3}");
        Assert.True(worst <= MatVecTolerance, $"mul_mat_vec_{VulkanKernels.Suffix(type)}: error {worst:G3} exceeds {MatVecTolerance}");

        // get_rows: the dequantized rows, exactly
        int[] ids = [3, 0, rows - 1];
        using var ib = d.CreateBuffer(ids.Length * 4L, host: true, "ids");
        ids.CopyTo(new Span<int>(ib.Mapped, ids.Length));
        using var ob = d.CreateBuffer(ids.Length * cols * 4L, host: true, "rows");
        var g = VulkanKernels.Create(d, VulkanKernels.GetRowsSpec(type, cols));
        cb = d.AllocateCommandBuffer();
        d.Begin(cb, oneShot: true);
        VulkanKernels.RecordGetRows(d, cb, g, d.CreateSet(g.Kernel, wb, ib, ob), ids.Length);
        d.Barrier(cb);
        d.SubmitAndWait(cb);
        d.FreeCommandBuffer(cb);
        var o = ob.AsFloats();
        for (int j = 0; j < ids.Length; j++)
            for (int i = 0; i < cols; i++)
                Assert.Equal(w[ids[j] * cols + i], o[j * cols + i]);
    }

    [Fact]
    public void RmsNorm_MatchesCpu()
    {
        var d = fixture.Device;
        const int n = 300, rows = 5;
        const float eps = 1e-5f;
        var rng = new Random(3);
        var x = new float[n * rows];
        var w = new float[n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        for (int i = 0; i < n; i++) w[i] = (float)rng.NextDouble();
        using var xb = d.CreateBuffer(x.Length * 4L, host: true, "x");
        using var wb = d.CreateBuffer(n * 4L, host: true, "w");
        using var ob = d.CreateBuffer(x.Length * 4L, host: true, "out");
        x.CopyTo(xb.AsFloats());
        w.CopyTo(wb.AsFloats());
        var k = VulkanKernels.Create(d, VulkanKernels.RmsNormSpec(n, eps));
        var cb = d.AllocateCommandBuffer();
        d.Begin(cb, oneShot: true);
        VulkanKernels.RecordRmsNorm(d, cb, k, d.CreateSet(k.Kernel, xb, wb, ob), 1, rows - 1);
        d.Barrier(cb);
        d.SubmitAndWait(cb);
        d.FreeCommandBuffer(cb);
        var o = ob.AsFloats();
        double worst = 0;
        for (int r = 1; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
            double scale = 1 / Math.Sqrt(ss / n + eps);
            for (int i = 0; i < n; i++) worst = Math.Max(worst, Math.Abs(o[r * n + i] - x[r * n + i] * scale * w[i]));
        }
        output.WriteLine($"rms_norm max abs error {worst:G3}");
        Assert.True(worst <= RmsNormTolerance, $"rms_norm error {worst:G3}");
    }
}
