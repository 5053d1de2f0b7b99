using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One IQ4_NL block: 32 values x = d·kvalues[q], q in 0..15 indexing a fixed non-linear table
/// (<see cref="IQ4_NL.KValues"/>). Layout from ggml-common.h <c>block_iq4_nl</c>:
/// <code>
/// offset 0  ggml_half d       scale
/// offset 2  uint8_t   qs[16]  nibbles: qs[j] = q(j) | q(j+16) &lt;&lt; 4
/// </code>
/// 18 bytes, 4.5 bits per weight.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockIQ4_NL
{
    /// <summary>Values per block (QK4_NL).</summary>
    public const int BlockSize = 32;

    /// <summary>Scale, f16 bits.</summary>
    public ushort D;

    /// <summary>Packed table indices.</summary>
    public fixed byte Qs[16];
}
