using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// BERT's WordPiece (tokenizer.ggml.model <c>bert</c>) as llama.cpp's <c>llm_tokenizer_wpm_session</c> runs it on the
/// vocabulary llama.cpp's converter writes: a word-initial piece is stored with a leading "▁" and a continuation
/// piece bare (Hugging Face's "##ing" is "ing"), so each word is matched as "▁word", greedily, longest piece first.
/// </summary>
/// <remarks>
/// The text is split first (llama.cpp's <c>preprocess</c>): every code point is mapped to the first code point of
/// its NFD (<see cref="UnicodeNfd"/>, which drops accents) and lower-cased; whitespace ends a word, NUL, U+FFFD and
/// control characters are dropped, and each punctuation mark, ASCII symbol and CJK ideograph is a word of its own.
/// A word whose pieces cannot all be matched becomes the unknown token. Written here rather than taken from
/// Microsoft.ML.Tokenizers 2.0.1's <c>WordPieceTokenizer</c>, which wants Hugging Face's "##" vocabulary and its
/// own normalizer, not GGUF's "▁" layout and llama.cpp's splitting.
/// </remarks>
internal sealed class WordPieceTokenizer : Tokenizer
{
    private readonly int _maxTokenBytes;

    internal WordPieceTokenizer(VocabData v) : base(v)
    {
        foreach (var t in v.Tokens) _maxTokenBytes = Math.Max(_maxTokenBytes, Encoding.UTF8.GetByteCount(t));
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, List<int> output)
    {
        foreach (var f in fragments)
        {
            if (!f.IsText) { output.Add(f.Token); continue; }
            foreach (string word in Words(text.Substring(f.Offset, f.Length))) EncodeWord(word, output);
        }
    }

    /// <summary>llama.cpp's WPM preprocess: NFD-first, lower-cased words split at whitespace, punctuation and CJK.</summary>
    internal static List<string> Words(string text)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        void Finish()
        {
            if (word.Length > 0) { words.Add(word.ToString()); word.Clear(); }
        }
        foreach (var rune in text.EnumerateRunes())
        {
            int cpt = UnicodeNfd.Map(rune.Value);
            var flags = UnicodeData.Flags(cpt);
            if ((flags & UnicodeData.CptFlags.Whitespace) != 0) { Finish(); continue; }
            var category = flags & UnicodeData.CptFlags.CategoryMask;
            if (cpt == 0 || cpt == 0xFFFD || category == UnicodeData.CptFlags.Control) continue;
            int lower = ToLower(cpt);
            if (category == UnicodeData.CptFlags.Punctuation || (cpt < 0x7F && category == UnicodeData.CptFlags.Symbol) || IsChineseChar(cpt))
            {
                Finish();
                UnicodeData.Append(word, lower);
                Finish();
            }
            else UnicodeData.Append(word, lower);
        }
        Finish();
        return words;
    }

    /// <summary>Unicode's simple lower-case mapping (UnicodeData.txt, what llama.cpp's unicode_tolower reads).</summary>
    private static int ToLower(int cpt) => Rune.IsValid(cpt) ? Rune.ToLowerInvariant(new Rune(cpt)).Value : cpt;

    /// <summary>The CJK ideograph blocks BERT splits one by one (llama.cpp's is_chinese_char, Hugging Face's ranges).</summary>
    private static bool IsChineseChar(int c) =>
        c is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
            or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B920 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);

    /// <summary>
    /// "▁word" as the longest vocabulary pieces from the left; one piece that cannot be matched makes the whole
    /// word [UNK]. Pieces are at most the longest token's UTF-8 length (+1, as llama.cpp's loop bound).
    /// </summary>
    private void EncodeWord(string word, List<int> output)
    {
        string w = "▁" + word;
        // UTF-8 offset of every UTF-16 index that starts a code point (and of the end)
        var starts = new List<(int Index, int Byte)>(w.Length + 1);
        int bytes = 0;
        for (int i = 0; i < w.Length;)
        {
            starts.Add((i, bytes));
            int len = char.IsHighSurrogate(w[i]) && i + 1 < w.Length && char.IsLowSurrogate(w[i + 1]) ? 2 : 1;
            bytes += Encoding.UTF8.GetByteCount(w.AsSpan(i, len));
            i += len;
        }
        starts.Add((w.Length, bytes));

        int first = output.Count;
        for (int s = 0; s < starts.Count - 1;)
        {
            int matched = -1;
            for (int e = starts.Count - 1; e > s; e--)
            {
                if (starts[e].Byte - starts[s].Byte > _maxTokenBytes + 1) continue;
                if (_tokenToId.TryGetValue(w.Substring(starts[s].Index, starts[e].Index - starts[s].Index), out int id))
                {
                    output.Add(id);
                    matched = e;
                    break;
                }
            }
            if (matched < 0)
            {
                output.RemoveRange(first, output.Count - first);
                break;
            }
            s = matched;
        }
        if (output.Count == first)
        {
            if (Unknown is not int unk) throw new InvalidOperationException($"the WordPiece vocabulary cannot spell '{word}' and has no unknown token");
            output.Add(unk);
        }
    }

    private protected override byte[] NormalPiece(string text) => Encoding.UTF8.GetBytes(text.Replace('▁', ' '));
}
