using System.Collections.Generic;

namespace EdgeLlm.Generators.Model;

/// <summary>
/// A ggml tensor type as the generator needs it: block geometry (ggml-common.h block structs,
/// e.g. block_q4_0 = 32 values in 18 bytes) and the activation type ggml pairs it with
/// (ggml-cpu type_traits vec_dot_type). Mirrors EdgeLlm.Gguf.GgmlTypes and EdgeLlm.Quant.WeightFormat,
/// which the generator cannot reference (it runs inside the compiler); a test checks they agree.
/// </summary>
/// <param name="Name">ggml's name, which is also the EdgeLlm.Gguf.GgmlType member name.</param>
/// <param name="BlockSize">Values per block.</param>
/// <param name="TypeSize">Bytes per block.</param>
/// <param name="VecDotType">The activation type a dot product with this weight type takes.</param>
internal sealed record QuantSpec(string Name, int BlockSize, int TypeSize, string VecDotType)
{
    private static readonly Dictionary<string, QuantSpec> s_types = new()
    {
        ["F32"] = new("F32", 1, 4, "F32"),
        ["F16"] = new("F16", 1, 2, "F16"),
        ["BF16"] = new("BF16", 1, 2, "BF16"),
        ["Q4_0"] = new("Q4_0", 32, 18, "Q8_0"),
        ["Q4_1"] = new("Q4_1", 32, 20, "Q8_1"),
        ["Q5_0"] = new("Q5_0", 32, 22, "Q8_0"),
        ["Q5_1"] = new("Q5_1", 32, 24, "Q8_1"),
        ["Q8_0"] = new("Q8_0", 32, 34, "Q8_0"),
        ["Q8_1"] = new("Q8_1", 32, 36, "Q8_1"),
        ["Q2_K"] = new("Q2_K", 256, 84, "Q8_K"),
        ["Q3_K"] = new("Q3_K", 256, 110, "Q8_K"),
        ["Q4_K"] = new("Q4_K", 256, 144, "Q8_K"),
        ["Q5_K"] = new("Q5_K", 256, 176, "Q8_K"),
        ["Q6_K"] = new("Q6_K", 256, 210, "Q8_K"),
        ["Q8_K"] = new("Q8_K", 256, 292, "Q8_K"),
        ["IQ4_NL"] = new("IQ4_NL", 32, 18, "Q8_0"),
    };

    /// <summary>Weight types a config may name in overrides (Q8_1 and Q8_K exist only as activation types).</summary>
    public static IEnumerable<string> WeightTypeNames
    {
        get
        {
            foreach (var kv in s_types)
                if (kv.Key is not ("Q8_1" or "Q8_K")) yield return kv.Key;
        }
    }

    public static QuantSpec? Find(string name)
    {
        foreach (var kv in s_types)
            if (string.Equals(kv.Key, name, System.StringComparison.OrdinalIgnoreCase) && kv.Key is not ("Q8_1" or "Q8_K")) return kv.Value;
        return null;
    }

    public static QuantSpec Get(string name) => s_types[name];

    /// <summary>Bytes of one row of <paramref name="n"/> values (n a multiple of the block size).</summary>
    public long RowBytes(long n) => n / BlockSize * TypeSize;

    /// <summary>True for block-quantized types (ggml_is_quantized).</summary>
    public bool IsQuantized => BlockSize > 1;
}
