using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_0
{
    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), organised as llama.cpp's x86 ggml_vec_dot_q4_0_q8_0:
    /// the block's integer dot stays in 8 int32 lanes, is converted to f32 and accumulated with
    /// one FMA per block into a vector; the horizontal sum happens once per row, not per block.
    /// The float order therefore differs from <see cref="DotQ4_0Q8_0Reference"/> (within
    /// <c>QuantKernelTolerances</c>); integer sums are the same.
    /// <code>
    /// qs[j] (16 bytes): low nibble = x[j], high nibble = x[j+16]
    /// nib = [qs &amp; 0xF | qs &gt;&gt; 4]                   32 x uint8 in [0, 15]
    /// maddubs(nib, y) - maddubs(8, y) = Σ (nib - 8)·y per pair  -> 16 x int16 (|.| ≤ 3840)
    /// madd(.., 1) -> 8 x int32
    /// (llama.cpp moves the sign onto y instead, which breaks for y = -128; this form holds for
    /// any int8 activation.)
    /// </code>
    /// </summary>
    internal static float DotQ4_0Q8_0Avx2Fma(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var x = (BlockQ4_0*)vx;
        var y = (BlockQ8_0*)vy;
        var low = Vector256.Create((byte)0x0F);
        var eight = Vector256.Create((byte)8);
        var ones = Vector256.Create((short)1);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        int nb = n / QK;
        int ib = 0;
        // Two independent accumulators hide the FMA latency.
        for (; ib + 1 < nb; ib += 2)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib, low, eight, ones), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib + 1].D) * QuantMath.Fp16ToFp32Fast(y[ib + 1].D)), BlockDot(x + ib + 1, y + ib + 1, low, eight, ones), acc1);
        }
        if (ib < nb)
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib, low, eight, ones), acc0);
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot(BlockQ4_0* x, BlockQ8_0* y, Vector256<byte> low, Vector256<byte> eight, Vector256<short> ones)
    {
        var packed = Vector128.Load(x->Qs);
        var bytes = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & low;
        var yq = Vector256.Load(y->Qs);
        var prod16 = Avx2.MultiplyAddAdjacent(bytes, yq) - Avx2.MultiplyAddAdjacent(eight, yq);
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(prod16, ones));
    }
}
