namespace EdgeLlm.Quant;

/// <summary>Q8_1 activation quantizer (the vec-dot type of Q4_1 and Q5_1).</summary>
internal static unsafe class Q8_1
{
    private const int QK = BlockQ8_1.BlockSize;

    /// <summary>
    /// f32 -> Q8_1 as llama.cpp's x86 SIMD <c>quantize_row_q8_1</c>: d = max|x|/127, multiplier
    /// 127/max|x|, ties rounded to even, s = f16(d·Σq) with Σq summed as integers.
    /// </summary>
    public static void QuantizeActivationRow(float* x, byte* dst, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_1 activations");
        var y = (BlockQ8_1*)dst;
        for (int i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            float maxAbs = 0;
            for (int j = 0; j < QK; j++) maxAbs = MathF.Max(maxAbs, MathF.Abs(xb[j]));
            float d = maxAbs / 127.0f;
            float id = maxAbs != 0 ? 127.0f / maxAbs : 0.0f;
            y[i].D = QuantMath.Fp32ToFp16(d);
            int sum = 0;
            for (int j = 0; j < QK; j++)
            {
                int q = (int)Math.Clamp(MathF.Round(xb[j] * id, MidpointRounding.ToEven), -127, 127);
                y[i].Qs[j] = (sbyte)q;
                sum += q;
            }
            y[i].S = QuantMath.Fp32ToFp16(d * sum);
        }
    }
}
