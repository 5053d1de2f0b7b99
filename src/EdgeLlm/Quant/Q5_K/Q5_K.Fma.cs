using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_K
{
    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), in the spirit of llama.cpp's x86
    /// <c>ggml_vec_dot_q5_K_q8_K</c>: Q4_K's (<see cref="Q4_K.DotQ4_KQ8_KAvx2Fma"/>) with the
    /// fifth bit of each value added as 16 before the unsigned·signed multiply (q ≤ 31, so
    /// <c>vpmaddubsw</c> cannot saturate). Integer sums equal the reference's; the float order
    /// differs from <see cref="DotQ5_KQ8_KReference"/> (tests bound the difference).
    /// <code>
    /// qh[l] bit 2c   : fifth bit of value 64c + l      (low nibbles of qs chunk c)
    /// qh[l] bit 2c+1 : fifth bit of value 64c + 32 + l (high nibbles)
    /// </code>
    /// Requires Avx2 and Fma.
    /// </summary>
    internal static float DotQ5_KQ8_KAvx2Fma(int n, BlockQ5_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<float> accMins = Vector128<float>.Zero;
        // Broadcast scales go through L1: eight vectors would not fit the registers anyway.
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        for (int i = 0; i < nb; ++i)
        {
            BlockQ5_K* xb = x + i;
            BlockQ8_K* yb = y + i;
            Vector128<byte> sm = KQuantFma.UnpackScalesMinsK4(xb->Scales);
            KQuantFma.BroadcastScalesK4(sm, sc);
            Vector256<byte> hbits = Avx.LoadVector256(xb->Qh);
            Vector256<int> sumi = Chunk(xb->Qs, hbits, yb->Qs, low, sc[0], sc[1]);
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 32, Avx2.ShiftRightLogical(hbits.AsUInt16(), 2).AsByte(), yb->Qs + 64, low, sc[2], sc[3]));
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 64, Avx2.ShiftRightLogical(hbits.AsUInt16(), 4).AsByte(), yb->Qs + 128, low, sc[4], sc[5]));
            sumi = Avx2.Add(sumi, Chunk(xb->Qs + 96, Avx2.ShiftRightLogical(hbits.AsUInt16(), 6).AsByte(), yb->Qs + 192, low, sc[6], sc[7]));
            float yd = yb->D;
            acc = Fma.MultiplyAdd(Vector256.Create(yd * QuantMath.Fp16ToFp32Fast(xb->D)), Avx.ConvertToVector256Single(sumi), acc);
            Vector128<int> minProd = KQuantFma.MinProduct(KQuantFma.MinsK4(sm), yb->Bsums);
            accMins = Fma.MultiplyAdd(Vector128.Create(-yd * QuantMath.Fp16ToFp32Fast(xb->DMin)), Sse2.ConvertToVector128Single(minProd), accMins);
        }
        return KQuantFma.Finish(acc, accMins);
    }

    /// <summary>
    /// Chunk c's 64 five-bit values against q8: low/high nibbles of <paramref name="q4"/> plus
    /// bits 0 and 1 of <paramref name="h"/> (qh already shifted right by 2c).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Chunk(byte* q4, Vector256<byte> h, sbyte* q8, Vector256<byte> low, Vector256<short> scaleLow, Vector256<short> scaleHigh)
    {
        UnpackChunk(q4, h, low, out var ql, out var qh);
        return KQuantFma.ChunkDot(ql, qh, q8, scaleLow, scaleHigh);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackChunk(byte* q4, Vector256<byte> h, Vector256<byte> low, out Vector256<byte> ql, out Vector256<byte> qh)
    {
        Vector256<byte> bits = Avx.LoadVector256(q4);
        // h was shifted in 16-bit lanes; the masks keep one bit per byte, so none crosses bytes.
        Vector256<byte> h0 = Avx2.ShiftLeftLogical(Avx2.And(h, Vector256.Create((byte)1)).AsUInt16(), 4).AsByte();
        Vector256<byte> h1 = Avx2.ShiftLeftLogical(Avx2.And(h, Vector256.Create((byte)2)).AsUInt16(), 3).AsByte();
        ql = Avx2.Or(Avx2.And(bits, low), h0);
        qh = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), low), h1);
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for <see cref="DotQ5_KQ8_KAvx2Fma"/>: each super-block
    /// is unpacked once (five-bit values in value order, scales broadcast, mins widened) and
    /// met by four activation rows; per (row, activation) the arithmetic and its order are the
    /// kernel's, so results equal VecDot bit for bit. Requires Avx2 and Fma.
    /// </summary>
    internal static void DotTileAvx2Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* yOut, long yStride)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        byte* q = stackalloc byte[KQuant.QK_K];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ5_K*)(weights + r * rowBytes);
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
                    BlockQ5_K* xb = x + i;
                    Vector256<byte> hbits = Avx.LoadVector256(xb->Qh);
                    for (int c = 0; c < 4; ++c)
                    {
                        UnpackChunk(xb->Qs + 32 * c, hbits, low, out var ql, out var qh);
                        Avx.Store(q + 64 * c, ql);
                        Avx.Store(q + 64 * c + 32, qh);
                        hbits = Avx2.ShiftRightLogical(hbits.AsUInt16(), 2).AsByte();
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
                yOut[a * yStride + r] = DotQ5_KQ8_KAvx2Fma(n, x, (BlockQ8_K*)(acts + a * actStride));
        }
    }
}
