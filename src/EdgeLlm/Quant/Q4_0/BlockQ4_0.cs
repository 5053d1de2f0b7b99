using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One Q4_0 block: 32 values x = d·(q - 8), q in 0..15. Layout from ggml-common.h <c>block_q4_0</c>:
/// <code>
/// offset 0  ggml_half d       scale
/// offset 2  uint8_t   qs[16]  nibbles: qs[j] = q(j) | q(j+16) &lt;&lt; 4
/// </code>
/// 18 bytes, 4.5 bits per weight.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_0
{
    /// <summary>Values per block (QK4_0).</summary>
    public const int BlockSize = 32;

    /// <summary>Scale, f16 bits.</summary>
    public ushort D;

    /// <summary>Packed nibbles.</summary>
    public fixed byte Qs[16];
}
