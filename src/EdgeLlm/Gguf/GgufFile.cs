using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Text;

namespace EdgeLlm.Gguf;

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped read-only. The header, metadata and tensor
/// directory are parsed and validated eagerly by <see cref="Open"/>; tensor data is never
/// copied: <see cref="GetTensorData"/> returns a view over the mapping.
/// </summary>
/// <remarks>
/// Layout (gguf.h / docs/gguf.md in ggml):
/// <code>
/// magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
/// n_kv × (string key | u32 type | value)        string = u64 length + UTF-8 bytes
/// n_tensors × (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset)
/// padding to general.alignment (default 32) | tensor data (offsets relative to here, aligned)
/// </code>
/// Everything read from the file is checked against the bytes that remain before use, so a
/// truncated or hostile file ends in a <see cref="GgufFormatException"/> naming the field and
/// its byte offset, never in an out-of-bounds read.
/// </remarks>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>Alignment used when the file does not set general.alignment.</summary>
    public const int DefaultAlignment = 32;

    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    private GgufFile(string path, long size, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, byte* basePtr,
        uint version, List<KeyValuePair<string, GgufValue>> kvs, List<GgufTensorInfo> tensors, int alignment, long dataOffset)
    {
        FilePath = path;
        FileSize = size;
        _mmf = mmf;
        _view = view;
        _base = basePtr;
        Version = version;
        MetadataList = kvs;
        _metadata = kvs.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        Tensors = tensors;
        _tensorsByName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Alignment = alignment;
        DataOffset = dataOffset;
    }

    public string FilePath { get; }

    /// <summary>True when the image is a mapped file at <see cref="FilePath"/> (false for <see cref="FromPointer"/>).</summary>
    internal bool IsFileBacked => _mmf is not null;
    public long FileSize { get; }
    public uint Version { get; }
    public int Alignment { get; }

    /// <summary>Absolute file offset of the tensor data section.</summary>
    public long DataOffset { get; }

    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataList { get; }

    /// <summary>Metadata by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata => _metadata;

    /// <summary>The tensor directory in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Opens, maps and validates a GGUF file.</summary>
    /// <exception cref="GgufFormatException">the file is not a valid GGUF file.</exception>
    /// <exception cref="IOException">the file cannot be read.</exception>
    public static GgufFile Open(string path)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(fullPath))
        {
            // FileInfo would say "Could not find file", which misleads when the path is there.
            throw new FileNotFoundException($"'{fullPath}' is a directory, not a GGUF file", fullPath);
        }

        long size = new FileInfo(fullPath).Length; // throws FileNotFoundException when missing
        if (size < 8)
        {
            // MemoryMappedFile refuses empty files; report the truncation the same way as any other.
            throw new GgufFormatException(fullPath, size < 4 ? "magic" : "version", size < 4 ? 0 : 4, $"file is truncated: {size} bytes");
        }

        var mmf = MemoryMappedFile.CreateFromFile(fullPath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = mmf.CreateViewAccessor(0, size, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            var parser = new Parser(fullPath, p, size);
            return parser.Parse(mmf, view);
        }
        catch
        {
            if (view is not null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            mmf.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Parses a GGUF image held in memory (used for tests and for files written in memory). The
    /// file keeps pointing into <paramref name="data"/> (tensor data), so the memory must stay
    /// valid and unmoved until the file is disposed: pin a managed array for that whole time.
    /// </summary>
    public static GgufFile FromPointer(string name, byte* data, long size)
    {
        if (size < 8)
            throw new GgufFormatException(name, size < 4 ? "magic" : "version", size < 4 ? 0 : 4, $"file is truncated: {size} bytes");
        return new Parser(name, data, size).Parse(null, null);
    }

    public bool TryGetValue(string key, out GgufValue value) => _metadata.TryGetValue(key, out value!);

    public string? GetString(string key) => _metadata.TryGetValue(key, out var v) ? v.AsString() : null;

    public long? GetInt(string key) => _metadata.TryGetValue(key, out var v) ? v.AsInt64() : null;

    public double? GetFloat(string key) => _metadata.TryGetValue(key, out var v) ? v.AsDouble() : null;

    public bool? GetBool(string key) => _metadata.TryGetValue(key, out var v) && v.Value is bool b ? b : null;

    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    /// <summary>The tensor's bytes, as a view over the mapped file (no copy).</summary>
    public ReadOnlySpan<byte> GetTensorData(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (tensor.ByteSize > int.MaxValue)
            throw new NotSupportedException($"tensor {tensor.Name} is {tensor.ByteSize} bytes; use GetTensorPointer for tensors over 2 GiB");
        return new ReadOnlySpan<byte>(_base + tensor.FileOffset, (int)tensor.ByteSize);
    }

    /// <summary>Pointer to the tensor's first byte in the mapping; valid until the file is disposed.</summary>
    public byte* GetTensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + tensor.FileOffset;
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _mmf?.Dispose();
    }

    /// <summary>A bounds-checked cursor over the file image.</summary>
    private sealed class Parser
    {
        // Caps that keep a hostile header from making us allocate absurd amounts before the
        // bytes-left checks would catch it anyway.
        private const int MaxKeyLength = 65536;
        private const int MaxNestingDepth = 8;

        private readonly string _path;
        private readonly byte* _p;
        private readonly long _size;
        private long _pos;

        public Parser(string path, byte* p, long size)
        {
            _path = path;
            _p = p;
            _size = size;
        }

        private GgufFormatException Error(string field, long offset, string problem) => new(_path, field, offset, problem);

        private long Left => _size - _pos;

        private void Need(long bytes, string field)
        {
            if (bytes < 0 || bytes > Left)
                throw Error(field, _pos, $"file is truncated: needs {bytes} bytes, {Left} left");
        }

        private T Read<T>(string field) where T : unmanaged
        {
            Need(sizeof(T), field);
            T v = Unsafe.ReadUnaligned<T>(_p + _pos);
            _pos += sizeof(T);
            return v;
        }

        private string ReadString(string field, long maxLength = long.MaxValue)
        {
            long at = _pos;
            ulong len = Read<ulong>(field + ".length");
            if (len > (ulong)Left)
                throw Error(field + ".length", at, $"string length {len} exceeds the {Left} bytes left in the file");
            if (len > (ulong)maxLength)
                throw Error(field + ".length", at, $"string length {len} exceeds the limit of {maxLength}");
            if (len > int.MaxValue)
                throw Error(field + ".length", at, $"string length {len} is too large");
            string s = Encoding.UTF8.GetString(_p + _pos, (int)len);
            _pos += (long)len;
            return s;
        }

        public GgufFile Parse(MemoryMappedFile? mmf, MemoryMappedViewAccessor? view)
        {
            uint magic = Read<uint>("magic");
            if (magic != Magic)
                throw Error("magic", 0, $"expected \"GGUF\", found 0x{magic:X8}");
            uint version = Read<uint>("version");
            if (version is not (2 or 3))
                throw Error("version", 4, version == 1 ? "GGUF version 1 is not supported (re-convert the model)" : $"unsupported version {version} (expected 2 or 3)");

            long nTensorsAt = _pos;
            ulong nTensors = Read<ulong>("n_tensors");
            long nKvAt = _pos;
            ulong nKv = Read<ulong>("n_kv");
            // Each kv needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 8 + 4 + 8.
            if (nKv > (ulong)Left / 13)
                throw Error("n_kv", nKvAt, $"metadata count {nKv} cannot fit in the {Left} bytes left");
            if (nTensors > (ulong)Left / 32)
                throw Error("n_tensors", nTensorsAt, $"tensor count {nTensors} cannot fit in the {Left} bytes left");

            var kvs = new List<KeyValuePair<string, GgufValue>>((int)nKv);
            var seenKeys = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nKv; i++)
            {
                long at = _pos;
                string f = $"kv[{i}]";
                string key = ReadString(f + ".key", MaxKeyLength);
                if (key.Length == 0)
                    throw Error(f + ".key", at, "empty key");
                if (!seenKeys.Add(key))
                    throw Error($"kv[{i}]({key})", at, $"duplicate key '{key}'");
                f = $"kv[{i}]({key})";
                long typeAt = _pos;
                uint type = Read<uint>(f + ".type");
                var value = ReadValue(f, type, typeAt, 0);
                kvs.Add(new(key, value));
            }

            int alignment = DefaultAlignment;
            var alignKv = kvs.FirstOrDefault(kv => kv.Key == "general.alignment");
            if (alignKv.Key is not null)
            {
                long? a = alignKv.Value.Type == GgufValueType.UInt32 ? alignKv.Value.AsInt64() : null;
                if (a is null || a <= 0 || a > 1 << 30 || (a & (a - 1)) != 0)
                    throw Error("general.alignment", -1, $"must be a power-of-two uint32, found {alignKv.Value.Type} {alignKv.Value}");
                alignment = (int)a.Value;
            }

            var tensors = new List<GgufTensorInfo>((int)nTensors);
            var pending = new List<(string Name, GgmlType Type, long[] Dims, long Elements, long Bytes, ulong Offset, long OffsetAt)>();
            var seenNames = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nTensors; i++)
            {
                string f = $"tensor_infos[{i}]";
                long at = _pos;
                string name = ReadString(f + ".name", MaxKeyLength);
                f = $"tensor_infos[{i}]({name})";
                if (!seenNames.Add(name))
                    throw Error(f + ".name", at, $"duplicate tensor name '{name}'");
                long nDimsAt = _pos;
                uint nDims = Read<uint>(f + ".n_dims");
                if (nDims is < 1 or > 4)
                    throw Error(f + ".n_dims", nDimsAt, $"{nDims} is not in 1..4");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    long dimAt = _pos;
                    ulong ne = Read<ulong>($"{f}.ne[{d}]");
                    if (ne == 0)
                        throw Error($"{f}.ne[{d}]", dimAt, "dimension is 0");
                    if (ne > long.MaxValue)
                        throw Error($"{f}.ne[{d}]", dimAt, $"dimension {ne} is too large");
                    dims[d] = (long)ne;
                    // Overflow of the element count (and so of the byte size) is rejected here.
                    if (elements > long.MaxValue / (long)ne)
                        throw Error($"{f}.ne[{d}]", dimAt, $"element count overflows: {string.Join(" x ", dims.Take(d + 1))}");
                    elements *= (long)ne;
                }
                long typeAt = _pos;
                uint typeId = Read<uint>(f + ".type");
                if (!GgmlTypes.IsKnown(typeId))
                    throw Error(f + ".type", typeAt, $"unknown ggml type id {typeId}");
                var info = GgmlTypes.Info((GgmlType)typeId);
                if (dims[0] % info.BlockSize != 0)
                    throw Error(f + ".ne[0]", nDimsAt + 4, $"row length {dims[0]} is not a multiple of the {info.Name} block size {info.BlockSize}");
                long blocks = elements / info.BlockSize;
                if (blocks > long.MaxValue / info.TypeSize)
                    throw Error(f + ".ne", nDimsAt + 4, "byte size overflows");
                long bytes = blocks * info.TypeSize;
                long offsetAt = _pos;
                ulong offset = Read<ulong>(f + ".offset");
                pending.Add((name, (GgmlType)typeId, dims, elements, bytes, offset, offsetAt));
            }

            long dataOffset = (_pos + alignment - 1) / alignment * alignment;
            if (nTensors > 0 && dataOffset > _size)
                throw Error("data", _pos, $"file is truncated: the data section would start at {dataOffset}, past the end ({_size})");

            long dataSize = _size - Math.Min(dataOffset, _size);
            for (int i = 0; i < pending.Count; i++)
            {
                var t = pending[i];
                string f = $"tensor_infos[{i}]({t.Name}).offset";
                if (t.Offset % (ulong)alignment != 0)
                    throw Error(f, t.OffsetAt, $"offset {t.Offset} is not a multiple of the alignment {alignment}");
                if (t.Offset > (ulong)dataSize || (ulong)t.Bytes > (ulong)dataSize - t.Offset)
                    throw Error(f, t.OffsetAt, $"tensor data [{t.Offset}, {t.Offset + (ulong)t.Bytes}) lies past the end of the data section ({dataSize} bytes from offset {dataOffset}); the file is truncated or corrupt");
                tensors.Add(new GgufTensorInfo(t.Name, t.Type, t.Dims, t.Elements, t.Bytes, (long)t.Offset, dataOffset + (long)t.Offset, i));
            }

            // Overlapping tensors would alias weights; llama.cpp's writer never produces them.
            var sorted = tensors.OrderBy(t => t.DataOffset).ToList();
            for (int i = 1; i < sorted.Count; i++)
            {
                var prev = sorted[i - 1];
                var cur = sorted[i];
                if (cur.DataOffset < prev.DataOffset + prev.ByteSize)
                    throw Error($"tensor_infos[{cur.Index}]({cur.Name}).offset", -1, $"tensor data overlaps '{prev.Name}'");
            }

            return new GgufFile(_path, _size, mmf, view, _p, version, kvs, tensors, alignment, dataOffset);
        }

        private GgufValue ReadValue(string field, uint type, long typeAt, int depth)
        {
            switch ((GgufValueType)type)
            {
                case GgufValueType.UInt8: return new(GgufValueType.UInt8, Read<byte>(field));
                case GgufValueType.Int8: return new(GgufValueType.Int8, Read<sbyte>(field));
                case GgufValueType.UInt16: return new(GgufValueType.UInt16, Read<ushort>(field));
                case GgufValueType.Int16: return new(GgufValueType.Int16, Read<short>(field));
                case GgufValueType.UInt32: return new(GgufValueType.UInt32, Read<uint>(field));
                case GgufValueType.Int32: return new(GgufValueType.Int32, Read<int>(field));
                case GgufValueType.Float32: return new(GgufValueType.Float32, Read<float>(field));
                case GgufValueType.UInt64: return new(GgufValueType.UInt64, Read<ulong>(field));
                case GgufValueType.Int64: return new(GgufValueType.Int64, Read<long>(field));
                case GgufValueType.Float64: return new(GgufValueType.Float64, Read<double>(field));
                case GgufValueType.Bool:
                {
                    long at = _pos;
                    byte b = Read<byte>(field);
                    if (b > 1) throw Error(field, at, $"bool value {b} is not 0 or 1");
                    return new(GgufValueType.Bool, b != 0);
                }
                case GgufValueType.String: return new(GgufValueType.String, ReadString(field));
                case GgufValueType.Array:
                {
                    if (depth >= MaxNestingDepth)
                        throw Error(field, typeAt, $"arrays nested deeper than {MaxNestingDepth}");
                    long elemTypeAt = _pos;
                    uint elemType = Read<uint>(field + ".element_type");
                    long countAt = _pos;
                    ulong count = Read<ulong>(field + ".count");
                    long minElem = elemType switch
                    {
                        0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, 10 or 11 or 12 => 8,
                        8 => 8,  // string: at least its length
                        9 => 12, // array: element type + count
                        _ => throw Error(field + ".element_type", elemTypeAt, $"unknown value type {elemType}"),
                    };
                    if (count > (ulong)(Left / minElem))
                        throw Error(field + ".count", countAt, $"array of {count} elements cannot fit in the {Left} bytes left");
                    int n = (int)count;
                    return ReadArray(field, (GgufValueType)elemType, n, elemTypeAt, depth);
                }
                default:
                    throw Error(field + ".type", typeAt, $"unknown value type {type}");
            }
        }

        private GgufValue ReadArray(string field, GgufValueType elemType, int n, long elemTypeAt, int depth)
        {
            GgufValue Typed<T>(GgufValueType et) where T : unmanaged
            {
                var arr = new T[n];
                long bytes = (long)n * sizeof(T);
                Need(bytes, field);
                fixed (T* dst = arr)
                    Buffer.MemoryCopy(_p + _pos, dst, bytes, bytes);
                _pos += bytes;
                return new GgufValue(GgufValueType.Array, arr, et);
            }

            switch (elemType)
            {
                case GgufValueType.UInt8: return Typed<byte>(elemType);
                case GgufValueType.Int8: return Typed<sbyte>(elemType);
                case GgufValueType.UInt16: return Typed<ushort>(elemType);
                case GgufValueType.Int16: return Typed<short>(elemType);
                case GgufValueType.UInt32: return Typed<uint>(elemType);
                case GgufValueType.Int32: return Typed<int>(elemType);
                case GgufValueType.Float32: return Typed<float>(elemType);
                case GgufValueType.UInt64: return Typed<ulong>(elemType);
                case GgufValueType.Int64: return Typed<long>(elemType);
                case GgufValueType.Float64: return Typed<double>(elemType);
                case GgufValueType.Bool:
                {
                    var arr = new bool[n];
                    for (int i = 0; i < n; i++)
                    {
                        long at = _pos;
                        byte b = Read<byte>($"{field}[{i}]");
                        if (b > 1) throw Error($"{field}[{i}]", at, $"bool value {b} is not 0 or 1");
                        arr[i] = b != 0;
                    }
                    return new GgufValue(GgufValueType.Array, arr, elemType);
                }
                case GgufValueType.String:
                {
                    var arr = new string[n];
                    for (int i = 0; i < n; i++) arr[i] = ReadString($"{field}[{i}]");
                    return new GgufValue(GgufValueType.Array, arr, elemType);
                }
                case GgufValueType.Array:
                {
                    var arr = new GgufValue[n];
                    for (int i = 0; i < n; i++)
                    {
                        long at = _pos;
                        arr[i] = ReadValue($"{field}[{i}]", (uint)GgufValueType.Array, at, depth + 1);
                    }
                    return new GgufValue(GgufValueType.Array, arr, elemType);
                }
                default:
                    throw Error(field + ".element_type", elemTypeAt, $"unknown value type {(uint)elemType}");
            }
        }
    }
}
