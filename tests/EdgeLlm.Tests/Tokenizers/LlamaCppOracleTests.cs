using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>
/// Our tokenizers against llama.cpp itself (LLamaSharp 0.30.0, LLamaSharp.Backend.Cpu) on every vocabulary:
/// ids for a long mixed-language text and the suite strings under all four add/parse-special settings, every
/// token's piece, end-of-generation marks and attributes.
/// </summary>
public class LlamaCppOracleTests(ITestOutputHelper output)
{
    public static TheoryData<string> Vocabs() => new(VocabCache.Names);

    /// <summary>English, code, Chinese, Japanese, Korean, emoji (incl. ZWJ and flags), Cyrillic, Arabic, Hindi, Greek,
    /// numbers, whitespace runs, contractions, control-looking text.</summary>
    internal const string MixedText =
        "The quick brown fox jumps over the lazy dog. It's 2024-07-26, isn't it? We'll see; they've said I'd've known.\n" +
        "    def fibonacci(n: int) -> int:\n        return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n\n" +
        "\tfor (int i = 0; i < 10; ++i) { sum += a[i] * 3.14159; }  // comment\r\n" +
        "中文测试：我们今天去公园散步，天气非常好！ 日本語のテキスト、カタカナとひらがな。한국어 문장입니다.\n" +
        "Emoji: 🦙🔥👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 ✨ — “quotes” ‘single’ «guillemets» …\n" +
        "Кириллица: Съешь же ещё этих мягких французских булок, да выпей чаю. Ёлка!\n" +
        "العربية: مرحبا بالعالم، كيف حالك؟ ١٢٣٤٥ हिन्दी: नमस्ते दुनिया। Ελληνικά: Καλημέρα κόσμε.\n" +
        "Numbers: 1 12 123 1234 12345 123456789 3.14159 1,000,000 0x1F 1e-10 ½ ² ³ ⅞\n" +
        "Whitespace:   three  two\t\ttabs \n\n\n   \u00A0nbsp\u3000ideographic\u2009thin   \n" +
        "Special-looking: <s> </s> <|endoftext|> <|im_start|>user<|im_end|> <|begin_of_text|> <|eot_id|> [INST] <unk> <0x0A>\n" +
        "Mixed: ÀÉÎÕÜ àéîõü ß ﬁ Ǆ ǅ ǆ ℌ ℍ ℎ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐐀𐐨 ăîșț' 'S 'LL 'Re\n" +
        "URL https://example.com/path?q=1&r=two#frag and e-mail someone@example.org.   ";

