using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q8_0
{
    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), organised as llama.cpp's x86 ggml_vec_dot_q8_0_q8_0:
    /// per block 8 int32 lanes -> f32, one FMA into a vector accumulator, one horizontal sum per
    /// row. The float order differs from the reference (within the kernel tolerance).
    /// Each half of the block is sign-extended to int16 and multiplied pairwise into int32
    /// (vpmaddwd), exact for any int8 values, -128 included.
    /// </summary>
    internal static float DotQ8_0Q8_0Avx2Fma(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var x = (BlockQ8_0*)vx;
        var y = (BlockQ8_0*)vy;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        int nb = n / QK;
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib + 1].D) * QuantMath.Fp16ToFp32Fast(y[ib + 1].D)), BlockDot(x + ib + 1, y + ib + 1), acc1);
        }
        if (ib < nb)
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib), acc0);
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot(BlockQ8_0* x, BlockQ8_0* y)
    {
        var x0 = Avx2.ConvertToVector256Int16(Vector128.Load(x->Qs));
        var x1 = Avx2.ConvertToVector256Int16(Vector128.Load(x->Qs + 16));
        var y0 = Avx2.ConvertToVector256Int16(Vector128.Load(y->Qs));
        var y1 = Avx2.ConvertToVector256Int16(Vector128.Load(y->Qs + 16));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(x0, y0) + Avx2.MultiplyAddAdjacent(x1, y1));
    }
}
