using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q3_K super-block: 256 weights in 16 sub-blocks of 16, 3-bit signed quants (2 low bits
/// plus a high bit), 6-bit signed sub-block scales, one f16 scale. 110 bytes (3.4375 bpw).
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q3_K</c>:
/// <code>
/// offset  0: uint8 hmask[32]   bit m of byte l: high bit of value 32m + l (set = +0, clear = −4)
/// offset 32: uint8 qs[64]      low 2 bits, packed as Q2_K's qs (byte l of half h: values
///                              128h + l + 32s in bits 2s..2s+1)
/// offset 96: uint8 scales[12]  16 × 6 bits: low nibbles of scales 0..7 in bytes 0..7 (bits 0..3)
///                              and 8..15 (bits 4..7); top 2 bits of scale j in byte 8 + j%4,
///                              bits 2(j/4)..2(j/4)+1; stored offset by 32
/// offset 108: f16  d
/// value = d·(scale_j − 32)·(q − (hbit ? 0 : 4))
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ3_K
{
    public const int Size = 110;

    public fixed byte HMask[KQuant.QK_K / 8];
    public fixed byte Qs[KQuant.QK_K / 4];
    public fixed byte Scales[12];
    public ushort D;
}
