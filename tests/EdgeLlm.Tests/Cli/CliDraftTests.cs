using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary><c>edgellm run --model-draft</c>: speculative decoding gives the text the model gives alone, and says how many proposals it kept.</summary>
public sealed class CliDraftTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("0", "16")]
    [InlineData("0.8", "4")]
    public void Run_WithADraft_PrintsTheSameText(string temp, string draftMax)
    {
        string[] common = ["run", "-m", SharedData.Model("stories260K"), "-p", "Once upon a time", "--temp", temp, "--seed", "11", "-n", "80", "-c", "256"];
        var alone = CliRunner.Run(common);
        var drafted = CliRunner.Run([.. common, "-md", SharedData.Model("stories260K-q8_0"), "--draft-max", draftMax, "--draft-p-min", "0.5"]);
        output.WriteLine(drafted.Stdout + drafted.Stderr);
        Assert.Equal(0, drafted.ExitCode);
        Assert.Equal(alone.Stdout, drafted.Stdout);
        Assert.Contains("stopped: reached -n 80", drafted.Stderr, StringComparison.Ordinal);
        var m = System.Text.RegularExpressions.Regex.Match(drafted.Stderr, @"draft: (\d+) tokens proposed, (\d+) accepted \(([0-9.]+)%\)");
        Assert.True(m.Success, drafted.Stderr);
        Assert.True(int.Parse(m.Groups[2].Value) > 0 && int.Parse(m.Groups[2].Value) <= int.Parse(m.Groups[1].Value));
    }

    [Fact]
    public void Run_WithLookup_PrintsTheSameText()
    {
        string[] common = ["run", "-m", SharedData.Model("stories260K"), "-p", "Once upon a time", "--temp", "0", "-n", "120", "-c", "256"];
        var alone = CliRunner.Run(common);
        var lookedUp = CliRunner.Run([.. common, "--lookup-ngram", "2"]);
        output.WriteLine(lookedUp.Stderr);
        Assert.Equal(0, lookedUp.ExitCode);
        Assert.Equal(alone.Stdout, lookedUp.Stdout);
        Assert.Matches(@"draft: \d+ tokens proposed, [1-9]\d* accepted", lookedUp.Stderr);
        var both = CliRunner.Run([.. common, "--lookup-ngram", "2", "-md", SharedData.Model("stories260K-q8_0")]);
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("give either --model-draft or --lookup-ngram", both.Stderr, StringComparison.Ordinal);
        var bad = CliRunner.Run([.. common, "--lookup-ngram", "9"]);
        Assert.Contains("--lookup-ngram must be in 1..8", bad.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "--draft-max", "0" }, "--draft-max must be in 1..256")]
    [InlineData(new[] { "--draft-p-min", "1.5" }, "--draft-p-min must be in [0, 1]")]
    [InlineData(new[] { "--show-probs", "3" }, "--show-probs cannot be combined with --model-draft")]
    public void Run_BadDraftArguments_AreUsageErrors(string[] extra, string expected)
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "-md", SharedData.Model("stories260K-q8_0"), .. extra]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>-ctkd</c>/<c>-ctvd</c> (llama.cpp's <c>--cache-type-k-draft</c>/<c>--cache-type-v-draft</c>) reach the draft's context:
    /// a quantized draft cache leaves the text as it is (the target decides every token); stories260K's heads of 8 cannot
    /// hold one, and the error names the draft; a bad type is a usage error naming the flag.
    /// </summary>
    [Fact]
    public void Run_DraftCacheTypes_ReachTheDraft()
    {
        string qwen = SharedData.Model("syn-qwen2-q8_0"), draft = SharedData.Model("syn-qwen2-q4_0");
        string[] common = ["run", "-m", qwen, "-p", "Hello there", "--temp", "0", "-n", "24", "-c", "128", "-t", "2"];
        var alone = CliRunner.Run(common);
        var drafted = CliRunner.Run([.. common, "-md", draft, "-ctkd", "q8_0", "--cache-type-v-draft", "q4_0"]);
        output.WriteLine(drafted.Stderr);
        Assert.True(drafted.ExitCode == 0, drafted.Stderr);
        Assert.Equal(alone.Stdout, drafted.Stdout);
        Assert.Matches(@"draft: \d+ tokens proposed, [1-9]\d* accepted", drafted.Stderr);

        var heads8 = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "-n", "4", "-md", SharedData.Model("stories260K-q8_0"), "-ctvd", "q8_0"]);
        Assert.NotEqual(0, heads8.ExitCode);
        Assert.Contains("--model-draft", heads8.Stderr, StringComparison.Ordinal);
        Assert.Contains("heads have 8", heads8.Stderr, StringComparison.Ordinal);

        var bad = CliRunner.Run([.. common, "-md", draft, "-ctkd", "q5_1"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--cache-type-k-draft takes f16, q8_0 or q4_0, got 'q5_1'", bad.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_ADraftWithAnotherVocabulary_IsRefused()
    {
        // Synthetic Qwen2 has its own byte-level vocabulary: not stories260K's.
        string other = Path.Combine(SharedData.Tokenizer, "ggml-vocab-qwen2.gguf");
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "-n", "4", "-md", other]);
        output.WriteLine(r.Stderr);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--model-draft", r.Stderr, StringComparison.Ordinal);
    }
}
