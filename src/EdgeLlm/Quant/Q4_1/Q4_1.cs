using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q4_1 weights, paired with Q8_1 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class Q4_1Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_1;
    public override GgmlType VecDotType => GgmlType.Q8_1;
    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_1.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q4_1.DotQ4_1Q8_1(n, weights, activations);

    /// <summary>Register-tiled on AVX-512BW (<see cref="Q4_1.DotTileAvx512"/>), without AVX2 (NEON) by <see cref="LegacyTile"/>; elsewhere one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Avx512BW.IsSupported) Q4_1.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<Q4_1TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q4_1 kernels: quantizer, dequantizer and the dot product with Q8_1 activations.</summary>
internal static unsafe partial class Q4_1
{
    private const int QK = BlockQ4_1.BlockSize;

    /// <summary>
    /// f32 -> Q4_1 exactly as ggml's <c>quantize_row_q4_1_ref</c>: d = (max - min)/15, m = min,
    /// q = min(15, (int8)((x - min)·(1/d) + 0.5)).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var y = (BlockQ4_1*)dst;
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
            float d = (max - min) / ((1 << 4) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            y[i].M = QuantMath.Fp32ToFp16(min);
            for (int j = 0; j < QK / 2; j++)
            {
                float x0 = (xb[j] - min) * id;
                float x1 = (xb[QK / 2 + j] - min) * id;
                byte q0 = (byte)Math.Min(15, (int)(sbyte)(x0 + 0.5f));
                byte q1 = (byte)Math.Min(15, (int)(sbyte)(x1 + 0.5f));
                y[i].Qs[j] = (byte)(q0 | q1 << 4);
            }
        }
    }

    /// <summary>Q4_1 -> f32 (dequantize_row_q4_1): x = q·d + m.</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var x = (BlockQ4_1*)src;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            float m = QuantMath.Fp16ToFp32(x[i].M);
            for (int j = 0; j < QK / 2; j++)
            {
                dst[i * QK + j] = (x[i].Qs[j] & 0x0F) * d + m;
                dst[i * QK + j + QK / 2] = (x[i].Qs[j] >> 4) * d + m;
            }
        }
    }


    /// <summary>
    /// Scalar oracle (ggml_vec_dot_q4_1_q8_1_generic): Σ (d·q + m)·(dy·qy) = dx·dy·Σq·qy + m·s,
    /// with s = dy·Σqy precomputed in the Q8_1 block.
    /// </summary>
    public static float DotQ4_1Q8_1Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var x = (BlockQ4_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            int sumi = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                sumi += (x[ib].Qs[j] & 0x0F) * y[ib].Qs[j];
                sumi += (x[ib].Qs[j] >> 4) * y[ib].Qs[j + QK / 2];
            }
            sumf += Combine(sumi, ref x[ib], ref y[ib]);
        }
        return sumf;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Combine(int sumi, ref BlockQ4_1 x, ref BlockQ8_1 y) =>
        QuantMath.Fp16ToFp32(x.D) * QuantMath.Fp16ToFp32(y.D) * sumi + QuantMath.Fp16ToFp32(x.M) * QuantMath.Fp16ToFp32(y.S);

    /// <summary>AVX2 path: unsigned nibbles against int8 activations with vpmaddwd.</summary>
    public static float DotQ4_1Q8_1Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var x = (BlockQ4_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Avx2(lo.AsSByte(), hi.AsSByte(), y0, y1);
            sumf += Combine(sumi, ref x[ib], ref y[ib]);
        }
        return sumf;
    }

    /// <summary>Portable Vector128 path.</summary>
    public static float DotQ4_1Q8_1Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_1");
        var x = (BlockQ4_1*)vx;
        var y = (BlockQ8_1*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Vector128(lo.AsSByte(), hi.AsSByte(), y0, y1);
            sumf += Combine(sumi, ref x[ib], ref y[ib]);
        }
        return sumf;
    }
}
