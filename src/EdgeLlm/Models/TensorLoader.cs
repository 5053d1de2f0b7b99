using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Models;

/// <summary>
/// Finds tensors by GGUF name and checks them against the hyperparameters: presence, shape and
/// a <see cref="WeightFormat"/> for their type. Every failure is a <see cref="ModelLoadException"/>
/// naming the tensor and both shapes.
/// </summary>
internal sealed unsafe class TensorLoader
{
    private readonly GgufFile _file;

    public TensorLoader(GgufFile file) => _file = file;

    /// <summary>An expected dimension and where its value came from (for error messages).</summary>
    public readonly record struct Dim(int Value, string Source);

    /// <summary>A matrix W[rows, cols] (GGUF ne = {cols, rows}).</summary>
    public WeightMatrix Matrix(string name, Dim cols, Dim rows) =>
        OptionalMatrix(name, cols, rows) ?? throw Missing(name);

    public WeightMatrix? OptionalMatrix(string name, Dim cols, Dim rows)
    {
        var t = _file.FindTensor(name);
        if (t is null) return null;
        CheckShape(t, cols, rows);
        return new WeightMatrix(t, FormatOf(t), _file.GetTensorPointer(t));
    }

    /// <summary>
    /// The parts of a fused matrix (e.g. Phi-3's attn_qkv: Q, K and V rows one after the other), each a
    /// view of its rows, or null when <paramref name="name"/> is absent. The tensor must have exactly
    /// the parts' rows together.
    /// </summary>
    public WeightMatrix[]? OptionalFused(string name, Dim cols, params (Dim Rows, string Part)[] parts)
    {
        var t = _file.FindTensor(name);
        if (t is null) return null;
        int total = parts.Sum(p => p.Rows.Value);
        CheckShape(t, cols, new Dim(total, string.Join(" + ", parts.Select(p => $"{p.Part}: {p.Rows.Source} = {p.Rows.Value}"))));
        var format = FormatOf(t);
        byte* data = _file.GetTensorPointer(t);
        var result = new WeightMatrix[parts.Length];
        int first = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            result[i] = new WeightMatrix(t, format, data, first, parts[i].Rows.Value, parts[i].Part);
            first += parts[i].Rows.Value;
        }
        return result;
    }

    /// <summary>True when the file has a tensor named <paramref name="name"/>.</summary>
    public bool Has(string name) => _file.FindTensor(name) is not null;

    /// <summary>
    /// The experts of a 3-D tensor ({cols, rows, experts} in ggml order, e.g. ffn_gate_exps): one view of
    /// <paramref name="rows"/> contiguous rows per expert.
    /// </summary>
    public WeightMatrix[] Experts(string name, Dim cols, Dim rows, Dim experts)
    {
        var t = _file.FindTensor(name) ?? throw Missing(name);
        CheckShape(t, cols, rows, experts);
        var format = FormatOf(t);
        byte* data = _file.GetTensorPointer(t);
        var result = new WeightMatrix[experts.Value];
        for (int e = 0; e < result.Length; e++)
            result[e] = new WeightMatrix(t, format, data, e * rows.Value, rows.Value, $"expert {e}");
        return result;
    }

    /// <summary>A vector of <paramref name="length"/> values, converted to f32.</summary>
    public float[] Vector(string name, Dim length) => OptionalVector(name, length) ?? throw Missing(name);

    public float[]? OptionalVector(string name, Dim length)
    {
        var t = _file.FindTensor(name);
        if (t is null) return null;
        CheckShape(t, length);
        var result = new float[length.Value];
        fixed (float* dst = result)
            FormatOf(t).DequantizeRow(_file.GetTensorPointer(t), dst, length.Value);
        return result;
    }

    /// <summary>A 2-D tensor of <paramref name="rows"/> rows of <paramref name="length"/> values (gpt-oss's per-expert biases), converted to f32, row after row.</summary>
    public float[] VectorRows(string name, Dim length, Dim rows)
    {
        var t = _file.FindTensor(name) ?? throw Missing(name);
        CheckShape(t, length, rows);
        var format = FormatOf(t);
        var result = new float[(long)length.Value * rows.Value];
        long rowBytes = GgmlTypes.Info(t.Type).RowBytes(length.Value);
        byte* src = _file.GetTensorPointer(t);
        fixed (float* dst = result)
            for (int r = 0; r < rows.Value; r++)
                format.DequantizeRow(src + r * rowBytes, dst + (long)r * length.Value, length.Value);
        return result;
    }

    private static ModelLoadException Missing(string name) => new($"tensor {name} is missing from the model file");

    private static WeightFormat FormatOf(GgufTensorInfo t) =>
        WeightFormat.TryGet(t.Type, out var fmt)
            ? fmt
            : throw new ModelLoadException($"tensor {t.Name} has type {GgmlTypes.Name(t.Type)}, which EdgeLlm does not support");

    private static void CheckShape(GgufTensorInfo t, params Dim[] expected)
    {
        // GGUF may carry trailing 1s (ne = {n, 1}); they do not change the layout.
        int rank = t.Dims.Length;
        while (rank > expected.Length && t.Dims[rank - 1] == 1) rank--;
        bool ok = rank == expected.Length;
        for (int i = 0; ok && i < expected.Length; i++) ok = t.Dims[i] == expected[i].Value;
        if (ok) return;
        string want = string.Join(", ", expected.Select(d => d.Value));
        string why = string.Join("; ", expected.Select((d, i) => $"ne[{i}] = {d.Source} = {d.Value}"));
        throw new ModelLoadException($"tensor {t.Name} has shape [{string.Join(", ", t.Dims)}], but the metadata implies [{want}] ({why})");
    }
}
