using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// SentencePiece-style BPE over token scores, as llama.cpp's llm_tokenizer_spm_session: start from one
/// symbol per UTF-8 character, repeatedly merge the adjacent pair whose concatenation is a vocabulary
/// token with the highest score (ties: the leftmost pair), and spell any symbol that is not a token as
/// byte tokens &lt;0xNN&gt;.
/// </summary>
/// <remarks>
/// Written here rather than taken from Microsoft.ML.Tokenizers 2.0.1: that library cannot build a
/// SentencePiece tokenizer from GGUF's token and score arrays (it wants a sentencepiece model protobuf),
/// and its SentencePiece BPE breaks score ties rightmost-first, which yields different ids than llama.cpp.
/// </remarks>
internal sealed class SpmTokenizer : Tokenizer
{
    internal SpmTokenizer(VocabData v) : base(v) { }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, List<int> output)
    {
        bool prevSpecial = true; // the text at the very start also gets the prefix space
        foreach (var f in fragments)
        {
            if (!f.IsText) { output.Add(f.Token); prevSpecial = true; continue; }
            string s = text.Substring(f.Offset, f.Length);
            if (AddSpacePrefix && prevSpecial) s = " " + s;
            EncodeText(s.Replace(' ', '▁'), output);
            prevSpecial = false;
        }
    }

    private struct Symbol
    {
        public int Start, Length; // UTF-16 range in the text; Length 0 once merged away
        public int Prev, Next;
    }

    private readonly record struct Bigram(int Left, int Right, float Score, int Size);

    /// <summary>Highest score first; equal scores: smaller left index first (llama.cpp's comparator).</summary>
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();
        public int Compare(Bigram a, Bigram b)
        {
            int c = b.Score.CompareTo(a.Score);
            return c != 0 ? c : a.Left.CompareTo(b.Left);
        }
    }

    private void EncodeText(string s, List<int> output)
    {
        if (s.Length == 0) return;
        var symbols = new List<Symbol>(s.Length);
        for (int i = 0; i < s.Length;)
        {
            int len = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            symbols.Add(new Symbol { Start = i, Length = len, Prev = symbols.Count - 1, Next = i + len == s.Length ? -1 : symbols.Count + 1 });
            i += len;
        }
        var sym = symbols.ToArray();
        var queue = new PriorityQueue<Bigram, Bigram>(BigramOrder.Instance);

        void TryAdd(int left, int right)
        {
            if (left == -1 || right == -1) return;
            int size = sym[left].Length + sym[right].Length;
            if (!_tokenToId.TryGetValue(s.Substring(sym[left].Start, size), out int id)) return;
            var b = new Bigram(left, right, _scores[id], size);
            queue.Enqueue(b, b);
        }

        for (int i = 1; i < sym.Length; i++) TryAdd(i - 1, i);
        while (queue.TryDequeue(out var b, out _))
        {
            ref var l = ref sym[b.Left];
            ref var r = ref sym[b.Right];
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != b.Size) continue; // stale
            l.Length += r.Length;
            r.Length = 0;
            l.Next = r.Next;
            if (r.Next >= 0) sym[r.Next].Prev = b.Left;
            TryAdd(l.Prev, b.Left);
            TryAdd(b.Left, l.Next);
        }

        for (int i = 0; i != -1; i = sym[i].Next)
        {
            string piece = s.Substring(sym[i].Start, sym[i].Length);
            if (_tokenToId.TryGetValue(piece, out int id)) { output.Add(id); continue; }
            // Every merged symbol is a vocabulary token (a pair only merges when its text is one), so only
            // single characters reach this point: llama.cpp's rev_merge resegmentation never applies, and the
            // character is spelled with byte tokens.
            foreach (byte bt in Encoding.UTF8.GetBytes(piece)) output.Add(ByteToToken(bt));
        }
    }

    /// <summary>llama_vocab::byte_to_token for SentencePiece: "&lt;0xNN&gt;", else the byte as a one-character token.</summary>
    private int ByteToToken(byte b)
    {
        if (_tokenToId.TryGetValue($"<0x{b:X2}>", out int id)) return id;
        if (b < 0x80 && _tokenToId.TryGetValue(((char)b).ToString(), out id)) return id;
        throw new InvalidOperationException($"the vocabulary has no byte token <0x{b:X2}> for a character it cannot spell");
    }

    private protected override byte[] NormalPiece(string text) => Encoding.UTF8.GetBytes(text.Replace('▁', ' '));
}
