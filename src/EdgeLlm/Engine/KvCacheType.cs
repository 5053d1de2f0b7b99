namespace EdgeLlm.Engine;

/// <summary>
/// How a context's KV cache stores keys or values: llama.cpp's <c>--cache-type-k</c> / <c>--cache-type-v</c>
/// (<c>-ctk</c>/<c>-ctv</c>), with its names and its arithmetic. A quantized cache holds the context in about
/// half (q8_0) or a quarter (q4_0) of the f16 cache's memory, at the cost of rounding every cached key
/// or value to 8 or 4 bits (32 values share one f16 scale, as ggml's blocks).
/// </summary>
/// <remarks>
/// The arithmetic follows llama.cpp's CPU backend: keys in q8_0 or q4_0 are multiplied with the query
/// quantized to q8_0 (ggml's <c>vec_dot_type</c> for both), keys in f16 with the query rounded to f16;
/// values in f16 are multiplied with probabilities rounded to f16 (llama.cpp's <c>mul_mat(V, kq)</c>),
/// quantized values with f32 probabilities (its flash-attention path, which llama.cpp requires for a
/// quantized V cache). Quantized caches need a head size that is a multiple of 32 (ggml's block), and
/// rotate heads of a multiple of 64 with a Walsh-Hadamard matrix before rounding them, as llama.cpp does
/// by default since its PR 21038 (<see cref="KvCache.KeyRotation"/>). They run on the CPU backend.
/// </remarks>
public enum KvCacheType
{
    /// <summary>f16, the default (2 bytes a value).</summary>
    F16 = 0,

    /// <summary>ggml's q8_0: 32 int8 values and an f16 scale (34 bytes for 32 values).</summary>
    Q8_0 = 1,

    /// <summary>ggml's q4_0: 32 4-bit values and an f16 scale (18 bytes for 32 values).</summary>
    Q4_0 = 2,
}

/// <summary>Names and sizes of <see cref="KvCacheType"/>.</summary>
public static class KvCacheTypes
{
    /// <summary>The names the CLI, the server and the C ABI's documentation use (llama.cpp's).</summary>
    public static IReadOnlyList<string> Names { get; } = ["f16", "q8_0", "q4_0"];

    /// <summary>llama.cpp's name: f16, q8_0 or q4_0.</summary>
    public static string Name(this KvCacheType type) => type switch
    {
        KvCacheType.F16 => "f16",
        KvCacheType.Q8_0 => "q8_0",
        KvCacheType.Q4_0 => "q4_0",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a KV cache type"),
    };

    /// <summary>Parses a name (case-insensitive): f16, q8_0 or q4_0.</summary>
    /// <exception cref="ArgumentException">another name; the message lists the supported ones.</exception>
    public static KvCacheType Parse(string name, string what = "KV cache type")
    {
        ArgumentNullException.ThrowIfNull(name);
        for (int i = 0; i < Names.Count; i++)
            if (string.Equals(name, Names[i], StringComparison.OrdinalIgnoreCase)) return (KvCacheType)i;
        throw new ArgumentException($"{what} takes f16, q8_0 or q4_0, got '{name}'");
    }

    /// <summary>True for the block-quantized types.</summary>
    public static bool IsQuantized(this KvCacheType type) => type != KvCacheType.F16;

    /// <summary>Bytes of <paramref name="values"/> values (a multiple of 32 for the quantized types).</summary>
    public static long Bytes(this KvCacheType type, long values) => type switch
    {
        KvCacheType.F16 => values * 2,
        KvCacheType.Q8_0 => values / 32 * 34,
        KvCacheType.Q4_0 => values / 32 * 18,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a KV cache type"),
    };
}
