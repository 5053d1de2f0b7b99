using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One Q8_0 block: 32 values x = d·q, q int8. Used for weights and as the activation type of
/// Q4_0, Q5_0, Q8_0 and IQ4_NL. Layout from ggml-common.h <c>block_q8_0</c>:
/// <code>
/// offset 0  ggml_half d       scale
/// offset 2  int8_t    qs[32]  quants
/// </code>
/// 34 bytes, 8.5 bits per weight.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_0
{
    /// <summary>Values per block (QK8_0).</summary>
    public const int BlockSize = 32;

    /// <summary>Scale, f16 bits.</summary>
    public ushort D;

    /// <summary>Quants.</summary>
    public fixed sbyte Qs[32];
}
