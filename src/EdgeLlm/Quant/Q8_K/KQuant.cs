using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// Pieces shared by the K-quant formats (Q2_K..Q6_K and their Q8_K activations): the
/// super-block size, ggml's rounding, the scale searches of ggml-quants.c (make_qx_quants,
/// make_q3_quants, make_qkx2_quants) and the 6-bit scale/min packing of Q4_K/Q5_K.
/// Written here from the algorithms' descriptions in llama.cpp's ggml-quants.c; the float
/// operations keep ggml's order so that results agree to the last bit where the compiler
/// does not reorder them (RyuJIT never contracts a*b+c into an FMA).
/// </summary>
internal static unsafe class KQuant
{
    /// <summary>Values per super-block (ggml-common.h QK_K).</summary>
    public const int QK_K = 256;

    /// <summary>Bytes of packed 6-bit scales and mins in Q4_K/Q5_K (ggml-common.h K_SCALE_SIZE).</summary>
    public const int K_SCALE_SIZE = 12;

    /// <summary>Below this a group's largest magnitude counts as zero (ggml-quants.c GROUP_MAX_EPS).</summary>
    public const float GROUP_MAX_EPS = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: adds 1.5·2^23 so the FPU's own rounding (to nearest, ties to even)
    /// leaves the integer in the low mantissa bits. Same result as rint for |x| &lt; 2^22, and
    /// the same garbage as ggml beyond that.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float fval)
    {
        float val = fval + 12582912f;
        int i = BitConverter.SingleToInt32Bits(val);
        return (i & 0x007fffff) - 0x00400000;
    }

    /// <summary>f16 bits to f32 (exact; <see cref="QuantMath.Fp16ToFp32"/>'s table).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fp16ToFp32(ushort h) => QuantMath.Fp16ToFp32Fast(h);

    /// <summary>f32 to f16 bits, rounding to nearest even as F16C's vcvtps2ph does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fp32ToFp16(float f) => BitConverter.HalfToUInt16Bits((Half)f);

    /// <summary>Throws unless <paramref name="n"/> is a non-negative multiple of <see cref="QK_K"/>.</summary>
    public static void CheckLength(long n, string format)
    {
        if (n < 0 || n % QK_K != 0)
            throw new ArgumentException($"{format}: row length {n} is not a multiple of the {QK_K}-value super-block", nameof(n));
    }

