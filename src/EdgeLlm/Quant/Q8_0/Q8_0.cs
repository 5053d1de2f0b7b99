using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>Q8_0 weights, paired with Q8_0 activations (ggml-cpu type_traits).</summary>
internal sealed unsafe class Q8_0Format : WeightFormat
{
    public override GgmlType Type => GgmlType.Q8_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => Q8_0.DequantizeRowReference(src, dst, n);
    public override float VecDot(int n, byte* weights, byte* activations) => Q8_0.DotQ8_0Q8_0(n, weights, activations);

    /// <summary>Register-tiled, matching VecDot bit for bit: AVX2+FMA with AVX-512BW (<see cref="Q8_0.DotTileAvx512Fma"/>, two activations per register), AVX2+FMA (<see cref="Q8_0.DotTileAvx2Fma"/>), else AVX-512BW (<see cref="Q8_0.DotTileAvx512"/>), else without AVX2 (NEON) <see cref="LegacyTile"/>, else one VecDot per pair.</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        if (Q8_0.UseAvx512Tile) Q8_0.DotTileAvx512Fma(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Q8_0.UseAvx2Fma) Q8_0.DotTileAvx2Fma(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (Avx512BW.IsSupported) Q8_0.DotTileAvx512(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else if (!Avx2.IsSupported && LegacyTile.IsSupported) LegacyTile.Dot<Q8_0TileWeights>(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
        else base.VecDotTile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);
    }
}

/// <summary>Q8_0 kernels: weight quantizer, activation quantizer, dequantizer and dot products.</summary>
internal static unsafe partial class Q8_0
{
    private const int QK = BlockQ8_0.BlockSize;

    /// <summary>
    /// f32 -> Q8_0 weights exactly as ggml's <c>quantize_row_q8_0_ref</c>: d = amax/127,
    /// q = roundf(x·(1/d)) (halves away from zero).
    /// </summary>
    public static void QuantizeRowReference(float* x, byte* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var y = (BlockQ8_0*)dst;
        for (long i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            float d = amax / ((1 << 7) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            for (int j = 0; j < QK; j++) y[i].Qs[j] = (sbyte)MathF.Round(xb[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// f32 -> Q8_0 activations as llama.cpp's x86 SIMD <c>quantize_row_q8_0</c> computes them:
    /// d = max|x|/127 stored as f16, but the multiplier is 127/max|x| (not 1/d), and the product is
    /// rounded to nearest with ties to even (<c>_mm256_round_ps(v, _MM_ROUND_NEAREST)</c>).
    /// </summary>
    public static void QuantizeActivationRow(float* x, byte* dst, int n)
    {
        if (Avx2.IsSupported) QuantizeActivationRowAvx2(x, dst, n);
        else QuantizeActivationRowScalar(x, dst, n);
    }

    /// <summary>The scalar statement of <see cref="QuantizeActivationRow"/> (the oracle of the SIMD path).</summary>
    internal static void QuantizeActivationRowScalar(float* x, byte* dst, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0 activations");
        var y = (BlockQ8_0*)dst;
        for (int i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float maxAbs = 0;
            for (int j = 0; j < QK; j++) maxAbs = MathF.Max(maxAbs, MathF.Abs(xb[j]));
            float d = maxAbs / 127.0f;
            float id = maxAbs != 0 ? 127.0f / maxAbs : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            for (int j = 0; j < QK; j++) y[i].Qs[j] = (sbyte)Math.Clamp(MathF.Round(xb[j] * id, MidpointRounding.ToEven), -127, 127);
        }
    }

    /// <summary>Q8_0 -> f32 (dequantize_row_q8_0): x = d·q.</summary>
    public static void DequantizeRowReference(byte* src, float* dst, long n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var x = (BlockQ8_0*)src;
        for (long i = 0; i < n / QK; i++)
        {
            float d = QuantMath.Fp16ToFp32(x[i].D);
            for (int j = 0; j < QK; j++) dst[i * QK + j] = x[i].Qs[j] * d;
        }
    }


    /// <summary>Scalar oracle (ggml_vec_dot_q8_0_q8_0_generic): per block sumi·(dx·dy), summed in float.</summary>
    public static float DotQ8_0Q8_0Reference(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var x = (BlockQ8_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            int sumi = 0;
            for (int j = 0; j < QK; j++) sumi += x[ib].Qs[j] * y[ib].Qs[j];
            sumf += sumi * (QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D));
        }
        return sumf;
    }

    /// <summary>AVX2 path: the 32 products per block with vpmaddwd; same float order as the reference.</summary>
    public static float DotQ8_0Q8_0Avx2(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var x = (BlockQ8_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (x0, x1) = QuantMath.LoadI8x32(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Avx2(x0, x1, y0, y1);
            sumf += sumi * (QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D));
        }
        return sumf;
    }

    /// <summary>Portable Vector128 path.</summary>
    public static float DotQ8_0Q8_0Vector128(int n, byte* vx, byte* vy)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0");
        var x = (BlockQ8_0*)vx;
        var y = (BlockQ8_0*)vy;
        float sumf = 0;
        for (int ib = 0; ib < n / QK; ib++)
        {
            var (x0, x1) = QuantMath.LoadI8x32(x[ib].Qs);
            var (y0, y1) = QuantMath.LoadI8x32(y[ib].Qs);
            int sumi = QuantMath.DotI8Vector128(x0, x1, y0, y1);
            sumf += sumi * (QuantMath.Fp16ToFp32(x[ib].D) * QuantMath.Fp16ToFp32(y[ib].D));
        }
        return sumf;
    }
}
