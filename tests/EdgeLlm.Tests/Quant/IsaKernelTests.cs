using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// Every ISA path of every dot kernel (AVX-512BW, AVX2, NEON+DotProd, NEON, Vector128) equals
/// its scalar reference bit for bit on random blocks with edge values (zero, huge, tiny and
/// negative scales, all-max and all-min quants) and block counts reaching every tail. The
/// fast paths sum the same integers and add the same float terms in the reference's order,
/// so the tolerance is exactly zero ulp (<see cref="SelfTest.SameFloat"/>).
/// </summary>
public class IsaKernelTests
{
    private readonly ITestOutputHelper _out;

    public IsaKernelTests(ITestOutputHelper output) => _out = output;

    public static IEnumerable<object[]> Kernels() =>
        SelfTest.DotKernels().Select(k => new object[] { k.Format, k.Isa });

    [Theory]
    [MemberData(nameof(Kernels))]
    public void IsaPath_EqualsReferenceBitForBit(string format, string isa)
    {
        var k = SelfTest.DotKernels().Single(k => k.Format == format && k.Isa == isa);
        if (!k.Supported)
        {
            // xunit 2 has no dynamic skip: report and return.
            _out.WriteLine($"SKIPPED {format} [{isa}]: not supported on this CPU");
            return;
        }
        foreach (int seed in new[] { 1, 2, 3 })
        {
            string? error = SelfTest.CheckDot(k, seed);
            Assert.True(error is null, $"{format} [{isa}] seed {seed}: {error}");
        }
        _out.WriteLine($"ran {format} [{isa}]: {SelfTest.BlockCounts.Length} lengths x {Enum.GetValues<SelfTest.Fill>().Length} fills x 3 seeds, all bit-identical");
    }

    [Fact]
    public void SelfTest_RunsAndReportsCounts()
    {
        var sw = new StringWriter();
        int failed = SelfTest.Run(sw);
        string text = sw.ToString();
        _out.WriteLine(text);
        var last = text.TrimEnd().Split('\n')[^1].Trim();
        Assert.Matches(@"^\d+ passed, 0 failed$", last);
        Assert.Equal(0, failed);
        Assert.Contains("ok   dot Q4_0xQ8_0", text);
    }

    [Fact]
    public void CheckDot_DetectsAWrongKernel()
    {
        // The checker itself must be able to fail: a kernel off by one ulp is caught.
        var good = SelfTest.DotKernels().First(k => k.Format == "Q8_0");
        unsafe
        {
            var bad = good with { Fast = (n, x, y) => n == 0 ? 0 : BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(good.Reference(n, x, y)) + 1) };
            Assert.NotNull(SelfTest.CheckDot(bad, 1));
        }
    }
}
