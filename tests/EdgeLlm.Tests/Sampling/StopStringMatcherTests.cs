using EdgeLlm.Sampling;
using Xunit;

namespace EdgeLlm.Tests.Sampling;

public class StopStringMatcherTests
{
    [Fact]
    public void StopStringSplitAcrossChunks_IsHeldBackThenSuppressed()
    {
        var m = new StopStringMatcher(["</s>", "User:"]);
        var a = m.Append("Hello <");
        Assert.Equal("Hello ", a.Text);
        Assert.Equal("<", m.Pending);
        var b = m.Append("/");
        Assert.Equal("", b.Text);
        var c = m.Append("s> and more");
        Assert.True(c.Stopped);
        Assert.Equal("", c.Text);
        Assert.Equal("</s>", c.StopString);
        Assert.True(m.Stopped);
        Assert.Equal("", m.Append("ignored").Text);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void FalseStart_IsReleasedWhenItStopsMatching()
    {
        var m = new StopStringMatcher(["User:"]);
        Assert.Equal("a ", m.Append("a Us").Text);
        var r = m.Append("ually");
        Assert.False(r.Stopped);
        Assert.Equal("Usually", r.Text);
        Assert.Equal("", m.Pending);
    }

    [Fact]
    public void OverlappingPrefix_DoesNotHideTheRealMatch()
    {
        var m = new StopStringMatcher(["User:"]);
        Assert.Equal("", m.Append("Us").Text);
        var r = m.Append("User: hi");
        Assert.True(r.Stopped);
        Assert.Equal("Us", r.Text);
    }

    [Fact]
    public void TextBeforeTheStopInTheSameChunk_IsEmitted()
    {
        var m = new StopStringMatcher(["\n\n", "###"]);
        var r = m.Append("end.### more\n\n");
        Assert.True(r.Stopped);
        Assert.Equal("end.", r.Text);
        Assert.Equal("###", r.StopString);
    }

    [Fact]
    public void Flush_ReleasesAHeldPrefixAtTheEnd()
    {
        var m = new StopStringMatcher(["STOP"]);
        Assert.Equal("The ", m.Append("The ST").Text);
        Assert.Equal("ST", m.Flush());
        Assert.Equal("", m.Pending);
    }

    [Fact]
    public void NoStopStrings_PassesTextThrough()
    {
        var m = new StopStringMatcher([]);
        Assert.Equal("anything", m.Append("anything").Text);
    }

    [Fact]
    public void LoneHighSurrogate_WaitsForItsPartner()
    {
        var m = new StopStringMatcher(["x"]);
        Assert.Equal("a", m.Append("a\uD83D").Text);
        Assert.Equal("\uD83D\uDE00", m.Append("\uDE00").Text);
    }

    [Fact]
    public void EmptyStopString_IsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new StopStringMatcher(["ok", ""]));
        Assert.Contains("stop string 1 is empty", e.Message);
    }

    [Fact]
    public void AnySplitOfTheText_GivesTheSameOutput()
    {
        const string Text = "Once upon a time <|im_en there was <|im_end|> never shown";
        string[] stops = ["<|im_end|>", "<|endoftext|>"];
        var rng = new Random(11);
        for (int trial = 0; trial < 200; trial++)
        {
            var m = new StopStringMatcher(stops);
            var emitted = new System.Text.StringBuilder();
            bool stopped = false;
            for (int i = 0; i < Text.Length && !stopped;)
            {
                int len = Math.Min(rng.Next(1, 6), Text.Length - i);
                var r = m.Append(Text.Substring(i, len));
                emitted.Append(r.Text);
                stopped = r.Stopped;
                i += len;
            }
            if (!stopped) emitted.Append(m.Flush());
            Assert.True(stopped);
            Assert.Equal("Once upon a time <|im_en there was ", emitted.ToString());
        }
    }
}
