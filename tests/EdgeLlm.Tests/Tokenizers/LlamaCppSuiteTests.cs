using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>llama.cpp's own tokenizer suite (test-tokenizer-0): every string of every vocabulary, no BOS, no special parsing.</summary>
public class LlamaCppSuiteTests(ITestOutputHelper output)
{
    public static TheoryData<string> Vocabs() => new(VocabCache.Names);

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void Encode_MatchesLlamaCppExpectedIds(string vocab)
    {
        var tok = VocabCache.Get(vocab);
        var inputs = VocabCache.Inputs(vocab);
        var expected = VocabCache.Expected(vocab);
        Assert.Equal(inputs.Length, expected.Length);
        Assert.True(inputs.Length >= 40, $"{vocab}: only {inputs.Length} test strings");

        int pass = 0;
        var failures = new List<string>();
        for (int i = 0; i < inputs.Length; i++)
        {
            var ids = tok.Encode(inputs[i], addSpecial: false, parseSpecial: false);
            if (ids.SequenceEqual(expected[i])) pass++;
            else failures.Add($"  [{i}] {Show(inputs[i])}\n     want {string.Join(' ', expected[i])}\n     got  {string.Join(' ', ids)}");
        }
        output.WriteLine($"{vocab}: {pass}/{inputs.Length} strings match llama.cpp");
        foreach (var f in failures) output.WriteLine(f);
        Assert.True(failures.Count == 0, $"{vocab}: {failures.Count} of {inputs.Length} strings differ:\n{string.Join("\n", failures)}");
    }

    [Fact]
    public void SuiteHasEveryVocabulary()
    {
        foreach (var name in VocabCache.Names)
        {
            Assert.True(File.Exists(VocabCache.GgufPath(name)), $"missing {VocabCache.GgufPath(name)}");
            Assert.True(File.Exists(VocabCache.GgufPath(name) + ".inp"), $"missing {name}.inp");
            Assert.True(File.Exists(VocabCache.GgufPath(name) + ".out"), $"missing {name}.out");
        }
    }

    internal static string Show(string s) => "\"" + string.Concat(s.Select(c => c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ => c.ToString() })) + "\"";
}
