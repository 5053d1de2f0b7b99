using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One Q5_1 block: 32 values x = d·q + m, q in 0..31 split into a low nibble and a fifth bit.
/// Layout from ggml-common.h <c>block_q5_1</c>:
/// <code>
/// offset 0  ggml_half d       scale
/// offset 2  ggml_half m       minimum
/// offset 4  uint8_t   qh[4]   fifth bits: bit j of the little-endian uint32 belongs to value j
/// offset 8  uint8_t   qs[16]  low nibbles: qs[j] = q(j) &amp; 15 | (q(j+16) &amp; 15) &lt;&lt; 4
/// </code>
/// 24 bytes, 6 bits per weight.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_1
{
    /// <summary>Values per block (QK5_1).</summary>
    public const int BlockSize = 32;

    /// <summary>Scale, f16 bits.</summary>
    public ushort D;

    /// <summary>Minimum (offset), f16 bits.</summary>
    public ushort M;

    /// <summary>Fifth bits of the 32 quants.</summary>
    public fixed byte Qh[4];

    /// <summary>Packed low nibbles.</summary>
    public fixed byte Qs[16];
}
