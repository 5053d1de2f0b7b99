using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Quant;

/// <summary>
/// Helpers shared by the block formats: ggml's f16 conversions and the 32-lane int8 dot products
/// the SIMD kernels reduce each block to.
/// </summary>
internal static class QuantMath
{
    /// <summary>
    /// f16 bits to f32 (exact), as GGML_FP16_TO_FP32: a lookup in the table of every f16 value
    /// (<see cref="Fp16ToFp32Fast"/>), which holds .NET's own cast of each, so the value is the
    /// cast's. The per-block kernels of the NEON and Vector128 paths (and the references) convert
    /// two scales per 32 values, and the cast is a software routine: on the linux-arm64 NativeAOT
    /// build a call to 25 instructions, twice per block in the NEON decode loop, where the lookup
    /// is a load. Measured on the x64 stand-in for that path (the JIT with DOTNET_EnableAVX2=0, 2
    /// threads, `edgellm bench -p 0 -n 16`, 2026-11-30, cast / table alternated): TinyLlama Q4_0 tg16
    /// 4.37/5.78, 4.80/5.50 t/s, Q8_0 3.95/5.76, 3.46/6.02 t/s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fp16ToFp32(ushort h) => Fp16ToFp32Fast(h);

    /// <summary>
    /// True when no quant of <paramref name="rows"/> Q8_0 activation rows (<paramref name="nb"/> blocks,
    /// <paramref name="stride"/> bytes apart) is -128. The AVX2 tiles that multiply |w| by sign(a, w)
    /// (<c>Q8_0x8.Group4W</c>, <c>IQ4_NLx8.Group4W</c>) are exact only without it; ggml's Q8_0 quantizer
    /// (round(x·127/amax)) writes ±127 at most, so activations from <see cref="ActivationQuantizer"/>
    /// always pass. Scanning four rows costs about 1% of the product they feed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe bool NoMinus128(byte* acts, long stride, int rows, int nb)
    {
        var min = Vector256.Create(sbyte.MinValue);
        var hit = Vector256<sbyte>.Zero;
        for (int a = 0; a < rows; a++)
        {
            var blocks = (BlockQ8_0*)(acts + a * stride);
            for (int ib = 0; ib < nb; ib++)
                hit |= Vector256.Equals(Vector256.Load(blocks[ib].Qs), min);
        }
        return hit == Vector256<sbyte>.Zero;
    }

    /// <summary>f16 bits to f32 through the table (bit-identical to <see cref="Fp16ToFp32"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Fp16ToFp32Fast(ushort h) => LookupTables.Fp16[h];

    /// <summary>
    /// f32 to f16 bits, rounding to nearest even as GGML_FP32_TO_FP16 does (F16C <c>_cvtss_sh(x, 0)</c>
    /// and ggml's scalar fallback both round to nearest even; .NET's (Half) cast does too).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fp32ToFp16(float f) => BitConverter.HalfToUInt16Bits((Half)f);

    /// <summary>
    /// f16 bit patterns (the low 16 bits of each int32 lane) as f32, exact for every finite half
    /// (bit-identical to <see cref="Fp16ToFp32"/>; inf/NaN are not handled, callers refuse them).
    /// Normal halves are rebiased with integer steps alone; subnormal ones (and zero) are their 10-bit
    /// mantissa converted to float and scaled by 2^-24, a product that is itself normal. No float
    /// instruction ever sees a subnormal operand: on x86 each one costs a microcode assist of about a
    /// hundred cycles, which is what the older trick (magnitude bits × 2^112) paid on every block of a
    /// matrix with tiny scales. Measured on TinyLlama-shape synthetic Q8_0, whose ffn_down scales
    /// are all fp16-subnormal: q8_0x8 decode over those matrices 4.2 → 9.7 GB/s (2026-11-29).
    /// Real files have them too: a Q4_K super-block scale is max(sub-block scale)/63, easily below 2^-14.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfBitsToSingle(Vector256<int> h)
    {
        var abs = h & Vector256.Create(0x7FFF);
        var normal = (Vector256.ShiftLeft(abs, 13) + Vector256.Create(0x38000000)).AsSingle(); // exponent 15 -> 127
        var small = Vector256.ConvertToSingle(abs) * Vector256.Create(0x33800000).AsSingle(); // 2^-24
        var mag = Vector256.ConditionalSelect(Vector256.LessThan(abs, Vector256.Create(0x0400)).AsSingle(), small, normal);
        return (mag.AsInt32() | Vector256.ShiftLeft(h & Vector256.Create(0x8000), 16)).AsSingle();
    }

    /// <summary><see cref="HalfBitsToSingle(Vector256{int})"/> on sixteen lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfBitsToSingle(Vector512<int> h)
    {
        var abs = h & Vector512.Create(0x7FFF);
        var normal = (Vector512.ShiftLeft(abs, 13) + Vector512.Create(0x38000000)).AsSingle();
        var small = Vector512.ConvertToSingle(abs) * Vector512.Create(0x33800000).AsSingle();
        var mag = Vector512.ConditionalSelect(Vector512.LessThan(abs, Vector512.Create(0x0400)).AsSingle(), small, normal);
        return (mag.AsInt32() | Vector512.ShiftLeft(h & Vector512.Create(0x8000), 16)).AsSingle();
    }

