using EdgeLlm.Quant;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The kernels' lookup tables (<see cref="LookupTables"/>): their values, and that the class keeps
/// no static initializer, which would put a class-initialization check before every lookup in the
/// NativeAOT binary (its remarks give the measured cost).
/// </summary>
public class LookupTablesTests
{
    [Fact]
    public void Fp16Table_HoldsTheCastOfEveryHalf()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float got = QuantMath.Fp16ToFp32Fast((ushort)h);
            // NaNs compare by bits: the table must keep the payload the cast gives.
            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(got));
        }
    }

    [Fact]
    public void Q5HighBits_ExpandsEveryBitToItsByte()
    {
        var rng = new Random(5);
        for (int i = 0; i < 1000; i++)
        {
            uint qh = i < 32 ? 1u << i : (uint)rng.NextInt64(0, 1L << 32);
            var (lo, hi) = QuantMath.Q5HighBits(qh);
            for (int j = 0; j < 32; j++)
            {
                byte expected = (byte)((qh >> j & 1) != 0 ? 0x10 : 0);
                Assert.Equal(expected, j < 16 ? lo[j] : hi[j - 16]);
            }
        }
    }

    [Fact]
    public void LookupTables_HasNoStaticConstructor()
    {
        // A field initializer would compile to a static constructor: NativeAOT then checks the
        // class's initialization on every read inside the kernels' inner loops.
        Assert.Null(typeof(LookupTables).TypeInitializer);
    }
}
