using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Specialized;

/// <summary>
/// Q4_0 × Q8_0 dot products for the generated forward passes on AVX-512BW: two blocks per 512-bit
/// vector and four weight rows per activation row, so one activation block is loaded, and its
/// −8 correction computed, once per four rows (decode reads the activations once per four rows
/// instead of once per row). Bit-identical to the AVX2+FMA VecDot (Q4_0.DotQ4_0Q8_0Avx2Fma):
/// <code>
/// AVX2 (per row)                        here (per row)
/// acc0 += d(2i)   · lanes(block 2i)     acc.lower += d(2i)   · lanes(block 2i)     ┐ one 512-bit
/// acc1 += d(2i+1) · lanes(block 2i+1)   acc.upper += d(2i+1) · lanes(block 2i+1)   ┘ FMA
/// odd last block into acc0              into acc.lower (256-bit FMA)
/// Sum(acc0 + acc1)                      Sum(acc.lower + acc.upper)
/// </code>
/// with the same int32 lanes (lane i = Σ (nibble − 8)·y over bytes 4i..4i+3 of the block, exact
/// integers), the same f32 scale d = dx·dy and the same fused multiply-add per lane. Used only
/// after <see cref="AgreesWith"/> has checked that the registered Q4_0 format computes the same bits.
/// </summary>
internal static unsafe class Q4_0Avx512
{
    private const int QK = BlockQ4_0.BlockSize;

    /// <summary>Whether the CPU and the JIT run 512-bit integer code.</summary>
    public static bool IsSupported => Avx512BW.IsSupported && Avx512F.IsSupported && Fma.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>y[r] = row r · act for <paramref name="nRows"/> rows <paramref name="rowBytes"/> apart, four at a time.</summary>
    public static void Rows(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y)
    {
        int nb = n / QK;
        int r = 0;
        for (; r + 4 <= nRows; r += 4) Rows4(nb, weights + r * rowBytes, rowBytes, (BlockQ8_0*)act, y + r);
        for (; r < nRows; r++) y[r] = Row1(nb, (BlockQ4_0*)(weights + r * rowBytes), (BlockQ8_0*)act);
    }

    /// <summary>The tile: each activation row meets all <paramref name="nRows"/> weight rows, which stay in L1 across the activation rows.</summary>
    public static void Tile(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        for (int a = 0; a < nActs; a++) Rows(n, weights, rowBytes, nRows, acts + a * actStride, y + a * yStride);
    }

    /// <summary>Qword order that turns [p0, p1, p0 &gt;&gt; 4, p1 &gt;&gt; 4] into [p0, p0 &gt;&gt; 4, p1, p1 &gt;&gt; 4] (16 bytes each).</summary>
    private static Vector512<ulong> PairOrder => Vector512.Create(0UL, 1, 4, 5, 2, 3, 6, 7);

    /// <summary>
    /// Blocks ib and ib + 1 of a row as 64 bytes in [0, 15], element order per block:
    /// qs[j] holds x[j] (low nibble) and x[j + 16] (high nibble), as in AVX2's Unpack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Unpack2(BlockQ4_0* x, Vector512<ulong> order, Vector512<byte> low)
    {
        var p = Vector256.Create(Vector128.Load(x[0].Qs), Vector128.Load(x[1].Qs));
        var both = Vector512.Create(p, Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte());
        return Avx512F.PermuteVar8x64(both.AsUInt64(), order).AsByte() & low;
    }

