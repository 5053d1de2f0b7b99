using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>The AVX2 Q8_0 activation quantizer equals its scalar statement byte for byte.</summary>
public unsafe class Q8_0ActivationQuantizerTests(ITestOutputHelper output)
{
    [Fact]
    public void Avx2_EqualsScalar_ByteForByte()
    {
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported)
        {
            output.WriteLine("SKIPPED: no AVX2 (the scalar path is the only one)");
            return;
        }
        var rng = new Random(11);
        int blocks = 0;
        foreach (int n in new[] { 32, 64, 2048, 5632 })
        foreach (int pattern in new[] { 0, 1, 2, 3, 4, 5 })
        {
            var x = new float[n];
            for (int i = 0; i < n; i++)
            {
                x[i] = pattern switch
                {
                    0 => (float)(rng.NextDouble() * 2 - 1),
                    1 => (float)((rng.NextDouble() * 2 - 1) * 1e4),
                    2 => 0f,                                                    // all-zero blocks: d = 0, q = 0
                    3 => (i % 32 == 5) ? 3f : (float)(rng.Next(-254, 255) * 3f / 254), // halves: x·127/max lands on .5 (ties to even)
                    4 => (float)((rng.NextDouble() * 2 - 1) * 1e-30),           // subnormal-range scales
                    _ => (i % 7 == 0) ? -1f : 0.25f,                            // negative maxima
                };
            }
            var a = new byte[n / 32 * 34];
            var b = new byte[a.Length];
            fixed (float* px = x)
            fixed (byte* pa = a)
            fixed (byte* pb = b)
            {
                Q8_0.QuantizeActivationRowScalar(px, pa, n);
                Q8_0.QuantizeActivationRowAvx2(px, pb, n);
            }
            Assert.True(a.AsSpan().SequenceEqual(b), $"n={n} pattern {pattern}: first difference at byte {a.AsSpan().CommonPrefixLength(b)}");
            blocks += n / 32;
        }
        output.WriteLine($"{blocks} blocks identical (random, large, zero, ties, tiny, negative maxima)");
    }
}
