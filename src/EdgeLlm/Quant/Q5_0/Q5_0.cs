using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q5_0 weights, paired with Q8_0 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class Q5_0Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q5_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => Q5_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q5_0.DotQ5_0Q8_0(n, weights, activations);

    /// <summary>Register-tiled on AVX-512BW (<see cref="Q5_0.DotTileAvx512"/>), without AVX2 (NEON) by <see cref="LegacyTile"/>; elsewhere one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Avx512BW.IsSupported) Q5_0.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<Q5_0TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q5_0 kernels: quantizer, dequantizer and the dot product with Q8_0 activations.</summary>
internal static unsafe partial class Q5_0
{
    private const int QK = BlockQ5_0.BlockSize;

    /// <summary>
    /// f32 -> Q5_0 exactly as ggml's <c>quantize_row_q5_0_ref</c>: d = max/-16 (max = the value of
    /// largest magnitude, signed), q = min(31, (int8)(x·(1/d) + 16.5)).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        var y = (BlockQ5_0*)dst;
        for (long i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float amax = 0, max = 0;
            for (int j = 0; j < QK; j++)
            {
                float v = xb[j];
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            }
            float d = max / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            uint qh = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                float x0 = xb[j] * id;
                float x1 = xb[QK / 2 + j] * id;
                uint q0 = (byte)Math.Min(31, (int)(sbyte)(x0 + 16.5f));
                uint q1 = (byte)Math.Min(31, (int)(sbyte)(x1 + 16.5f));
                y[i].Qs[j] = (byte)((q0 & 0x0F) | (q1 & 0x0F) << 4);
                qh |= ((q0 & 0x10) >> 4) << j;
                qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
            }
            *(uint*)y[i].Qh = qh;
        }
    }

    /// <summary>Q5_0 -> f32 (dequantize_row_q5_0): x = d·(q - 16).</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        var x = (BlockQ5_0*)src;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            uint qh = *(uint*)x[i].Qh;
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = (int)((x[i].Qs[j] & 0x0Fu) | ((qh >> j) << 4 & 0x10));
                int q1 = (int)((uint)(x[i].Qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
                dst[i * QK + j] = (q0 - 16) * d;
                dst[i * QK + j + QK / 2] = (q1 - 16) * d;
            }
        }
    }


    /// <summary>Scalar oracle (ggml_vec_dot_q5_0_q8_0_generic): (dx·dy)·sumi per block, summed in float.</summary>
    public static float DotQ5_0Q8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        var x = (BlockQ5_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            uint qh = *(uint*)x[ib].Qh;
            int sumi = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = (int)((x[ib].Qs[j] & 0x0Fu) | ((qh >> j) << 4 & 0x10)) - 16;
                int q1 = (int)((uint)(x[ib].Qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
                sumi += q0 * y[ib].Qs[j] + q1 * y[ib].Qs[j + QK / 2];
            }
            sumf += QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D) * sumi;
        }
        return sumf;
    }

    /// <summary>Unpacks a block's 32 quants, minus 16, as int8 (values 0..15 and 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Unpack(BlockQ5_0* b)
    {
        var (lo, hi) = QuantMath.Nibbles(b->Qs);
        var (hlo, hhi) = QuantMath.Q5HighBits(*(uint*)b->Qh);
        var sixteen = Vector128.Create((sbyte)16);
        return ((lo | hlo).AsSByte() - sixteen, (hi | hhi).AsSByte() - sixteen);
    }

    /// <summary>AVX2 path.</summary>
    public static float DotQ5_0Q8_0Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        var x = (BlockQ5_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (a0, a1) = Unpack(x + ib);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Avx2(a0, a1, y0, y1);
            sumf += QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D) * sumi;
        }
        return sumf;
    }

    /// <summary>Portable Vector128 path.</summary>
    public static float DotQ5_0Q8_0Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q5_0");
        var x = (BlockQ5_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (a0, a1) = Unpack(x + ib);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Vector128(a0, a1, y0, y1);
            sumf += QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D) * sumi;
        }
        return sumf;
    }
}
