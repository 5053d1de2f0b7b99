using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q5_K
{
    /// <summary>True where <see cref="DotQ5_KQ8_KAdvSimdDp"/> runs: NEON with the dot-product extension.</summary>
    internal static bool UseAdvSimdDp => AdvSimd.Arm64.IsSupported && Dp.IsSupported;

    /// <summary>
    /// The matrix-vector dot product on NEON with DotProd: Q4_K's register-only kernel
    /// (<see cref="Q4_K.DotQ4_KQ8_KAdvSimdDp"/>) with 16 added where the value's fifth bit (qh) is
    /// set. The same integers and float steps as <see cref="KQuant128"/>'s <see cref="AdvSimdDpKLanes"/>
    /// tile (llama.cpp's NEON order), so it equals <see cref="KQuant128.DotTotalOrderReference{TK}"/>
    /// bit for bit. Requires AdvSimd.Arm64 and Dp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotQ5_KQ8_KAdvSimdDp(int n, BlockQ5_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q5_K");
        int nb = n / KQuant.QK_K;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            BlockQ5_K* xb = x + ib;
            BlockQ8_K* yb = y + ib;
            var (sc03, sc47, mn03, mn47) = KQuant128.ScalesMinsK4AdvSimd(xb->Scales);
            int minSum = KQuant128.MinSumK4AdvSimd(mn03, mn47, yb->Bsums);
            float dx = QuantMath.Fp16ToFp32Fast(xb->D);
            float dmx = QuantMath.Fp16ToFp32Fast(xb->DMin);
            sumf -= dmx * yb->D * minSum;

            // 64 values per step c: low nibbles (+16 where qh bit 2c) are sub-block 2c, high nibbles
            // (+16 where qh bit 2c + 1) sub-block 2c + 1. The qh bytes shift down two bits per step.
            var qh0 = AdvSimd.LoadVector128(xb->Qh);
            var qh1 = AdvSimd.LoadVector128(xb->Qh + 16);
            byte* q = xb->Qs;
            sbyte* a = yb->Qs;
            var (l0, h0) = Chunk(q, a, qh0, qh1);
            var (l1, h1) = Chunk(q + 32, a + 64, AdvSimd.ShiftRightLogical(qh0, 2), AdvSimd.ShiftRightLogical(qh1, 2));
            var (l2, h2) = Chunk(q + 64, a + 128, AdvSimd.ShiftRightLogical(qh0, 4), AdvSimd.ShiftRightLogical(qh1, 4));
            var (l3, h3) = Chunk(q + 96, a + 192, AdvSimd.ShiftRightLogical(qh0, 6), AdvSimd.ShiftRightLogical(qh1, 6));
            int total = KQuant128.ScaledTotalK4AdvSimd(l0, h0, l1, h1, l2, h2, l3, h3, sc03, sc47);
            sumf += dx * yb->D * total;
        }
        return sumf;
    }

    /// <summary>
    /// The 32 nibble bytes at <paramref name="q"/> with their fifth bits (bit 0 of
    /// <paramref name="qh0"/>/<paramref name="qh1"/> for the low nibbles, bit 1 for the high ones)
    /// against 64 activations: (Σ low value·a[0..31], Σ high value·a[32..63]) as four int32 lanes each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int> Lo, Vector128<int> Hi) Chunk(byte* q, sbyte* a, Vector128<byte> qh0, Vector128<byte> qh1)
    {
        var m4 = Vector128.Create((byte)0xF);
        var one = Vector128.Create((byte)1);
        var b0 = AdvSimd.LoadVector128(q);
        var b1 = AdvSimd.LoadVector128(q + 16);
        // (qh & 1) << 4 is the 16 of a set fifth bit; (qh & 2) << 3 that of the next one.
        var v0 = (b0 & m4) | AdvSimd.ShiftLeftLogical(qh0 & one, 4);
        var v1 = (b1 & m4) | AdvSimd.ShiftLeftLogical(qh1 & one, 4);
        var v2 = AdvSimd.ShiftRightLogical(b0, 4) | AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(qh0, 1) & one, 4);
        var v3 = AdvSimd.ShiftRightLogical(b1, 4) | AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(qh1, 1) & one, 4);
        var lo = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, v0.AsSByte(), AdvSimd.LoadVector128(a)), v1.AsSByte(), AdvSimd.LoadVector128(a + 16));
        var hi = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, v2.AsSByte(), AdvSimd.LoadVector128(a + 32)), v3.AsSByte(), AdvSimd.LoadVector128(a + 48));
        return (lo, hi);
    }
}
