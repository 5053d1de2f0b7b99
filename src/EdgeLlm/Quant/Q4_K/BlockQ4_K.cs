using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q4_K super-block: 256 weights in 8 sub-blocks of 32, 4-bit quants, 6-bit scale and min
/// per sub-block, f16 super-scales. 144 bytes (4.5 bits per weight).
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q4_K</c>:
/// <code>
/// offset  0: f16   d            scale of the 6-bit scales
/// offset  2: f16   dmin         scale of the 6-bit mins
/// offset  4: uint8 scales[12]   8 scales + 8 mins, 6 bits each (see KQuant.GetScaleMinK4)
/// offset 16: uint8 qs[128]      four 64-value chunks of 32 bytes: byte l of chunk c holds
///                               value 64c + l in its low nibble and 64c + 32 + l in its high
/// value = d·scale_j·q − dmin·min_j
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ4_K
{
    public const int Size = 144;

    public ushort D;
    public ushort DMin;
    public fixed byte Scales[KQuant.K_SCALE_SIZE];
    public fixed byte Qs[KQuant.QK_K / 2];
}
