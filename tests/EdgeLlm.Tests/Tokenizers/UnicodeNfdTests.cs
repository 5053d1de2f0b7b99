using EdgeLlm.Tokenizers;
using Xunit;

namespace EdgeLlm.Tests.Tokenizers;

/// <summary>
/// <see cref="UnicodeNfd"/>, the table behind the WordPiece tokenizer's accent stripping (llama.cpp's
/// unicode_cpts_normalize_nfd) at known decompositions. (The table itself was generated from ICU's NFD of every
/// assigned code point; the test host runs with invariant globalization, where .NET normalizes nothing, so the
/// table cannot be recomputed here. The WordPiece tests against llama.cpp cover accented text end to end.)
/// </summary>
public sealed class UnicodeNfdTests
{
    [Theory]
    [InlineData(0xE9, 'e')]      // é
    [InlineData(0xC5, 'A')]      // Å
    [InlineData(0x1E9B, 0x17F)]  // ẛ → ſ (long s with dot above)
    [InlineData(0xAC00, 0x1100)] // 가 → ᄀ (Hangul, algorithmic)
    [InlineData(0xD7A3, 0x1112)] // 힣 → ᄒ
    [InlineData(0xFB01, 0xFB01)] // ﬁ: a compatibility decomposition only, kept
    [InlineData(0x1C5, 0x1C5)]   // ǅ: compatibility only, kept
    [InlineData('a', 'a')]
    [InlineData(0x2FA1D, 0x2A600)] // the last CJK compatibility ideograph
    public void Map_KnownDecompositions(int cpt, int expected) => Assert.Equal(expected, UnicodeNfd.Map(cpt));
}
