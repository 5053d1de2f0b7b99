using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q5_1 weights, paired with Q8_1 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class Q5_1Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q5_1;
    public override GgmlType VecDotType => GgmlType.Q8_1;
    public override void DequantizeRow(byte* src, float* dst, long n) => Q5_1.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q5_1.DotQ5_1Q8_1(n, weights, activations);

    /// <summary>Register-tiled on AVX-512BW (<see cref="Q5_1.DotTileAvx512"/>), without AVX2 (NEON) by <see cref="LegacyTile"/>; elsewhere one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Avx512BW.IsSupported) Q5_1.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<Q5_1TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q5_1 kernels: quantizer, dequantizer and the dot product with Q8_1 activations.</summary>
internal static unsafe partial class Q5_1
{
    private const int QK = BlockQ5_1.BlockSize;

    /// <summary>
    /// f32 -> Q5_1 exactly as ggml's <c>quantize_row_q5_1_ref</c>: d = (max - min)/31, m = min,
    /// q = (uint8)((x - min)·(1/d) + 0.5) (truncation, no clamp, as ggml).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        var y = (BlockQ5_1*)dst;
        for (long i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < QK; j++)
            {
                float v = xb[j];
                if (v < min) min = v;
                if (v > max) max = v;
            }
            float d = (max - min) / ((1 << 5) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            y[i].M = QuantMath.Fp32ToFp16(min);
            uint qh = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[QK / 2 + j] - min) * id;
                uint q0 = (byte)(int)(x0 + 0.5f);
                uint q1 = (byte)(int)(x1 + 0.5f);
                y[i].Qs[j] = (byte)((q0 & 0x0F) | (q1 & 0x0F) << 4);
                qh |= ((q0 & 0x10) >> 4) << j;
                qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
            }
            *(uint*)y[i].Qh = qh;
        }
    }

    /// <summary>Q5_1 -> f32 (dequantize_row_q5_1): x = q·d + m.</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        var x = (BlockQ5_1*)src;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            float m = QuantMath.Fp16ToFp32(x[i].M);
            uint qh = *(uint*)x[i].Qh;
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = (int)((x[i].Qs[j] & 0x0Fu) | ((qh >> j) << 4 & 0x10));
                int q1 = (int)((uint)(x[i].Qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
                dst[i * QK + j] = q0 * d + m;
                dst[i * QK + j + QK / 2] = q1 * d + m;
            }
        }
    }


    /// <summary>Scalar oracle (ggml_vec_dot_q5_1_q8_1_generic): (dx·dy)·sumi + m·s per block, summed in float.</summary>
    public static float DotQ5_1Q8_1Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        var x = (BlockQ5_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            uint qh = *(uint*)x[ib].Qh;
            int sumi = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = (int)((x[ib].Qs[j] & 0x0Fu) | ((qh >> j) << 4 & 0x10));
                int q1 = (int)((uint)(x[ib].Qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
                sumi += q0 * y[ib].Qs[j] + q1 * y[ib].Qs[j + QK / 2];
            }
            sumf += Combine(sumi, ref x[ib], ref y[ib]);
        }
        return sumf;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Combine(int sumi, ref BlockQ5_1 x, ref BlockQ8_1 y) =>
        QuantMath.Fp16ToFp32(x.D) * QuantMath.Fp16ToFp32(y.D) * sumi + QuantMath.Fp16ToFp32(x.M) * QuantMath.Fp16ToFp32(y.S);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Unpack(BlockQ5_1* b)
    {
        var (lo, hi) = QuantMath.Nibbles(b->Qs);
        var (hlo, hhi) = QuantMath.Q5HighBits(*(uint*)b->Qh);
        return ((lo | hlo).AsSByte(), (hi | hhi).AsSByte());
    }

    /// <summary>AVX2 path.</summary>
    public static float DotQ5_1Q8_1Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        var x = (BlockQ5_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (a0, a1) = Unpack(x + ib);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            sumf += Combine(QuantMath.DotI8Avx2(a0, a1, y0, y1), ref x[ib], ref y[ib]);
        }
        return sumf;
    }

    /// <summary>Portable Vector128 path.</summary>
    public static float DotQ5_1Q8_1Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_1");
        var x = (BlockQ5_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (a0, a1) = Unpack(x + ib);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            sumf += Combine(QuantMath.DotI8Vector128(a0, a1, y0, y1), ref x[ib], ref y[ib]);
        }
        return sumf;
    }
}
