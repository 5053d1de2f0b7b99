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
        Tensor = info;
        Format = format;
        Data = data;
        FileData = data;
        Cols = checked((int)info.RowLength);
        Rows = checked((int)info.RowCount);
        RowBytes = GgmlTypes.Info(info.Type).RowBytes(Cols);
        FileOffset = info.FileOffset;
    }

    /// <summary>
    /// Rows <paramref name="firstRow"/> .. <paramref name="firstRow"/> + <paramref name="rows"/> - 1 of
    /// the tensor at <paramref name="data"/>, as a matrix of its own: one part of a fused tensor
    /// (Phi-3's attn_qkv holds Q, K and V one after the other; its ffn_up holds gate then up). Rows
    /// are contiguous, so the part is a pointer into the mapping, repacked on its own like any matrix.
    /// </summary>
    public WeightMatrix(GgufTensorInfo info, WeightFormat format, byte* data, int firstRow, int rows, string part)
        : this(info, format, data)
    {
        if (firstRow < 0 || rows <= 0 || (long)firstRow + rows > Rows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"rows {firstRow}..{firstRow + rows - 1} are outside {info.Name}'s {Rows} rows");
        Name = $"{info.Name} ({part}, rows {firstRow}..{firstRow + rows - 1})";
        Rows = rows;
        Data = FileData = data + firstRow * RowBytes;
        FileOffset = info.FileOffset + firstRow * RowBytes;
    }

    public string Name { get; }

    /// <summary>The tensor's entry in the GGUF directory.</summary>
    public GgufTensorInfo Tensor { get; }

    /// <summary>The arithmetic the products use; a repacked format (<see cref="WeightFormat.Layout"/>) after <see cref="UseRepacked"/>.</summary>
    public WeightFormat Format { get; private set; }
    public GgmlType Type => Format.Type;

    /// <summary>First byte of the data the products read: the mapping, or the repacked copy (same size and row geometry).</summary>
    public byte* Data { get; private set; }

    /// <summary>First byte of row 0 in the mapping, always in the GGUF layout.</summary>
    public byte* FileData { get; }

    /// <summary>Offset of row 0 in the GGUF file (the tensor's, plus the rows before a part of a fused tensor).</summary>
    public long FileOffset { get; }

    /// <summary>Input width (values per row).</summary>
    public int Cols { get; }

    /// <summary>Output width (number of rows).</summary>
    public int Rows { get; }

    /// <summary>Bytes per row in <see cref="Type"/>.</summary>
    public long RowBytes { get; }

    /// <summary>True once the products read a repacked copy.</summary>
    public bool IsRepacked => Data != FileData;

    /// <summary>Plain row <paramref name="r"/> in the mapping (for get_rows and conversions, which take one row).</summary>
    public byte* Row(int r) => FileData + r * RowBytes;

    /// <summary>Where the products' data for rows from <paramref name="r"/> starts (<paramref name="r"/> a multiple of <see cref="WeightFormat.RowGroup"/>).</summary>
    public byte* At(int r) => Data + r * RowBytes;

    /// <summary>Switches the products to a repacked copy of the rows (owned by the model).</summary>
    internal void UseRepacked(WeightFormat format, byte* data)
    {
        Format = format;
        Data = data;
    }
}

/// <summary>
/// The attention half of one transformer block (llama.cpp's <c>llama_layer</c>): what
/// <see cref="Blocks.DecoderBlocks.SelfAttention"/> reads. Matrices are [out, in]; norms and biases
/// are small and are converted to f32 at load.
/// </summary>
internal class AttentionWeights
{
    public required float[] AttnNorm { get; init; }       // [embd]
    public required WeightMatrix Wq { get; init; }         // [heads * head_dim, embd]
    public required WeightMatrix Wk { get; init; }         // [kv_heads * head_dim, embd]
    public required WeightMatrix Wv { get; init; }         // [kv_heads * head_dim, embd]
    public required WeightMatrix Wo { get; init; }         // [embd, heads * head_dim]
    public float[]? Bq { get; init; }                      // [heads * head_dim] (Qwen2)
    public float[]? Bk { get; init; }                      // [kv_heads * head_dim] (Qwen2)
    public float[]? Bv { get; init; }                      // [kv_heads * head_dim] (Qwen2)
    public float[]? QNorm { get; init; }                   // [head_dim] (Qwen3: RMSNorm of each query head)
    public float[]? KNorm { get; init; }                   // [head_dim] (Qwen3: RMSNorm of each key head)
    public float[]? AttnPostNorm { get; init; }            // [embd] (Gemma 3: RMSNorm of the attention output before the residual add)
    public float[]? Bo { get; init; }                      // [embd] attn_output.bias (gpt-oss)
    public float[]? Sinks { get; init; }                   // [heads] attn_sinks.weight (gpt-oss: one logit per head in each softmax's denominator)
}

/// <summary>
/// The weights of one dense transformer block: its attention and one SwiGLU feed-forward network.
/// </summary>
internal sealed class LayerWeights : AttentionWeights
{
    public required float[] FfnNorm { get; init; }        // [embd]
    public float[]? FfnPostNorm { get; init; }             // [embd] (Gemma 3: RMSNorm of the feed-forward output before the residual add)
    public required WeightMatrix Gate { get; init; }       // [ff, embd]
    public required WeightMatrix Up { get; init; }         // [ff, embd]
    public required WeightMatrix Down { get; init; }       // [embd, ff]
}
