using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q6_K super-block: 256 weights in 16 sub-blocks of 16, 6-bit signed quants (offset 32),
/// 8-bit signed sub-block scales, one f16 scale. 210 bytes (6.5625 bits per weight).
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q6_K</c>:
/// <code>
/// offset   0: uint8 ql[128]     low 4 bits; per 128-value half h (64 bytes at 64h):
///                               byte l      low nibble = value 128h + l,      high = 128h + 64 + l
///                               byte 32 + l low nibble = value 128h + 32 + l, high = 128h + 96 + l
/// offset 128: uint8 qh[64]      high 2 bits; byte 32h + l, bits 2s..2s+1 = value 128h + 32s + l
/// offset 192: int8  scales[16]
/// offset 208: f16   d
/// value = d·scale_j·(q − 32)
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ6_K
{
    public const int Size = 210;

    /// <summary>Byte offsets of qh and of the scales inside a block.</summary>
    public const int QhOffset = 128, ScalesOffset = 192;

    public fixed byte Ql[KQuant.QK_K / 2];
    public fixed byte Qh[KQuant.QK_K / 4];
    public fixed sbyte Scales[KQuant.QK_K / 16];
    public ushort D;
}