    /// <summary>16 int32 lanes of blocks ib, ib + 1: Σ(nib − 8)·y per 4 bytes (the −8 part precomputed per activation block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lanes2(Vector512<byte> nib, Vector512<sbyte> yq, Vector512<short> y8, Vector512<short> ones) =>
        Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(nib, yq) - y8, ones));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scale2(BlockQ4_0* x, float dy0, float dy1) =>
        Vector512.Create(Vector256.Create(QuantMath.Fp16ToFp32Fast(x[0].D) * dy0), Vector256.Create(QuantMath.Fp16ToFp32Fast(x[1].D) * dy1));

    /// <summary>The odd last block, into the lower half only (AVX2's acc0), with AVX2's own operations.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LastBlock(Vector512<float> acc, BlockQ4_0* x, BlockQ8_0* y)
    {
        var packed = Vector128.Load(x->Qs);
        var bytes = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        var yq = Vector256.Load(y->Qs);
        var prod16 = Avx2.MultiplyAddAdjacent(bytes, yq) - Avx2.MultiplyAddAdjacent(Vector256.Create((byte)8), yq);
        var lanes = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(prod16, Vector256.Create((short)1)));
        var lower = Fma.MultiplyAdd(Vector256.Create(QuantMath.Fp16ToFp32Fast(x->D) * QuantMath.Fp16ToFp32Fast(y->D)), lanes, acc.GetLower());
        return acc.WithLower(lower);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Reduce(Vector512<float> acc) => Vector256.Sum(acc.GetLower() + acc.GetUpper());

    private static float Row1(int nb, BlockQ4_0* x, BlockQ8_0* y)
    {
        var low = Vector512.Create((byte)0x0F);
        var eight = Vector512.Create((byte)8);
        var ones = Vector512.Create((short)1);
        var order = PairOrder;
        var acc = Vector512<float>.Zero;
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            var yq = Vector512.Create(Vector256.Load(y[ib].Qs), Vector256.Load(y[ib + 1].Qs));
            var y8 = Avx512BW.MultiplyAddAdjacent(eight, yq);
            float dy0 = QuantMath.Fp16ToFp32Fast(y[ib].D), dy1 = QuantMath.Fp16ToFp32Fast(y[ib + 1].D);
            acc = Avx512F.FusedMultiplyAdd(Scale2(x + ib, dy0, dy1), Lanes2(Unpack2(x + ib, order, low), yq, y8, ones), acc);
        }
        if (ib < nb) acc = LastBlock(acc, x + ib, y + ib);
        return Reduce(acc);
    }

    private static void Rows4(int nb, byte* w, long rowBytes, BlockQ8_0* y, float* result)
    {
        var low = Vector512.Create((byte)0x0F);
        var eight = Vector512.Create((byte)8);
        var ones = Vector512.Create((short)1);
        var order = PairOrder;
        var x0 = (BlockQ4_0*)w;
        var x1 = (BlockQ4_0*)(w + rowBytes);
        var x2 = (BlockQ4_0*)(w + 2 * rowBytes);
        var x3 = (BlockQ4_0*)(w + 3 * rowBytes);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int ib = 0;
        for (; ib + 1 < nb; ib += 2)
        {
            // The activation pair and its −8·y correction, shared by the four rows.
            var yq = Vector512.Create(Vector256.Load(y[ib].Qs), Vector256.Load(y[ib + 1].Qs));
            var y8 = Avx512BW.MultiplyAddAdjacent(eight, yq);
            float dy0 = QuantMath.Fp16ToFp32Fast(y[ib].D), dy1 = QuantMath.Fp16ToFp32Fast(y[ib + 1].D);
            a0 = Avx512F.FusedMultiplyAdd(Scale2(x0 + ib, dy0, dy1), Lanes2(Unpack2(x0 + ib, order, low), yq, y8, ones), a0);
            a1 = Avx512F.FusedMultiplyAdd(Scale2(x1 + ib, dy0, dy1), Lanes2(Unpack2(x1 + ib, order, low), yq, y8, ones), a1);
            a2 = Avx512F.FusedMultiplyAdd(Scale2(x2 + ib, dy0, dy1), Lanes2(Unpack2(x2 + ib, order, low), yq, y8, ones), a2);
            a3 = Avx512F.FusedMultiplyAdd(Scale2(x3 + ib, dy0, dy1), Lanes2(Unpack2(x3 + ib, order, low), yq, y8, ones), a3);
        }
        if (ib < nb)
        {
            a0 = LastBlock(a0, x0 + ib, y + ib);
            a1 = LastBlock(a1, x1 + ib, y + ib);
            a2 = LastBlock(a2, x2 + ib, y + ib);
            a3 = LastBlock(a3, x3 + ib, y + ib);
        }
        result[0] = Reduce(a0);
        result[1] = Reduce(a1);
        result[2] = Reduce(a2);
        result[3] = Reduce(a3);
    }

    /// <summary>
    /// True when <paramref name="generic"/> (the registered Q4_0 format) gives these kernels' bits on
    /// a probe of random rows (odd and even block counts, extreme activations included): the
    /// specialized path promises the generic path's results, so a change of the generic kernel's
    /// summation order switches these kernels off rather than silently changing the logits.
    /// </summary>
    public static bool AgreesWith(WeightFormat generic)
    {
        if (!IsSupported || generic.Type != GgmlType.Q4_0 || generic.VecDotType != GgmlType.Q8_0) return false;
        var rng = new Random(12345);
        const int ProbeRows = 5;
        float* mine = stackalloc float[ProbeRows];
        foreach (int n in new[] { 7 * QK, 64 * QK })
        {
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            var w = new byte[ProbeRows * rowBytes];
            var act = new byte[actBytes];
            var x = new float[n];
            fixed (byte* wp = w)
            fixed (byte* ap = act)
            fixed (float* xp = x)
            {
                for (int r = 0; r < ProbeRows; r++)
                {
                    for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + r);
                    Q4_0Ref(xp, wp + r * rowBytes, n);
                }
                for (int i = 0; i < n; i++) x[i] = i % 29 == 0 ? -1000f : (float)(rng.NextDouble() * 2 - 1);
                ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, xp, ap, n);
                Rows(n, wp, rowBytes, ProbeRows, ap, mine);
                for (int r = 0; r < ProbeRows; r++)
                    if (BitConverter.SingleToInt32Bits(mine[r]) != BitConverter.SingleToInt32Bits(generic.VecDot(n, wp + r * rowBytes, ap))) return false;
            }
        }
        return true;
    }

    /// <summary>Any valid Q4_0 row will do for the probe: scale from the largest magnitude, nibbles by rounding.</summary>
    private static void Q4_0Ref(float* x, byte* dst, int n)
    {
        var b = (BlockQ4_0*)dst;
        for (int i = 0; i < n / QK; i++)
        {
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = MathF.Max(amax, MathF.Abs(x[i * QK + j]));
            float d = amax / 8, id = d != 0 ? 1 / d : 0;
            b[i].D = QuantMath.Fp32ToFp16(d);
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = Math.Clamp((int)MathF.Round(x[i * QK + j] * id) + 8, 0, 15);
                int q1 = Math.Clamp((int)MathF.Round(x[i * QK + j + QK / 2] * id) + 8, 0, 15);
                b[i].Qs[j] = (byte)(q0 | q1 << 4);
            }
        }
    }
}

/// <summary>
/// Q4_0 through <see cref="Q4_0Avx512"/>: what <see cref="SpecializedKernels.Format"/> hands the
/// generated code for Q4_0 weights when the CPU has AVX-512BW and the kernels agree with the
/// registered format. Dequantization is the registered format's.
/// </summary>
internal sealed unsafe class Q4_0Avx512Format(WeightFormat generic) : WeightFormat
{
    public override GgmlType Type => GgmlType.Q4_0;
    public override GgmlType VecDotType => GgmlType.Q8_0;
    public override void DequantizeRow(byte* src, float* dst, long n) => generic.DequantizeRow(src, dst, n);

    public override float VecDot(int n, byte* weights, byte* activations)
    {
        float y;
        Q4_0Avx512.Rows(n, weights, 0, 1, activations, &y);
        return y;
    }

    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        Q4_0Avx512.Tile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride);

    /// <summary>y[r] = VecDot(row r, act) for consecutive rows: the decode product, four rows per activation load.</summary>
    public override void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y) =>
        Q4_0Avx512.Rows(n, weights, rowBytes, nRows, activations, y);
}
