using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Kernels;

/// <summary>
/// e^x in single precision, the algorithm ggml's softmax uses (ggml_v_expf, adapted there from Arm's
/// optimized-routines): x = n·ln2 + b with n = round(x·log2 e) found by the 1.5·2²³ shifter and ln2 in
/// two parts, e^b by a degree-5 polynomial, 2ⁿ built in the exponent bits; |n| > 126 scales in two
/// steps, |n| > 192 saturates to 0 or ∞. Its error is at most about 2 ulp (see <c>ExpFTests</c>),
/// against 1 ulp for .NET's <see cref="Vector256.Exp(Vector256{float})"/>, which computes in double:
/// this takes ~20 single-precision instructions per vector where that took four times as many
/// (2.8% + 2.4% of a 2048-token qwen2.5-0.5b prompt in perf, mostly in the softmax's exp).
/// </summary>
/// <remarks>
/// Every vector width and the scalar form compute the same operations, so they give the same bits
/// (tests compare them on millions of inputs). Where the machine has a fused multiply-add
/// (x86 FMA, every ARM64), each multiply-add is fused, as in ggml's AVX2, AVX-512 and NEON builds;
/// where it has not (the x86-64-v2 build), a multiply then an add, as in ggml's SSE2 build
/// (<see cref="Fused"/>; a software-exact fused multiply-add would cost more than the whole exp).
/// Written from the algorithm and its published constants, not from ggml's code.
/// </remarks>
internal static class ExpF
{
    // The constants, whose exact values are the hexadecimal floats 0x1.8p23 (the round-to-integer
    // shifter), 0x1.715476p+0 (log2 e), ln2 = 0x1.62e4p-1 + 0x1.7f7d1cp-20, and the polynomial
    // e^b − 1 ≈ C1·b + C2·b² + C3·b³ + C4·b⁴ + C5·b⁵ with C1..C5 = 0x1.ffffecp-1, 0x1.fffdb6p-2,
    // 0x1.555e66p-3, 0x1.573e2ep-5, 0x1.0e4020p-7 (C# has no hexadecimal float literal; each decimal
    // below is its float exactly, which ExpFTests checks bit by bit).
    internal const float Shifter = 12582912f;
    internal const float Log2E = 1.4426950216293335f;
    internal const float Ln2Hi = 0.693145751953125f;
    internal const float Ln2Lo = 1.428606765330187e-06f;
    internal const float C1 = 0.9999994039535522f;
    internal const float C2 = 0.4999912679195404f;
    internal const float C3 = 0.16668395698070526f;
    internal const float C4 = 0.04189976677298546f;
    internal const float C5 = 0.008247390389442444f;

    private const uint OneBits = 0x3F800000;
    private const uint BigScaleBits = 0x7F000000; // 2¹²⁷
    private const uint SmallScaleOffset = 0x82000000; // moves 2¹²⁷ to 2⁻¹²⁵ and the exponent the other way

    /// <summary>Whether this machine's vectors fuse the multiply-adds (see the remarks).</summary>
    public static bool Fused => Fma.IsSupported || AdvSimd.Arm64.IsSupported;

