using System.Text;
using EdgeLlm.Gguf;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>Special tokens, BOS/EOS, decoding round trips, metadata errors.</summary>
public class TokenizerBehaviourTests(ITestOutputHelper output)
{
    [Fact]
    public void LlamaBpe_ControlTokenText_IsParsedOnlyWithParseSpecial()
    {
        var tok = VocabCache.Get("llama-bpe");
        int bot = tok.TokenId("<|begin_of_text|>") ?? throw new InvalidOperationException("no <|begin_of_text|>");
        Assert.Equal(bot, tok.Bos);
        Assert.Equal(EdgeLlm.Tokenizers.TokenType.Control, tok.TokenType(bot));

        const string text = "<|begin_of_text|>Hello<|eot_id|>";
        var parsed = tok.Encode(text, addSpecial: false, parseSpecial: true);
        int eot = tok.TokenId("<|eot_id|>")!.Value;
        Assert.Equal(bot, parsed[0]);
        Assert.Equal(eot, parsed[^1]);
        Assert.Equal(3, parsed.Length); // <|begin_of_text|> Hello <|eot_id|>

        var literal = tok.Encode(text, addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(bot, literal);
        Assert.DoesNotContain(eot, literal);
        Assert.True(literal.Length > 5);
        Assert.Equal(text, tok.Decode(literal));
        Assert.True(tok.IsEndOfGeneration(eot));
        Assert.True(tok.IsEndOfGeneration(tok.Eos));
        Assert.False(tok.IsEndOfGeneration(bot));
    }

    [Fact]
    public void AddSpecial_AddsBosWhenTheVocabularySaysSo()
    {
        var bpe = VocabCache.Get("llama-bpe");
        Assert.True(bpe.AddBos);
        Assert.Equal(bpe.Bos, bpe.Encode("Hi")[0]);
        Assert.Equal(bpe.Encode("Hi", addSpecial: false), bpe.Encode("Hi").Skip(1).ToArray());
        Assert.Equal([bpe.Bos], bpe.Encode(""));

        var spm = VocabCache.Get("llama-spm");
        Assert.True(spm.AddBos);
        Assert.False(spm.AddEos);
        Assert.Equal([1, 15043, 3186], spm.Encode("Hello world")); // <s> ▁Hello ▁world

        var gpt2 = VocabCache.Get("gpt-2");
        Assert.False(gpt2.AddBos);
        Assert.Equal(gpt2.Encode("Hello", addSpecial: false), gpt2.Encode("Hello"));
    }

    [Fact]
    public void Spm_SpacePrefixFollowsEverySpecialToken()
    {
        var tok = VocabCache.Get("llama-spm");
        int s = tok.Bos, e = tok.Eos;
        var ids = tok.Encode("Hi</s>Hi", addSpecial: false, parseSpecial: true);
        var hi = tok.Encode("Hi", addSpecial: false);
        Assert.Equal(hi.Append(e).Concat(hi).ToArray(), ids); // "▁Hi" after </s> too
        Assert.Equal("▁Hi", string.Concat(hi.Select(tok.TokenText)));
        Assert.NotEqual(ids, tok.Encode("Hi</s>Hi", addSpecial: false, parseSpecial: false));
        Assert.Equal(s, tok.Encode("<s>", addSpecial: false, parseSpecial: true).Single());
    }

    [Fact]
    public void Phi3_StripsWhitespaceAfterSpecialTokens()
    {
        var tok = VocabCache.Get("phi-3");
        int user = tok.TokenId("<|user|>") ?? throw new InvalidOperationException("no <|user|>");
        Assert.True((tok.Attributes(user) & TokenAttributes.RStrip) != 0);
        var a = tok.Encode("<|user|>\n  Hello", addSpecial: false, parseSpecial: true);
        var b = tok.Encode("<|user|>Hello", addSpecial: false, parseSpecial: true);
        Assert.Equal(b, a);
        Assert.Equal(user, a[0]);
    }

    [Fact]
    public void Decode_RoundTripsTheSuiteStrings()
    {
        int total = 0, roundTrips = 0, cleaned = 0;
        foreach (var vocab in VocabCache.Names)
        {
            var tok = VocabCache.Get(vocab);
            foreach (var s in VocabCache.Inputs(vocab))
            {
                var ids = tok.Encode(s, addSpecial: false);
                string back = tok.Decode(ids);
                // llama.cpp's clean_spaces rewrites " ?", " .", " 's" ... on decoding: no round trip there.
                if (tok.CleanSpaces && (s.Contains(" ?") || s.Contains(" !") || s.Contains(" .") || s.Contains(" ,") || s.Contains(" '")))
                {
                    cleaned++;
                    continue;
                }
                total++;
                Assert.True(s == back, $"{vocab}: {LlamaCppSuiteTests.Show(s)} decoded as {LlamaCppSuiteTests.Show(back)}");
                roundTrips++;
            }
        }
        output.WriteLine($"{roundTrips}/{total} suite strings round-trip through Encode/Decode ({cleaned} skipped: clean_spaces vocabularies rewrite them, as llama.cpp does)");
    }

    [Fact]
    public void Decode_AppliesLlamaCppCleanSpaces()
    {
        var tok = VocabCache.Get("gpt-2");
        Assert.True(tok.CleanSpaces);
        // llama.cpp's passes: " ?"/" ." lose the space, a quote between spaces loses both, " 's" loses the space
        // (the same result as llama_detokenize, checked by LlamaCppOracleTests.Decode_MatchesLlamaCppDetokenize).
        Assert.Equal("Hello? Yes. It's'a'b.", tok.Decode(tok.Encode("Hello ? Yes . It 's ' a ' b .", addSpecial: false)));
        var qwen = VocabCache.Get("qwen2");
        Assert.False(qwen.CleanSpaces);
        Assert.Equal("Hello ? Yes .", qwen.Decode(qwen.Encode("Hello ? Yes .", addSpecial: false)));
    }

    [Fact]
    public void TokenToBytes_FollowsTokenKinds()
    {
        var spm = VocabCache.Get("llama-spm");
        Assert.Equal([], spm.TokenToBytes(spm.Bos)); // control: no text
        Assert.Equal("<s>"u8.ToArray(), spm.TokenToBytes(spm.Bos, special: true));
        int nl = spm.TokenId("<0x0A>")!.Value;
        Assert.Equal(EdgeLlm.Tokenizers.TokenType.Byte, spm.TokenType(nl));
        Assert.Equal([(byte)'\n'], spm.TokenToBytes(nl));
        Assert.Equal(" Hello"u8.ToArray(), spm.TokenToBytes(spm.TokenId("▁Hello")!.Value));

        var bpe = VocabCache.Get("gpt-2");
        Assert.Equal(" the"u8.ToArray(), bpe.TokenToBytes(bpe.TokenId("Ġthe")!.Value));
        Assert.Equal([0xE4], bpe.TokenToBytes(bpe.TokenId("ä")!.Value)); // byte-level char for byte 0xE4
    }

    [Fact]
    public void FromGguf_RejectsUnsupportedModelByName()
    {
        var bytes = new GgufWriter()
            .Set("general.architecture", "rwkv6")
            .Set("tokenizer.ggml.model", "rwkv")
            .Set("tokenizer.ggml.tokens", GgufValue.From(new[] { "<pad>", "a" }))
            .ToArray();
        var ex = Assert.Throws<NotSupportedException>(() => Load(bytes));
        Assert.Contains("'rwkv'", ex.Message, StringComparison.Ordinal);

        // a unigram vocabulary (t5) without an unknown token (T5's default id 2 is past these two tokens)
        var t5 = new GgufWriter().Set("tokenizer.ggml.model", "t5").Set("tokenizer.ggml.tokens", GgufValue.From(new[] { "<pad>", "a" })).ToArray();
        Assert.Contains("unknown_token_id", Assert.Throws<InvalidDataException>(() => Load(t5)).Message, StringComparison.Ordinal);

        // a corrupt precompiled character map is named, with what is wrong
        foreach (var (map, what) in new[] { (new byte[] { 1, 0 }, "too short"), (new byte[] { 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 }, "does not fit") })
        {
            var bad = new GgufWriter().Set("tokenizer.ggml.model", "t5").Set("tokenizer.ggml.tokens", GgufValue.From(new[] { "<pad>", "</s>", "<unk>", "a" }))
                .Set("tokenizer.ggml.precompiled_charsmap", GgufValue.From(map)).ToArray();
            var e = Assert.Throws<InvalidDataException>(() => Load(bad));
            Assert.Contains("precompiled_charsmap", e.Message, StringComparison.Ordinal);
            Assert.Contains(what, e.Message, StringComparison.Ordinal);
        }

        // WordPiece without BERT's [CLS] (101) and [SEP] (102) ids, which it adds around every text
        var bert = new GgufWriter().Set("tokenizer.ggml.model", "bert").Set("tokenizer.ggml.tokens", GgufValue.From(new[] { "[PAD]", "a" })).ToArray();
        Assert.Contains("seperator_token_id", Assert.Throws<InvalidDataException>(() => Load(bert)).Message, StringComparison.Ordinal);

        var noPre = new GgufWriter().Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "no-such-pre")
            .Set("tokenizer.ggml.tokens", GgufValue.From(new[] { "a" })).Set("tokenizer.ggml.merges", GgufValue.From(Array.Empty<string>())).ToArray();
        var ex2 = Assert.Throws<NotSupportedException>(() => Load(noPre));
        Assert.Contains("no-such-pre", ex2.Message, StringComparison.Ordinal);

        var noTokens = new GgufWriter().Set("tokenizer.ggml.model", "llama").ToArray();
        Assert.Throws<InvalidDataException>(() => Load(noTokens));
    }

