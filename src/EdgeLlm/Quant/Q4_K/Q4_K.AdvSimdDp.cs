using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_K
{
    /// <summary>True where <see cref="DotQ4_KQ8_KAdvSimdDp"/> runs: NEON with the dot-product extension.</summary>
    internal static bool UseAdvSimdDp => AdvSimd.Arm64.IsSupported && Dp.IsSupported;

    /// <summary>
    /// The matrix-vector dot product on NEON with DotProd (Raspberry Pi 5, arm64 phones): the
    /// nibbles masked and shifted in registers straight into <c>sdot</c>, where
    /// <see cref="KQuant128"/>'s tile first writes the super-block out as bytes (worth it when four
    /// tokens reuse them, not for one). The same integers and float steps as the tile's
    /// <see cref="AdvSimdDpKLanes"/> path — per super-block <c>sumf −= dmin·y.d·Σ bsums·min;
    /// sumf += d·y.d·total</c>, llama.cpp's NEON order — so it equals
    /// <see cref="KQuant128.DotTotalOrderReference{TK}"/> and the tile bit for bit. Requires
    /// AdvSimd.Arm64 and Dp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotQ4_KQ8_KAdvSimdDp(int n, BlockQ4_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / KQuant.QK_K;
        var m4 = Vector128.Create((byte)0xF);
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            BlockQ4_K* xb = x + ib;
            BlockQ8_K* yb = y + ib;
            var (sc03, sc47, mn03, mn47) = KQuant128.ScalesMinsK4AdvSimd(xb->Scales);
            int minSum = KQuant128.MinSumK4AdvSimd(mn03, mn47, yb->Bsums);
            float dx = QuantMath.Fp16ToFp32Fast(xb->D);
            float dmx = QuantMath.Fp16ToFp32Fast(xb->DMin);
            sumf -= dmx * yb->D * minSum;

            // 64 values per step: low nibbles are sub-block 2c (scale 2c), high nibbles 2c + 1.
            byte* q = xb->Qs;
            sbyte* a = yb->Qs;
            var (l0, h0) = Chunk(q, a, m4);
            var (l1, h1) = Chunk(q + 32, a + 64, m4);
            var (l2, h2) = Chunk(q + 64, a + 128, m4);
            var (l3, h3) = Chunk(q + 96, a + 192, m4);
            int total = KQuant128.ScaledTotalK4AdvSimd(l0, h0, l1, h1, l2, h2, l3, h3, sc03, sc47);
            sumf += dx * yb->D * total;
        }
        return sumf;
    }

    /// <summary>
    /// The 32 nibble bytes at <paramref name="q"/> against 64 activations: (Σ low nibble·a[0..31],
    /// Σ high nibble·a[32..63]) as four int32 lanes each (<c>sdot</c>; |lane| ≤ 8·15·128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int> Lo, Vector128<int> Hi) Chunk(byte* q, sbyte* a, Vector128<byte> m4)
    {
        var b0 = AdvSimd.LoadVector128(q);
        var b1 = AdvSimd.LoadVector128(q + 16);
        var lo = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, (b0 & m4).AsSByte(), AdvSimd.LoadVector128(a)),
            (b1 & m4).AsSByte(), AdvSimd.LoadVector128(a + 16));
        var hi = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, AdvSimd.ShiftRightLogical(b0, 4).AsSByte(), AdvSimd.LoadVector128(a + 32)),
            AdvSimd.ShiftRightLogical(b1, 4).AsSByte(), AdvSimd.LoadVector128(a + 48));
        return (lo, hi);
    }

    /// <summary>
    /// The prompt tile on NEON with DotProd: per row and super-block the 256 values are built once
    /// in sixteen registers and met by up to four activation rows, each with the steps of
    /// <see cref="DotQ4_KQ8_KAdvSimdDp"/> (the same integers and float order, so every
    /// (row, activation) equals VecDot bit for bit). <see cref="KQuant128"/>'s tile writes the values
    /// out as bytes and reads them back per activation instead. Requires AdvSimd.Arm64 and Dp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotTileAdvSimdDp(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        KQuant.CheckLength(n, "Q4_K");
        int nb = n / KQuant.QK_K;
        var m4 = Vector128.Create((byte)0xF);
        float* sumf = stackalloc float[4];
        for (int r = 0; r < nRows; r++)
        {
            var x = (BlockQ4_K*)(weights + r * rowBytes);
            for (int a0 = 0; a0 < nActs; a0 += 4)
            {
                int na = Math.Min(4, nActs - a0);
                sumf[0] = sumf[1] = sumf[2] = sumf[3] = 0;
                for (int ib = 0; ib < nb; ib++)
                {
                    BlockQ4_K* xb = x + ib;
                    float dx = QuantMath.Fp16ToFp32Fast(xb->D);
                    float dmx = QuantMath.Fp16ToFp32Fast(xb->DMin);
                    var (sc03, sc47, mn03, mn47) = KQuant128.ScalesMinsK4AdvSimd(xb->Scales);
                    // Values 64c + 0..31 (low nibbles, sub-block 2c) and 64c + 32..63 (high, 2c + 1).
                    byte* q = xb->Qs;
                    var b0 = AdvSimd.LoadVector128(q); var b1 = AdvSimd.LoadVector128(q + 16);
                    var b2 = AdvSimd.LoadVector128(q + 32); var b3 = AdvSimd.LoadVector128(q + 48);
                    var b4 = AdvSimd.LoadVector128(q + 64); var b5 = AdvSimd.LoadVector128(q + 80);
                    var b6 = AdvSimd.LoadVector128(q + 96); var b7 = AdvSimd.LoadVector128(q + 112);
                    var w0 = (b0 & m4).AsSByte(); var w1 = (b1 & m4).AsSByte();
                    var w2 = AdvSimd.ShiftRightLogical(b0, 4).AsSByte(); var w3 = AdvSimd.ShiftRightLogical(b1, 4).AsSByte();
                    var w4 = (b2 & m4).AsSByte(); var w5 = (b3 & m4).AsSByte();
                    var w6 = AdvSimd.ShiftRightLogical(b2, 4).AsSByte(); var w7 = AdvSimd.ShiftRightLogical(b3, 4).AsSByte();
                    var w8 = (b4 & m4).AsSByte(); var w9 = (b5 & m4).AsSByte();
                    var w10 = AdvSimd.ShiftRightLogical(b4, 4).AsSByte(); var w11 = AdvSimd.ShiftRightLogical(b5, 4).AsSByte();
                    var w12 = (b6 & m4).AsSByte(); var w13 = (b7 & m4).AsSByte();
                    var w14 = AdvSimd.ShiftRightLogical(b6, 4).AsSByte(); var w15 = AdvSimd.ShiftRightLogical(b7, 4).AsSByte();
                    for (int k = 0; k < na; k++)
                    {
                        var yb = (BlockQ8_K*)(acts + (a0 + k) * actStride) + ib;
                        sbyte* a = yb->Qs;
                        int minSum = KQuant128.MinSumK4AdvSimd(mn03, mn47, yb->Bsums);
                        var p0 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w0, AdvSimd.LoadVector128(a)), w1, AdvSimd.LoadVector128(a + 16));
                        var p1 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w2, AdvSimd.LoadVector128(a + 32)), w3, AdvSimd.LoadVector128(a + 48));
                        var p2 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w4, AdvSimd.LoadVector128(a + 64)), w5, AdvSimd.LoadVector128(a + 80));
                        var p3 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w6, AdvSimd.LoadVector128(a + 96)), w7, AdvSimd.LoadVector128(a + 112));
                        var p4 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w8, AdvSimd.LoadVector128(a + 128)), w9, AdvSimd.LoadVector128(a + 144));
                        var p5 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w10, AdvSimd.LoadVector128(a + 160)), w11, AdvSimd.LoadVector128(a + 176));
                        var p6 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w12, AdvSimd.LoadVector128(a + 192)), w13, AdvSimd.LoadVector128(a + 208));
                        var p7 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, w14, AdvSimd.LoadVector128(a + 224)), w15, AdvSimd.LoadVector128(a + 240));
                        int total = KQuant128.ScaledTotalK4AdvSimd(p0, p1, p2, p3, p4, p5, p6, p7, sc03, sc47);
                        float s = sumf[k];
                        s -= dmx * yb->D * minSum;
                        s += dx * yb->D * total;
                        sumf[k] = s;
                    }
                }
                for (int k = 0; k < na; k++) y[(a0 + k) * yStride + r] = sumf[k];
            }
        }
    }
}
