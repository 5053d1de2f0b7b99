using System.Text;
using EdgeLlm.Gguf;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// Every malformed-file class ends in <see cref="GgufFormatException"/> naming the field and the
/// byte offset; none ends in any other exception, an out-of-bounds read or a crash.
/// </summary>
public unsafe class GgufBadInputTests
{
    private readonly ITestOutputHelper _out;

    public GgufBadInputTests(ITestOutputHelper output) => _out = output;

    /// <summary>Writes GGUF fields one by one, so a test can put any value in any field.</summary>
    private sealed class Raw
    {
        private readonly MemoryStream _ms = new();
        private readonly BinaryWriter _w;

        public Raw() => _w = new BinaryWriter(_ms);

        public long Position => _ms.Position;
        public Raw U32(uint v) { _w.Write(v); return this; }
        public Raw U64(ulong v) { _w.Write(v); return this; }
        public Raw U8(byte v) { _w.Write(v); return this; }
        public Raw Str(string s) { var b = Encoding.UTF8.GetBytes(s); _w.Write((ulong)b.Length); _w.Write(b); return this; }
        public Raw Header(ulong nTensors, ulong nKv, uint version = 3) => U32(GgufFile.Magic).U32(version).U64(nTensors).U64(nKv);
        public Raw KvU32(string key, uint v) => Str(key).U32((uint)GgufValueType.UInt32).U32(v);
        public Raw Tensor(string name, GgmlType type, ulong offset, params ulong[] dims)
        {
            Str(name).U32((uint)dims.Length);
            foreach (var d in dims) U64(d);
            return U32((uint)type).U64(offset);
        }
        public Raw PadTo(int alignment) { while (_ms.Position % alignment != 0) _w.Write((byte)0); return this; }
        public Raw Zeros(int n) { _w.Write(new byte[n]); return this; }
        public byte[] Bytes() { _w.Flush(); return _ms.ToArray(); }
    }

    /// <summary>Keeps each parsed image alive (and unmoved) as long as the file that points into it.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<GgufFile, byte[]> Images = new();

    /// <summary>
    /// Parses <paramref name="bytes"/> from a copy on the pinned object heap: a <see cref="GgufFile"/>
    /// keeps pointing into its image after parsing (tensor data), so a plain <c>fixed</c> would let
    /// the GC move the bytes under it (CI once read 4.6e-41 for a tensor value that way).
    /// </summary>
    private static GgufFile Parse(byte[] bytes)
    {
        var image = GC.AllocateArray<byte>(bytes.Length, pinned: true);
        bytes.CopyTo(image, 0);
        fixed (byte* p = image)
        {
            var file = GgufFile.FromPointer("test.gguf", p, image.Length);
            Images.Add(file, image);
            return file;
        }
    }

    private GgufFormatException Bad(byte[] bytes, string fieldPart)
    {
        var ex = Assert.Throws<GgufFormatException>(() => { using var f = Parse(bytes); });
        _out.WriteLine(ex.Message);
        Assert.Contains(fieldPart, ex.Field, StringComparison.Ordinal);
        Assert.Contains(ex.Field, ex.Message, StringComparison.Ordinal);
        return ex;
    }

    /// <summary>A small valid file with every metadata type, a nested array and two tensors.</summary>
    private static byte[] ValidFile()
    {
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.Set("a.u8", new GgufValue(GgufValueType.UInt8, (byte)7));
        w.Set("a.i8", new GgufValue(GgufValueType.Int8, (sbyte)-7));
        w.Set("a.u16", new GgufValue(GgufValueType.UInt16, (ushort)700));
        w.Set("a.i16", new GgufValue(GgufValueType.Int16, (short)-700));
        w.Set("a.u32", 70000u);
        w.Set("a.i32", -70000);
        w.Set("a.f32", 1.5f);
        w.Set("a.bool", true);
        w.Set("a.u64", GgufValue.From(1UL << 40));
        w.Set("a.i64", new GgufValue(GgufValueType.Int64, -(1L << 40)));
        w.Set("a.f64", new GgufValue(GgufValueType.Float64, 2.25));
        w.Set("a.strs", GgufValue.From(new[] { "x", "yy", "ünï" }));
        w.Set("a.floats", GgufValue.From(new[] { 1f, 2f }));
        w.Set("a.nested", new GgufValue(GgufValueType.Array,
            new[] { GgufValue.From(new[] { 1, 2 }), GgufValue.From(new[] { 3 }) }, GgufValueType.Array));
        w.AddTensor("t0", new long[] { 4, 2 }, new float[] { 1, 2, 3, 4, 5, 6, 7, 8 });
        w.AddTensor("t1", GgmlType.F16, new long[] { 3 }, new byte[6]);
        return w.ToArray();
    }

