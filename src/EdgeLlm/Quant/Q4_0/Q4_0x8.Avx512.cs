using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

internal static unsafe partial class Q4_0x8
{
    /// <summary>
    /// The prompt tile takes two groups (16 rows) per 512-bit register when the CPU has AVX-512BW:
    /// each byte multiply-add then does the work of two AVX2 ones.
    /// </summary>
    internal static bool UseAvx512Tile => IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// Two groups (<paramref name="groupBytes"/> apart, rows 0..15) against four activation rows (<see cref="Group8x2Avx512"/>: eight).
    /// The low 256-bit half of every register holds the first group's lanes exactly as
    /// <see cref="Group4"/> holds them, the high half the second group's, and the activation
    /// bytes are broadcast to both halves; per (row, activation) the integer sums, the scale
    /// product and the fused multiply-adds into the even/odd accumulators are <see cref="Group4"/>'s,
    /// so the results are bit for bit those of <see cref="DotRows"/>. The 16 results of one
    /// activation are contiguous in <paramref name="y"/> (the second group's rows follow the first's).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Group4x2Avx512(byte* g, long groupBytes, int nb, byte* acts, long actStride, int* corr, float* dy, float* y, long yStride)
    {
        var m = Vector512.Create((byte)0x0F);
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
        var a0 = (BlockQ8_0*)acts;
        var a1 = (BlockQ8_0*)(acts + actStride);
        var a2 = (BlockQ8_0*)(acts + 2 * actStride);
        var a3 = (BlockQ8_0*)(acts + 3 * actStride);
        byte* h = g + groupBytes;
        for (int k = 0; k < nb; k++)
        {
            long off = (long)k * GroupBlockBytes;
            byte* og = g + off, oh = h + off;
            var v0 = Load2(og + 16, oh + 16);
            var v1 = Load2(og + 48, oh + 48);
            var v2 = Load2(og + 80, oh + 80);
            var v3 = Load2(og + 112, oh + 112);
            var lo0 = v0 & m; var hi0 = Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
            var lo1 = v1 & m; var hi1 = Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
            var lo2 = v2 & m; var hi2 = Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m;
            var lo3 = v3 & m; var hi3 = Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m;
            var dx = Scales16(og, oh);
            if ((k & 1) == 0)
            {
                e0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a0[k].Qs) - Vector512.Create(corr[k])), e0);
                e1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a1[k].Qs) - Vector512.Create(corr[nb + k])), e1);
                e2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[2 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a2[k].Qs) - Vector512.Create(corr[2 * nb + k])), e2);
                e3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[3 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a3[k].Qs) - Vector512.Create(corr[3 * nb + k])), e3);
            }
            else
            {
                o0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a0[k].Qs) - Vector512.Create(corr[k])), o0);
                o1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a1[k].Qs) - Vector512.Create(corr[nb + k])), o1);
                o2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[2 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a2[k].Qs) - Vector512.Create(corr[2 * nb + k])), o2);
                o3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[3 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, a3[k].Qs) - Vector512.Create(corr[3 * nb + k])), o3);
            }
        }
        (e0 + o0).Store(y);
        (e1 + o1).Store(y + yStride);
        (e2 + o2).Store(y + 2 * yStride);
        (e3 + o3).Store(y + 3 * yStride);
    }

    /// <summary>
    /// <see cref="Group4x2Avx512"/> for eight activation rows: each unpacked block pair meets twice
    /// as many activations (AVX-512 has 32 registers: 16 accumulators, 8 unpacked weights).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Group8x2Avx512(byte* g, long groupBytes, int nb, byte* acts, long actStride, int* corr, float* dy, float* y, long yStride)
    {
        var m = Vector512.Create((byte)0x0F);
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default, e4 = default, e5 = default, e6 = default, e7 = default;
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
        byte* h = g + groupBytes;
        for (int k = 0; k < nb; k++)
        {
            long off = (long)k * GroupBlockBytes;
            byte* og = g + off, oh = h + off;
            var v0 = Load2(og + 16, oh + 16);
            var v1 = Load2(og + 48, oh + 48);
            var v2 = Load2(og + 80, oh + 80);
            var v3 = Load2(og + 112, oh + 112);
            var lo0 = v0 & m; var hi0 = Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
            var lo1 = v1 & m; var hi1 = Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
            var lo2 = v2 & m; var hi2 = Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m;
            var lo3 = v3 & m; var hi3 = Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m;
            var dx = Scales16(og, oh);
            if ((k & 1) == 0)
            {
                e0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[0 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 0 * actStride))[k].Qs) - Vector512.Create(corr[0 * nb + k])), e0);
                e1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[1 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 1 * actStride))[k].Qs) - Vector512.Create(corr[1 * nb + k])), e1);
                e2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[2 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 2 * actStride))[k].Qs) - Vector512.Create(corr[2 * nb + k])), e2);
                e3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[3 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 3 * actStride))[k].Qs) - Vector512.Create(corr[3 * nb + k])), e3);
                e4 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[4 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 4 * actStride))[k].Qs) - Vector512.Create(corr[4 * nb + k])), e4);
                e5 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[5 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 5 * actStride))[k].Qs) - Vector512.Create(corr[5 * nb + k])), e5);
                e6 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[6 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 6 * actStride))[k].Qs) - Vector512.Create(corr[6 * nb + k])), e6);
                e7 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[7 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 7 * actStride))[k].Qs) - Vector512.Create(corr[7 * nb + k])), e7);
            }
            else
            {
                o0 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[0 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 0 * actStride))[k].Qs) - Vector512.Create(corr[0 * nb + k])), o0);
                o1 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[1 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 1 * actStride))[k].Qs) - Vector512.Create(corr[1 * nb + k])), o1);
                o2 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[2 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 2 * actStride))[k].Qs) - Vector512.Create(corr[2 * nb + k])), o2);
                o3 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[3 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 3 * actStride))[k].Qs) - Vector512.Create(corr[3 * nb + k])), o3);
                o4 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[4 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 4 * actStride))[k].Qs) - Vector512.Create(corr[4 * nb + k])), o4);
                o5 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[5 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 5 * actStride))[k].Qs) - Vector512.Create(corr[5 * nb + k])), o5);
                o6 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[6 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 6 * actStride))[k].Qs) - Vector512.Create(corr[6 * nb + k])), o6);
                o7 = Avx512F.FusedMultiplyAdd(dx * Vector512.Create(dy[7 * nb + k]), Avx512F.ConvertToVector512Single(RawSums16(lo0, hi0, lo2, hi2, lo1, hi1, lo3, hi3, ((BlockQ8_0*)(acts + 7 * actStride))[k].Qs) - Vector512.Create(corr[7 * nb + k])), o7);
            }
        }
        (e0 + o0).Store(y + 0 * yStride);
        (e1 + o1).Store(y + 1 * yStride);
        (e2 + o2).Store(y + 2 * yStride);
        (e3 + o3).Store(y + 3 * yStride);
        (e4 + o4).Store(y + 4 * yStride);
        (e5 + o5).Store(y + 5 * yStride);
        (e6 + o6).Store(y + 6 * yStride);
        (e7 + o7).Store(y + 7 * yStride);
    }

    /// <summary>
    /// The decode product of two groups (<paramref name="groupBytes"/> apart, rows 0..15) against one
    /// activation row: <see cref="Group2"/>'s work in one 512-bit register per step, the results of
    /// both groups contiguous in <paramref name="y"/>. Per row the arithmetic is <see cref="Group1"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too big to inline: compiled fully optimized at once, never at tier 0
    private static void Rows16Avx512(byte* g, long groupBytes, int nb, BlockQ8_0* a, int* corr, float* dy, float* y)
    {
        var m = Vector512.Create((byte)0x0F);
        Vector512<float> even = default, odd = default;
        byte* h = g + groupBytes;
        var ahead = new PairPrefetch(groupBytes);
        for (int k = 0; k < nb; k++)
        {
            long off = (long)k * GroupBlockBytes;
            byte* og = g + off, oh = h + off;
            long pf = ahead.Ahead(off, DecodePrefetchBytes);
            Prefetch(g + pf);
            Prefetch(h + pf);
            var v0 = Load2(og + 16, oh + 16);
            var v1 = Load2(og + 48, oh + 48);
            var v2 = Load2(og + 80, oh + 80);
            var v3 = Load2(og + 112, oh + 112);
            var isum = RawSums16(v0 & m, Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m, v2 & m, Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & m,
                v1 & m, Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m, v3 & m, Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & m, a[k].Qs)
                - Vector512.Create(corr[k]);
            var scale = Scales16(og, oh) * Vector512.Create(dy[k]);
            if ((k & 1) == 0) even = Avx512F.FusedMultiplyAdd(scale, Avx512F.ConvertToVector512Single(isum), even);
            else odd = Avx512F.FusedMultiplyAdd(scale, Avx512F.ConvertToVector512Single(isum), odd);
        }
        (even + odd).Store(y);
    }

    /// <summary>32 bytes at <paramref name="lo"/> (first group) and at <paramref name="hi"/> (second group) as one register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Load2(byte* lo, byte* hi) =>
        // One vinserti64x4; Vector512.Create(lo, hi) goes through a stack temporary.
        Avx512F.InsertVector256(Vector256.Load(lo).ToVector512Unsafe(), Vector256.Load(hi), 1);

    /// <summary><see cref="Scales"/> of two groups' blocks: the first group's eight rows in the low half, the second's in the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales16(byte* dg, byte* dh)
    {
        var h = Avx512F.ConvertToVector512Int32(Avx2.InsertVector128(Vector128.Load((ushort*)dg).ToVector256Unsafe(), Vector128.Load((ushort*)dh), 1));
        return QuantMath.HalfBitsToSingle(h);
    }

    /// <summary>
    /// <see cref="RawSums"/> for two groups at once. AVX-512 has no <c>vphaddd</c>; the same
    /// in-lane pairing [x0+x1, x2+x3, y0+y1, y2+y3] comes from two <c>vshufps</c> and an add
    /// (exact integer adds, so the sums equal the AVX2 ones).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> RawSums16(Vector512<byte> lo0, Vector512<byte> hi0, Vector512<byte> lo2, Vector512<byte> hi2,
        Vector512<byte> lo1, Vector512<byte> hi1, Vector512<byte> lo3, Vector512<byte> hi3, sbyte* aq)
    {
        var b0 = Vector512.Create(*(long*)aq).AsSByte();
        var b1 = Vector512.Create(*(long*)(aq + 8)).AsSByte();
        var b2 = Vector512.Create(*(long*)(aq + 16)).AsSByte();
        var b3 = Vector512.Create(*(long*)(aq + 24)).AsSByte();
        var p = Avx512BW.MultiplyAddAdjacent(lo0, b0) + Avx512BW.MultiplyAddAdjacent(lo2, b1) + Avx512BW.MultiplyAddAdjacent(hi0, b2) + Avx512BW.MultiplyAddAdjacent(hi2, b3);
        var q = Avx512BW.MultiplyAddAdjacent(lo1, b0) + Avx512BW.MultiplyAddAdjacent(lo3, b1) + Avx512BW.MultiplyAddAdjacent(hi1, b2) + Avx512BW.MultiplyAddAdjacent(hi3, b3);
        var ones = Vector512.Create((short)1);
        var x = Avx512BW.MultiplyAddAdjacent(p, ones).AsSingle();
        var z = Avx512BW.MultiplyAddAdjacent(q, ones).AsSingle();
        return Avx512F.Shuffle(x, z, 0b10_00_10_00).AsInt32() + Avx512F.Shuffle(x, z, 0b11_01_11_01).AsInt32();
    }
}
