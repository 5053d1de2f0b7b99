namespace EdgeLlm.Gguf;

/// <summary>
/// The one exception a malformed GGUF file raises. <see cref="Field"/> names what was wrong
/// (e.g. <c>tensor_infos[3].n_dims</c>, <c>kv[12](tokenizer.ggml.tokens).length</c>) and
/// <see cref="Offset"/> is the byte offset in the file where that field starts (-1 when the
/// problem is not tied to one place, e.g. a missing key).
/// </summary>
public sealed class GgufFormatException : Exception
{
    public GgufFormatException(string path, string field, long offset, string problem)
        : base(offset >= 0
            ? $"{System.IO.Path.GetFileName(path)}: invalid GGUF at byte offset {offset} (0x{offset:X}), field '{field}': {problem}"
            : $"{System.IO.Path.GetFileName(path)}: invalid GGUF, field '{field}': {problem}")
    {
        FilePath = path;
        Field = field;
        Offset = offset;
        Problem = problem;
    }

    /// <summary>The file that was being read.</summary>
    public string FilePath { get; }

    /// <summary>The field that was wrong.</summary>
    public string Field { get; }

    /// <summary>Byte offset of the field in the file, or -1.</summary>
    public long Offset { get; }

    /// <summary>What was wrong with it.</summary>
    public string Problem { get; }
}
