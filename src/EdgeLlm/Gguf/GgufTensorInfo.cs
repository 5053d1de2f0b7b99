namespace EdgeLlm.Gguf;

/// <summary>
/// One entry of the GGUF tensor directory. <see cref="Dims"/> is in ggml order: <c>Dims[0]</c>
/// is the innermost (row length, contiguous), so a weight matrix W[out, in] has Dims = {in, out}.
/// </summary>
public sealed class GgufTensorInfo
{
    internal GgufTensorInfo(string name, GgmlType type, long[] dims, long elementCount, long byteSize, long dataOffset, long fileOffset, int index)
    {
        Name = name;
        Type = type;
        Dims = dims;
        ElementCount = elementCount;
        ByteSize = byteSize;
        DataOffset = dataOffset;
        FileOffset = fileOffset;
        Index = index;
    }

    public string Name { get; }
    public GgmlType Type { get; }

    /// <summary>Dimensions, innermost first (ggml's ne[0..n_dims)).</summary>
    public long[] Dims { get; }

    public long ElementCount { get; }
    public long ByteSize { get; }

    /// <summary>Offset relative to the start of the data section, as stored in the file.</summary>
    public long DataOffset { get; }

    /// <summary>Absolute offset of the first byte in the file.</summary>
    public long FileOffset { get; }

    /// <summary>Position in the tensor directory.</summary>
    public int Index { get; }

    /// <summary>Row length (Dims[0]).</summary>
    public long RowLength => Dims[0];

    /// <summary>Number of rows (product of Dims[1..]).</summary>
    public long RowCount => ElementCount / Dims[0];

    public override string ToString() => $"{Name} {GgmlTypes.Name(Type)} [{string.Join(", ", Dims)}]";
}
