using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Q8_K activation quantization (ggml-quants.c quantize_row_q8_K_ref, which is also what
/// ggml-cpu's quantize_row_q8_K runs on x86): per 256 values, the value of largest magnitude,
/// with its sign, sets iscale = −127/value; q = nearest(iscale·x) (ties to even) capped at
/// 127; d = 1/iscale; bsums keep the sum of each 16 quants.
/// </summary>
internal static unsafe class Q8_K
{
    /// <summary>Registers the activation quantizer (called from <see cref="QuantFormats"/>).</summary>
    public static void RegisterActivation(Dictionary<GgmlType, ActivationQuantizer.QuantizeRowFn> table) =>
        table[GgmlType.Q8_K] = (x, dst, n) => QuantizeRow(x, (BlockQ8_K*)dst, n);

    /// <summary>Quantizes <paramref name="n"/> values (a multiple of 256), on the fastest path available.</summary>
    public static void QuantizeRow(float* x, BlockQ8_K* y, long n)
    {
        if (Avx2.IsSupported) QuantizeRowAvx2(x, y, n);
        else QuantizeRowReference(x, y, n);
    }

    /// <summary>The scalar oracle, step for step as ggml's reference.</summary>
    internal static void QuantizeRowReference(float* x, BlockQ8_K* y, long n)
    {
        KQuant.CheckLength(n, "Q8_K");
        long nb = n / KQuant.QK_K;
        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            float max = 0;
            float amax = 0;
            for (int j = 0; j < KQuant.QK_K; ++j)
            {
                float ax = MathF.Abs(x[j]);
                if (ax > amax) { amax = ax; max = x[j]; }
            }
            if (amax == 0)
            {
                // ggml leaves bsums unset here; zero them so a block never holds stale data.
                Unsafe.InitBlockUnaligned(&y[i], 0, BlockQ8_K.Size);
                continue;
            }
            float iscale = -127f / max;
            for (int j = 0; j < KQuant.QK_K; ++j)
            {
                int v = KQuant.NearestInt(iscale * x[j]);
                y[i].Qs[j] = (sbyte)Math.Min(127, v);
            }
            for (int j = 0; j < KQuant.QK_K / 16; ++j)
            {
                int sum = 0;
                for (int ii = 0; ii < 16; ++ii) sum += y[i].Qs[j * 16 + ii];
                y[i].Bsums[j] = (short)sum;
            }
            y[i].D = 1 / iscale;
        }
    }

    /// <summary>
    /// The same arithmetic eight lanes at a time. The arg-max scan keeps, per lane, the first
    /// index of the largest |x| and then picks the lowest such index across lanes, which is
    /// the element the scalar scan (strict &gt;) keeps. Rounding uses the same 1.5·2^23 trick.
    /// </summary>
    internal static void QuantizeRowAvx2(float* x, BlockQ8_K* y, long n)
    {
        KQuant.CheckLength(n, "Q8_K");
        long nb = n / KQuant.QK_K;
        Vector256<float> absMask = Vector256.Create(0x7fffffff).AsSingle();
        Vector256<float> magic = Vector256.Create(12582912f);
        Vector256<int> mantMask = Vector256.Create(0x007fffff);
        Vector256<int> bias = Vector256.Create(0x00400000);
        Vector256<int> cap = Vector256.Create(127);
        for (long i = 0; i < nb; i++, x += KQuant.QK_K)
        {
            // Largest |x| per lane (first occurrence), then across lanes.
            Vector256<float> best = Vector256<float>.Zero;
            Vector256<int> bestIdx = Vector256<int>.Zero;
            Vector256<int> idx = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            Vector256<int> eight = Vector256.Create(8);
            for (int j = 0; j < KQuant.QK_K; j += 8, idx = Avx2.Add(idx, eight))
            {
                Vector256<float> ax = Avx.And(Avx.LoadVector256(x + j), absMask);
                Vector256<float> gt = Avx.CompareGreaterThan(ax, best);
                best = Avx.BlendVariable(best, ax, gt);
                bestIdx = Avx2.BlendVariable(bestIdx, idx, gt.AsInt32());
            }
            float amax = 0;
            int at = -1;
            for (int l = 0; l < 8; ++l)
            {
                float b = best.GetElement(l);
                int k = bestIdx.GetElement(l);
                if (b > amax || (b == amax && b > 0 && k < at)) { amax = b; at = k; }
            }
            if (amax == 0)
            {
                Unsafe.InitBlockUnaligned(&y[i], 0, BlockQ8_K.Size);
                continue;
            }
            float max = x[at];
            float iscale = -127f / max;
            Vector256<float> vs = Vector256.Create(iscale);
            sbyte* qs = y[i].Qs;
            for (int j = 0; j < KQuant.QK_K; j += 16)
            {
                Vector256<int> q0 = Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j)), magic).AsInt32(), mantMask), bias);
                Vector256<int> q1 = Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j + 8)), magic).AsInt32(), mantMask), bias);
                q0 = Avx2.Min(q0, cap);
                q1 = Avx2.Min(q1, cap);
                // int32 -> int16 -> int8 with saturation (values are already in [-128, 127]);
                // packs interleave 128-bit halves, so restore the order with a permute.
                Vector256<short> w = Avx2.PackSignedSaturate(q0, q1);
                w = Avx2.Permute4x64(w.AsInt64(), 0b11_01_10_00).AsInt16();
                Vector128<sbyte> b8 = Sse2.PackSignedSaturate(w.GetLower(), w.GetUpper());
                Sse2.Store(qs + j, b8);
                y[i].Bsums[j / 16] = (short)Vector256.Sum(Avx2.Add(q0, q1));
            }
            y[i].D = 1 / iscale;
        }
    }
}
