using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Registration point for the block-quantized formats (Quant/&lt;Format&gt;/). Each format adds its
/// <see cref="WeightFormat"/> here and each activation type (Q8_0, Q8_1, Q8_K) its row quantizer.
/// </summary>
internal static unsafe class QuantFormats
{
    public static void RegisterAll()
    {
        // Block formats register here (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, MXFP4).
        Q2_K.Register();
        Q3_K.Register();
        Q4_K.Register();
        Q5_K.Register();
        Q6_K.Register();
        WeightFormat.Register(new Q4_0Format());
        RowQuantizer.Register(GgmlType.Q4_0, (s, d, n) => Q4_0.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new Q4_1Format());
        RowQuantizer.Register(GgmlType.Q4_1, (s, d, n) => Q4_1.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new Q5_0Format());
        RowQuantizer.Register(GgmlType.Q5_0, (s, d, n) => Q5_0.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new Q5_1Format());
        RowQuantizer.Register(GgmlType.Q5_1, (s, d, n) => Q5_1.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new Q8_0Format());
        RowQuantizer.Register(GgmlType.Q8_0, (s, d, n) => Q8_0.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new IQ4_NLFormat());
        RowQuantizer.Register(GgmlType.IQ4_NL, (s, d, n) => IQ4_NL.QuantizeRowReference(s, d, n));
        WeightFormat.Register(new MXFP4Format());
        RowQuantizer.Register(GgmlType.MXFP4, (s, d, n) => MXFP4.QuantizeRowReference(s, d, n));
    }

    public static void RegisterActivationQuantizers(Dictionary<GgmlType, ActivationQuantizer.QuantizeRowFn> table)
    {
        // Q8_0, Q8_1 and Q8_K activation quantizers register here.
        Q8_K.RegisterActivation(table);
        table[GgmlType.Q8_0] = (x, dst, n) => Q8_0.QuantizeActivationRow(x, dst, n);
        table[GgmlType.Q8_1] = (x, dst, n) => Q8_1.QuantizeActivationRow(x, dst, n);
    }
}