    /// <summary>e^x by the scalar steps, fused or not (<see cref="Fused"/> for what the vector forms do here).</summary>
    public static float Scalar(float x, bool fused)
    {
        float z = Mad(x, Log2E, Shifter, fused);
        float n = z - Shifter;
        float b = Mad(-n, Ln2Lo, Mad(-n, Ln2Hi, x, fused), fused);
        uint e = BitConverter.SingleToUInt32Bits(z) << 23;
        float k = BitConverter.UInt32BitsToSingle(e + OneBits);
        float u = b * b;
        float j = Mad(Mad(Mad(C5, b, C4, fused), u, Mad(C3, b, C2, fused), fused), u, C1 * b, fused);
        if (!(MathF.Abs(n) > 126)) return Mad(k, j, k, fused);
        uint g = n <= 0 ? SmallScaleOffset : 0;
        float s1 = BitConverter.UInt32BitsToSingle(g + BigScaleBits);
        float s2 = BitConverter.UInt32BitsToSingle(e - g);
        return MathF.Abs(n) > 192 ? s1 * s1 : Mad(s2, j, s2, fused) * s1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Mad(float a, float b, float c, bool fused) => fused ? MathF.FusedMultiplyAdd(a, b, c) : a * b + c;

    /// <summary>e^x for 16 lanes, fused (<see cref="Fused"/>) or not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x, bool fused)
    {
        var shifter = Vector512.Create(Shifter);
        var z = Mad(x, Vector512.Create(Log2E), shifter, fused);
        var n = z - shifter;
        var b = Mad(-n, Vector512.Create(Ln2Lo), Mad(-n, Vector512.Create(Ln2Hi), x, fused), fused);
        var e = z.AsUInt32() << 23;
        var k = (e + Vector512.Create(OneBits)).AsSingle();
        var an = Vector512.Abs(n);
        var c = Vector512.GreaterThan(an, Vector512.Create(126f));
        var u = b * b;
        var j = Mad(Mad(Mad(Vector512.Create(C5), b, Vector512.Create(C4), fused), u, Mad(Vector512.Create(C3), b, Vector512.Create(C2), fused), fused), u, Vector512.Create(C1) * b, fused);
        var plain = Mad(k, j, k, fused);
        if (c == Vector512<float>.Zero) return plain;
        var g = Vector512.LessThanOrEqual(n, Vector512<float>.Zero).AsUInt32() & Vector512.Create(SmallScaleOffset);
        var s1 = (g + Vector512.Create(BigScaleBits)).AsSingle();
        var s2 = (e - g).AsSingle();
        var d = Vector512.GreaterThan(an, Vector512.Create(192f));
        return Vector512.ConditionalSelect(d, s1 * s1, Vector512.ConditionalSelect(c, Mad(s2, j, s2, fused) * s1, plain));
    }

    /// <summary>e^x for 8 lanes, fused (<see cref="Fused"/>) or not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x, bool fused)
    {
        var shifter = Vector256.Create(Shifter);
        var z = Mad(x, Vector256.Create(Log2E), shifter, fused);
        var n = z - shifter;
        var b = Mad(-n, Vector256.Create(Ln2Lo), Mad(-n, Vector256.Create(Ln2Hi), x, fused), fused);
        var e = z.AsUInt32() << 23;
        var k = (e + Vector256.Create(OneBits)).AsSingle();
        var an = Vector256.Abs(n);
        var c = Vector256.GreaterThan(an, Vector256.Create(126f));
        var u = b * b;
        var j = Mad(Mad(Mad(Vector256.Create(C5), b, Vector256.Create(C4), fused), u, Mad(Vector256.Create(C3), b, Vector256.Create(C2), fused), fused), u, Vector256.Create(C1) * b, fused);
        var plain = Mad(k, j, k, fused);
        if (c == Vector256<float>.Zero) return plain;
        var g = Vector256.LessThanOrEqual(n, Vector256<float>.Zero).AsUInt32() & Vector256.Create(SmallScaleOffset);
        var s1 = (g + Vector256.Create(BigScaleBits)).AsSingle();
        var s2 = (e - g).AsSingle();
        var d = Vector256.GreaterThan(an, Vector256.Create(192f));
        return Vector256.ConditionalSelect(d, s1 * s1, Vector256.ConditionalSelect(c, Mad(s2, j, s2, fused) * s1, plain));
    }

    /// <summary>e^x for 4 lanes, fused (<see cref="Fused"/>) or not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x, bool fused)
    {
        var shifter = Vector128.Create(Shifter);
        var z = Mad(x, Vector128.Create(Log2E), shifter, fused);
        var n = z - shifter;
        var b = Mad(-n, Vector128.Create(Ln2Lo), Mad(-n, Vector128.Create(Ln2Hi), x, fused), fused);
        var e = z.AsUInt32() << 23;
        var k = (e + Vector128.Create(OneBits)).AsSingle();
        var an = Vector128.Abs(n);
        var c = Vector128.GreaterThan(an, Vector128.Create(126f));
        var u = b * b;
        var j = Mad(Mad(Mad(Vector128.Create(C5), b, Vector128.Create(C4), fused), u, Mad(Vector128.Create(C3), b, Vector128.Create(C2), fused), fused), u, Vector128.Create(C1) * b, fused);
        var plain = Mad(k, j, k, fused);
        if (c == Vector128<float>.Zero) return plain;
        var g = Vector128.LessThanOrEqual(n, Vector128<float>.Zero).AsUInt32() & Vector128.Create(SmallScaleOffset);
        var s1 = (g + Vector128.Create(BigScaleBits)).AsSingle();
        var s2 = (e - g).AsSingle();
        var d = Vector128.GreaterThan(an, Vector128.Create(192f));
        return Vector128.ConditionalSelect(d, s1 * s1, Vector128.ConditionalSelect(c, Mad(s2, j, s2, fused) * s1, plain));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mad(Vector512<float> a, Vector512<float> b, Vector512<float> c, bool fused) =>
        fused ? Vector512.FusedMultiplyAdd(a, b, c) : a * b + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Mad(Vector256<float> a, Vector256<float> b, Vector256<float> c, bool fused) =>
        fused ? Vector256.FusedMultiplyAdd(a, b, c) : a * b + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Mad(Vector128<float> a, Vector128<float> b, Vector128<float> c, bool fused) =>
        fused ? Vector128.FusedMultiplyAdd(a, b, c) : a * b + c;
}
