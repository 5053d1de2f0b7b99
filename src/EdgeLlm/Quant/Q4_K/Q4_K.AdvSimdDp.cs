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
            var (sc03, sc47, minSum) = KQuant128.ScalesMinSumK4AdvSimd(xb->Scales, yb->Bsums);
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
            var acc0 = AdvSimd.MultiplyBySelectedScalar(l0, sc03, 0);
            var acc1 = AdvSimd.MultiplyBySelectedScalar(h0, sc03, 1);
            acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, l1, sc03, 2);
            acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, h1, sc03, 3);
            acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, l2, sc47, 0);
            acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, h2, sc47, 1);
            acc0 = AdvSimd.MultiplyAddBySelectedScalar(acc0, l3, sc47, 2);
            acc1 = AdvSimd.MultiplyAddBySelectedScalar(acc1, h3, sc47, 3);
            int total = Vector128.Sum(acc0 + acc1);
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
}
