using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q8_0
{
    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), with a software prefetch (<see cref="DecodePrefetchBytes"/>), organised as llama.cpp's x86 ggml_vec_dot_q8_0_q8_0:
    /// per block 8 int32 lanes -> f32, one FMA into a vector accumulator, one horizontal sum per
    /// row. The float order differs from the reference (within the kernel tolerance).
    /// Each half of the block is sign-extended to int16 and multiplied pairwise into int32
    /// (vpmaddwd), exact for any int8 values, -128 included.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
            // One prefetch per 68 bytes, about one per cache line, DecodePrefetchBytes ahead.
            Sse.Prefetch0((byte*)(x + ib) + DecodePrefetchBytes);
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib + 1].D) * QuantMath.Fp16ToFp32Fast(y[ib + 1].D)), BlockDot(x + ib + 1, y + ib + 1), acc1);
        }
        if (ib < nb)
            acc0 = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[ib].D) * QuantMath.Fp16ToFp32Fast(y[ib].D)), BlockDot(x + ib, y + ib), acc0);
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>
    /// How far ahead of the weights being read the decode kernel prefetches. Q8_0 decode reads more
    /// bytes per instruction than any other type and stalls on memory: the hardware prefetcher stops at
    /// each 4 KiB page of the mapping. Measured on the 2-core x64 machine (2026-11-29, TinyLlama-1.1B
    /// shape, tg32, alternating runs): 2 threads 9.6 → 11.9 t/s, 1 thread 5.2 → 6.5; 1–8 KiB all help,
    /// the same prefetch in the q4_0x8 kernel did not (it computes more per byte). 2 KiB until the q8_0x8
    /// pair kernel prefetched each stream in its own reading order (<see cref="PairPrefetch"/>); then 4 KiB
    /// (2026-12-02, 2-core AVX-512 AMD EPYC, TinyLlama-1.1B Q8_0 tg32 at 2 threads, two alternating
    /// rounds: 27.9–30.7 t/s before, 30.1–31.7 at 2 KiB, 32.4–33.0 at 4 KiB, 30.2–30.8 at 8 KiB). Widening the activation
    /// row to int16 once per chunk of rows (fewer loads and conversions per block) measured no faster. Prefetches never
    /// fault, so reading past a chunk's or a matrix's end is harmless. ARM has no prefetch intrinsic in .NET.
    /// </summary>
    internal const int DecodePrefetchBytes = 4096;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot(BlockQ8_0* x, BlockQ8_0* y)
    {
        var x0 = Avx2.ConvertToVector256Int16(Vector128.Load(x->Qs));
        var x1 = Avx2.ConvertToVector256Int16(Vector128.Load(x->Qs + 16));
        return DotWidened(x0, x1, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> DotWidened(Vector256<short> x0, Vector256<short> x1, BlockQ8_0* y)
    {
        var y0 = Avx2.ConvertToVector256Int16(Vector128.Load(y->Qs));
        var y1 = Avx2.ConvertToVector256Int16(Vector128.Load(y->Qs + 16));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(x0, y0) + Avx2.MultiplyAddAdjacent(x1, y1));
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for the AVX2+FMA kernel: each weight block is widened
    /// once and met by four activation rows; per pair the operations and their order are
    /// <see cref="DotQ8_0Q8_0Avx2Fma"/>'s, so results are bit-identical to VecDot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAvx2Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        int nb = n / QK;
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ8_0*)(weights + r * rowBytes);
            int a = 0;
            for (; a + 4 <= nActs; a += 4)
            {
                var y0 = (BlockQ8_0*)(acts + a * actStride);
                var y1 = (BlockQ8_0*)(acts + (a + 1) * actStride);
                var y2 = (BlockQ8_0*)(acts + (a + 2) * actStride);
                var y3 = (BlockQ8_0*)(acts + (a + 3) * actStride);
                Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
                Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
                int ib = 0;
                for (; ib + 1 < nb; ib += 2)
                {
                    var xa = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib].Qs));
                    var xb = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib].Qs + 16));
                    float dx = QuantMath.Fp16ToFp32Fast(x[ib].D);
                    e0 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y0[ib].D)), DotWidened(xa, xb, y0 + ib), e0);
                    e1 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y1[ib].D)), DotWidened(xa, xb, y1 + ib), e1);
                    e2 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y2[ib].D)), DotWidened(xa, xb, y2 + ib), e2);
                    e3 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y3[ib].D)), DotWidened(xa, xb, y3 + ib), e3);
                    var xc = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib + 1].Qs));
                    var xd = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib + 1].Qs + 16));
                    float dx1 = QuantMath.Fp16ToFp32Fast(x[ib + 1].D);
                    o0 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y0[ib + 1].D)), DotWidened(xc, xd, y0 + ib + 1), o0);
                    o1 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y1[ib + 1].D)), DotWidened(xc, xd, y1 + ib + 1), o1);
                    o2 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y2[ib + 1].D)), DotWidened(xc, xd, y2 + ib + 1), o2);
                    o3 = Fma.MultiplyAdd(Vector256.Create(dx1 * QuantMath.Fp16ToFp32Fast(y3[ib + 1].D)), DotWidened(xc, xd, y3 + ib + 1), o3);
                }
                if (ib < nb)
                {
                    var xa = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib].Qs));
                    var xb = Avx2.ConvertToVector256Int16(Vector128.Load(x[ib].Qs + 16));
                    float dx = QuantMath.Fp16ToFp32Fast(x[ib].D);
                    e0 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y0[ib].D)), DotWidened(xa, xb, y0 + ib), e0);
                    e1 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y1[ib].D)), DotWidened(xa, xb, y1 + ib), e1);
                    e2 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y2[ib].D)), DotWidened(xa, xb, y2 + ib), e2);
                    e3 = Fma.MultiplyAdd(Vector256.Create(dx * QuantMath.Fp16ToFp32Fast(y3[ib].D)), DotWidened(xa, xb, y3 + ib), e3);
                }
                y[a * yStride + r] = Vector256.Sum(e0 + o0);
                y[(a + 1) * yStride + r] = Vector256.Sum(e1 + o1);
                y[(a + 2) * yStride + r] = Vector256.Sum(e2 + o2);
                y[(a + 3) * yStride + r] = Vector256.Sum(e3 + o3);
            }
            for (; a < nActs; a++)
                y[a * yStride + r] = DotQ8_0Q8_0Avx2Fma(n, (byte*)x, acts + a * actStride);
        }
    }
}
