using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_K super-block: Q4_K plus a fifth bit per weight. 176 bytes (5.5 bits per weight).
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q5_K</c>:
/// <code>
/// offset  0: f16   d            scale of the 6-bit scales
/// offset  2: f16   dmin         scale of the 6-bit mins
/// offset  4: uint8 scales[12]   8 scales + 8 mins, 6 bits each (see KQuant.GetScaleMinK4)
/// offset 16: uint8 qh[32]       bit 2c of byte l: 5th bit of value 64c + l; bit 2c+1: of 64c + 32 + l
/// offset 48: uint8 qs[128]      low 4 bits, packed as Q4_K's qs
/// value = d·scale_j·q − dmin·min_j
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ5_K
{
    public const int Size = 176;

    public ushort D;
    public ushort DMin;
    public fixed byte Scales[KQuant.K_SCALE_SIZE];
    public fixed byte Qh[KQuant.QK_K / 8];
    public fixed byte Qs[KQuant.QK_K / 2];
}
