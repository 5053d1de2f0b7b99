using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// llama.cpp's file types (llama.h <c>enum llama_ftype</c>): the number stored in
/// <c>general.file_type</c> and the name <c>llama-quantize</c> takes.
/// </summary>
public enum LlamaFileType
{
    ALL_F32 = 0,
    MOSTLY_F16 = 1,
    MOSTLY_Q4_0 = 2,
    MOSTLY_Q4_1 = 3,
    MOSTLY_Q8_0 = 7,
    MOSTLY_Q5_0 = 8,
    MOSTLY_Q5_1 = 9,
    MOSTLY_Q2_K = 10,
    MOSTLY_Q3_K_S = 11,
    MOSTLY_Q3_K_M = 12,
    MOSTLY_Q3_K_L = 13,
    MOSTLY_Q4_K_S = 14,
    MOSTLY_Q4_K_M = 15,
    MOSTLY_Q5_K_S = 16,
    MOSTLY_Q5_K_M = 17,
    MOSTLY_Q6_K = 18,
    MOSTLY_IQ4_NL = 25,
    MOSTLY_BF16 = 32,
    MOSTLY_MXFP4_MOE = 38,
}

/// <summary>Names and default tensor types of <see cref="LlamaFileType"/>.</summary>
public static class LlamaFileTypes
{
    private static readonly (string Name, LlamaFileType Type, GgmlType Default)[] s_table =
    [
        ("F32", LlamaFileType.ALL_F32, GgmlType.F32),
        ("F16", LlamaFileType.MOSTLY_F16, GgmlType.F16),
        ("BF16", LlamaFileType.MOSTLY_BF16, GgmlType.BF16),
        ("Q4_0", LlamaFileType.MOSTLY_Q4_0, GgmlType.Q4_0),
        ("Q4_1", LlamaFileType.MOSTLY_Q4_1, GgmlType.Q4_1),
        ("Q5_0", LlamaFileType.MOSTLY_Q5_0, GgmlType.Q5_0),
        ("Q5_1", LlamaFileType.MOSTLY_Q5_1, GgmlType.Q5_1),
        ("Q8_0", LlamaFileType.MOSTLY_Q8_0, GgmlType.Q8_0),
        ("Q2_K", LlamaFileType.MOSTLY_Q2_K, GgmlType.Q2_K),
        ("Q3_K_S", LlamaFileType.MOSTLY_Q3_K_S, GgmlType.Q3_K),
        ("Q3_K_M", LlamaFileType.MOSTLY_Q3_K_M, GgmlType.Q3_K),
        ("Q3_K_L", LlamaFileType.MOSTLY_Q3_K_L, GgmlType.Q3_K),
        ("Q4_K_S", LlamaFileType.MOSTLY_Q4_K_S, GgmlType.Q4_K),
        ("Q4_K_M", LlamaFileType.MOSTLY_Q4_K_M, GgmlType.Q4_K),
        ("Q5_K_S", LlamaFileType.MOSTLY_Q5_K_S, GgmlType.Q5_K),
        ("Q5_K_M", LlamaFileType.MOSTLY_Q5_K_M, GgmlType.Q5_K),
        ("Q6_K", LlamaFileType.MOSTLY_Q6_K, GgmlType.Q6_K),
        ("IQ4_NL", LlamaFileType.MOSTLY_IQ4_NL, GgmlType.IQ4_NL),
        // The experts (3-d tensors) in MXFP4, every other matrix in Q8_0 (TensorTypePlanner); --pure: all MXFP4.
        ("MXFP4_MOE", LlamaFileType.MOSTLY_MXFP4_MOE, GgmlType.MXFP4),
    ];

    /// <summary>The names <c>edgellm quantize</c> accepts (case-insensitive).</summary>
    public static IEnumerable<string> Names => s_table.Select(e => e.Name);

    /// <summary>Parses a file type name such as "q4_k_m".</summary>
    public static LlamaFileType Parse(string name)
    {
        foreach (var e in s_table)
            if (string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase)) return e.Type;
        throw new ArgumentException($"unknown file type '{name}'; expected one of {string.Join(", ", Names)}", nameof(name));
    }

    /// <summary>The tensor type a file type quantizes to before per-tensor rules (llama_model_quantize_impl's switch).</summary>
    public static GgmlType DefaultType(LlamaFileType ftype)
    {
        foreach (var e in s_table) if (e.Type == ftype) return e.Default;
        throw new ArgumentOutOfRangeException(nameof(ftype), $"unsupported file type {(int)ftype}");
    }

    /// <summary>The name of a file type ("Q4_K_M").</summary>
    public static string Name(LlamaFileType ftype)
    {
        foreach (var e in s_table) if (e.Type == ftype) return e.Name;
        return $"ftype#{(int)ftype}";
    }
}
