using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary><c>edgellm perplexity</c>: llama-perplexity's output lines, --json, and its errors.</summary>
public sealed partial class CliPerplexityTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>A children's story in TinyStories' style (what stories260K was trained on), and the same words shuffled.</summary>
    internal const string Story =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. " +
        "One day, Lily saw a big dog near the tree. The dog was sad because it lost its toy. Lily wanted to help the dog. " +
        "She looked under the bench and behind the slide. Then she found a small blue toy in the grass. " +
        "Lily gave the toy to the dog, and the dog was very happy. They played together all day. " +
        "When the sun went down, Lily said goodbye to her new friend and went home to her mom.";

    private readonly string _dir = Directory.CreateTempSubdirectory("edgellm-ppl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"^Final estimate: PPL = (\d+\.\d{4}) \+/- (\d+\.\d{5})$", RegexOptions.Multiline)]
    private static partial Regex FinalLine();

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private double Ppl(string textFile)
    {
        var r = CliRunner.Run(["perplexity", "-m", SharedData.Model("stories260K"), "-f", textFile, "-c", "64", "-b", "32", "-t", "2"]);
        output.WriteLine(r.Stdout + r.Stderr);
        Assert.Equal(0, r.ExitCode);
        var m = FinalLine().Match(r.Stdout);
        Assert.True(m.Success, "no 'Final estimate' line: " + r.Stdout);
        Assert.Matches(@"^\[1\]\d+\.\d{4},\[2\]\d+\.\d{4},", r.Stdout);
        Assert.Contains("calculating perplexity over", r.Stderr, StringComparison.Ordinal);
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The trained model finds its own kind of story far more likely than the same words in a
    /// shuffled order, and both figures lie between 1 and the vocabulary size (a uniform guess).
    /// </summary>
    [Fact]
    public void Perplexity_Story_IsLowerThanShuffledWords()
    {
        string story = Write("story.txt", Story);
        var words = Story.Split(' ');
        var rng = new Random(5);
        string shuffled = Write("shuffled.txt", string.Join(' ', words.OrderBy(_ => rng.Next())));
        double a = Ppl(story), b = Ppl(shuffled);
        output.WriteLine($"story {a}, shuffled {b}");
        Assert.InRange(a, 1, 512);
        Assert.InRange(b, 1, 512);
        Assert.True(a * 1.5 < b, $"story PPL {a} is not well below the shuffled words' {b}");
    }

    [Fact]
    public void Perplexity_Json_AgreesWithTheTextOutput()
    {
        string story = Write("story.txt", Story);
        double text = Ppl(story);
        var r = CliRunner.Run(["perplexity", "-m", SharedData.Model("stories260K"), "-f", story, "-c", "64", "-b", "32", "-t", "2", "--json", "--chunks", "5"]);
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal(text, Math.Round(root.GetProperty("ppl").GetDouble(), 4));
        Assert.Equal(64, root.GetProperty("n_ctx").GetInt32());
        Assert.Equal(32, root.GetProperty("n_batch").GetInt32());
        int chunks = root.GetProperty("chunks").GetInt32();
        Assert.Equal(root.GetProperty("tokens").GetInt32() / 64, chunks);
        Assert.Equal(chunks * 31, root.GetProperty("tokens_scored").GetInt32());
        Assert.Equal(chunks, root.GetProperty("chunk_ppl").GetArrayLength());
        Assert.True(root.GetProperty("ppl_stderr").GetDouble() > 0);
    }

    /// <summary>
    /// --reference: stories260K-q4_0 against its F32 original on the same chunks: a positive KL divergence,
    /// fewer same top tokens than 100%, and the reference's own perplexity; the JSON carries the same.
    /// </summary>
    [Fact]
    public void Perplexity_Reference_ReportsKlDivergence()
    {
        string story = Write("story.txt", Story);
        string[] args = ["perplexity", "-m", SharedData.Model("stories260K-q4_0"), "--reference", SharedData.Model("stories260K"), "-f", story, "-c", "64", "-t", "2"];
        var r = CliRunner.Run(args);
        output.WriteLine(r.Stdout + r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"Reference PPL = \d+\.\d{4} \+/- \d+\.\d{5} \(", r.Stdout);
        Assert.Matches(@"KL divergence: mean \d+\.\d{6} \+/- \d+\.\d{6}, median \d+\.\d{6}, 99% \d+\.\d{6}, max \d+\.\d{6}", r.Stdout);
        var j = CliRunner.Run([.. args, "--json"]);
        Assert.Equal(0, j.ExitCode);
        using var doc = JsonDocument.Parse(j.Stdout);
        var root = doc.RootElement;
        double kld = root.GetProperty("kld").GetProperty("mean").GetDouble();
        double sameTop = root.GetProperty("same_top").GetProperty("value").GetDouble();
        double pplQ = root.GetProperty("ppl").GetDouble(), pplRef = root.GetProperty("reference").GetProperty("ppl").GetDouble();
        output.WriteLine($"q4_0 vs f32: KLD {kld}, same top {sameTop}, PPL {pplQ} vs {pplRef}");
        Assert.InRange(kld, 1e-4, 2);
        Assert.InRange(sameTop, 0.3, 0.9999);
        Assert.Equal(Ppl(story), Math.Round(pplRef, 4));
    }

    /// <summary>--reference with another vocabulary is an input error naming both sizes.</summary>
    [Fact]
    public void Perplexity_ReferenceWithOtherVocabulary_IsAnInputError()
    {
        string other = Path.Combine(_dir, "other.gguf");
        EdgeLlm.Synth.ModelSynthesizer.Synthesize(new EdgeLlm.Synth.SynthShape("v400", "v400", "llama", 64, 1, 2, 1, 128, 400, 128, 10000f, 1e-5f,
            false, false, EdgeLlm.Synth.SynthVocabKind.SentencePiece), "F32", other, seed: 1);
        var r = CliRunner.Run(["perplexity", "-m", SharedData.Model("stories260K"), "--reference", other, "-f", Write("s.txt", Story), "-c", "64"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--reference has a vocabulary of 400 tokens, -m one of 512", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Perplexity_TextTooShort_NamesTheTokensNeeded()
    {
        var r = CliRunner.Run(["perplexity", "-m", SharedData.Model("stories260K"), "-p", "Once upon a time", "-c", "64"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("needs at least 128", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("smaller -c", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-c", "2", "-c must be in 4..")]
    [InlineData("-b", "0", "-b must be at least 1")]
    [InlineData("--chunks", "0", "--chunks must be positive")]
    public void Perplexity_BadFlags_AreUsageErrors(string flag, string value, string expected)
    {
        var r = CliRunner.Run(["perplexity", "-m", SharedData.Model("stories260K"), "-p", Story, flag, value]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }
}
