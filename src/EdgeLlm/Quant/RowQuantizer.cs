using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Weight quantizers (f32 rows to blocks of a <see cref="GgmlType"/>), keyed by type: what a
/// model-file quantizer calls per row. Each block format registers its quantizer here from
/// <see cref="QuantFormats.RegisterAll"/>.
/// </summary>
public static unsafe class RowQuantizer
{
    private static readonly Dictionary<GgmlType, QuantizeRowFn> s_quantizers = new();

    /// <summary>Quantizes <c>n</c> floats at <c>src</c> (a whole number of blocks) into <c>dst</c>.</summary>
    public delegate void QuantizeRowFn(float* src, byte* dst, long n);

    static RowQuantizer()
    {
        // Block formats register through the WeightFormat registry's static constructor.
        _ = WeightFormat.Supported;
    }

    /// <summary>Adds (or replaces) the quantizer of <paramref name="t"/>.</summary>
    public static void Register(GgmlType t, QuantizeRowFn fn)
    {
        ArgumentNullException.ThrowIfNull(fn);
        lock (s_quantizers) s_quantizers[t] = fn;
    }

    /// <summary>Finds the quantizer of <paramref name="t"/>; false when none is registered.</summary>
    public static bool TryGet(GgmlType t, out QuantizeRowFn fn)
    {
        _ = WeightFormat.Supported; // make sure the formats have registered
        lock (s_quantizers) return s_quantizers.TryGetValue(t, out fn!);
    }
}
