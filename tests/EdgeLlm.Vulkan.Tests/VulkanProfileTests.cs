using EdgeLlm.Models;
using EdgeLlm.Tests;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Vulkan.Tests;

/// <summary>
/// The device-side profile (<see cref="VulkanContextOptions.Profile"/>, on with EDGELLM_PROFILE=1):
/// timestamps around every step of the recorded pass, totals per step, and no effect on the logits.
/// </summary>
public class VulkanProfileTests(DeviceFixture fixture, ITestOutputHelper output) : IClassFixture<DeviceFixture>
{
    [Fact]
    public void Profile_TimesEveryStep_AndLeavesTheLogitsAlone()
    {
        var golden = GoldenCase.Load("syn-qwen2-q4_0", "p1");
        using var m = Model.Load(SharedData.Model("syn-qwen2-q4_0"));
        Assert.True(fixture.Device.TimestampPeriodNs > 0, "lavapipe writes timestamps on its compute queue");
        using var plain = new VulkanInferenceContext(m, contextLength: 64, fixture.Device, options: new VulkanContextOptions { Profile = false });
        using var timed = new VulkanInferenceContext(m, contextLength: 64, fixture.Device, options: new VulkanContextOptions { Profile = true });
        Assert.Null(plain.ProfileReport());

        float[] a = plain.Eval(golden.PromptIds, allLogits: true);
        float[] b = timed.Eval(golden.PromptIds, allLogits: true);
        Assert.Equal(a, b);
        // two generated tokens on top: the one-token graph is profiled too
        Assert.Equal(plain.Eval([5]), timed.Eval([5]));
        Assert.Equal(plain.Eval([7]), timed.Eval([7]));

        string report = timed.ProfileReport()!;
        output.WriteLine(report);
        int layers = m.Config.BlockCount;
        // The prompt (one submit) and two tokens (two submits) give each per-layer step 3·layers calls.
        foreach (var step in new[] { "rms_norm", "attention", "swiglu", "kv_store", "rope.q + rope.k" })
            Assert.Contains(report.Split('\n'), l => l.EndsWith($" × {step}", StringComparison.Ordinal));
        Assert.Contains(report.Split('\n'), l => l.Contains($"{3 * layers} × attention", StringComparison.Ordinal));
        Assert.Contains(report.Split('\n'), l => l.Contains("attn_q", StringComparison.Ordinal) && l.Contains("attn_k", StringComparison.Ordinal));
        Assert.Matches(@"device total [0-9.]+ ms over 3 submits; host wall time of those submits [0-9.]+ ms", report);
        double total = double.Parse(System.Text.RegularExpressions.Regex.Match(report, @"device total ([0-9.]+) ms").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(total > 0, "the steps took device time");

        timed.ResetProfile();
        Assert.Matches(@"device total 0\.00 ms over 0 submits", timed.ProfileReport()!);
    }
}
