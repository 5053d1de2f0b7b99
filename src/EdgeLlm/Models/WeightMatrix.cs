using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Models;

/// <summary>
/// A weight matrix W[Rows, Cols] that stays where it is in the memory-mapped GGUF file, in its own
/// type; every product with it goes through its <see cref="WeightFormat"/>. GGUF stores W with
/// ne = {Cols, Rows}: each output row is <see cref="Cols"/> contiguous values.
/// </summary>
internal sealed unsafe class WeightMatrix
{
    public WeightMatrix(GgufTensorInfo info, WeightFormat format, byte* data)
    {
        Name = info.Name;
        Format = format;
        Data = data;
        Cols = checked((int)info.RowLength);
        Rows = checked((int)info.RowCount);
        RowBytes = GgmlTypes.Info(info.Type).RowBytes(Cols);
    }

    public string Name { get; }
    public WeightFormat Format { get; }
    public GgmlType Type => Format.Type;

    /// <summary>First byte of row 0 in the mapping.</summary>
    public byte* Data { get; }

    /// <summary>Input width (values per row).</summary>
    public int Cols { get; }

    /// <summary>Output width (number of rows).</summary>
    public int Rows { get; }

    /// <summary>Bytes per row in <see cref="Type"/>.</summary>
    public long RowBytes { get; }

    public byte* Row(int r) => Data + r * RowBytes;
}

/// <summary>
/// The weights of one transformer block (llama.cpp's <c>llama_layer</c>). Matrices are
/// [out, in]; norms and biases are small and are converted to f32 at load.
/// </summary>
internal sealed class LayerWeights
{
    public required float[] AttnNorm { get; init; }       // [embd]
    public required WeightMatrix Wq { get; init; }         // [heads * head_dim, embd]
    public required WeightMatrix Wk { get; init; }         // [kv_heads * head_dim, embd]
    public required WeightMatrix Wv { get; init; }         // [kv_heads * head_dim, embd]
    public required WeightMatrix Wo { get; init; }         // [embd, heads * head_dim]
    public float[]? Bq { get; init; }                      // [heads * head_dim] (Qwen2)
    public float[]? Bk { get; init; }                      // [kv_heads * head_dim] (Qwen2)
    public float[]? Bv { get; init; }                      // [kv_heads * head_dim] (Qwen2)
    public required float[] FfnNorm { get; init; }        // [embd]
    public required WeightMatrix Gate { get; init; }       // [ff, embd]
    public required WeightMatrix Up { get; init; }         // [ff, embd]
    public required WeightMatrix Down { get; init; }       // [embd, ff]
}
