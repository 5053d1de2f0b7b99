using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Registration point for the block-quantized formats (Quant/&lt;Format&gt;/). Each format adds its
/// <see cref="WeightFormat"/> here and each activation type (Q8_0, Q8_1, Q8_K) its row quantizer.
/// </summary>
internal static class QuantFormats
{
    public static void RegisterAll()
    {
        // Block formats register here (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL).
        Q2_K.Register();
        Q3_K.Register();
        Q4_K.Register();
        Q5_K.Register();
        Q6_K.Register();
    }

    public static void RegisterActivationQuantizers(Dictionary<GgmlType, ActivationQuantizer.QuantizeRowFn> table)
    {
        // Q8_0, Q8_1 and Q8_K activation quantizers register here.
        Q8_K.RegisterActivation(table);
    }
}
