using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q4_0 weights, paired with Q8_0 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class Q4_0Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => Q4_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q4_0.DotQ4_0Q8_0(n, weights, activations);

    /// <summary>Register-tiled, matching VecDot bit for bit: AVX2+FMA with AVX-512BW (<see cref="Q4_0.DotTileAvx512Fma"/>, two activations per register), AVX2+FMA (<see cref="Q4_0.DotTileAvx2Fma"/>), else AVX-512BW (<see cref="Q4_0.DotTileAvx512"/>), else without AVX2 (NEON) <see cref="LegacyTile"/>, else one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Q4_0.UseAvx512Tile) Q4_0.DotTileAvx512Fma(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Q4_0.UseAvx2Fma) Q4_0.DotTileAvx2Fma(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Avx512BW.IsSupported) Q4_0.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<Q4_0TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q4_0 kernels: quantizer, dequantizer and the dot product with Q8_0 activations.</summary>
internal static unsafe partial class Q4_0
{
    private const int QK = BlockQ4_0.BlockSize;

    /// <summary>
    /// f32 -> Q4_0 exactly as ggml's <c>quantize_row_q4_0_ref</c>: the value of largest magnitude
    /// (with its sign) maps to -8, d = max/-8, q = min(15, (int8)(x·(1/d) + 8.5)) (truncation).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var y = (BlockQ4_0*)dst;
        for (long i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float amax = 0, max = 0;
            for (int j = 0; j < QK; j++)
            {
                float v = xb[j];
                if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            for (int j = 0; j < QK / 2; j++)
            {
                float x0 = xb[j] * id;
                float x1 = xb[QK / 2 + j] * id;
                byte q0 = (byte)Math.Min(15, (int)(sbyte)(x0 + 8.5f));
                byte q1 = (byte)Math.Min(15, (int)(sbyte)(x1 + 8.5f));
                y[i].Qs[j] = (byte)(q0 | q1 << 4);
            }
        }
    }

    /// <summary>Q4_0 -> f32 (dequantize_row_q4_0): x = d·(q - 8).</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var x = (BlockQ4_0*)src;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            for (int j = 0; j < QK / 2; j++)
            {
                dst[i * QK + j] = ((x[i].Qs[j] & 0x0F) - 8) * d;
                dst[i * QK + j + QK / 2] = ((x[i].Qs[j] >> 4) - 8) * d;
            }
        }
    }


    /// <summary>Scalar oracle (ggml_vec_dot_q4_0_q8_0_generic): integer sum per block, then sumi·dx·dy summed in float.</summary>
    public static float DotQ4_0Q8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var x = (BlockQ4_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            int sumi = 0;
            for (int j = 0; j < QK / 2; j++)
            {
                sumi += ((x[ib].Qs[j] & 0x0F) - 8) * y[ib].Qs[j];
                sumi += ((x[ib].Qs[j] >> 4) - 8) * y[ib].Qs[j + QK / 2];
            }
            sumf += sumi * QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D);
        }
        return sumf;
    }

    /// <summary>AVX2 path: nibbles split with one mask and one shift, -8 bias, then vpmaddwd.</summary>
    public static float DotQ4_0Q8_0Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var x = (BlockQ4_0*)vx;
        var y = (BlockQ8_0*)vy;
        var eight = Vector128.Create((sbyte)8);
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Avx2(lo.AsSByte() - eight, hi.AsSByte() - eight, y0, y1);
            sumf += sumi * QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D);
        }
        return sumf;
    }

    /// <summary>Portable Vector128 path.</summary>
    public static float DotQ4_0Q8_0Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q4_0");
        var x = (BlockQ4_0*)vx;
        var y = (BlockQ8_0*)vy;
        var eight = Vector128.Create((sbyte)8);
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (lo, hi) = QuantMath.Nibbles(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Vector128(lo.AsSByte() - eight, hi.AsSByte() - eight, y0, y1);
            sumf += sumi * QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D);
        }
        return sumf;
    }
}
