using System.Runtime.Intrinsics;
using EdgeLlm.Quant;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The 32-lane int8 dot products the 128-bit kernels reduce each block to
/// (<see cref="QuantMath.DotI8Vector128"/>, <see cref="Vector128BlockDot"/>): exact for any int8 on
/// both sides, -128·-128 included, against a scalar sum. On x64 this runs the SSE4.1
/// <c>pmovsxbw</c>/<c>pmaddwd</c> steps; on arm64 the portable widening.
/// </summary>
public class BlockDotTests
{
    public static TheoryData<int> Seeds => new() { 1, 2, 3 };

    [Theory]
    [MemberData(nameof(Seeds))]
    public void DotI8Vector128_IsExact_ForAnyInt8(int seed)
    {
        var rng = new Random(seed);
        var a = new sbyte[32];
        var b = new sbyte[32];
        for (int trial = 0; trial < 2000; trial++)
        {
            for (int i = 0; i < 32; i++)
            {
                // a third of the trials at the extremes, where int16 intermediates could overflow
                a[i] = trial % 3 == 0 ? (sbyte)(rng.Next(2) == 0 ? -128 : 127) : (sbyte)rng.Next(-128, 128);
                b[i] = trial % 3 == 0 ? (sbyte)-128 : (sbyte)rng.Next(-128, 128);
            }
            int expected = 0;
            for (int i = 0; i < 32; i++) expected += a[i] * b[i];
            var (a0, a1, b0, b1) = (Vector128.Create(a, 0), Vector128.Create(a, 16), Vector128.Create(b, 0), Vector128.Create(b, 16));
            Assert.Equal(expected, QuantMath.DotI8Vector128(a0, a1, b0, b1));
            Assert.Equal(expected, Vector128.Sum(Vector128BlockDot.Lanes(a0, a1, b0, b1)));
            Assert.Equal(expected, Vector128BlockDot.Dot(a0, a1, b0, b1));
        }
    }

    [Fact]
    public void AddPairwise_FoldsFourLaneVectorsIntoBlockTotals()
    {
        var x = Vector128.Create(1, 2, 30, 40);
        var y = Vector128.Create(-5, 6, 700, -800);
        Assert.Equal(Vector128.Create(3, 70, 1, -100), Vector128BlockDot.AddPairwise(x, y));
    }
}
