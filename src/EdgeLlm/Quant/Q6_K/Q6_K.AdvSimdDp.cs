using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q6_K
{
    /// <summary>True where <see cref="DotQ6_KQ8_KAdvSimdDp"/> runs: NEON with the dot-product extension.</summary>
    internal static bool UseAdvSimdDp => AdvSimd.Arm64.IsSupported && Dp.IsSupported;

    /// <summary>
    /// The matrix-vector dot product on NEON with DotProd: each 16-value run of 6-bit values built
    /// in registers (low nibble, two high bits from qh, minus 32) straight into <c>sdot</c>, times its
    /// sub-block's scale. The same integers and float step (<c>sumf += d·y.d·total</c>, llama.cpp's
    /// NEON order) as <see cref="KQuant128"/>'s <see cref="AdvSimdDpKLanes"/> tile, so it equals
    /// <see cref="KQuant128.DotTotalOrderReference{TK}"/> bit for bit. Requires AdvSimd.Arm64 and Dp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotQ6_KQ8_KAdvSimdDp(int n, BlockQ6_K* x, BlockQ8_K* y)
    {
        KQuant.CheckLength(n, "Q6_K");
        int nb = n / KQuant.QK_K;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            BlockQ6_K* xb = x + ib;
            BlockQ8_K* yb = y + ib;
            // Two accumulators: one mla chain would wait on its own latency every step.
            Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                // Values 128h + 32s + o + (0..15) for s = 0..3: sub-block 8h + 2s + o/16.
                byte* ql = xb->Ql + 64 * h;
                byte* qh = xb->Qh + 32 * h;
                sbyte* sc = xb->Scales + 8 * h;
                sbyte* a = yb->Qs + 128 * h;
                for (int o = 0; o < 32; o += 16)
                {
                    var l0 = AdvSimd.LoadVector128(ql + o);
                    var l1 = AdvSimd.LoadVector128(ql + 32 + o);
                    var hb = AdvSimd.LoadVector128(qh + o);
                    int j = o / 16;
                    var p0 = Dp.DotProduct(Vector128<int>.Zero, CombineNeon(l0 & Vector128.Create((byte)0xF), hb), AdvSimd.LoadVector128(a + o));
                    var p1 = Dp.DotProduct(Vector128<int>.Zero, CombineNeon(l1 & Vector128.Create((byte)0xF), AdvSimd.ShiftRightLogical(hb, 2)), AdvSimd.LoadVector128(a + 32 + o));
                    var p2 = Dp.DotProduct(Vector128<int>.Zero, CombineNeon(AdvSimd.ShiftRightLogical(l0, 4), AdvSimd.ShiftRightLogical(hb, 4)), AdvSimd.LoadVector128(a + 64 + o));
                    var p3 = Dp.DotProduct(Vector128<int>.Zero, CombineNeon(AdvSimd.ShiftRightLogical(l1, 4), AdvSimd.ShiftRightLogical(hb, 6)), AdvSimd.LoadVector128(a + 96 + o));
                    acc0 = AdvSimd.MultiplyAdd(acc0, p0, Vector128.Create((int)sc[j]));
                    acc1 = AdvSimd.MultiplyAdd(acc1, p1, Vector128.Create((int)sc[j + 2]));
                    acc0 = AdvSimd.MultiplyAdd(acc0, p2, Vector128.Create((int)sc[j + 4]));
                    acc1 = AdvSimd.MultiplyAdd(acc1, p3, Vector128.Create((int)sc[j + 6]));
                }
            }
            int total = Vector128.Sum(acc0 + acc1);
            sumf += QuantMath.Fp16ToFp32Fast(xb->D) * yb->D * total;
        }
        return sumf;
    }

    /// <summary>(nibble | (qhShifted &amp; 3) &lt;&lt; 4) − 32 as signed bytes (−32..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> CombineNeon(Vector128<byte> nib, Vector128<byte> qhShifted) =>
        ((nib | AdvSimd.ShiftLeftLogical(qhShifted & Vector128.Create((byte)3), 4)) - Vector128.Create((byte)32)).AsSByte();
}
