using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Kernels;

/// <summary>
/// Fused multiply-add of four floats, rounded once, on x64 CPUs without an FMA instruction (the
/// <c>x64-portable</c> build, x86-64-v2: NativeAOT compiles <c>Fma.IsSupported</c> as false there
/// even on a CPU that has it). The attention defines its sums as fused chains so that every width
/// gives the same bits (<see cref="Attention"/>'s remarks); without the instruction .NET computes
/// <see cref="Vector128.FusedMultiplyAdd(Vector128{float}, Vector128{float}, Vector128{float})"/>
/// one lane at a time through the C library's <c>fmaf</c>, and a qwen2.5-0.5b pp512 spent 21.8 s of
/// its 31 s in attention on the portable build (0.47 s on the x64-avx2 build of the same machine).
/// </summary>
/// <remarks>
/// Written by hand because no library offers a vector FMA that is exact without the instruction.
/// The method: a·b is exact in double (24 + 24 significant bits ≤ 53); the sum a·b + c is rounded
/// to double with round-to-odd (round to nearest, then, when the sum was inexact and the result's
/// last bit is even, one ulp towards the exact sum, which the TwoSum error term gives); the final
/// conversion to float rounds to nearest. Rounding to odd in a precision of at least 2·24 + 2 bits
/// followed by rounding to nearest is the correctly rounded result (Boldo and Melquiond, "Emulation
/// of FMA and correctly rounded sums: proved algorithms using rounding to odd", IEEE TC 2008), so
/// the bits are those of a hardware FMA, which <c>ExactFmaTests</c> checks against it.
/// </remarks>
internal static class ExactFma
{
    /// <summary>
    /// a·b + c rounded once: the FMA instruction where the CPU (as compiled) has one, or AdvSimd's, else
    /// <see cref="MultiplyAddEmulated"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Fma.IsSupported || AdvSimd.IsSupported || !Sse2.IsSupported
            ? Vector128.FusedMultiplyAdd(a, b, c)
            : MultiplyAddEmulated(a, b, c);

    /// <summary>
    /// The same for eight floats: the FMA instruction, else <see cref="MultiplyAddEmulated(Vector256{float}, Vector256{float}, Vector256{float})"/>
    /// (an x64 CPU with AVX but no FMA, Sandy and Ivy Bridge, under the JIT; NativeAOT's x64-avx2 and
    /// x64-avx512 targets include FMA).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported || !Sse2.IsSupported
            ? Vector256.FusedMultiplyAdd(a, b, c)
            : MultiplyAddEmulated(a, b, c);

    /// <summary><see cref="MultiplyAddEmulated(Vector128{float}, Vector128{float}, Vector128{float})"/> on each half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAddEmulated(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Vector256.Create(
            MultiplyAddEmulated(a.GetLower(), b.GetLower(), c.GetLower()),
            MultiplyAddEmulated(a.GetUpper(), b.GetUpper(), c.GetUpper()));

    /// <summary>a·b + c rounded once, in double arithmetic with rounding to odd (see the remarks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAddEmulated(Vector128<float> a, Vector128<float> b, Vector128<float> c)
    {
        var lo = SumRoundedToOdd(Vector128.WidenLower(a) * Vector128.WidenLower(b), Vector128.WidenLower(c));
        var hi = SumRoundedToOdd(Vector128.WidenUpper(a) * Vector128.WidenUpper(b), Vector128.WidenUpper(c));
        return Vector128.Narrow(lo, hi);
    }

    /// <summary>p + c rounded to odd: the nearest double, moved one ulp towards the exact sum when that was inexact and even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<double> SumRoundedToOdd(Vector128<double> p, Vector128<double> c)
    {
        var s = p + c;
        // TwoSum: s + e is exactly p + c (no overflow: both come from floats).
        var bb = s - p;
        var e = (p - (s - bb)) + (c - bb);
        var bits = s.AsInt64();
        var inexactEven = ~Vector128.Equals(e, Vector128<double>.Zero).AsInt64()
            & Vector128.Equals(bits & Vector128<long>.One, Vector128<long>.Zero)
            & Vector128.LessThan(Vector128.Abs(s), Vector128.Create(double.PositiveInfinity)).AsInt64(); // not for inf or NaN
        // Towards e: a larger magnitude (bits + 1) when e has s's sign, else a smaller one (bits − 1).
        var step = Vector128.ConditionalSelect(Vector128.LessThan(bits ^ e.AsInt64(), Vector128<long>.Zero), Vector128.Create(-1L), Vector128<long>.One);
        return (bits + (step & inexactEven)).AsDouble();
    }
}
