using System.Buffers.Binary;
using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// SentencePiece's unigram model (GGUF <c>tokenizer.ggml.model</c> <c>t5</c>: T5, XLM-RoBERTa and the models built on
/// it: bge-m3, multilingual-e5, bge-reranker), as llama.cpp's <c>llm_tokenizer_ugm_session</c>: the text is normalized
/// by the file's precompiled character map (SentencePiece's rules, e.g. NFKC: the longest matching prefix is replaced),
/// spaces become "▁" (a "▁" put first with add_space_prefix, runs merged with remove_extra_whitespaces), then the
/// tokenization with the highest sum of token scores is found by Viterbi over the bytes; a code point no token covers
/// becomes [UNK] (score: the lowest normal score − 10), consecutive [UNK]s one.
/// </summary>
/// <remarks>
/// Written here rather than taken from Microsoft.ML.Tokenizers: its SentencePiece unigram model is built from the
/// sentencepiece protobuf, not from GGUF's token and score arrays and the precompiled map as a blob, and llama.cpp's
/// normalization has details of its own that the same file must reproduce (a user-defined token's longest trie prefix
/// passes through unnormalized; scores summed in double).
/// </remarks>
internal sealed class UgmTokenizer : Tokenizer
{
    private const float UnknownPenalty = 10f;
    private static readonly byte[] s_escapedSpace = "▁"u8.ToArray();
    private static readonly byte[] s_replacement = "\uFFFD"u8.ToArray();

    private readonly Trie _matcher = new();
    private readonly Trie _userDefined = new();
    private readonly double _unknownScore;
    private readonly int _unk;
    private readonly bool _removeExtraWhitespaces;
    // the precompiled map: XOR-compressed compact double array (XCDA) units, then NUL-terminated replacements
    private readonly uint[] _xcda = [];
    private readonly byte[] _replacements = [];

