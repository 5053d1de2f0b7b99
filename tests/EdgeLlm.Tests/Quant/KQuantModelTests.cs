using System.Text;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;
using static EdgeLlm.Tests.Quant.KQuantTestData;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// K-quants against llama.cpp's own files: the syn-llama tensors that llama-quantize wrote
/// in each K type dequantize to the f32 original, and our quantizers reach at most
/// <see cref="MaxErrorRatioVsLlamaCpp"/>× llama.cpp's RMS error on every such tensor.
/// </summary>
public unsafe class KQuantModelTests(ITestOutputHelper output)
{
    /// <summary>Our quantizer's per-tensor RMS error may exceed llama.cpp's by at most 5%.</summary>
    private const double MaxErrorRatioVsLlamaCpp = 1.05;

    private static readonly string[] Files = ["syn-llama-q2_k", "syn-llama-q3_k_m", "syn-llama-q4_k_m", "syn-llama-q5_k_m", "syn-llama-q6_k"];

    /// <summary>Loose ceilings on RMS(dequant − f32)/RMS(f32) per type, for a wrong layout to fail by far.</summary>
    private static double MaxRelRms(GgmlType t) => t switch
    {
        GgmlType.Q2_K => 0.45,
        GgmlType.Q3_K => 0.25,
        GgmlType.Q4_K => 0.12,
        GgmlType.Q5_K => 0.06,
        GgmlType.Q6_K => 0.03,
        _ => 0,
    };

    [Fact]
    public void SharedFiles_KQuantTensorsDequantizeToTheF32Original()
    {
        using var f32 = GgufFile.Open(SharedData.Model("syn-llama-f32"));
        var table = new StringBuilder();
        table.AppendLine($"{"file",-18} {"tensor",-26} {"type",-5} {"rel RMS err",12}");
        var seen = new HashSet<GgmlType>();
        foreach (var file in Files)
        {
            using var q = GgufFile.Open(SharedData.Model(file));
            foreach (var t in q.Tensors)
            {
                if (!WeightTypes.Contains(t.Type)) continue;
                seen.Add(t.Type);
                var orig = f32.FindTensor(t.Name) ?? throw new InvalidOperationException($"{t.Name} missing from f32 file");
                Assert.Equal(orig.Dims, t.Dims);
                float[] a = ReadTensor(f32, orig);
                float[] b = ReadTensor(q, t);
                double rel = RmsDiff(a, b) / Rms(a);
                table.AppendLine($"{file,-18} {t.Name,-26} {GgmlTypes.Name(t.Type),-5} {rel,12:F5}");
                Assert.True(rel < MaxRelRms(t.Type), $"{file} {t}: relative RMS error {rel}");
            }
        }
        output.WriteLine(table.ToString());
        Assert.Equal(WeightTypes.Length, seen.Count); // every K type appears somewhere
    }

    [Fact]
    public void SharedFiles_VecDotMatchesDequantizedDot()
    {
        // Per tensor: a few rows dotted with a random activation; integer path vs f32 on the dequantized row.
        var rng = new Random(3);
        foreach (var file in Files)
        {
            using var q = GgufFile.Open(SharedData.Model(file));
            foreach (var t in q.Tensors.Where(t => WeightTypes.Contains(t.Type)))
            {
                WeightFormat.TryGet(t.Type, out var fmt);
                int n = (int)t.RowLength;
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                var act = new byte[ActivationQuantizer.RowBytes(GgmlType.Q8_K, n)];
                var row = new float[n];
                long rowBytes = GgmlTypes.Info(t.Type).RowBytes(n);
                fixed (float* px = x)
                fixed (byte* pa = act)
                fixed (float* pr = row)
                {
                    ActivationQuantizer.QuantizeRow(GgmlType.Q8_K, px, pa, n);
                    for (long r = 0; r < t.RowCount; r += Math.Max(1, t.RowCount / 8))
                    {
                        byte* w = q.GetTensorPointer(t) + r * rowBytes;
                        fmt.DequantizeRow(w, pr, n);
                        double exact = 0, bound = 0;
                        for (int b = 0; b < n / 256; b++)
                        {
                            double amax = 0;
                            for (int i = 256 * b; i < 256 * b + 256; i++) amax = Math.Max(amax, Math.Abs(x[i]));
                            for (int i = 256 * b; i < 256 * b + 256; i++)
                            {
                                exact += (double)row[i] * x[i];
                                bound += Math.Abs(row[i]) * (amax / 127 / 2 * 1.01) + Math.Abs(row[i] * x[i]) * 1e-5;
                            }
                        }
                        float got = fmt.VecDot(n, w, pa);
                        Assert.True(Math.Abs(got - exact) <= bound, $"{file} {t.Name} row {r}: {got} vs {exact} (bound {bound:E3})");
                    }
                }
            }
        }
    }

