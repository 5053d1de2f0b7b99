using EdgeLlm.Kernels;
using System.Runtime.Intrinsics;
using Xunit;

namespace EdgeLlm.Tests.Kernels;

/// <summary>Each vector path against its scalar reference, called directly (whatever the dispatcher picks).</summary>
public unsafe class SimdKernelTests
{
    /// <summary>RMSNorm: only the order of the double additions differs; after rounding to float the scale agrees to 1 ulp at most.</summary>
    private const float RmsNormUlpTolerance = 1;

    /// <summary>Vectorized exp (SwiGLU, softmax) against MathF.Exp: relative error bound.</summary>
    private const double ExpRelativeTolerance = 1e-6;

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void AssertUlps(float[] expected, float[] actual, float ulps, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            float tol = ulps * MathF.Max(float.Epsilon, MathF.BitIncrement(MathF.Abs(expected[i])) - MathF.Abs(expected[i])) * 2;
            Assert.True(MathF.Abs(expected[i] - actual[i]) <= tol, $"{what}[{i}]: {actual[i]} vs {expected[i]}");
        }
    }

    public static TheoryData<int> Lengths() => new() { 1, 7, 16, 64, 100, 2048, 5632 + 3 };

    [Theory]
    [MemberData(nameof(Lengths))]
    public void RmsNorm_VectorPaths_MatchReference(int n)
    {
        var x = Random(n, 1, 3f);
        var w = Random(n, 2);
        var expected = new float[n];
        fixed (float* px = x, pw = w, pe = expected)
        {
            RmsNorm.ForwardReference(px, pw, pe, n, 1e-5f);
            foreach (var path in new[] { "512", "256" })
            {
                if (path == "512" && !Vector512.IsHardwareAccelerated) continue;
                if (path == "256" && !Vector256.IsHardwareAccelerated) continue;
                var y = new float[n];
                fixed (float* py = y)
                {
                    if (path == "512") RmsNorm.ForwardVector512(px, pw, py, n, 1e-5f);
                    else RmsNorm.ForwardVector256(px, pw, py, n, 1e-5f);
                }
                AssertUlps(expected, y, RmsNormUlpTolerance, $"rmsnorm{path}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SwiGlu_VectorPaths_MatchReference(int n)
    {
        var gate = Random(n, 3, 8f);
        var up = Random(n, 4);
        var expected = (float[])gate.Clone();
        fixed (float* pe = expected, pu = up) Activations.SwiGluReference(pe, pu, n);
        foreach (int width in new[] { 512, 256 })
        {
            if (width == 512 ? !Vector512.IsHardwareAccelerated : !Vector256.IsHardwareAccelerated) continue;
            var g = (float[])gate.Clone();
            fixed (float* pg = g, pu = up)
            {
                if (width == 512) Activations.SwiGluVector512(pg, pu, n);
                else Activations.SwiGluVector256(pg, pu, n);
            }
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(g[i] - expected[i]) <= ExpRelativeTolerance * Math.Abs(expected[i]) + 1e-30, $"swiglu{width}[{i}]: {g[i]} vs {expected[i]}");
        }
    }

    /// <summary>
    /// GeGLU against ggml_vec_geglu_f32's definition written out per element (gelu's tanh form in float at the
    /// f16-rounded gate, rounded to f16; 0 from -10 down, the gate itself from 10 up): bit for bit, the
    /// gathered vector lanes and the scalar tail alike, edges included.
    /// </summary>
    [Theory]
    [MemberData(nameof(Lengths))]
    public void GeGlu_IsGgmlsTableGelu_BitForBit(int n)
    {
        var gate = Random(n, 7, 12f);
        float[] edges = [-10f, 10f, -10.0001f, 9.9999f, 0f, -0f, 65504f, -1e-8f, float.NaN, 1e30f];
        for (int i = 0; i < Math.Min(n, edges.Length); i++) gate[i * 7 % n] = edges[i];
        var up = Random(n, 8);
        var expected = new float[n];
        for (int i = 0; i < n; i++)
        {
            float x = gate[i];
            if (x <= -10f) { expected[i] = 0f; continue; }
            if (x >= 10f) { expected[i] = x * up[i]; continue; }
            float xh = (float)(Half)x;
            float g = 0.5f * xh * (1.0f + MathF.Tanh(0.79788456080286535587989211986876f * xh * (1.0f + 0.044715f * xh * xh)));
            expected[i] = (float)(Half)g * up[i];
        }
        fixed (float* pg = gate, pu = up) Activations.GeGlu(pg, pu, n);
        for (int i = 0; i < n; i++)
            Assert.True(BitConverter.SingleToInt32Bits(gate[i]) == BitConverter.SingleToInt32Bits(expected[i]), $"geglu[{i}]: {gate[i]} vs {expected[i]}");
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Add_IsExact(int n)
    {
        var x = Random(n, 5);
        var y = Random(n, 6);
        var expected = (float[])x.Clone();
        fixed (float* pe = expected, py = y) Activations.AddReference(pe, py, n);
        fixed (float* px = x, py = y) Activations.Add(px, py, n);
        Assert.Equal(expected, x);
    }

    [Theory]
    [InlineData(64, 64, false)]
    [InlineData(64, 64, true)]
    [InlineData(128, 128, false)]
    [InlineData(128, 64, true)]   // partial rotary: values past n_dims untouched
    public void Rope_Vector512_IsBitIdentical(int headDim, int nDims, bool neox)
    {
        if (!Vector512.IsHardwareAccelerated) return;
        const int heads = 5;
        var x = Random(heads * headDim, 7, 4f);
        var cos = new float[nDims / 2];
        var sin = new float[nDims / 2];
        fixed (float* pc = cos, ps = sin) Rope.Angles(37, nDims, 10000f, 1f, null, pc, ps);
        var expected = (float[])x.Clone();
        fixed (float* pe = expected, pc = cos, ps = sin) Rope.ApplyReference(pe, heads, headDim, nDims, pc, ps, neox);
        fixed (float* px = x, pc = cos, ps = sin) Rope.ApplyVector512(px, heads, headDim, nDims, pc, ps, neox);
        Assert.Equal(expected, x);
    }

    [Fact]
    public void HalfWidening_IsExact_ForEveryF16Value()
    {
        var all = new ushort[65536];
        for (int i = 0; i < all.Length; i++) all[i] = (ushort)i;
        fixed (ushort* p = all)
        {
            for (int i = 0; i < all.Length; i += 16)
            {
                var w512 = Vector512.IsHardwareAccelerated ? HalfMath.Widen512(Vector256.Load(p + i)) : default;
                var w256 = HalfMath.Widen256(Vector128.Load(p + i));
                var w128a = HalfMath.Widen128(p + i);
                var w128b = HalfMath.Widen128(p + i + 4);
                for (int j = 0; j < 16; j++)
                {
                    float expected = (float)BitConverter.UInt16BitsToHalf(all[i + j]);
                    uint e = BitConverter.SingleToUInt32Bits(expected);
                    if (Vector512.IsHardwareAccelerated)
                        Assert.True(float.IsNaN(expected) ? float.IsNaN(w512[j]) : BitConverter.SingleToUInt32Bits(w512[j]) == e, $"0x{all[i + j]:x4}: {w512[j]} vs {expected}");
                    if (j < 8)
                        Assert.True(float.IsNaN(expected) ? float.IsNaN(w256[j]) : BitConverter.SingleToUInt32Bits(w256[j]) == e, $"0x{all[i + j]:x4}: {w256[j]} vs {expected}");
                    if (j < 8)
                    {
                        float w128 = j < 4 ? w128a[j] : w128b[j - 4];
                        Assert.True(float.IsNaN(expected) ? float.IsNaN(w128) : BitConverter.SingleToUInt32Bits(w128) == e, $"0x{all[i + j]:x4}: {w128} vs {expected} (4 lanes)");
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(95)]
    [InlineData(65536)]
    public void HalfWiden_MatchesScalarCast(int n)
    {
        // Every bit pattern in turn (subnormals, infinities, NaNs) across vector bodies and tails.
        var h = new Half[n];
        for (int i = 0; i < n; i++) h[i] = BitConverter.UInt16BitsToHalf((ushort)(i * 40503 + 7));
        var got = new float[n];
        fixed (Half* ph = h)
        fixed (float* pg = got)
            HalfMath.Widen(ph, pg, n);
        for (int i = 0; i < n; i++)
        {
            float want = (float)h[i];
            Assert.True(float.IsNaN(want) ? float.IsNaN(got[i]) : BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(got[i]), $"{i}: {got[i]} vs {want}");
        }
    }

    [Fact]
    public void HalfWiden_NormalRuns_AndRunsWithOneSpecialValue_MatchTheScalarCast()
    {
        // Every normal half in order (whole vectors of them take Widen's short path), then each
        // special kind (±0, subnormals, ±inf, NaN payloads) placed at every position of a run of normals.
        var patterns = new List<ushort>();
        for (int b = 0; b < 0x10000; b++)
        {
            int e = (b >> 10) & 0x1F;
            if (e is not 0 and not 31) patterns.Add((ushort)b);
        }
        ushort[] specials = [0x0000, 0x8000, 0x0001, 0x83FF, 0x0200, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF];
        foreach (var sp in specials)
            for (int at = 0; at < 16; at++)
                for (int k = 0; k < 16; k++) patterns.Add(k == at ? sp : (ushort)(0x3C00 + 37 * k + at));
        int n = patterns.Count;
        var h = new Half[n];
        for (int i = 0; i < n; i++) h[i] = BitConverter.UInt16BitsToHalf(patterns[i]);
        var got = new float[n];
        var got32 = new float[n];
        fixed (Half* ph = h)
        fixed (float* pg = got, p32 = got32)
        {
            HalfMath.Widen(ph, pg, n);
            // The 512-bit steps, 32 at a time (emulated where AVX-512 is absent: the same results).
            for (int i = 0; i + 32 <= n; i += 32) HalfMath.Widen32((ushort*)ph + i, p32 + i);
        }
        for (int i = 0; i < n; i++)
        {
            float want = (float)h[i];
            Assert.True(float.IsNaN(want) ? float.IsNaN(got[i]) : BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(got[i]),
                $"0x{patterns[i]:x4} at {i}: {got[i]} vs {want}");
            if (i < n / 32 * 32)
                Assert.True(float.IsNaN(want) ? float.IsNaN(got32[i]) : BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(got32[i]),
                    $"0x{patterns[i]:x4} at {i}: {got32[i]} vs {want} (32 at a time)");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(33)]
    [InlineData(700)]
    public void Softmax_Vector512_MatchesReference(int n)
    {
        if (!Vector512.IsHardwareAccelerated) return;
        var x = Random(n, 10, 6f);
        float max = x.Max();
        var expected = (float[])x.Clone();
        fixed (float* pe = expected) Softmax.ExpNormalizeReference(pe, n, max);
        fixed (float* px = x) Softmax.ExpNormalizeVector512(px, n, max);
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(x[i] - expected[i]) <= 2 * ExpRelativeTolerance * expected[i] + 1e-30, $"softmax[{i}]: {x[i]} vs {expected[i]}");
        Assert.InRange(x.Sum(), 1 - 1e-5, 1 + 1e-5);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(33)]
    [InlineData(700)]
    [InlineData(2049)]
    public void Softmax_Vector256And128_MatchReference(int n)
    {
        var x = Random(n, 12, 6f);
        float max = x.Max();
        var expected = (float[])x.Clone();
        fixed (float* pe = expected) Softmax.ExpNormalizeReference(pe, n, max);
        foreach (int lanes in new[] { 8, 4 })
        {
            if (lanes == 8 ? !Vector256.IsHardwareAccelerated : !Vector128.IsHardwareAccelerated) continue;
            var y = (float[])x.Clone();
            fixed (float* py = y)
            {
                if (lanes == 8) Softmax.ExpNormalizeVector256(py, n, max);
                else Softmax.ExpNormalizeVector128(py, n, max);
            }
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(y[i] - expected[i]) <= 2 * ExpRelativeTolerance * expected[i] + 1e-30, $"{lanes} lanes, softmax[{i}]: {y[i]} vs {expected[i]}");
            Assert.InRange(y.Sum(), 1 - 1e-5, 1 + 1e-5);
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(300)]
    public void HalfRoundInPlace_MatchesScalarCast(int n)
    {
        var x = Random(n, 11, 70000f); // includes values past f16's range (→ infinity)
        var expected = (float[])x.Clone();
        fixed (float* pe = expected) HalfMath.RoundInPlaceReference(pe, n);
        fixed (float* px = x) HalfMath.RoundInPlace(px, n);
        Assert.Equal(expected, x);
    }

    /// <summary>
    /// RoundToHalf against (float)(Half)x on every 61st f32 bit pattern (70 million, both signs,
    /// every exponent: f16-normal, f16-subnormal, f32-subnormal, overflow to infinity, NaN) and on
    /// the patterns around each rounding boundary, in 16, 8 and 4 lanes.
    /// </summary>
    [Fact]
    public void RoundToHalf_MatchesScalarCast_AcrossTheF32Range()
    {
        var edges = new List<uint>();
        foreach (uint b in new uint[] { 0, 0x33000000, 0x33800000, 0x38800000, 0x387fc000, 0x387fe000, 0x477fe000, 0x477ff000, 0x477fefff, 0x7f800000, 0x7f800001, 0x7fc00000, 0x7fffffff })
            for (uint d = 0; d < 64; d++) { edges.Add(b + d); edges.Add(b - d); }
        var buf = new float[16];
        var want = new float[16];
        int filled = 0;
        {
            void Check()
            {
                for (int j = filled; j < 16; j++) buf[j] = 1f;
                for (int j = 0; j < 16; j++) want[j] = (float)(Half)buf[j];
                var r128 = HalfMath.RoundToHalf(Vector128.Create<float>(buf));
                var r256 = HalfMath.RoundToHalf(Vector256.Create<float>(buf));
                var r512 = HalfMath.RoundToHalf(Vector512.Create<float>(buf));
                for (int j = 0; j < 16; j++)
                {
                    uint e = BitConverter.SingleToUInt32Bits(want[j]);
                    if (BitConverter.SingleToUInt32Bits(r512[j]) != e) Assert.Fail($"0x{BitConverter.SingleToUInt32Bits(buf[j]):x8}: {r512[j]} vs {want[j]} (16 lanes)");
                    if (j < 8 && BitConverter.SingleToUInt32Bits(r256[j]) != e) Assert.Fail($"0x{BitConverter.SingleToUInt32Bits(buf[j]):x8}: {r256[j]} vs {want[j]} (8 lanes)");
                    if (j < 4 && BitConverter.SingleToUInt32Bits(r128[j]) != e) Assert.Fail($"0x{BitConverter.SingleToUInt32Bits(buf[j]):x8}: {r128[j]} vs {want[j]} (4 lanes)");
                }
                filled = 0;
            }
            void Add(uint bits)
            {
                buf[filled++] = BitConverter.UInt32BitsToSingle(bits);
                if (filled == 16) Check();
            }
            foreach (uint e in edges) { Add(e); Add(e | 0x80000000u); }
            for (ulong bits = 0; bits <= uint.MaxValue; bits += 61) Add((uint)bits);
            Check();
        }
    }

    /// <summary>A value's SwiGLU result must not depend on the length of the call it is in (tiles vary with the batch).</summary>
    [Fact]
    public void SwiGlu_ResultDoesNotDependOnCallLength()
    {
        var gate = Random(64, 12, 8f);
        var up = Random(64, 13);
        var whole = (float[])gate.Clone();
        fixed (float* pw = whole, pu = up) Activations.SwiGlu(pw, pu, 64);
        foreach (int len in new[] { 1, 5, 17, 33, 63 })
        {
            var part = (float[])gate.Clone();
            fixed (float* pp = part, pu = up) Activations.SwiGlu(pp + 64 - len, pu + 64 - len, len);
            Assert.Equal(whole.AsSpan(64 - len).ToArray(), part.AsSpan(64 - len).ToArray());
        }
    }
}
