using System.Runtime.Intrinsics;
using EdgeLlm.Quant;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The vector f16 → f32 conversion the repacked kernels use for their scales
/// (<see cref="QuantMath.HalfBitsToSingle(Vector256{int})"/>): exact for every finite half,
/// subnormals included, on both widths.
/// </summary>
public class HalfBitsToSingleTests
{
    [Fact]
    public void EveryFiniteHalf_ConvertsExactly_OnBothWidths()
    {
        int checkedCount = 0, subnormals = 0;
        var bits = new int[16];
        for (int h = 0; h < 65536; h += 16)
        {
            for (int i = 0; i < 16; i++) bits[i] = h + i;
            var lo = QuantMath.HalfBitsToSingle(Vector256.Create(bits, 0));
            var hi = QuantMath.HalfBitsToSingle(Vector256.Create(bits, 8));
            var v512 = QuantMath.HalfBitsToSingle(Vector512.Create(bits));
            for (int i = 0; i < 16; i++)
            {
                int x = h + i;
                if ((x & 0x7C00) == 0x7C00) continue; // inf/NaN: refused by the packers, not converted
                float expected = QuantMath.Fp16ToFp32((ushort)x);
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(v512[i]));
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(i < 8 ? lo[i] : hi[i - 8]));
                checkedCount++;
                if ((x & 0x7C00) == 0 && (x & 0x3FF) != 0) subnormals++;
            }
        }
        Assert.Equal(63488, checkedCount);
        Assert.Equal(2046, subnormals);
    }
}
