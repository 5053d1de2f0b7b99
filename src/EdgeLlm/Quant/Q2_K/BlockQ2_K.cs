using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q2_K super-block: 256 weights in 16 sub-blocks of 16, 2-bit quants, 4-bit scale and
/// 4-bit min per sub-block, f16 super-scales. 84 bytes (2.625 bits per weight).
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q2_K</c>:
/// <code>
/// offset  0: uint8 scales[16]  low nibble: scale of sub-block j, high nibble: its min
/// offset 16: uint8 qs[64]      two 128-value halves of 32 bytes; in half h, byte l holds
///                              values 128h + l + 32s (s = 0..3) in bits 2s..2s+1
/// offset 80: f16   d           super-block scale of the scales
/// offset 82: f16   dmin        super-block scale of the mins
/// value = d·(scales[j] &amp; 15)·q − dmin·(scales[j] &gt;&gt; 4)
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ2_K
{
    public const int Size = 84;

    public fixed byte Scales[KQuant.QK_K / 16];
    public fixed byte Qs[KQuant.QK_K / 4];
    public ushort D;
    public ushort DMin;
}