    /// <summary>f32 rounded through f16 and back: the value a stored scale really has.</summary>
    public static float RoundTripFp16(float f) => Fp16ToFp32(Fp32ToFp16(f));

    /// <summary>
    /// Σ a[i]·b[i] over 32 int8 lanes with AVX2: sign-extend each half to 16 lanes of int16, then
    /// <c>vpmaddwd</c> multiplies pairs and adds adjacent products into int32 (no overflow: |a·b| ≤ 128·128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int DotI8Avx2(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1)
    {
        var p0 = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(a0), Avx2.ConvertToVector256Int16(b0));
        var p1 = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(a1), Avx2.ConvertToVector256Int16(b1));
        return Vector256.Sum(Avx2.Add(p0, p1));
    }

    /// <summary>Σ a[i]·b[i] over 32 int8 lanes with portable Vector128 operations (widen to int16, multiply, widen to int32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int DotI8Vector128(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1) =>
        Vector128.Sum(DotI8Vector128Lanes(a0, a1, b0, b1));

    /// <summary>
    /// <see cref="DotI8Vector128"/> before its final sum across the four lanes. On x64 (SSE4.1, every
    /// x86-64-v2 CPU) each 8-byte half is sign-extended to int16 (<c>pmovsxbw</c>) and multiplied and
    /// pair-added into int32 by <c>pmaddwd</c>, where the portable steps multiply in int16 and widen
    /// the products to int32 separately (TinyLlama Q4_0 pp32 on 2 threads with AVX2 switched off,
    /// 2026-11-30: 12.3–12.6 → 19.9–21.1 t/s, README "arm64 (NEON)"). Exact
    /// for any int8 on both sides (|a·b| ≤ 2^14, a pair ≤ 2^15), so which products share a lane
    /// changes nothing: callers only use the lanes' total, or add lanes pairwise into block totals.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> DotI8Vector128Lanes(Vector128<sbyte> a0, Vector128<sbyte> a1, Vector128<sbyte> b0, Vector128<sbyte> b1)
    {
        if (Sse41.IsSupported)
        {
            var p0 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(a0), Sse41.ConvertToVector128Int16(b0));
            var p1 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(a0, 8)), Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(b0, 8)));
            var p2 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(a1), Sse41.ConvertToVector128Int16(b1));
            var p3 = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(a1, 8)), Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(b1, 8)));
            return (p0 + p1) + (p2 + p3);
        }
        var (a0l, a0h) = Vector128.Widen(a0);
        var (a1l, a1h) = Vector128.Widen(a1);
        var (b0l, b0h) = Vector128.Widen(b0);
        var (b1l, b1h) = Vector128.Widen(b1);
        // |a·b| ≤ 128·128 = 16384 fits int16; the widening to int32 happens before any addition.
        return Widen32(a0l * b0l) + Widen32(a0h * b0h) + Widen32(a1l * b1l) + Widen32(a1h * b1h);

        static Vector128<int> Widen32(Vector128<short> v)
        {
            var (lo, hi) = Vector128.Widen(v);
            return lo + hi;
        }
    }

    /// <summary>Loads the two 16-byte halves of a 32-value int8 quant array.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe (Vector128<sbyte> Lo, Vector128<sbyte> Hi) LoadI8x32(sbyte* p) =>
        (Vector128.Load(p), Vector128.Load(p + 16));

    /// <summary>
    /// Splits 16 packed bytes into the two nibble halves ggml's 32-value blocks use:
    /// byte j holds value j in its low nibble and value j+16 in its high nibble.
    /// <code>
    /// qs[j] = [ v(j+16) : 4 | v(j) : 4 ]   ->   lo = v(0..15), hi = v(16..31)
    /// </code>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe (Vector128<byte> Lo, Vector128<byte> Hi) Nibbles(byte* qs)
    {
        var q = Vector128.Load(qs);
        var mask = Vector128.Create((byte)0x0F);
        return (q & mask, Vector128.ShiftRightLogical(q, 4));
    }

    /// <summary>
    /// The fifth bits of a Q5 block: bit j of the 32-bit <c>qh</c> becomes 0x10 in byte j (j = 0..31).
    /// Done with a 256-entry table that expands one byte of qh into 8 bytes of 0x00/0x10.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe (Vector128<byte> Lo, Vector128<byte> Hi) Q5HighBits(uint qh)
    {
        ulong* t = LookupTables.BitTo0x10;
        var lo = Vector128.Create(t[qh & 0xFF], t[(qh >> 8) & 0xFF]).AsByte();
        var hi = Vector128.Create(t[(qh >> 16) & 0xFF], t[qh >> 24]).AsByte();
        return (lo, hi);
    }

    /// <summary>Throws unless <paramref name="n"/> is a whole number of <paramref name="block"/>-value blocks.</summary>
    public static void CheckBlocks(long n, int block, string type)
    {
        if (n < 0 || n % block != 0)
            throw new ArgumentException($"{type}: row length {n} is not a multiple of the block size {block}");
    }
}