    internal UgmTokenizer(VocabData v) : base(v)
    {
        _unk = v.Unk != NoToken ? v.Unk : throw new InvalidDataException("a SentencePiece unigram vocabulary (t5) needs an unknown token (tokenizer.ggml.unknown_token_id)");
        _removeExtraWhitespaces = v.RemoveExtraWhitespaces;
        float min = float.MaxValue;
        for (int id = 0; id < v.Tokens.Length; id++)
        {
            var a = v.Attrs[id];
            bool normal = (a & TokenAttributes.Normal) != 0, user = (a & TokenAttributes.UserDefined) != 0;
            if (normal) min = Math.Min(min, v.Scores[id]);
            if (normal || user || (a & TokenAttributes.Unused) != 0) _matcher.Insert(Encoding.UTF8.GetBytes(v.Tokens[id]), id);
            if (user) _userDefined.Insert(Encoding.UTF8.GetBytes(v.Tokens[id]), id);
        }
        _unknownScore = min - UnknownPenalty;

        byte[] map = v.PrecompiledCharsmap;
        if (map.Length > 0)
        {
            // first a uint32: the XCDA's size in bytes; the replacement strings fill the rest
            if (map.Length < 4) throw new InvalidDataException($"tokenizer.ggml.precompiled_charsmap is {map.Length} bytes, too short for its header");
            uint xcdaBytes = BinaryPrimitives.ReadUInt32LittleEndian(map);
            if (xcdaBytes % 4 != 0 || (long)xcdaBytes + 4 >= map.Length)
                throw new InvalidDataException($"tokenizer.ggml.precompiled_charsmap: its double array of {xcdaBytes} bytes does not fit in the {map.Length}-byte map (byte offset 0)");
            _xcda = new uint[xcdaBytes / 4];
            for (int i = 0; i < _xcda.Length; i++) _xcda[i] = BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan(4 + 4 * i));
            _replacements = map[(int)(4 + xcdaBytes)..];
        }
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, List<int> output)
    {
        foreach (var f in fragments)
        {
            if (!f.IsText) { output.Add(f.Token); continue; }
            Encode(Normalize(Encoding.UTF8.GetBytes(text.Substring(f.Offset, f.Length))), output);
        }
    }

    /// <summary>SentencePiece's ▁ becomes a space (llama.cpp treats UGM's pieces as SentencePiece's).</summary>
    private protected override byte[] NormalPiece(string text) => Encoding.UTF8.GetBytes(text.Replace('▁', ' '));

    private readonly record struct Best(int Token, int From, double Score);

    /// <summary>Viterbi over the normalized bytes: at each code point, every token the trie matches from there.</summary>
    private void Encode(byte[] s, List<int> output)
    {
        int n = s.Length;
        if (n == 0) return;
        var best = new Best[n + 1];
        Array.Fill(best, new Best(_unk, 0, -double.MaxValue));
        best[0] = new Best(_unk, 0, 0);
        for (int at = 0; at < n;)
        {
            int cpLen = Math.Min(Utf8Length(s[at]), n - at);
            bool whole = false; // a token covers exactly this code point
            double from = best[at].Score;
            var node = _matcher.Root.Next(s[at]);
            for (int end = at + 1; node is not null; end++)
            {
                if (node.HasValue)
                {
                    if (end - at == cpLen) whole = true;
                    int id = node.Value;
                    // user-defined tokens score 0 (normal scores are log-probabilities); sums in double, as SentencePiece
                    double score = from + ((Attributes(id) & TokenAttributes.UserDefined) != 0 ? 0.0 : TokenScore(id));
                    if (score > best[end].Score) best[end] = new Best(id, at, score);
                }
                node = end < n ? node.Next(s[end]) : null;
            }
            if (!whole)
            {
                double score = from + _unknownScore;
                if (score > best[at + cpLen].Score) best[at + cpLen] = new Best(_unk, at, score);
            }
            at += cpLen;
        }
        // back from the end; consecutive unknowns become one
        int start = output.Count;
        bool prevUnknown = false;
        for (int at = n; ;)
        {
            var b = best[at];
            bool unknown = b.Token == _unk;
            if (!(prevUnknown && unknown)) output.Add(b.Token);
            if (b.From == 0) break;
            prevUnknown = unknown;
            at = b.From;
        }
        output.Reverse(start, output.Count - start);
    }

    /// <summary>
    /// llama.cpp's UGM normalize: each prefix replaced by the map's longest match (or passed through: a user-defined
    /// token's trie prefix, a valid UTF-8 sequence; an invalid byte becomes U+FFFD), spaces escaped to ▁, one ▁ first
    /// (add_space_prefix), runs of spaces merged and none left at the ends (remove_extra_whitespaces).
    /// </summary>
    private byte[] Normalize(byte[] input)
    {
        var result = new List<byte>(input.Length * 3);
        bool prependSpace = AddSpacePrefix, mergeSpaces = _removeExtraWhitespaces;
        bool spacePrepended = false, inWord = false;
        for (int at = 0; at < input.Length;)
        {
            var (piece, consumed) = NormalizePrefix(input, at);
            foreach (byte c in piece.Span)
            {
                if (c != (byte)' ')
                {
                    if (!inWord)
                    {
                        inWord = true;
                        if ((prependSpace && !spacePrepended) || mergeSpaces)
                        {
                            result.AddRange(s_escapedSpace);
                            spacePrepended = true;
                        }
                    }
                    result.Add(c);
                }
                else
                {
                    inWord = false;
                    if (!mergeSpaces) result.AddRange(s_escapedSpace);
                }
            }
            at += consumed;
        }
        return result.ToArray();
    }

    private (ReadOnlyMemory<byte> Piece, int Consumed) NormalizePrefix(byte[] input, int at)
    {
        // a user-defined token's text passes through as it is: as far as the trie goes (llama.cpp's get_longest_prefix)
        int depth = 0;
        for (var node = _userDefined.Root.Next(input[at]); node is not null; node = at + depth < input.Length ? node.Next(input[at + depth]) : null) depth++;
        if (depth > 0) return (input.AsMemory(at, depth), depth);

        int longest = 0, replacement = 0;
        if (_xcda.Length > 0)
        {
            // walk the double array from the root: a child of node s with label c sits at BASE(s) ^ c
            uint index = Base(0);
            for (int k = at; k < input.Length; k++)
            {
                byte c = input[k];
                if (c == 0) break;
                index ^= c;
                if (LCheck(index) != c) break;
                bool leaf = Leaf(index);
                index ^= Base(index);
                if (leaf)
                {
                    longest = k - at + 1;
                    replacement = (int)Value(index);
                }
            }
        }
        if (longest > 0)
        {
            if (replacement >= _replacements.Length)
                throw new InvalidDataException($"tokenizer.ggml.precompiled_charsmap: a replacement at byte {replacement} of {_replacements.Length}");
            int end = Array.IndexOf(_replacements, (byte)0, replacement);
            if (end < 0) end = _replacements.Length;
            return (_replacements.AsMemory(replacement, end - replacement), longest);
        }
        int len = ValidUtf8Length(input, at);
        return len > 0 ? (input.AsMemory(at, len), len) : (s_replacement, 1);
    }

    // The XCDA unit: BASE in bits 10-30 (shifted by 8 more when bit 9 is set), LEAF in bit 8, the label in bits
    // 0-7; a unit holding a replacement's offset has bit 31 set (so it never matches a label).
    private uint Unit(uint index) => index < (uint)_xcda.Length ? _xcda[index]
        : throw new InvalidDataException($"tokenizer.ggml.precompiled_charsmap: double-array index {index} past its {_xcda.Length} units");

    private uint Base(uint index)
    {
        uint u = Unit(index);
        return (u >> 10) << (int)((u & (1u << 9)) >> 6);
    }

    private uint LCheck(uint index) => Unit(index) & ((1u << 31) | 0xff);

    private bool Leaf(uint index) => ((Unit(index) >> 8) & 1) != 0;

    private uint Value(uint index) => Unit(index) & ((1u << 31) - 1);

    /// <summary>Bytes of the UTF-8 sequence a lead byte starts (llama.cpp's unicode_len_utf8: a stray byte counts 1).</summary>
    private static int Utf8Length(byte b) => b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;

    /// <summary>The length of the well-formed UTF-8 sequence at <paramref name="at"/>, or 0 (llama.cpp's unicode_cpt_from_utf8 checks).</summary>
    private static int ValidUtf8Length(byte[] s, int at)
    {
        byte b = s[at];
        int len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || at + len > s.Length) return 0;
        for (int i = 1; i < len; i++)
            if ((s[at + i] & 0xC0) != 0x80) return 0;
        return len;
    }

    /// <summary>A byte trie (llama.cpp's naive_trie).</summary>
    private sealed class Trie
    {
        public Node Root { get; } = new();

        public void Insert(byte[] key, int value)
        {
            var node = Root;
            foreach (byte b in key)
            {
                node.Children ??= new Dictionary<byte, Node>();
                if (!node.Children.TryGetValue(b, out var child)) node.Children[b] = child = new Node();
                node = child;
            }
            node.HasValue = true;
            node.Value = value;
        }
    }

    private sealed class Node
    {
        public Dictionary<byte, Node>? Children;
        public bool HasValue;
        public int Value;

        public Node? Next(byte b) => Children is not null && Children.TryGetValue(b, out var child) ? child : null;
    }
}
