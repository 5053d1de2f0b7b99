namespace EdgeLlm.Gguf;

/// <summary>
/// Tensor element types, numbered as ggml numbers them (ggml.h, <c>enum ggml_type</c>);
/// the ids are what GGUF files store. Ids 4, 5 and 31..33 were removed from ggml and are
/// rejected as unknown.
/// </summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>Block geometry of a <see cref="GgmlType"/>: how many values a block holds and its size in bytes.</summary>
public readonly record struct GgmlTypeInfo(GgmlType Type, string Name, int BlockSize, int TypeSize)
{
    /// <summary>Bytes taken by <paramref name="elements"/> values (a whole number of blocks).</summary>
    public long RowBytes(long elements) => elements / BlockSize * TypeSize;
}

/// <summary>The table of every type GGUF files may contain (sizes from ggml-common.h / ggml.c type_traits).</summary>
public static class GgmlTypes
{
    private static readonly Dictionary<GgmlType, GgmlTypeInfo> s_info = new()
    {
        [GgmlType.F32] = new(GgmlType.F32, "F32", 1, 4),
        [GgmlType.F16] = new(GgmlType.F16, "F16", 1, 2),
        [GgmlType.Q4_0] = new(GgmlType.Q4_0, "Q4_0", 32, 18),
        [GgmlType.Q4_1] = new(GgmlType.Q4_1, "Q4_1", 32, 20),
        [GgmlType.Q5_0] = new(GgmlType.Q5_0, "Q5_0", 32, 22),
        [GgmlType.Q5_1] = new(GgmlType.Q5_1, "Q5_1", 32, 24),
        [GgmlType.Q8_0] = new(GgmlType.Q8_0, "Q8_0", 32, 34),
        [GgmlType.Q8_1] = new(GgmlType.Q8_1, "Q8_1", 32, 36),
        [GgmlType.Q2_K] = new(GgmlType.Q2_K, "Q2_K", 256, 84),
        [GgmlType.Q3_K] = new(GgmlType.Q3_K, "Q3_K", 256, 110),
        [GgmlType.Q4_K] = new(GgmlType.Q4_K, "Q4_K", 256, 144),
        [GgmlType.Q5_K] = new(GgmlType.Q5_K, "Q5_K", 256, 176),
        [GgmlType.Q6_K] = new(GgmlType.Q6_K, "Q6_K", 256, 210),
        [GgmlType.Q8_K] = new(GgmlType.Q8_K, "Q8_K", 256, 292),
        [GgmlType.IQ2_XXS] = new(GgmlType.IQ2_XXS, "IQ2_XXS", 256, 66),
        [GgmlType.IQ2_XS] = new(GgmlType.IQ2_XS, "IQ2_XS", 256, 74),
        [GgmlType.IQ3_XXS] = new(GgmlType.IQ3_XXS, "IQ3_XXS", 256, 98),
        [GgmlType.IQ1_S] = new(GgmlType.IQ1_S, "IQ1_S", 256, 50),
        [GgmlType.IQ4_NL] = new(GgmlType.IQ4_NL, "IQ4_NL", 32, 18),
        [GgmlType.IQ3_S] = new(GgmlType.IQ3_S, "IQ3_S", 256, 110),
        [GgmlType.IQ2_S] = new(GgmlType.IQ2_S, "IQ2_S", 256, 82),
        [GgmlType.IQ4_XS] = new(GgmlType.IQ4_XS, "IQ4_XS", 256, 136),
        [GgmlType.I8] = new(GgmlType.I8, "I8", 1, 1),
        [GgmlType.I16] = new(GgmlType.I16, "I16", 1, 2),
        [GgmlType.I32] = new(GgmlType.I32, "I32", 1, 4),
        [GgmlType.I64] = new(GgmlType.I64, "I64", 1, 8),
        [GgmlType.F64] = new(GgmlType.F64, "F64", 1, 8),
        [GgmlType.IQ1_M] = new(GgmlType.IQ1_M, "IQ1_M", 256, 56),
        [GgmlType.BF16] = new(GgmlType.BF16, "BF16", 1, 2),
        [GgmlType.TQ1_0] = new(GgmlType.TQ1_0, "TQ1_0", 256, 54),
        [GgmlType.TQ2_0] = new(GgmlType.TQ2_0, "TQ2_0", 256, 66),
        [GgmlType.MXFP4] = new(GgmlType.MXFP4, "MXFP4", 32, 17),
    };

    /// <summary>True when <paramref name="id"/> names a type ggml defines.</summary>
    public static bool IsKnown(uint id) => s_info.ContainsKey((GgmlType)id);

    /// <summary>The block geometry of <paramref name="type"/>.</summary>
    public static GgmlTypeInfo Info(GgmlType type) =>
        s_info.TryGetValue(type, out var info) ? info : throw new ArgumentOutOfRangeException(nameof(type), $"unknown ggml type id {(uint)type}");

    /// <summary>The type's name as llama.cpp prints it (e.g. "Q4_K").</summary>
    public static string Name(GgmlType type) => s_info.TryGetValue(type, out var info) ? info.Name : $"type#{(uint)type}";

    /// <summary>Parses a type name, case-insensitively ("q8_0" = Q8_0).</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        foreach (var info in s_info.Values)
        {
            if (string.Equals(info.Name, name, StringComparison.OrdinalIgnoreCase)) { type = info.Type; return true; }
        }
        type = default;
        return false;
    }

    /// <summary>Every type in the table.</summary>
    public static IEnumerable<GgmlTypeInfo> All => s_info.Values;
}