    [Fact]
    public void ValidFile_RoundTripsEveryValueType()
    {
        using var f = Parse(ValidFile());
        // A compacting collection here moved an unpinned image and the tensor read below saw garbage.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.Equal((byte)7, f.Metadata["a.u8"].Value);
        Assert.Equal((sbyte)-7, f.Metadata["a.i8"].Value);
        Assert.Equal((ushort)700, f.Metadata["a.u16"].Value);
        Assert.Equal((short)-700, f.Metadata["a.i16"].Value);
        Assert.Equal(70000L, f.GetInt("a.u32"));
        Assert.Equal(-70000L, f.GetInt("a.i32"));
        Assert.Equal(1.5, f.GetFloat("a.f32"));
        Assert.True(f.GetBool("a.bool"));
        Assert.Equal(1L << 40, f.GetInt("a.u64"));
        Assert.Equal(-(1L << 40), f.GetInt("a.i64"));
        Assert.Equal(2.25, f.GetFloat("a.f64"));
        Assert.Equal(new[] { "x", "yy", "ünï" }, f.Metadata["a.strs"].AsStringArray());
        Assert.Equal(new[] { 1f, 2f }, f.Metadata["a.floats"].AsFloatArray());
        var nested = (GgufValue[])f.Metadata["a.nested"].Value;
        Assert.Equal(new[] { 1, 2 }, nested[0].AsInt32Array());
        Assert.Equal(new[] { 3 }, nested[1].AsInt32Array());
        var t0 = f.FindTensor("t0")!;
        Assert.Equal(0, t0.DataOffset);
        Assert.Equal(0, t0.FileOffset % 32);
        var data = f.GetTensorData(t0);
        Assert.Equal(8f, BitConverter.ToSingle(data[28..32]));
        Assert.Equal(32, f.FindTensor("t1")!.DataOffset);
    }

    [Fact]
    public void TruncatedAtEveryOffset_ThrowsFormatException()
    {
        var bytes = ValidFile();
        long end;
        using (var whole = Parse(bytes)) end = whole.Tensors.Max(t => t.FileOffset + t.ByteSize);
        int count = 0;
        // Past the last tensor's bytes only alignment padding remains, which a file may omit.
        for (int len = 0; len < end; len++)
        {
            var cut = bytes.AsSpan(0, len).ToArray();
            var ex = Assert.Throws<GgufFormatException>(() => { using var f = Parse(cut); });
            Assert.True(ex.Offset <= len, $"offset {ex.Offset} beyond truncated length {len}");
            count++;
        }
        _out.WriteLine($"{count} truncations of a {bytes.Length}-byte file, all rejected with GgufFormatException");
    }

    [Fact]
    public void TruncatedFileOnDisk_ThrowsFormatException()
    {
        var path = Path.Combine(Path.GetTempPath(), $"edgellm-trunc-{Guid.NewGuid():N}.gguf");
        try
        {
            foreach (int len in new[] { 0, 3, 7, 20, 200 })
            {
                File.WriteAllBytes(path, ValidFile().AsSpan(0, len).ToArray());
                var ex = Assert.Throws<GgufFormatException>(() => { using var f = GgufFile.Open(path); });
                _out.WriteLine(ex.Message);
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void RandomCorruption_NeverThrowsAnythingElse()
    {
        var good = ValidFile();
        var rng = new Random(1234);
        int rejected = 0;
        for (int iter = 0; iter < 3000; iter++)
        {
            var bytes = (byte[])good.Clone();
            int flips = 1 + rng.Next(4);
            for (int k = 0; k < flips; k++)
            {
                int at = rng.Next(Math.Min(bytes.Length, 700));
                bytes[at] = rng.Next(3) == 0 ? (byte)0xFF : (byte)rng.Next(256);
            }
            try { using var f = Parse(bytes); }
            catch (GgufFormatException) { rejected++; }
        }
        _out.WriteLine($"3000 corrupted files: {rejected} rejected, {3000 - rejected} still valid, none crashed");
    }

    [Fact]
    public void BadMagic() => Bad(new Raw().U32(0x12345678).U32(3).U64(0).U64(0).Bytes(), "magic");

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    public void UnsupportedVersion(uint v) => Bad(new Raw().Header(0, 0, v).Bytes(), "version");

    [Fact]
    public void HugeKvCount() => Bad(new Raw().Header(0, 1UL << 60).Bytes(), "n_kv");

    [Fact]
    public void HugeTensorCount() => Bad(new Raw().Header(ulong.MaxValue, 0).Bytes(), "n_tensors");

    [Fact]
    public void HugeStringLength()
    {
        var ex = Bad(new Raw().Header(0, 1).U64(ulong.MaxValue - 3).Zeros(64).Bytes(), "kv[0].key.length");
        Assert.Equal(24, ex.Offset);
    }

    [Fact]
    public void HugeArrayCount() =>
        Bad(new Raw().Header(0, 1).Str("arr").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.UInt32).U64(1UL << 62).Bytes(), "count");

    [Fact]
    public void HugeStringArrayElement() =>
        Bad(new Raw().Header(0, 1).Str("arr").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(1).U64(1UL << 40).Bytes(), "arr");

    [Fact]
    public void BadValueType() => Bad(new Raw().Header(0, 1).Str("k").U32(99).U32(0).Bytes(), "kv[0](k).type");

    [Fact]
    public void BadArrayElementType() =>
        Bad(new Raw().Header(0, 1).Str("k").U32((uint)GgufValueType.Array).U32(77).U64(1).Bytes(), "element_type");

    [Fact]
    public void BadBool() => Bad(new Raw().Header(0, 1).Str("k").U32((uint)GgufValueType.Bool).U8(2).Bytes(), "kv[0](k)");

    [Fact]
    public void DeeplyNestedArrays()
    {
        var r = new Raw().Header(0, 1).Str("k").U32((uint)GgufValueType.Array);
        for (int i = 0; i < 20; i++) r.U32((uint)GgufValueType.Array).U64(1);
        Bad(r.U32(0).U64(0).Bytes(), "kv[0](k)");
    }

    [Fact]
    public void DuplicateKey() => Bad(new Raw().Header(0, 2).KvU32("k", 1).KvU32("k", 2).Bytes(), "kv[1](k)");

    [Fact]
    public void EmptyKey() => Bad(new Raw().Header(0, 1).KvU32("", 1).Bytes(), "kv[0].key");

    [Fact]
    public void BadAlignment() => Bad(new Raw().Header(0, 1).KvU32("general.alignment", 24).Bytes(), "general.alignment");

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    public void BadDimCount(uint nDims) =>
        Bad(new Raw().Header(1, 0).Str("t").U32(nDims).U64(4).U64(4).U64(4).U64(4).U64(4).U32(0).U64(0).Bytes(), "n_dims");

    [Fact]
    public void ZeroDim() => Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, 0, 4, 0).PadTo(32).Zeros(64).Bytes(), "ne[1]");

