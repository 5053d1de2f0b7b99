using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// GPT-2 style byte-level BPE, as llama.cpp's llm_tokenizer_bpe_session: the pre-tokenizer splits text into
/// words, each word's UTF-8 bytes become byte-level characters, and adjacent symbols merge by the rank of
/// their pair in tokenizer.ggml.merges (lowest rank first; ties: leftmost pair).
/// </summary>
/// <remarks>
/// The merge loop is written here rather than delegated to Microsoft.ML.Tokenizers' BpeTokenizer. That engine
/// gives the same merges once it is fed llama.cpp's pre-tokenization, but it has to be built from vocab/merges
/// streams in Hugging Face's JSON/text formats (re-serialising 150k-entry tables on every load) and it does not
/// reproduce llama.cpp's edges: ignore_merges (a whole word that is a token wins, Llama 3) and the fallback for a
/// symbol that is not a token (llama.cpp looks its single bytes up and silently drops non-ASCII ones). Keeping the
/// loop here also keeps the library free of a dependency that is not NativeAOT-clean.
/// </remarks>
internal sealed class ByteLevelBpeTokenizer : Tokenizer
{
    private readonly PreTokenizer _pre;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<string, int> _ranks; // "left right" -> rank

    internal ByteLevelBpeTokenizer(VocabData v, PreTokenizer.Family family, string[] merges) : base(v)
    {
        _pre = new PreTokenizer(family.Patterns);
        _ignoreMerges = family.IgnoreMerges;
        _ranks = new Dictionary<string, int>(merges.Length, StringComparer.Ordinal);
        for (int i = 0; i < merges.Length; i++)
        {
            // llama.cpp splits at the first space after position 0; an entry without one becomes ("", "") — unmatchable.
            string m = merges[i];
            int pos = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
            _ranks.TryAdd(pos >= 0 ? m : " ", i); // first rank wins, as std::unordered_map::emplace
        }
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, List<int> output)
    {
        foreach (var f in fragments)
        {
            if (!f.IsText) { output.Add(f.Token); continue; }
            foreach (string word in _pre.Split(text.Substring(f.Offset, f.Length)))
                EncodeWord(ByteLevel.Encode(word), output);
        }
    }

    private struct Symbol
    {
        public int Start, Length; // range in the byte-level word (one char per byte); Length 0 once merged away
        public int Prev, Next;
    }

    private readonly record struct Bigram(int Left, int Right, int Rank, int LeftLength, int RightLength);

    /// <summary>Lowest rank first; equal ranks: smaller left index first (llama.cpp's comparator).</summary>
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();
        public int Compare(Bigram a, Bigram b)
        {
            int c = a.Rank.CompareTo(b.Rank);
            return c != 0 ? c : a.Left.CompareTo(b.Left);
        }
    }

    private void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _tokenToId.TryGetValue(word, out int whole)) { output.Add(whole); return; }

        var sym = new Symbol[word.Length];
        for (int i = 0; i < sym.Length; i++) sym[i] = new Symbol { Start = i, Length = 1, Prev = i - 1, Next = i + 1 == sym.Length ? -1 : i + 1 };
        var queue = new PriorityQueue<Bigram, Bigram>(BigramOrder.Instance);
        var key = new StringBuilder();

        void TryAdd(int left, int right)
        {
            if (left == -1 || right == -1) return;
            key.Clear().Append(word, sym[left].Start, sym[left].Length).Append(' ').Append(word, sym[right].Start, sym[right].Length);
            if (!_ranks.TryGetValue(key.ToString(), out int rank)) return;
            var b = new Bigram(left, right, rank, sym[left].Length, sym[right].Length);
            queue.Enqueue(b, b);
        }

        for (int i = 1; i < sym.Length; i++) TryAdd(i - 1, i);
        while (queue.TryDequeue(out var b, out _))
        {
            ref var l = ref sym[b.Left];
            ref var r = ref sym[b.Right];
            // Stale pair: one side merged away or grown since it was queued. (llama.cpp compares the texts; with
            // the left start fixed and the right side adjacent, equal lengths mean equal texts.)
            if (l.Length == 0 || r.Length == 0 || l.Length != b.LeftLength || r.Length != b.RightLength) continue;
            l.Length += r.Length;
            r.Length = 0;
            l.Next = r.Next;
            if (r.Next >= 0) sym[r.Next].Prev = b.Left;
            TryAdd(l.Prev, b.Left);
            TryAdd(b.Left, l.Next);
        }

        for (int i = 0; i != -1; i = sym[i].Next)
        {
            string piece = word.Substring(sym[i].Start, sym[i].Length);
            if (_tokenToId.TryGetValue(piece, out int id)) { output.Add(id); continue; }
            // llama.cpp then looks up each UTF-8 byte of the piece as a one-byte string: only ASCII characters
            // can be tokens that way; the bytes of any other character are dropped.
            foreach (char c in piece)
                if (c < 0x80 && _tokenToId.TryGetValue(c.ToString(), out id)) output.Add(id);
        }
    }

    private protected override byte[] NormalPiece(string text)
    {
        // llama_decode_text: each character back to the byte it stands for.
        var bytes = new List<byte>(text.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.IsBmp && ByteLevel.TryGetByte((char)rune.Value, out byte b)) { bytes.Add(b); continue; }
            // Not a byte-level character: llama.cpp writes "[UNK_BYTE_0x<utf8 hex>" + the whole token text + "]".
            var sb = new StringBuilder("[UNK_BYTE_0x");
            int n = rune.EncodeToUtf8(utf8);
            for (int k = 0; k < n; k++) sb.Append(utf8[k].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            sb.Append(text).Append(']');
            bytes.AddRange(Encoding.UTF8.GetBytes(sb.ToString()));
        }
        return bytes.ToArray();
    }
}
