using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_K
{
    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), in the spirit of llama.cpp's x86
    /// <c>ggml_vec_dot_q4_K_q8_K</c>: per super-block, eight int32 lanes of Σ scale·q4·q8
    /// (<see cref="KQuantFma.ChunkDot"/>), converted once and accumulated with one FMA by
    /// d = x.d·y.d; the mins' integer product (bsums·mins, four int32) accumulated with one
    /// FMA by −x.dmin·y.d; one horizontal sum per row. Integer sums equal the reference's; the
    /// float order differs from <see cref="DotQ4_KQ8_KReference"/> (tests bound the difference).
    /// <code>
    /// qs chunk c (32 bytes): low nibbles = values 64c .. 64c+31 (scale 2c),
    ///                        high nibbles = values 64c+32 .. 64c+63 (scale 2c+1)
    /// </code>
    /// Requires Avx2 and Fma.
    /// </summary>
    internal static float DotQ4_KQ8_KAvx2Fma(int n, BlockQ4_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<float> accMins = Vector128<float>.Zero;
        // Broadcast scales go through L1: eight vectors would not fit the registers anyway.
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        for (int i = 0; i < nb; ++i)
        {
            BlockQ4_K* xb = x + i;
            BlockQ8_K* yb = y + i;
            Vector128<byte> sm = KQuantFma.UnpackScalesMinsK4(xb->Scales);
            KQuantFma.BroadcastScalesK4(sm, sc);
            Vector256<int> sumi = Chunk(xb->Qs, yb->Qs, low, sc[0], sc[1]);
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 32, yb->Qs + 64, low, sc[2], sc[3]));
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 64, yb->Qs + 128, low, sc[4], sc[5]));
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 96, yb->Qs + 192, low, sc[6], sc[7]));
            float yd = yb->D;
            acc = Fma.MultiplyAdd(Vector256.Create(yd * QuantMath.Fp16ToFp32Fast(xb->D)), Avx.ConvertToVector256Single(sumi), acc);
            Vector128<int> minProd = KQuantFma.MinProduct(KQuantFma.MinsK4(sm), yb->Bsums);
            accMins = Fma.MultiplyAdd(Vector128.Create(-yd * QuantMath.Fp16ToFp32Fast(xb->DMin)), Sse2.ConvertToVector128Single(minProd), accMins);
        }
        return KQuantFma.Finish(acc, accMins);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Chunk(byte* q4, sbyte* q8, Vector256<byte> low, Vector256<short> scaleLow, Vector256<short> scaleHigh)
    {
        Vector256<byte> bits = Avx.LoadVector256(q4);
        Vector256<byte> ql = Avx2.And(bits, low);
        Vector256<byte> qh = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), low);
        return KQuantFma.ChunkDot(ql, qh, q8, scaleLow, scaleHigh);
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for <see cref="DotQ4_KQ8_KAvx2Fma"/>: each super-block
    /// of a weight row is unpacked once (nibbles to bytes in value order, scales broadcast,
    /// mins widened) and met by four activation rows, so prompt processing decodes each weight
    /// block once per four tokens. Per (row, activation) the integer lanes and the float
    /// operations and their order are exactly the kernel's: results equal VecDot bit for bit.
    /// Requires Avx2 and Fma.
    /// </summary>
    internal static void DotTileAvx2Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* yOut, long yStride)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        byte* q = stackalloc byte[KQuant.QK_K];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ4_K*)(weights + r * rowBytes);
            int a = 0;
            for (; a + 4 <= nActs; a += 4)
            {
                var y0 = (BlockQ8_K*)(acts + a * actStride);
                var y1 = (BlockQ8_K*)(acts + (a + 1) * actStride);
                var y2 = (BlockQ8_K*)(acts + (a + 2) * actStride);
                var y3 = (BlockQ8_K*)(acts + (a + 3) * actStride);
                Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
                Vector128<float> m0 = default, m1 = default, m2 = default, m3 = default;
                for (int i = 0; i < nb; ++i)
                {
                    BlockQ4_K* xb = x + i;
                    for (int c = 0; c < 4; ++c)
                    {
                        Vector256<byte> bits = Avx.LoadVector256(xb->Qs + 32 * c);
                        Avx.Store(q + 64 * c, Avx2.And(bits, low));
                        Avx.Store(q + 64 * c + 32, Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), low));
                    }
                    Vector128<byte> sm = KQuantFma.UnpackScalesMinsK4(xb->Scales);
                    KQuantFma.BroadcastScalesK4(sm, sc);
                    Vector128<short> mins = KQuantFma.MinsK4(sm);
                    float xd = QuantMath.Fp16ToFp32Fast(xb->D), xdmin = QuantMath.Fp16ToFp32Fast(xb->DMin);
                    KQuantFma.TileStepK4(q, sc, mins, xd, xdmin, y0 + i, ref acc0, ref m0);
                    KQuantFma.TileStepK4(q, sc, mins, xd, xdmin, y1 + i, ref acc1, ref m1);
                    KQuantFma.TileStepK4(q, sc, mins, xd, xdmin, y2 + i, ref acc2, ref m2);
                    KQuantFma.TileStepK4(q, sc, mins, xd, xdmin, y3 + i, ref acc3, ref m3);
                }
                yOut[a * yStride + r] = KQuantFma.Finish(acc0, m0);
                yOut[(a + 1) * yStride + r] = KQuantFma.Finish(acc1, m1);
                yOut[(a + 2) * yStride + r] = KQuantFma.Finish(acc2, m2);
                yOut[(a + 3) * yStride + r] = KQuantFma.Finish(acc3, m3);
            }
            for (; a < nActs; a++)
                yOut[a * yStride + r] = DotQ4_KQ8_KAvx2Fma(n, x, (BlockQ8_K*)(acts + a * actStride));
        }
    }
}