    [Fact]
    public void OverflowingDims() =>
        Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, 0, 1UL << 40, 1UL << 40).PadTo(32).Bytes(), "ne[1]");

    [Fact]
    public void OverflowingByteSize() =>
        Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, 0, 1UL << 31, 1UL << 31).PadTo(32).Bytes(), "tensor_infos[0](t)");

    [Fact]
    public void BadTensorType()
    {
        Bad(new Raw().Header(1, 0).Tensor("t", (GgmlType)4, 0, 32).PadTo(32).Zeros(64).Bytes(), "type");
        Bad(new Raw().Header(1, 0).Tensor("t", (GgmlType)1000, 0, 32).PadTo(32).Zeros(64).Bytes(), "type");
    }

    [Fact]
    public void RowNotMultipleOfBlock() =>
        Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.Q4_0, 0, 33).PadTo(32).Zeros(64).Bytes(), "ne[0]");

    [Fact]
    public void OffsetPastEnd()
    {
        var ex = Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, 64, 4).PadTo(32).Zeros(32).Bytes(), "offset");
        Assert.Contains("past the end", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HugeOffset() =>
        Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, ulong.MaxValue - 31, 4).PadTo(32).Zeros(32).Bytes(), "offset");

    [Fact]
    public void MisalignedOffset() =>
        Bad(new Raw().Header(2, 0).Tensor("a", GgmlType.F32, 0, 4).Tensor("b", GgmlType.F32, 16, 4).PadTo(32).Zeros(64).Bytes(), "tensor_infos[1](b).offset");

    [Fact]
    public void OverlappingTensors() =>
        Bad(new Raw().Header(2, 0).Tensor("a", GgmlType.F32, 0, 16).Tensor("b", GgmlType.F32, 32, 16).PadTo(32).Zeros(128).Bytes(), "tensor_infos[1](b)");

    [Fact]
    public void DuplicateTensorName() =>
        Bad(new Raw().Header(2, 0).Tensor("a", GgmlType.F32, 0, 8).Tensor("a", GgmlType.F32, 32, 8).PadTo(32).Zeros(64).Bytes(), "tensor_infos[1](a).name");

    [Fact]
    public void DataSectionMissing() =>
        Bad(new Raw().Header(1, 0).Tensor("t", GgmlType.F32, 0, 8).Bytes(), "t");

    [Fact]
    public void VocabOnlyFile_WithNoTensors_IsValid()
    {
        using var f = Parse(new Raw().Header(0, 1).KvU32("x", 1).Bytes());
        Assert.Empty(f.Tensors);
    }

    [Fact]
    public void MissingFile_IsIoError() =>
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open("/nonexistent/model.gguf"));

    [Fact]
    public void Directory_IsNamedAsOne()
    {
        var e = Assert.Throws<FileNotFoundException>(() => GgufFile.Open(Path.GetTempPath()));
        Assert.Contains("is a directory", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AllSharedModels_Parse()
    {
        foreach (var path in Directory.GetFiles(SharedData.Models, "*.gguf").Concat(Directory.GetFiles(SharedData.Tokenizer, "*.gguf")))
        {
            using var f = GgufFile.Open(path);
            foreach (var t in f.Tensors) Assert.True(t.FileOffset + t.ByteSize <= f.FileSize);
            _out.WriteLine($"{Path.GetFileName(path)}: v{f.Version}, {f.Metadata.Count} keys, {f.Tensors.Count} tensors");
        }
    }
}
