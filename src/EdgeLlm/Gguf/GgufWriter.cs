using System.Text;

namespace EdgeLlm.Gguf;

/// <summary>
/// Writes GGUF version 3 files: metadata in insertion order, then the tensor directory, then the
/// tensor data, each tensor aligned to <see cref="Alignment"/>. Used by <c>edgellm quantize</c>,
/// <c>edgellm synth</c> and by tests that craft files.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _kvs = new();
    private readonly List<(string Name, GgmlType Type, long[] Dims, Func<Stream, long> WriteData, long Bytes)> _tensors = new();

    public int Alignment { get; set; } = GgufFile.DefaultAlignment;

    /// <summary>Sets a metadata key (replacing an earlier value with the same key, keeping its position).</summary>
    public GgufWriter Set(string key, GgufValue value)
    {
        int i = _kvs.FindIndex(kv => kv.Key == key);
        if (i >= 0) _kvs[i] = new(key, value);
        else _kvs.Add(new(key, value));
        return this;
    }

    public GgufWriter Set(string key, string value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, uint value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, int value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, float value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, bool value) => Set(key, GgufValue.From(value));

    public bool Remove(string key) => _kvs.RemoveAll(kv => kv.Key == key) > 0;

    /// <summary>Copies every metadata key of <paramref name="source"/>.</summary>
    public GgufWriter CopyMetadata(GgufFile source)
    {
        foreach (var kv in source.MetadataList) Set(kv.Key, kv.Value);
        return this;
    }

    /// <summary>Adds a tensor with its data (copied when the file is written).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, byte[] data)
    {
        long bytes = CheckedBytes(name, type, dims);
        if (data.Length != bytes)
            throw new ArgumentException($"tensor {name}: {data.Length} bytes given, {GgmlTypes.Name(type)} [{string.Join(", ", dims)}] needs {bytes}", nameof(data));
        _tensors.Add((name, type, dims, s => { s.Write(data); return data.Length; }, bytes));
        return this;
    }

    /// <summary>Adds a tensor whose bytes are produced by <paramref name="write"/> when the file is written (for large files).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, Action<Stream> write)
    {
        long bytes = CheckedBytes(name, type, dims);
        _tensors.Add((name, type, dims, s => { long before = s.Position; write(s); return s.Position - before; }, bytes));
        return this;
    }

    /// <summary>Adds an F32 tensor.</summary>
    public GgufWriter AddTensor(string name, long[] dims, float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return AddTensor(name, GgmlType.F32, dims, bytes);
    }

    private static long CheckedBytes(string name, GgmlType type, long[] dims)
    {
        if (dims.Length is < 1 or > 4) throw new ArgumentException($"tensor {name}: {dims.Length} dims (1..4 allowed)");
        var info = GgmlTypes.Info(type);
        if (dims[0] % info.BlockSize != 0) throw new ArgumentException($"tensor {name}: row length {dims[0]} is not a multiple of the {info.Name} block size {info.BlockSize}");
        long n = 1;
        foreach (var d in dims) n = checked(n * d);
        return n / info.BlockSize * info.TypeSize;
    }

    public void Write(string path)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Write(fs);
    }

    public byte[] ToArray()
    {
        var ms = new MemoryStream();
        Write(ms);
        return ms.ToArray();
    }

    public void Write(Stream stream)
    {
        if (Alignment != GgufFile.DefaultAlignment) Set("general.alignment", (uint)Alignment);
        var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_kvs.Count);
        foreach (var kv in _kvs)
        {
            WriteString(w, kv.Key);
            w.Write((uint)kv.Value.Type);
            WriteValue(w, kv.Value);
        }

        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (var d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offsets[i] = offset;
            offset = Align(offset + t.Bytes);
        }
        w.Flush();
        Pad(stream, Align(stream.Position) - stream.Position);
        long dataStart = stream.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            Pad(stream, dataStart + offsets[i] - stream.Position);
            long written = t.WriteData(stream);
            if (written != t.Bytes)
                throw new InvalidOperationException($"tensor {t.Name}: writer produced {written} bytes, expected {t.Bytes}");
        }
        if (_tensors.Count > 0) Pad(stream, Align(stream.Position - dataStart) + dataStart - stream.Position);
        stream.Flush();
    }

    private long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s, long n)
    {
        for (long i = 0; i < n; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v)
    {
        switch (v.Type)
        {
            case GgufValueType.Array:
                w.Write((uint)v.ElementType);
                var arr = (Array)v.Value;
                w.Write((ulong)arr.Length);
                foreach (var o in arr) WriteScalar(w, v.ElementType, o);
                break;
            default:
                WriteScalar(w, v.Type, v.Value);
                break;
        }
    }

    private static void WriteScalar(BinaryWriter w, GgufValueType t, object o)
    {
        switch (t)
        {
            case GgufValueType.UInt8: w.Write(Convert.ToByte(o)); break;
            case GgufValueType.Int8: w.Write(Convert.ToSByte(o)); break;
            case GgufValueType.UInt16: w.Write(Convert.ToUInt16(o)); break;
            case GgufValueType.Int16: w.Write(Convert.ToInt16(o)); break;
            case GgufValueType.UInt32: w.Write(Convert.ToUInt32(o)); break;
            case GgufValueType.Int32: w.Write(Convert.ToInt32(o)); break;
            case GgufValueType.Float32: w.Write(Convert.ToSingle(o)); break;
            case GgufValueType.Bool: w.Write((byte)((bool)o ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)o); break;
            case GgufValueType.UInt64: w.Write(Convert.ToUInt64(o)); break;
            case GgufValueType.Int64: w.Write(Convert.ToInt64(o)); break;
            case GgufValueType.Float64: w.Write(Convert.ToDouble(o)); break;
            case GgufValueType.Array:
                var inner = (GgufValue)o;
                WriteValue(w, inner);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(t), t, "unknown GGUF value type");
        }
    }
}
