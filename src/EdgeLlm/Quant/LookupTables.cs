using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace EdgeLlm.Quant;

/// <summary>
/// The block kernels' lookup tables, in native memory the module initializer fills before any
/// kernel can run.
/// </summary>
/// <remarks>
/// Why not <c>static readonly float[]</c> with an initializer: the JIT folds such an array into a
/// constant once its class is initialized, but NativeAOT cannot run a 65536-step initializer at
/// compile time, so every read in the shipped binary paid a class-initialization check, a load of
/// the array from the static base and a null check (five instructions, disassembled) before the
/// load itself. The Q4_1/Q5_0/Q5_1 prompt tiles convert two activation scales per token and block
/// in their inner loops, and ran 10–25% slower as NativeAOT than under the JIT (qwen2.5-0.5b pp128,
/// 2 threads, 2026-11-30). A class with no static initializer has no such check: a read here is
/// one load of the pointer (hoisted out of loops) and the lookup.
/// </remarks>
internal static unsafe class LookupTables
{
    /// <summary>Every f16 bit pattern as f32 (256 KiB), as ggml's <c>table_f32_f16</c>: .NET's own cast of each.</summary>
    internal static float* Fp16;

    /// <summary>Byte b expanded to eight bytes of 0x00/0x10 (bit k of b → 0x10 in byte k): the fifth bits of Q5 blocks.</summary>
    internal static ulong* BitTo0x10;

    // Runs when the module loads (CoreCLR) or at startup (NativeAOT), before any caller of the tables.
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "A library's tables must exist before its first kernel call; a static constructor is what costs the check above.")]
    internal static void Initialize()
    {
        // Allocated once per process and never freed: 258 KiB that every model uses.
        var fp16 = (float*)NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int i = 0; i < 65536; i++) fp16[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        var bits = (ulong*)NativeMemory.AlignedAlloc(256 * sizeof(ulong), 64);
        for (int b = 0; b < 256; b++)
        {
            ulong v = 0;
            for (int k = 0; k < 8; k++) if ((b >> k & 1) != 0) v |= 0x10UL << (8 * k);
            bits[b] = v;
        }
        Fp16 = fp16;
        BitTo0x10 = bits;
    }
}