    [Fact]
    public void FromGguf_BuildsFromACraftedVocabOnlyFile()
    {
        // A tiny SentencePiece vocabulary in a file with no tensors and an arbitrary architecture.
        string[] tokens = ["<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>", "▁", "a", "b", "▁a", "ab", "▁ab"];
        float[] scores = [0, 0, 0, 0, 0, 0, -1, -2, -2, -1.5f, -1.2f, -0.5f];
        int[] types = [2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1];
        var bytes = new GgufWriter()
            .Set("general.architecture", "whatever")
            .Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", GgufValue.From(tokens))
            .Set("tokenizer.ggml.scores", GgufValue.From(scores))
            .Set("tokenizer.ggml.token_type", GgufValue.From(types))
            .ToArray();
        var tok = Load(bytes);
        Assert.Equal(12, tok.VocabSize);
        Assert.Equal(1, tok.Bos);
        Assert.Equal(2, tok.Eos);
        // " ab": ▁+a (-1.5) vs a+b (-1.2): a+b wins, then ▁+ab -> ▁ab. "é" falls back to bytes C3 A9.
        Assert.Equal([1, 11, 6, 4, 5], tok.Encode("ab é"));
        Assert.Equal("ab é", tok.Decode(tok.Encode("ab é", addSpecial: false)));
    }

    private static unsafe Tokenizer Load(byte[] bytes)
    {
        fixed (byte* p = bytes)
        {
            using var f = GgufFile.FromPointer("test.gguf", p, bytes.Length);
            return Tokenizer.FromGguf(f);
        }
    }
}
