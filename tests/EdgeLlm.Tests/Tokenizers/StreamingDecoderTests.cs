using System.Text;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Tokenizers;

public class StreamingDecoderTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama-spm")]
    [InlineData("phi-3")]
    [InlineData("gpt-2")]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    public void NeverEmitsHalfACharacter(string vocab)
    {
        var tok = VocabCache.Get(vocab);
        string text = LlamaCppOracleTests.MixedText;
        var ids = tok.Encode(text, addSpecial: false);
        var dec = new StreamingDecoder(tok);
        var sb = new StringBuilder();
        int held = 0;
        foreach (int id in ids)
        {
            string chunk = dec.Append(id);
            if (chunk.Length == 0 && tok.TokenToBytes(id).Length > 0) held++;
            Assert.DoesNotContain('\uFFFD', chunk);
            AssertWholeScalars(chunk);
            sb.Append(chunk);
        }
        sb.Append(dec.Flush());
        // SentencePiece keeps its prefix space in the pieces; Decode strips it.
        Assert.Equal(tok.Decode(ids), tok.AddSpacePrefix ? sb.ToString()[1..] : sb.ToString());
        output.WriteLine($"{vocab}: {ids.Length} tokens, {held} held back until a later token completed the character");
    }

    [Fact]
    public void MultiByteCharacterSplitOverByteTokens_IsHeldUntilComplete()
    {
        var tok = VocabCache.Get("llama-spm");
        // U+1F999 (🦙) is not in the Llama 2 vocabulary: it is spelled with four byte tokens.
        var ids = tok.Encode("🦙", addSpecial: false);
        var byteIds = ids.Where(i => tok.TokenType(i) == EdgeLlm.Tokenizers.TokenType.Byte).ToArray();
        Assert.Equal(4, byteIds.Length);
        var dec = new StreamingDecoder(tok);
        var chunks = ids.Select(dec.Append).ToArray();
        Assert.Equal("🦙", string.Concat(chunks).TrimStart(' '));
        Assert.Equal("", chunks[^2]); // three bytes in: nothing yet
        Assert.Equal("🦙", chunks[^1]);
        Assert.Equal("", dec.Flush());
    }

    [Fact]
    public void InvalidSequences_BecomeReplacementOnlyWhenTheyCannotBeCompleted()
    {
        var tok = VocabCache.Get("llama-spm");
        int B(byte b) => tok.TokenId($"<0x{b:X2}>")!.Value;
        var dec = new StreamingDecoder(tok);
        Assert.Equal("", dec.Append(B(0xE4)));       // lead byte of a 3-byte character: wait
        Assert.Equal("", dec.Append(B(0xB8)));       // still incomplete
        Assert.Equal("\uFFFDA", dec.Append(B(0x41))); // 'A' can never continue it
        Assert.Equal("\uFFFD", dec.Append(B(0xFF)));  // never valid
        Assert.Equal("", dec.Append(B(0xF0)));
        Assert.Equal("\uFFFD", dec.Flush());          // stream ended mid-character
        Assert.Equal("中", dec.Append(B(0xE4)) + dec.Append(B(0xB8)) + dec.Append(B(0xAD)));
    }

    private static void AssertWholeScalars(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i])) { Assert.True(i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]), "chunk ends inside a surrogate pair"); i++; }
            else Assert.False(char.IsLowSurrogate(s[i]), "lone low surrogate");
        }
    }
}