    /// <summary>
    /// Unpacks scale <paramref name="j"/> (0..7) and its min from the 12 packed bytes of Q4_K/Q5_K
    /// (ggml-quants.c get_scale_min_k4). Bytes 0..3 hold scales 0..3 in bits 0..5, bytes 4..7
    /// mins 0..3; bytes 8..11 hold the low nibbles of scale (bits 0..3) and min (bits 4..7)
    /// 4..7, whose top two bits sit in bits 6..7 of bytes 0..3 (scales) and 4..7 (mins).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, byte* q, out byte d, out byte m)
    {
        if (j < 4)
        {
            d = (byte)(q[j] & 63);
            m = (byte)(q[j + 4] & 63);
        }
        else
        {
            d = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    /// <summary>Packs 6-bit scale <paramref name="ls"/> and min <paramref name="lm"/> of sub-block <paramref name="j"/>; inverse of <see cref="GetScaleMinK4"/>. The 12 bytes must start zeroed.</summary>
    public static void PackScaleMinK4(int j, byte* scales, byte ls, byte lm)
    {
        if (j < 4)
        {
            scales[j] = ls;
            scales[j + 4] = lm;
        }
        else
        {
            scales[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (byte)((ls >> 4) << 6);
            scales[j] |= (byte)((lm >> 4) << 6);
        }
    }

    /// <summary>
    /// Symmetric quantization of <paramref name="n"/> values to [-nmax, nmax-1] (stored offset by
    /// nmax in <paramref name="L"/>) with a scale search around -nmax/max (ggml-quants.c
    /// make_qx_quants). <paramref name="rmseType"/> picks the error weights: 1 = x², 2 = 1,
    /// 3 = |x|, else √|x|; 0 skips the search; negative returns early after one refit.
    /// <paramref name="qw"/>, when given, replaces those weights.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, float* x, sbyte* L, int rmseType, float* qw)
    {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GROUP_MAX_EPS)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        if (rmseType == 0)
        {
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
            }
            return 1 / iscale;
        }
        bool returnEarly = false;
        if (rmseType < 0)
        {
            rmseType = -rmseType;
            returnEarly = true;
        }
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
            float w = Weight(qw, x, i, rmseType);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        if (returnEarly) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; ++step)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = Weight(qw, x, i, rmseType);
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; ++i)
                {
                    int l = NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Weight(float* qw, float* x, int i, int rmseType) =>
        qw != null ? qw[i]
        : rmseType == 1 ? x[i] * x[i]
        : rmseType == 2 ? 1
        : rmseType == 3 ? MathF.Abs(x[i])
        : MathF.Sqrt(MathF.Abs(x[i]));

    /// <summary>
    /// Symmetric 3-bit-style quantization to [-nmax, nmax-1] (stored offset by nmax) with an
    /// optional coordinate-descent refinement of the x²-weighted error (ggml-quants.c make_q3_quants).
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, float* x, sbyte* L, bool doRmse)
    {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GROUP_MAX_EPS)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        if (doRmse)
        {
            float sumlx = 0;
            float suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                L[i] = (sbyte)l;
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            for (int itry = 0; itry < 5; ++itry)
            {
                int nChanged = 0;
                for (int i = 0; i < n; ++i)
                {
                    float w = x[i] * x[i];
                    float slx = sumlx - w * x[i] * L[i];
                    if (slx > 0)
                    {
                        float sl2 = suml2 - w * L[i] * L[i];
                        int newL = NearestInt(x[i] * sl2 / slx);
                        newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                        if (newL != L[i])
                        {
                            slx += w * x[i] * newL;
                            sl2 += w * newL * newL;
                            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                            {
                                L[i] = (sbyte)newL;
                                sumlx = slx;
                                suml2 = sl2;
                                ++nChanged;
                            }
                        }
                    }
                }
                if (nChanged == 0) break;
            }
            for (int i = 0; i < n; ++i) L[i] += (sbyte)nmax;
            return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
        }
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
        }
        return 1 / iscale;
    }

    /// <summary>
    /// Asymmetric quantization x ≈ scale·L − theMin with L in [0, nmax]: starts from the
    /// min/max fit, then tries nstep+1 scales (rmin + rdelta·is + nmax)/(max − min) and keeps
    /// the weighted least-squares (scale, min) fit with the smallest weighted error, |·| when
    /// <paramref name="useMad"/> (ggml-quants.c make_qkx2_quants). Returns the scale;
    /// <paramref name="theMin"/> gets the (non-negative) min to subtract.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, float* x, float* weights, byte* L, out float theMin,
        byte* Laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0];
        float max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; ++i)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            float w = weights[i];
            bestError += w * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; ++step)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    float w = weights[i];
                    curError += w * diff;
                }
                if (curError < bestError)
                {
                    for (int i = 0; i < n; ++i) L[i] = Laux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// The integer core every K-quant dot product shares, in the lane layout of ggml's generic
    /// kernels: <c>aux32[l] = Σ_j scale[j] · Σ_{p in sub-block j, p ≡ l (mod 8)} q8[p]·a[p]</c>
    /// over 16 sub-blocks of 16 values. Integer sums are exact in any order, so this equals the
    /// scalar loop bit for bit.
    /// <code>
    /// 16 int8 of a, of q8  --sign-extend--&gt; 16 int16 each --mullo--&gt; p[0..15]  (|a·q8| ≤ 32·128)
    /// p[0..7] and p[8..15] --widen--&gt; int32, added: lane l = positions l and l+8 (both ≡ l mod 8)
    /// × scale[j], accumulated into lane l
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotLanesAvx2(sbyte* a, sbyte* q8, int* scales)
    {
        Vector256<int> acc = Vector256<int>.Zero;
        for (int j = 0; j < QK_K / 16; ++j)
        {
            Vector256<short> va = Avx2.ConvertToVector256Int16(Sse2.LoadVector128(a + 16 * j));
            Vector256<short> vq = Avx2.ConvertToVector256Int16(Sse2.LoadVector128(q8 + 16 * j));
            Vector256<short> p = Avx2.MultiplyLow(va, vq);
            Vector256<int> s = Avx2.Add(Avx2.ConvertToVector256Int32(p.GetLower()), Avx2.ConvertToVector256Int32(p.GetUpper()));
            acc = Avx2.Add(acc, Avx2.MultiplyLow(s, Vector256.Create(scales[j])));
        }
        return acc;
    }

    /// <summary>
    /// The float tail of ggml's generic Q3_K..Q6_K kernels, vectorized lane for lane:
    /// <c>sums[l] += d · (float)aux32[l]</c> (a multiply, then an add: no FMA, as in the scalar loop).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> AccumulateLanes(Vector256<float> sums, float d, Vector256<int> aux32) =>
        Avx.Add(sums, Avx.Multiply(Vector256.Create(d), Avx.ConvertToVector256Single(aux32)));

    /// <summary>The generic kernels' final <c>for l in 0..7: sumf += sums[l]</c>, in that order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumLanesInOrder(float sumf, Vector256<float> sums)
    {
        for (int l = 0; l < 8; ++l) sumf += sums.GetElement(l);
        return sumf;
    }
}
