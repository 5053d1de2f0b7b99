using EdgeLlm.Quant;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// <see cref="PairPrefetch"/>: a two-group decode kernel reads group g and group g + 1 side by side,
/// then the next pair, so each stream's next bytes after its own group's end are those of the
/// group two further on. The prefetch target must follow that order, not run into the other group.
/// </summary>
public class PairPrefetchTests
{
    [Theory]
    [InlineData(1000, 300)]   // a distance inside the group
    [InlineData(1000, 2500)]  // a distance past two group ends (a narrow matrix's small groups)
    [InlineData(9216, 4096)]  // TinyLlama's 2048-wide Q4_0 groups at the kernels' distance
    public void Ahead_FollowsTheStreamAcrossPairs(long groupBytes, long distance)
    {
        var ahead = new PairPrefetch(groupBytes);
        for (long off = 0; off < groupBytes; off += 144)
        {
            long t = off + distance;
            // The stream reads its own group to its end, then the same group of the next pair
            // (2 · groupBytes on), and so on: position t of the stream is t + ⌊t / groupBytes⌋ · groupBytes.
            long expected = t + t / groupBytes * groupBytes;
            Assert.Equal(expected, ahead.Ahead(off, distance));
        }
    }

    [Fact]
    public void Ahead_NeverLandsInTheOtherGroup()
    {
        const long groupBytes = 4032; // qwen2.5-0.5b's 896-wide Q4_0 rows
        var ahead = new PairPrefetch(groupBytes);
        for (long off = 0; off < groupBytes; off += 144)
        {
            long target = ahead.Ahead(off, 4096);
            // Stream one's groups are the even ones from its start (0, 2, 4, ... group lengths on).
            Assert.Equal(0, target / groupBytes % 2);
            Assert.True(target > off);
        }
    }
}
