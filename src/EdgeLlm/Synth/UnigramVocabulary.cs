using System.Buffers.Binary;
using System.Text;

namespace EdgeLlm.Synth;

/// <summary>
/// A made-up SentencePiece unigram vocabulary laid out as XLM-RoBERTa's (GGUF <c>tokenizer.ggml.model</c> <c>t5</c>:
/// &lt;s&gt; 0, &lt;pad&gt; 1, &lt;/s&gt; 2, &lt;unk&gt; 3, scored pieces, &lt;mask&gt; last) and a precompiled character map in
/// SentencePiece's binary form, for synthesized bge-m3 / multilingual-e5 / bge-reranker files.
/// </summary>
public static class UnigramVocabulary
{
    /// <summary>The user-defined token the vocabulary carries (split out of any text, scored 0).</summary>
    public const string UserDefinedToken = "[URL]";

    /// <summary>Normalization rules the synthesized map applies (a few of NFKC's, longest match first).</summary>
    public static IReadOnlyList<(string From, string To)> Rules { get; } =
    [
        ("\u00A0", " "), ("\t", " "), ("\n", " "), ("ﬁ", "fi"), ("Ａ", "A"), ("Ｂ", "B"), ("１", "1"), ("①", "1"),
        ("…", "..."), ("e\u0301", "é"), ("ｶ", "カ"), ("™", "TM"), ("Ⅻ", "XII"),
    ];

    /// <summary>Tokens, scores (log-probabilities) and GGUF token types of a vocabulary of <paramref name="size"/> tokens (at least 1,000).</summary>
    public static (string[] Tokens, float[] Scores, int[] Types) Vocabulary(int size)
    {
        if (size < 1000) throw new ArgumentOutOfRangeException(nameof(size), size, "a synthetic unigram vocabulary has at least 1000 tokens");
        var tokens = new List<string>(size);
        var scores = new List<float>(size);
        var types = new List<int>(size);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Add(string t, float score, int type)
        {
            if (tokens.Count >= size - 1 || !seen.Add(t)) return; // (the last id is <mask>)
            tokens.Add(t);
            scores.Add(score);
            types.Add(type);
        }
        Add("<s>", 0f, 3);
        Add("<pad>", 0f, 3);
        Add("</s>", 0f, 3);
        Add("<unk>", 0f, 2);
        Add(UserDefinedToken, 0f, 4);
        // a deterministic score per piece: longer pieces a little less likely, with a spread
        float Score(string piece) => -2f - 0.35f * piece.Length - (uint)piece.GetHashCode(StringComparison.Ordinal) % 1000 / 400f;
        Add("▁", -1.5f, 1);
        string[] words =
        [
            "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "search", "query", "document",
            "passage", "model", "edge", "device", "fine", "cafe", "café", "sleep", "sleeps", "where", "does", "and", "partial",
            "unknown", "chars", "tabs", "newlines", "multiple", "spaces", "special", "ABC", "XII", "TM", "...",
        ];
        foreach (var w in words) Add("▁" + w, Score(w) + 1.5f, 1);
        foreach (var w in words)
            for (int cut = 1; cut < w.Length; cut++)
            {
                Add(w[..cut], Score(w[..cut]), 1);
                Add(w[cut..], Score(w[cut..]), 1);
                Add("▁" + w[..cut], Score(w[..cut]) + 0.5f, 1);
            }
        foreach (char c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()[]<>/@#&*+=éèàçüößñカ中文字русскийпривет")
        {
            Add(c.ToString(), Score(c.ToString()) - 2f, 1);
            Add("▁" + c, Score(c.ToString()) - 1.5f, 1);
        }
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        for (int len = 2; tokens.Count < size - 1 && len <= 4; len++)
        {
            int count = (int)Math.Pow(letters.Length, len);
            for (int i = 0; i < count && tokens.Count < size - 1; i++)
            {
                var chars = new char[len];
                for (int k = 0, v = i; k < len; k++, v /= letters.Length) chars[k] = letters[v % letters.Length];
                string s = new(chars);
                Add(s, Score(s) - 3f, 1);
                Add("▁" + s, Score(s) - 2.5f, 1);
            }
        }
        tokens.Add("<mask>");
        scores.Add(0f);
        types.Add(3);
        return (tokens.ToArray(), scores.ToArray(), types.ToArray());
    }

    /// <summary>
    /// <paramref name="rules"/> as SentencePiece's precompiled character map: a uint32 (the double array's size in
    /// bytes), the XOR-compressed compact double array of the rules' source strings (UTF-8), then the replacements,
    /// NUL-terminated. Each trie node's children get a block of 256 units of their own (children at BASE ^ label, a
    /// value unit at BASE ^ 0), so every label a walk may try stays inside the array and no two nodes share a block.
    /// </summary>
    public static byte[] Charsmap(IReadOnlyList<(string From, string To)> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        if (rules.Count == 0) throw new ArgumentException("no rules", nameof(rules));
        var blob = new List<byte>();
        var root = new TrieNode();
        foreach (var (from, to) in rules)
        {
            var node = root;
            foreach (byte b in Encoding.UTF8.GetBytes(from))
            {
                if (b == 0) throw new ArgumentException("a rule's source holds NUL", nameof(rules));
                if (!node.Children.TryGetValue(b, out var child)) node.Children[b] = child = new TrieNode();
                node = child;
            }
            node.Value = blob.Count;
            blob.AddRange(Encoding.UTF8.GetBytes(to));
            blob.Add(0);
        }

        var units = new List<uint>(new uint[256]); // block 0: the root at unit 0
        void Place(TrieNode node, int unit)
        {
            // this node's children (and value) block
            int block = units.Count;
            units.AddRange(new uint[256]);
            uint offset = (uint)(unit ^ block);
            if (offset >= 1u << 21) throw new InvalidOperationException("the character map is too large for unextended offsets");
            units[unit] |= offset << 10;
            if (node.Value is int value) units[block] = (1u << 31) | (uint)value;
            foreach (var (label, child) in node.Children.OrderBy(kv => kv.Key))
            {
                int slot = block ^ label;
                units[slot] = label | (child.Value is not null ? 1u << 8 : 0u);
                if (child.Children.Count > 0 || child.Value is not null) Place(child, slot);
            }
        }
        Place(root, 0);

        var map = new byte[4 + 4 * units.Count + blob.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(map, (uint)(4 * units.Count));
        for (int i = 0; i < units.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(4 + 4 * i), units[i]);
        blob.CopyTo(map, 4 + 4 * units.Count);
        return map;
    }

    private sealed class TrieNode
    {
        public Dictionary<byte, TrieNode> Children { get; } = [];
        public int? Value { get; set; }
    }
}
