using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// One MXFP4 block (OCP microscaling FP4, what gpt-oss ships its experts in): 32 values
/// x = 2^(e − 128) · kvalues[q], q a 4-bit E2M1 code indexing <see cref="MXFP4.KValues"/> (the E2M1
/// values doubled, so the table is integers). Layout from ggml-common.h <c>block_mxfp4</c>:
/// <code>
/// offset 0  uint8_t e       shared exponent, E8M0 (2^(e − 127); ggml keeps half of it with the doubled table)
/// offset 1  uint8_t qs[16]  nibbles: qs[j] = q(j) | q(j+16) &lt;&lt; 4
/// </code>
/// 17 bytes, 4.25 bits per weight.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockMXFP4
{
    /// <summary>Values per block (QK_MXFP4).</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int Size = 17;

    /// <summary>Shared exponent (E8M0).</summary>
    public byte E;

    /// <summary>Packed E2M1 codes.</summary>
    public fixed byte Qs[16];
}