    /// <summary>One tensor requantized from f32 by our quantizer, compared with llama.cpp's file.</summary>
    private sealed record Requantized(string File, string Tensor, GgmlType Type, double LlamaCppRms, double OurRms, int SameBlocks, int Blocks);

    // Quantizing every K tensor of five files takes a while; both tests below share one pass.
    private static readonly Lazy<List<Requantized>> s_requantized = new(RequantizeAll);

    private static List<Requantized> RequantizeAll()
    {
        using var f32 = GgufFile.Open(SharedData.Model("syn-llama-f32"));
        var rows = new List<Requantized>();
        foreach (var file in Files)
        {
            using var q = GgufFile.Open(SharedData.Model(file));
            foreach (var t in q.Tensors)
            {
                if (!WeightTypes.Contains(t.Type)) continue;
                var orig = f32.FindTensor(t.Name) ?? throw new InvalidOperationException($"{t.Name} missing from f32 file");
                float[] src = ReadTensor(f32, orig);
                float[] theirs = ReadTensor(q, t);

                if (!RowQuantizer.TryGet(t.Type, out var quantize)) throw new InvalidOperationException($"no quantizer for {t.Type}");
                WeightFormat.TryGet(t.Type, out var fmt);
                long rowBytes = GgmlTypes.Info(t.Type).RowBytes(t.RowLength);
                var mine = new byte[rowBytes * t.RowCount];
                var ours = new float[src.Length];
                fixed (float* ps = src)
                fixed (byte* pm = mine)
                fixed (float* po = ours)
                {
                    for (long r = 0; r < t.RowCount; r++)
                    {
                        quantize(ps + r * t.RowLength, pm + r * rowBytes, t.RowLength);
                        fmt.DequantizeRow(pm + r * rowBytes, po + r * t.RowLength, t.RowLength);
                    }
                }
                int bs = GgmlTypes.Info(t.Type).TypeSize;
                var theirBytes = q.GetTensorData(t);
                int same = 0, total = mine.Length / bs;
                for (int b = 0; b < total; b++)
                    if (theirBytes.Slice(b * bs, bs).SequenceEqual(mine.AsSpan(b * bs, bs))) same++;
                rows.Add(new Requantized(file, t.Name, t.Type, RmsDiff(src, theirs), RmsDiff(src, ours), same, total));
            }
        }
        return rows;
    }

    [Fact]
    public void Quantizers_MatchLlamaCppErrorPerTensor()
    {
        var table = new StringBuilder();
        table.AppendLine($"{"file",-18} {"tensor",-26} {"type",-5} {"llama.cpp RMS",14} {"ours RMS",12} {"ratio",7} {"same blocks",12}");
        var failures = new List<string>();
        var worst = new Dictionary<GgmlType, double>();
        foreach (var r in s_requantized.Value)
        {
            double ratio = r.OurRms / r.LlamaCppRms;
            worst[r.Type] = Math.Max(worst.GetValueOrDefault(r.Type), ratio);
            table.AppendLine($"{r.File,-18} {r.Tensor,-26} {GgmlTypes.Name(r.Type),-5} {r.LlamaCppRms,14:E4} {r.OurRms,12:E4} {ratio,7:F4} {r.SameBlocks + "/" + r.Blocks,12}");
            if (!(ratio <= MaxErrorRatioVsLlamaCpp)) failures.Add($"{r.File} {r.Tensor} {r.Type}: ratio {ratio:F4}");
        }
        foreach (var (type, ratio) in worst.OrderBy(kv => kv.Key)) table.AppendLine($"worst ratio {GgmlTypes.Name(type)}: {ratio:F4}");
        output.WriteLine(table.ToString());
        Assert.Equal(WeightTypes.Length, worst.Count);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// Stronger than the error ratio: the quantizers follow ggml's reference algorithms float
    /// for float, so they reproduce llama-quantize's blocks exactly (RyuJIT never fuses a
    /// multiply-add, so this holds on every CPU).
    /// </summary>
    [Fact]
    public void Quantizers_ReproduceLlamaCppBlocksByteForByte()
    {
        var rows = s_requantized.Value;
        int same = rows.Sum(r => r.SameBlocks), total = rows.Sum(r => r.Blocks);
        output.WriteLine($"{same} of {total} blocks identical to llama.cpp's over {rows.Count} tensors");
        foreach (var r in rows)
            Assert.True(r.SameBlocks == r.Blocks, $"{r.File} {r.Tensor} {r.Type}: {r.SameBlocks}/{r.Blocks} blocks identical");
    }
}
