using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q8_0
{
    /// <summary>
    /// <see cref="QuantizeActivationRowScalar"/> with AVX2, bit for bit on finite input (llama.cpp's x86
    /// quantize_row_q8_0 does the same steps): the block's max |x| by vector max (exact), the same
    /// float product x·(127/max), rounded to nearest-even by <c>vroundps</c>, clamped, then narrowed
    /// int32 → int16 → int8 with saturating packs and one lane permutation to undo their interleave.
    /// Activation conversion runs before every matrix product, so a scalar loop here costs several
    /// percent of prompt processing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeActivationRowAvx2(float* x, byte* dst, int n)
    {
        QuantMath.CheckBlocks(n, QK, "Q8_0 activations");
        var y = (BlockQ8_0*)dst;
        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        var hi = Vector256.Create(127f);
        var lo = Vector256.Create(-127f);
        var order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        for (int i = 0; i < n / QK; i++)
        {
            float* xb = x + i * QK;
            var v0 = Vector256.Load(xb);
            var v1 = Vector256.Load(xb + 8);
            var v2 = Vector256.Load(xb + 16);
            var v3 = Vector256.Load(xb + 24);
            var m = Avx.Max(Avx.Max(v0 & absMask, v1 & absMask), Avx.Max(v2 & absMask, v3 & absMask));
            var m4 = Sse.Max(m.GetLower(), m.GetUpper());
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b01_00_11_10));
            m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b10_11_00_01));
            float maxAbs = m4.ToScalar();
            y[i].D = QuantMath.Fp32ToFp16(maxAbs / 127.0f);
            var id = Vector256.Create(maxAbs != 0 ? 127.0f / maxAbs : 0.0f);
            var i0 = Avx.ConvertToVector256Int32(Avx.Min(Avx.Max(Avx.RoundToNearestInteger(v0 * id), lo), hi));
            var i1 = Avx.ConvertToVector256Int32(Avx.Min(Avx.Max(Avx.RoundToNearestInteger(v1 * id), lo), hi));
            var i2 = Avx.ConvertToVector256Int32(Avx.Min(Avx.Max(Avx.RoundToNearestInteger(v2 * id), lo), hi));
            var i3 = Avx.ConvertToVector256Int32(Avx.Min(Avx.Max(Avx.RoundToNearestInteger(v3 * id), lo), hi));
            // packs work per 128-bit lane: bytes come out as 0-3 4-7 8-11 12-15 of (i0 i1 i2 i3) interleaved by lane.
            var b = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
            Avx2.PermuteVar8x32(b.AsInt32(), order).AsSByte().Store(y[i].Qs);
        }
    }
}
