using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// The K-quants' activation block: 256 values as int8 with one f32 scale, plus the sum of
/// each 16 quants (used with the weight formats' per-sub-block mins). 292 bytes.
/// </summary>
/// <remarks>
/// Layout from ggml-common.h <c>block_q8_K</c>:
/// <code>
/// offset   0: float   d          x[i] ≈ d · qs[i]
/// offset   4: int8_t  qs[256]
/// offset 260: int16_t bsums[16]  bsums[j] = Σ qs[16j .. 16j+15]
/// </code>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ8_K
{
    public const int Size = 292;

    public float D;
    public fixed sbyte Qs[KQuant.QK_K];
    public fixed short Bsums[KQuant.QK_K / 16];
}
