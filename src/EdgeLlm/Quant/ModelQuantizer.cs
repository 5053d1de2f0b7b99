using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Options of <see cref="ModelQuantizer.Quantize"/> (llama-quantize's flags).</summary>
public sealed class QuantizeOptions
{
    /// <summary>llama-quantize <c>--pure</c>: every quantizable 2-D weight gets the file type's type; no per-tensor mixing or fallback.</summary>
    public bool Pure { get; init; }

    /// <summary>Worker threads for row quantization; 0 or less means one per processor.</summary>
    public int Threads { get; init; }

    /// <summary>llama-quantize <c>--allow-requantize</c>: accept inputs whose tensors are already quantized (dequantized first).</summary>
    public bool AllowRequantize { get; init; }

    /// <summary>Called after each tensor is written: (tensors done, tensors in all, tensor name).</summary>
    public Action<int, int, string>? Progress { get; init; }
}

/// <summary>
/// Writes a quantized copy of a GGUF model, as <c>llama-quantize</c> does: metadata copied,
/// <c>general.file_type</c> and <c>general.quantization_version</c> set, each tensor converted to
/// the type <see cref="TensorTypePlanner"/> chooses for it.
/// </summary>
public static unsafe class ModelQuantizer
{
    /// <summary>ggml's GGML_QNT_VERSION, stored as general.quantization_version.</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>The type each tensor of the model at <paramref name="inPath"/> would get, without quantizing.</summary>
    public static IReadOnlyList<(string Name, GgmlType From, GgmlType To)> PlanTypes(string inPath, string fileTypeName, bool pure = false)
    {
        using var file = GgufFile.Open(inPath);
        return TensorTypePlanner.Plan(file, LlamaFileTypes.Parse(fileTypeName), pure)
            .Select(p => (p.Tensor.Name, p.Tensor.Type, p.Target)).ToArray();
    }

    /// <summary>Quantizes the model at <paramref name="inPath"/> into <paramref name="outPath"/>.</summary>
    /// <param name="inPath">An F32, F16 or BF16 GGUF model (or a quantized one with <see cref="QuantizeOptions.AllowRequantize"/>).</param>
    /// <param name="outPath">The file to write (replaced if it exists; must differ from the input).</param>
    /// <param name="fileTypeName">A llama.cpp file type name: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, IQ4_NL, F16, BF16 (any case).</param>
    /// <param name="options">Flags; null for defaults.</param>
    public static void Quantize(string inPath, string outPath, string fileTypeName, QuantizeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(inPath);
        ArgumentNullException.ThrowIfNull(outPath);
        options ??= new QuantizeOptions();
        var ftype = LlamaFileTypes.Parse(fileTypeName);
        if (string.Equals(Path.GetFullPath(inPath), Path.GetFullPath(outPath), StringComparison.Ordinal))
            throw new ArgumentException($"output path {outPath} is the input file", nameof(outPath));

        using var file = GgufFile.Open(inPath);
        var plans = TensorTypePlanner.Plan(file, ftype, options.Pure);
        CheckConvertible(plans, options.AllowRequantize);

        var writer = new GgufWriter { Alignment = file.Alignment };
        writer.CopyMetadata(file);
        writer.Remove("general.alignment"); // GgufWriter writes it again when it differs from 32
        writer.Set("general.quantization_version", QuantizationVersion);
        writer.Set("general.file_type", (uint)ftype);

        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        int done = 0;
        foreach (var plan in plans)
        {
            var p = plan;
            writer.AddTensor(p.Tensor.Name, p.Target, p.Tensor.Dims, stream =>
            {
                if (p.Convert) ConvertTensor(file, p, threads, stream);
                else stream.Write(file.GetTensorData(p.Tensor));
                options.Progress?.Invoke(++done, plans.Count, p.Tensor.Name);
            });
        }

        try
        {
            writer.Write(outPath);
        }
        catch
        {
            try { File.Delete(outPath); } catch (IOException) { } // leave no half-written model behind
            throw;
        }
    }

    private static void CheckConvertible(IReadOnlyList<TensorPlan> plans, bool allowRequantize)
    {
        foreach (var p in plans.Where(p => p.Convert))
        {
            var from = p.Tensor.Type;
            if (TensorTypePlanner.IsQuantized(from))
            {
                if (!allowRequantize)
                    throw new InvalidOperationException($"tensor {p.Tensor.Name}: requantizing from type {GgmlTypes.Name(from)} is disabled (input must be F32, F16 or BF16; pass --allow-requantize (AllowRequantize) to override)");
                if (!WeightFormat.TryGet(from, out _))
                    throw new NotSupportedException($"tensor {p.Tensor.Name}: cannot dequantize type {GgmlTypes.Name(from)}");
            }
            else if (from is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            {
                throw new NotSupportedException($"tensor {p.Tensor.Name}: cannot convert type {GgmlTypes.Name(from)}");
            }
            if (p.Target is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) && !RowQuantizer.TryGet(p.Target, out _))
                throw new NotSupportedException($"tensor {p.Tensor.Name}: no quantizer for type {GgmlTypes.Name(p.Target)} is available");
        }
    }

    /// <summary>Converts one tensor row by row (rows spread over <paramref name="threads"/> workers) and writes it.</summary>
    private static void ConvertTensor(GgufFile file, TensorPlan p, int threads, Stream stream)
    {
        var t = p.Tensor;
        long n = t.RowLength, rows = t.RowCount;
        var dstInfo = GgmlTypes.Info(p.Target);
        long dstRowBytes = dstInfo.RowBytes(n);
        long srcRowBytes = GgmlTypes.Info(t.Type).RowBytes(n);
        byte* src = file.GetTensorPointer(t);

        WeightFormat? dequant = null;
        if (t.Type != GgmlType.F32 && !WeightFormat.TryGet(t.Type, out dequant))
            throw new NotSupportedException($"tensor {t.Name}: cannot read type {GgmlTypes.Name(t.Type)}");
        RowQuantizer.QuantizeRowFn? quantize = null;
        if (p.Target is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) && !RowQuantizer.TryGet(p.Target, out quantize))
            throw new NotSupportedException($"tensor {t.Name}: no quantizer for type {GgmlTypes.Name(p.Target)}");

        // Rows go out in slabs so that a large tensor never needs its whole output in memory twice.
        const long SlabBytes = 64L << 20;
        long slabRows = Math.Max(1, Math.Min(rows, SlabBytes / Math.Max(1, dstRowBytes)));
        var buffer = new byte[checked((int)(slabRows * dstRowBytes))];
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = threads };
        for (long first = 0; first < rows; first += slabRows)
        {
            long count = Math.Min(slabRows, rows - first);
            long firstRow = first;
            fixed (byte* outBase = buffer)
            {
                byte* ob = outBase;
                Parallel.For(0, (int)count, parallel,
                    () => new float[n],
                    (r, _, f32) =>
                    {
                        fixed (float* row = f32)
                        {
                            byte* s = src + (firstRow + r) * srcRowBytes;
                            if (dequant is null) Buffer.MemoryCopy(s, row, n * 4, n * 4);
                            else dequant.DequantizeRow(s, row, n);
                            byte* d = ob + r * dstRowBytes;
                            switch (p.Target)
                            {
                                case GgmlType.F32: Buffer.MemoryCopy(row, d, n * 4, n * 4); break;
                                case GgmlType.F16: for (long i = 0; i < n; i++) ((ushort*)d)[i] = QuantMath.Fp32ToFp16(row[i]); break;
                                case GgmlType.BF16: for (long i = 0; i < n; i++) ((ushort*)d)[i] = BFloat16Converter.FromSingle(row[i]); break;
                                default: quantize!(row, d, n); break;
                            }
                        }
                        return f32;
                    },
                    _ => { });
            }
            stream.Write(buffer, 0, checked((int)(count * dstRowBytes)));
        }
    }
}
