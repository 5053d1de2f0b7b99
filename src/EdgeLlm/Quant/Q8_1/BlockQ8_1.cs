using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One Q8_1 block, the activation type of Q4_1 and Q5_1: 32 values x = d·q plus s = d·Σq, so
/// that a weight's offset m contributes m·s without touching the quants. Layout from
/// ggml-common.h <c>block_q8_1</c>:
/// <code>
/// offset 0  ggml_half d       scale
/// offset 2  ggml_half s       d * sum(qs)
/// offset 4  int8_t    qs[32]  quants
/// </code>
/// 36 bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_1
{
    /// <summary>Values per block (QK8_1).</summary>
    public const int BlockSize = 32;

    /// <summary>Scale, f16 bits.</summary>
    public ushort D;

    /// <summary>d·Σqs, f16 bits.</summary>
    public ushort S;

    /// <summary>Quants.</summary>
    public fixed sbyte Qs[32];
}