    [Fact]
    public void NativeLibrary_Loads()
    {
        string lib = LlamaCppOracle.NativeLibrary;
        output.WriteLine($"llama.cpp native library: {lib}");
        Assert.False(string.IsNullOrEmpty(lib));
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void Encode_MatchesLlamaCpp(string vocab)
    {
        var tok = VocabCache.Get(vocab);
        using var oracle = new LlamaCppOracle(VocabCache.GgufPath(vocab));
        output.WriteLine($"native: {LlamaCppOracle.NativeLibrary}");
        var texts = new List<string> { MixedText, MixedText.ToUpperInvariant(), "" };
        texts.AddRange(VocabCache.Inputs(vocab));
        // text with the vocabulary's own special and user-defined tokens in it, with surrounding spaces
        var specials = Enumerable.Range(0, tok.VocabSize)
            .Where(i => tok.TokenType(i) is EdgeLlm.Tokenizers.TokenType.Control or EdgeLlm.Tokenizers.TokenType.UserDefined)
            .Take(40).Select(tok.TokenText).ToArray();
        texts.Add(string.Join(" x ", specials) + " \n " + string.Join("", specials) + "  end ");
        texts.Add(" " + string.Join("\n  ", specials.Reverse()) + " ");

        int total = 0, pass = 0;
        var failures = new List<string>();
        foreach (var (addSpecial, parseSpecial) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            foreach (var text in texts)
            {
                total++;
                var want = oracle.Tokenize(text, addSpecial, parseSpecial);
                var got = tok.Encode(text, addSpecial, parseSpecial);
                if (want.SequenceEqual(got)) { pass++; continue; }
                if (failures.Count < 5)
                    failures.Add($"add={addSpecial} parse={parseSpecial} {LlamaCppSuiteTests.Show(text.Length > 200 ? text[..200] + "..." : text)}\n  want {Diff(want, got)}");
            }
        }
        output.WriteLine($"{vocab}: {pass}/{total} encodings identical to llama.cpp (mixed text: {tok.Encode(MixedText, false).Length} tokens)");
        foreach (var f in failures) output.WriteLine(f);
        Assert.True(pass == total, $"{vocab}: {total - pass} of {total} encodings differ from llama.cpp\n{string.Join("\n", failures)}");
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void TokenPiecesAndSpecialIds_MatchLlamaCpp(string vocab)
    {
        var tok = VocabCache.Get(vocab);
        using var oracle = new LlamaCppOracle(VocabCache.GgufPath(vocab));
        Assert.Equal(oracle.VocabSize, tok.VocabSize);
        Assert.Equal(oracle.Bos ?? -1, tok.Bos);
        Assert.Equal(oracle.Eos ?? -1, tok.Eos);
        Assert.Equal(oracle.Eot, tok.Eot);
        Assert.Equal(oracle.AddBos, tok.AddBos);
        Assert.Equal(oracle.AddEos, tok.AddEos);

        int pieceDiffs = 0, specialPieceDiffs = 0, eogDiffs = 0, attrDiffs = 0, eog = 0;
        var examples = new List<string>();
        for (int id = 0; id < tok.VocabSize; id++)
        {
            if (!oracle.Piece(id, special: false).AsSpan().SequenceEqual(tok.TokenToBytes(id)))
            {
                pieceDiffs++;
                if (examples.Count < 5) examples.Add($"piece {id} '{tok.TokenText(id)}': want [{Convert.ToHexString(oracle.Piece(id, false))}] got [{Convert.ToHexString(tok.TokenToBytes(id))}]");
            }
            if (!oracle.Piece(id, special: true).AsSpan().SequenceEqual(tok.TokenToBytes(id, special: true))) specialPieceDiffs++;
            bool isEog = oracle.IsEog(id);
            if (isEog) eog++;
            if (isEog != tok.IsEndOfGeneration(id))
            {
                eogDiffs++;
                if (examples.Count < 10) examples.Add($"eog {id} '{tok.TokenText(id)}': want {isEog}");
            }
            if (oracle.Attributes(id) != (int)tok.Attributes(id))
            {
                attrDiffs++;
                if (examples.Count < 15) examples.Add($"attr {id} '{tok.TokenText(id)}': want {oracle.Attributes(id)} got {(int)tok.Attributes(id)}");
            }
        }
        output.WriteLine($"{vocab}: {tok.VocabSize} tokens; piece diffs {pieceDiffs}, special-piece diffs {specialPieceDiffs}, EOG diffs {eogDiffs} ({eog} EOG tokens), attribute diffs {attrDiffs}");
        foreach (var e in examples) output.WriteLine("  " + e);
        Assert.True(pieceDiffs + specialPieceDiffs + eogDiffs + attrDiffs == 0, string.Join("\n", examples));
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void Decode_MatchesLlamaCppDetokenize(string vocab)
    {
        var tok = VocabCache.Get(vocab);
        using var oracle = new LlamaCppOracle(VocabCache.GgufPath(vocab));
        var texts = new List<string> { MixedText, "Hello ? Yes . It 's ' a ' b . I 've 're 'll 'd 'm" };
        texts.AddRange(VocabCache.Inputs(vocab));
        int total = 0, same = 0, llamaRoundTrips = 0, oursRoundTrips = 0;
        var failures = new List<string>();
        foreach (var text in texts)
        {
            foreach (bool addSpecial in new[] { false, true })
            {
                var ids = tok.Encode(text, addSpecial, parseSpecial: true);
                foreach (var (remove, unparse) in new[] { (false, false), (true, false), (false, true), (true, true) })
                {
                    total++;
                    string want = oracle.Detokenize(ids, remove, unparse);
                    string got = tok.Detokenize(ids, remove, unparse);
                    if (want == got) same++;
                    else if (failures.Count < 5) failures.Add($"remove={remove} unparse={unparse} {LlamaCppSuiteTests.Show(text)}\n  want {LlamaCppSuiteTests.Show(want)}\n  got  {LlamaCppSuiteTests.Show(got)}");
                }
                if (!addSpecial)
                {
                    if (oracle.Detokenize(ids, false, false) == text) llamaRoundTrips++;
                    if (tok.Decode(ids) == text) oursRoundTrips++;
                }
            }
        }
        output.WriteLine($"{vocab}: {same}/{total} detokenizations identical to llama.cpp; round trips: llama.cpp {llamaRoundTrips}/{texts.Count}, ours {oursRoundTrips}/{texts.Count}");
        foreach (var f in failures) output.WriteLine(f);
        Assert.True(same == total, string.Join("\n", failures));
        Assert.Equal(llamaRoundTrips, oursRoundTrips);
    }

    private static string Diff(int[] want, int[] got)
    {
        int i = 0;
        while (i < want.Length && i < got.Length && want[i] == got[i]) i++;
        int from = Math.Max(0, i - 3);
        return $"(first difference at {i}) ...{string.Join(' ', want.Skip(from).Take(10))}\n  got  ...{string.Join(' ', got.Skip(from).Take(10))}";
    }
}
