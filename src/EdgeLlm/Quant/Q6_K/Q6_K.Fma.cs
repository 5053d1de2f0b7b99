using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_K
{
    /// <summary>
    /// <c>vpshufb</c> masks giving sub-block scales 2m and 2m+1 eight times each (m = 0..7), to
    /// be sign-extended into the sixteen int16 lanes that <c>vpmaddubsw</c> leaves for one
    /// 32-value chunk (lanes 0..7 = values 0..15, lanes 8..15 = values 16..31).
    /// </summary>
    private static readonly Vector128<byte> s_pair0 = PairMask(0), s_pair1 = PairMask(1), s_pair2 = PairMask(2), s_pair3 = PairMask(3),
        s_pair4 = PairMask(4), s_pair5 = PairMask(5), s_pair6 = PairMask(6), s_pair7 = PairMask(7);

    private static Vector128<byte> PairMask(int m)
    {
        byte a = (byte)(2 * m), b = (byte)(2 * m + 1);
        return Vector128.Create(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
    }

    /// <summary>The sixteen signed scales as eight int16 vectors, chunk m's two scales in halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScalePairs(sbyte* scales, Vector256<short>* dst)
    {
        Vector128<byte> s = Sse2.LoadVector128((byte*)scales);
        dst[0] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair0).AsSByte());
        dst[1] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair1).AsSByte());
        dst[2] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair2).AsSByte());
        dst[3] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair3).AsSByte());
        dst[4] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair4).AsSByte());
        dst[5] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair5).AsSByte());
        dst[6] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair6).AsSByte());
        dst[7] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(s, s_pair7).AsSByte());
    }

    /// <summary>
    /// One 128-value half of a block as four vectors of unsigned 6-bit quants (0..63) in value
    /// order: chunk k = values 128h + 32k .. +31.
    /// <code>
    /// ql[64h .. +31]  low nibble: chunk 0, high nibble: chunk 2
    /// ql[64h+32 .. ]  low nibble: chunk 1, high nibble: chunk 3
    /// qh[32h .. +31]  bits 2k, 2k+1: the top two bits of chunk k
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpackHalf(BlockQ6_K* x, int h, Vector256<byte> low,
        out Vector256<byte> q0, out Vector256<byte> q1, out Vector256<byte> q2, out Vector256<byte> q3)
    {
        Vector256<byte> l0 = Avx.LoadVector256(x->Ql + 64 * h);
        Vector256<byte> l1 = Avx.LoadVector256(x->Ql + 64 * h + 32);
        Vector256<byte> hb = Avx.LoadVector256(x->Qh + 32 * h);
        // Masked first, so the 16-bit shifts move no bit across a byte.
        Vector256<byte> h0 = Avx2.ShiftLeftLogical(Avx2.And(hb, Vector256.Create((byte)0x03)).AsUInt16(), 4).AsByte();
        Vector256<byte> h1 = Avx2.ShiftLeftLogical(Avx2.And(hb, Vector256.Create((byte)0x0C)).AsUInt16(), 2).AsByte();
        Vector256<byte> h2 = Avx2.And(hb, Vector256.Create((byte)0x30));
        Vector256<byte> h3 = Avx2.ShiftRightLogical(Avx2.And(hb, Vector256.Create((byte)0xC0)).AsUInt16(), 2).AsByte();
        q0 = Avx2.Or(Avx2.And(l0, low), h0);
        q1 = Avx2.Or(Avx2.And(l1, low), h1);
        q2 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(l0.AsUInt16(), 4).AsByte(), low), h2);
        q3 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(l1.AsUInt16(), 4).AsByte(), low), h3);
    }

    /// <summary>
    /// Σ (q − 32)·q8 per pair as maddubs(q, q8) − maddubs(32, q8) (|.| ≤ 2·63·128: no
    /// saturation, and no reliance on the activation's bsums), times the chunk's two scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ChunkDot(Vector256<byte> q, sbyte* q8, Vector256<short> scales, Vector256<byte> m32)
    {
        Vector256<sbyte> y = Avx.LoadVector256(q8);
        Vector256<short> p = Avx2.Subtract(Avx2.MultiplyAddAdjacent(q, y), Avx2.MultiplyAddAdjacent(m32, y));
        return Avx2.MultiplyAddAdjacent(p, scales);
    }

    /// <summary>
    /// The decode-speed kernel (AVX2 + FMA), in the spirit of llama.cpp's x86
    /// <c>ggml_vec_dot_q6_K_q8_K</c>: the block's eight int32 lanes of Σ scale·(q−32)·q8 are
    /// converted once and accumulated with one FMA by x.d·y.d; one horizontal sum per row.
    /// Integer sums equal the reference's; the float order differs from
    /// <see cref="DotQ6_KQ8_KReference"/> (tests bound the difference). Requires Avx2 and Fma.
    /// </summary>
    internal static float DotQ6_KQ8_KAvx2Fma(int n, BlockQ6_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<byte> m32 = Vector256.Create((byte)32);
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < nb; ++i)
        {
            BlockQ6_K* xb = x + i;
            sbyte* q8 = y[i].Qs;
            ScalePairs(xb->Scales, sc);
            UnpackHalf(xb, 0, low, out var q0, out var q1, out var q2, out var q3);
            Vector256<int> sumi = ChunkDot(q0, q8, sc[0], m32);
            sumi = Avx2.Add(sumi, ChunkDot(q1, q8 + 32, sc[1], m32));
            sumi = Avx2.Add(sumi, ChunkDot(q2, q8 + 64, sc[2], m32));
            sumi = Avx2.Add(sumi, ChunkDot(q3, q8 + 96, sc[3], m32));
            UnpackHalf(xb, 1, low, out q0, out q1, out q2, out q3);
            sumi = Avx2.Add(sumi, ChunkDot(q0, q8 + 128, sc[4], m32));
            sumi = Avx2.Add(sumi, ChunkDot(q1, q8 + 160, sc[5], m32));
            sumi = Avx2.Add(sumi, ChunkDot(q2, q8 + 192, sc[6], m32));
            sumi = Avx2.Add(sumi, ChunkDot(q3, q8 + 224, sc[7], m32));
            acc = Fma.MultiplyAdd(Vector256.Create(y[i].D * QuantMath.Fp16ToFp32Fast(xb->D)), Avx.ConvertToVector256Single(sumi), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>
    /// <see cref="WeightFormat.VecDotTile"/> for <see cref="DotQ6_KQ8_KAvx2Fma"/>: each super-block
    /// is unpacked once (256 unsigned 6-bit quants in value order, eight scale-pair vectors) and
    /// met by four activation rows. Per (row, activation) the arithmetic and its order are the
    /// kernel's, so results equal VecDot bit for bit. Requires Avx2 and Fma.
    /// </summary>
    internal static void DotTileAvx2Fma(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* yOut, long yStride)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / KQuant.QK_K;
        Vector256<byte> low = Vector256.Create((byte)0xF);
        Vector256<byte> m32 = Vector256.Create((byte)32);
        byte* q = stackalloc byte[KQuant.QK_K];
        Vector256<short>* sc = stackalloc Vector256<short>[8];
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ6_K*)(weights + r * rowBytes);
            int a = 0;
            for (; a + 4 <= nActs; a += 4)
            {
                var y0 = (BlockQ8_K*)(acts + a * actStride);
                var y1 = (BlockQ8_K*)(acts + (a + 1) * actStride);
                var y2 = (BlockQ8_K*)(acts + (a + 2) * actStride);
                var y3 = (BlockQ8_K*)(acts + (a + 3) * actStride);
                Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
                for (int i = 0; i < nb; ++i)
                {
                    BlockQ6_K* xb = x + i;
                    ScalePairs(xb->Scales, sc);
                    for (int h = 0; h < 2; ++h)
                    {
                        UnpackHalf(xb, h, low, out var q0, out var q1, out var q2, out var q3);
                        Avx.Store(q + 128 * h, q0);
                        Avx.Store(q + 128 * h + 32, q1);
                        Avx.Store(q + 128 * h + 64, q2);
                        Avx.Store(q + 128 * h + 96, q3);
                    }
                    float xd = QuantMath.Fp16ToFp32Fast(xb->D);
                    acc0 = TileStep(q, sc, m32, xd, y0 + i, acc0);
                    acc1 = TileStep(q, sc, m32, xd, y1 + i, acc1);
                    acc2 = TileStep(q, sc, m32, xd, y2 + i, acc2);
                    acc3 = TileStep(q, sc, m32, xd, y3 + i, acc3);
                }
                yOut[a * yStride + r] = Vector256.Sum(acc0);
                yOut[(a + 1) * yStride + r] = Vector256.Sum(acc1);
                yOut[(a + 2) * yStride + r] = Vector256.Sum(acc2);
                yOut[(a + 3) * yStride + r] = Vector256.Sum(acc3);
            }
            for (; a < nActs; a++)
                yOut[a * yStride + r] = DotQ6_KQ8_KAvx2Fma(n, x, (BlockQ8_K*)(acts + a * actStride));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TileStep(byte* q, Vector256<short>* sc, Vector256<byte> m32, float xd, BlockQ8_K* yb, Vector256<float> acc)
    {
        sbyte* q8 = yb->Qs;
        Vector256<int> sumi = ChunkDot(Avx.LoadVector256(q), q8, sc[0], m32);
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 32), q8 + 32, sc[1], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 64), q8 + 64, sc[2], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 96), q8 + 96, sc[3], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 128), q8 + 128, sc[4], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 160), q8 + 160, sc[5], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 192), q8 + 192, sc[6], m32));
        sumi = Avx2.Add(sumi, ChunkDot(Avx.LoadVector256(q + 224), q8 + 224, sc[7], m32));
        return Fma.MultiplyAdd(Vector256.Create(yb->D * xd), Avx.ConvertToVector256Single(sumi), acc);
    }
}
