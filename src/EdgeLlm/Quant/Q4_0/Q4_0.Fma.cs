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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    private static Vector256<float> BlockDot(BlockQ4_0* x, BlockQ8_0* y, Vector256<byte> low, Vector256<byte> eight, Vector256<short> ones) =>
        DotUnpacked(Unpack(x, low), y, eight, ones);

    /// <summary>The block's 32 nibbles as bytes in [0, 15], element order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Unpack(BlockQ4_0* x, Vector256<byte> low)
    {
        var packed = Vector128.Load(x->Qs);
        return Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & low;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> DotUnpacked(Vector256<byte> bytes, BlockQ8_0* y, Vector256<byte> eight, Vector256<short> ones)
    {
        var yq = Vector256.Load(y->Qs);
        var prod16 = Avx2.MultiplyAddAdjacent(bytes, yq) - Avx2.MultiplyAddAdjacent(eight, yq);
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(prod16, ones));
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for the AVX2+FMA kernel: each weight block is unpacked
    /// once and met by four activation rows (prompt processing reads each weight byte once per
    /// four tokens). Per (row, activation) pair the operations and their order are exactly
    /// <see cref="DotQ4_0Q8_0Avx2Fma"/>'s, so results are bit-identical to VecDot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx2Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var low = Vector256.Create((byte)0x0F);
        var eight = Vector256.Create((byte)8);
        var ones = Vector256.Create((short)1);
        int nb = n / QK;
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ4_0*)(weights + r * rowBytes);
            int a = 0;
            for (; a + 4 <= nActs; a += 4)
            {
                var y0 = (BlockQ8_0*)(acts + a * actStride);
                var y1 = (BlockQ8_0*)(acts + (a + 1) * actStride);
                var y2 = (BlockQ8_0*)(acts + (a + 2) * actStride);
                var y3 = (BlockQ8_0*)(acts + (a + 3) * actStride);
                Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default; // even blocks (acc0)
                Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default; // odd blocks (acc1)
                int ib = 0;
                for (; ib + 1 < nb; ib += 2)
                {
                    var bx = Unpack(x + ib, low);
                    float dx = QuantMath.Fp16ToFp32Fast(x[ib].D);
                    e0 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y0[ib].D)), DotUnpacked(bx, y0 + ib, eight, ones), e0);
                    e1 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y1[ib].D)), DotUnpacked(bx, y1 + ib, eight, ones), e1);
                    e2 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y2[ib].D)), DotUnpacked(bx, y2 + ib, eight, ones), e2);
                    e3 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y3[ib].D)), DotUnpacked(bx, y3 + ib, eight, ones), e3);
                    var bx1 = Unpack(x + ib + 1, low);
                    float dx1 = QuantMath.Fp16ToFp32Fast(x[ib + 1].D);
                    o0 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y0[ib + 1].D)), DotUnpacked(bx1, y0 + ib + 1, eight, ones), o0);
                    o1 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y1[ib + 1].D)), DotUnpacked(bx1, y1 + ib + 1, eight, ones), o1);
                    o2 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y2[ib + 1].D)), DotUnpacked(bx1, y2 + ib + 1, eight, ones), o2);
                    o3 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y3[ib + 1].D)), DotUnpacked(bx1, y3 + ib + 1, eight, ones), o3);
                }
                if (ib < nb)
                {
                    var bx = Unpack(x + ib, low);
                    float dx = QuantMath.Fp16ToFp32Fast(x[ib].D);
                    e0 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y0[ib].D)), DotUnpacked(bx, y0 + ib, eight, ones), e0);
                    e1 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y1[ib].D)), DotUnpacked(bx, y1 + ib, eight, ones), e1);
                    e2 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y2[ib].D)), DotUnpacked(bx, y2 + ib, eight, ones), e2);
                    e3 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y3[ib].D)), DotUnpacked(bx, y3 + ib, eight, ones), e3);
                }
                y[a * yStride + r] = Vector256.Sum(e0 + o0);
                y[(a + 1) * yStride + r] = Vector256.Sum(e1 + o1);
                y[(a + 2) * yStride + r] = Vector256.Sum(e2 + o2);
                y[(a + 3) * yStride + r] = Vector256.Sum(e3 + o3);
            }
            for (; a < nActs; a++)
                y[a * yStride + r] = DotQ4_0Q8_0Avx2Fma(n, (byte*)x, acts + a * actStride);
        }
    }
}
