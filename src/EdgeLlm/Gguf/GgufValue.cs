using System.Globalization;

namespace EdgeLlm.Gguf;

/// <summary>GGUF metadata value types (gguf.h, <c>enum gguf_type</c>).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars are boxed in <see cref="Value"/>; arrays of scalars are stored as
/// typed .NET arrays (<c>uint[]</c>, <c>float[]</c>, <c>string[]</c>, ...); arrays of arrays as
/// <c>GgufValue[]</c>.
/// </summary>
public sealed class GgufValue
{
    public GgufValue(GgufValueType type, object value, GgufValueType elementType = GgufValueType.UInt8)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    /// <summary>The value's type.</summary>
    public GgufValueType Type { get; }

    /// <summary>For arrays, the type of the elements.</summary>
    public GgufValueType ElementType { get; }

    /// <summary>The value: a boxed scalar, a string, or a typed array.</summary>
    public object Value { get; }

    public bool IsArray => Type == GgufValueType.Array;

    /// <summary>Number of elements of an array value (0 for scalars).</summary>
    public int ArrayLength => Value is Array a ? a.Length : 0;

    public static GgufValue From(string s) => new(GgufValueType.String, s);
    public static GgufValue From(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue From(int v) => new(GgufValueType.Int32, v);
    public static GgufValue From(float v) => new(GgufValueType.Float32, v);
    public static GgufValue From(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue From(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue From(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue From(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue From(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue From(byte[] v) => new(GgufValueType.Array, v, GgufValueType.UInt8);

    /// <summary>An integer scalar of any width, as a long; null when the value is not an integer.</summary>
    public long? AsInt64() => Value switch
    {
        byte v => v, sbyte v => v, ushort v => v, short v => v, uint v => v, int v => v,
        ulong v => v <= long.MaxValue ? (long)v : null, long v => v,
        bool b => b ? 1 : 0,
        _ => null,
    };

    /// <summary>A numeric scalar as a double; null when not numeric.</summary>
    public double? AsDouble() => Value switch
    {
        float f => f, double d => d,
        _ => AsInt64() is long l ? l : null,
    };

    public string? AsString() => Value as string;

    /// <summary>An array of numbers as float[] (converting from any numeric element type).</summary>
    public float[]? AsFloatArray() => Value switch
    {
        float[] f => f,
        double[] d => Array.ConvertAll(d, x => (float)x),
        Array a when IsArray && ElementType != GgufValueType.String && ElementType != GgufValueType.Array && ElementType != GgufValueType.Bool
            => a.Cast<object>().Select(o => Convert.ToSingle(o, CultureInfo.InvariantCulture)).ToArray(),
        _ => null,
    };

    /// <summary>An array of integers as int[] (null when not an integer array or a value overflows).</summary>
    public int[]? AsInt32Array()
    {
        switch (Value)
        {
            case int[] i: return i;
            case uint[] u when u.All(x => x <= int.MaxValue): return Array.ConvertAll(u, x => (int)x);
            case Array a when IsArray && ElementType is GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16 or GgufValueType.Int16 or GgufValueType.Int64 or GgufValueType.UInt64:
                try { return a.Cast<object>().Select(o => Convert.ToInt32(o, CultureInfo.InvariantCulture)).ToArray(); }
                catch (OverflowException) { return null; }
            default: return null;
        }
    }

    public string[]? AsStringArray() => Value as string[];

    /// <summary>An array of uint8 or int8 as its bytes (a blob such as tokenizer.ggml.precompiled_charsmap), else null.</summary>
    public byte[]? AsBytes() => Value switch
    {
        byte[] b when IsArray => b,
        sbyte[] sb when IsArray => (byte[])(Array)sb,
        _ => null,
    };

    public override string ToString() => Value switch
    {
        string s => s,
        // Short numeric arrays (per-layer hyper-parameters such as LFM2's head_count_kv) show their values.
        Array a when a.Length <= 64 && ElementType is not (GgufValueType.String or GgufValueType.Array)
            => "[" + string.Join(", ", a.Cast<object>().Select(o => o is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : o.ToString())) + "]",
        Array a => $"[{ElementType} x {a.Length}]",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? "",
    };
}
