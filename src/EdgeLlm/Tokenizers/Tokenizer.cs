using System.Text;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// A tokenizer built from a GGUF file's tokenizer.ggml.* metadata that reproduces llama.cpp's
/// llama_tokenize / llama_token_to_piece / llama_detokenize (src/llama-vocab.cpp) exactly.
/// <c>llama</c> vocabularies get SentencePiece BPE (<see cref="SpmTokenizer"/>), <c>gpt2</c> vocabularies
/// byte-level BPE with the pre-tokenizer named by tokenizer.ggml.pre (<see cref="ByteLevelBpeTokenizer"/>), <c>bert</c>
/// vocabularies WordPiece (<see cref="WordPieceTokenizer"/>).
/// Instances are immutable and safe to use from several threads.
/// </summary>
public abstract class Tokenizer
{
    /// <summary>The id used for "no such token" (llama.cpp's LLAMA_TOKEN_NULL).</summary>
    public const int NoToken = -1;

    private protected readonly string[] _tokens;
    private protected readonly float[] _scores;
    private protected readonly TokenAttributes[] _attrs;
    private protected readonly Dictionary<string, int> _tokenToId;
    private readonly int[] _specialTokens; // CONTROL | USER_DEFINED | UNKNOWN ids, longest text first
    private readonly HashSet<int> _eog;
    private readonly byte[]?[] _pieces;

    private protected Tokenizer(VocabData v)
    {
        _tokens = v.Tokens;
        _scores = v.Scores;
        _attrs = v.Attrs;
        _tokenToId = v.TokenToId;
        _specialTokens = v.SpecialTokens;
        _eog = v.Eog;
        _pieces = new byte[]?[v.Tokens.Length];
        Model = v.Model;
        Pre = v.Pre;
        Bos = v.Bos;
        Eos = v.Eos;
        Eot = v.Eot == NoToken ? null : v.Eot;
        Eom = v.Eom == NoToken ? null : v.Eom;
        Unknown = v.Unk == NoToken ? null : v.Unk;
        Padding = v.Pad == NoToken ? null : v.Pad;
        Separator = v.Sep == NoToken ? null : v.Sep;
        AddBos = v.AddBos;
        AddEos = v.AddEos;
        AddSep = v.AddSep;
        AddSpacePrefix = v.AddSpacePrefix;
        CleanSpaces = v.CleanSpaces;
    }

    /// <summary>tokenizer.ggml.model (<c>llama</c>, <c>gpt2</c> or <c>bert</c>).</summary>
    public string Model { get; }

    /// <summary>tokenizer.ggml.pre (null for SentencePiece vocabularies or when absent).</summary>
    public string? Pre { get; }

    /// <summary>Number of tokens in the vocabulary.</summary>
    public int VocabSize => _tokens.Length;

    /// <summary>Beginning-of-sequence id, or <see cref="NoToken"/> (-1).</summary>
    public int Bos { get; }

    /// <summary>End-of-sequence id, or <see cref="NoToken"/> (-1).</summary>
    public int Eos { get; }

    /// <summary>End-of-turn id (metadata, else found by text as llama.cpp does), or null.</summary>
    public int? Eot { get; }

    /// <summary>End-of-message id (&lt;|eom_id|&gt;), or null.</summary>
    public int? Eom { get; }

    /// <summary>Unknown-token id, or null.</summary>
    public int? Unknown { get; }

    /// <summary>Padding id, or null.</summary>
    public int? Padding { get; }

    /// <summary>Separator id (BERT's [SEP]), or null.</summary>
    public int? Separator { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts the separator last (WordPiece vocabularies: [CLS] text [SEP]).</summary>
    public bool AddSep { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts BOS first.</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts EOS last.</summary>
    public bool AddEos { get; }

    /// <summary>SentencePiece: a space is put before the text (and before text following a special token).</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Whether detokenizing cleans " ?", " !", " ." ... the way Hugging Face's clean_up_tokenization does.</summary>
    public bool CleanSpaces { get; }

    /// <summary>Every id that ends generation (EOS, EOT, EOM and the others llama.cpp marks), ascending.</summary>
    public IReadOnlyList<int> EndOfGenerationTokens => _eog.Order().ToArray();

    /// <summary>Whether <paramref name="id"/> ends generation (llama_vocab_is_eog).</summary>
    public bool IsEndOfGeneration(int id) => _eog.Contains(id);

    /// <summary>The raw vocabulary string of a token (e.g. "▁the", "Ġthe", "&lt;0x0A&gt;").</summary>
    public string TokenText(int id) => _tokens[CheckId(id)];

    /// <summary>The token's score (SentencePiece log-probability; 0 when the file has none).</summary>
    public float TokenScore(int id) => _scores[CheckId(id)];

    /// <summary>The token's attributes as llama.cpp holds them after loading.</summary>
    public TokenAttributes Attributes(int id) => _attrs[CheckId(id)];

    /// <summary>The token's type as llama.cpp sees it after loading.</summary>
    public TokenType TokenType(int id)
    {
        var a = _attrs[CheckId(id)];
        if ((a & TokenAttributes.Unknown) != 0) return Tokenizers.TokenType.Unknown;
        if ((a & TokenAttributes.Control) != 0) return Tokenizers.TokenType.Control;
        if ((a & TokenAttributes.UserDefined) != 0) return Tokenizers.TokenType.UserDefined;
        if ((a & TokenAttributes.Byte) != 0) return Tokenizers.TokenType.Byte;
        if ((a & TokenAttributes.Unused) != 0) return Tokenizers.TokenType.Unused;
        if ((a & TokenAttributes.Normal) != 0) return Tokenizers.TokenType.Normal;
        return Tokenizers.TokenType.Undefined;
    }

    /// <summary>The id of a vocabulary string, or null.</summary>
    public int? TokenId(string text) => _tokenToId.TryGetValue(text, out int id) ? id : null;

    private int CheckId(int id) => (uint)id < (uint)_tokens.Length ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary (size {_tokens.Length})");

    // ------------------------------------------------------------------ encoding

    /// <summary>
    /// Tokenizes <paramref name="text"/> as llama_tokenize does. <paramref name="addSpecial"/> adds BOS when
    /// the vocabulary says add_bos and EOS when it says add_eos; <paramref name="parseSpecial"/> lets control
    /// tokens' text (e.g. "&lt;|begin_of_text|&gt;") become those tokens. User-defined tokens are always split out.
    /// </summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var fragments = new List<Fragment>();
        if (text.Length > 0)
        {
            fragments.Add(Fragment.Text(0, text.Length));
            PartitionSpecial(text, fragments, parseSpecial);
        }
        var output = new List<int>();
        if (addSpecial && AddBos)
        {
            if (Bos == NoToken) throw new InvalidOperationException("the vocabulary asks for BOS (add_bos_token) but has no BOS id");
            output.Add(Bos);
        }
        EncodeFragments(text, fragments, output);
        if (addSpecial && AddEos)
        {
            if (Eos == NoToken) throw new InvalidOperationException("the vocabulary asks for EOS (add_eos_token) but has no EOS id");
            output.Add(Eos);
        }
        // (WordPiece only, as llama.cpp: a BPE or UGM vocabulary's add_sep only lays out pairs, see TextReranker)
        if (addSpecial && AddSep && this is WordPieceTokenizer) output.Add(Separator!.Value);
        return output.ToArray();
    }

    /// <summary>Tokenizes the text fragments and copies the token fragments, in order.</summary>
    private protected abstract void EncodeFragments(string text, List<Fragment> fragments, List<int> output);

    /// <summary>A piece of the input: raw text (Token = -1) or an already-recognised special token.</summary>
    private protected readonly record struct Fragment(int Token, int Offset, int Length)
    {
        public static Fragment Text(int offset, int length) => new(NoToken, offset, length);
        public bool IsText => Token == NoToken;
    }

    /// <summary>
    /// Splits special tokens out of the text fragments (llama.cpp tokenizer_st_partition): longest token text
    /// first, every occurrence, honouring lstrip/rstrip. Control and unknown tokens only when parseSpecial.
    /// </summary>
    private void PartitionSpecial(string raw, List<Fragment> fragments, bool parseSpecial)
    {
        var next = new List<Fragment>(fragments.Count);
        foreach (int id in _specialTokens)
        {
            var attr = _attrs[id];
            if (!parseSpecial && (attr & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            string tokenText = _tokens[id];
            next.Clear();
            bool changed = false;
            foreach (var f in fragments)
            {
                if (!f.IsText) { next.Add(f); continue; }
                int off = f.Offset, len = f.Length;
                while (true)
                {
                    int match = raw.IndexOf(tokenText, off, len, StringComparison.Ordinal);
                    if (match < 0) { next.Add(Fragment.Text(off, len)); break; }
                    changed = true;
                    if (match > off)
                    {
                        int leftLen = match - off;
                        if ((attr & TokenAttributes.LStrip) != 0)
                            while (leftLen > 0 && IsCSpace(raw[off + leftLen - 1])) leftLen--;
                        if (leftLen > 0) next.Add(Fragment.Text(off, leftLen));
                    }
                    next.Add(new Fragment(id, 0, 0));
                    int rightOff = match + tokenText.Length, rightLen = off + len - rightOff;
                    if ((attr & TokenAttributes.RStrip) != 0)
                        while (rightLen > 0 && IsCSpace(raw[rightOff])) { rightOff++; rightLen--; }
                    if (rightLen <= 0) break;
                    off = rightOff;
                    len = rightLen;
                }
            }
            if (changed) { fragments.Clear(); fragments.AddRange(next); }
        }
    }

    /// <summary>C's isspace in the "C" locale (what llama.cpp's strip uses, byte by byte).</summary>
    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    // ------------------------------------------------------------------ decoding

    /// <summary>
    /// The bytes of a token's text as llama_token_to_piece(special: false) gives them: control and unknown
    /// tokens give nothing, byte tokens their byte, SentencePiece's ▁ becomes a space, byte-level BPE
    /// characters become the bytes they stand for, user-defined tokens their text.
    /// </summary>
    public byte[] TokenToBytes(int id)
    {
        CheckId(id);
        return _pieces[id] ??= ComputePiece(id);
    }

    /// <summary>The piece with special=true semantics: control/unknown tokens give their own text.</summary>
    public byte[] TokenToBytes(int id, bool special)
    {
        if (!special) return TokenToBytes(id);
        var a = _attrs[CheckId(id)];
        return (a & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0 ? Encoding.UTF8.GetBytes(_tokens[id]) : TokenToBytes(id);
    }

    private byte[] ComputePiece(int id)
    {
        var a = _attrs[id];
        if ((a & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) return [];
        if ((a & TokenAttributes.UserDefined) != 0) return Encoding.UTF8.GetBytes(_tokens[id]);
        if ((a & TokenAttributes.Normal) != 0) return NormalPiece(_tokens[id]);
        if ((a & TokenAttributes.Byte) != 0) return [ParseByteToken(_tokens[id])];
        return []; // UNDEFINED / UNUSED: llama.cpp emits nothing
    }

    /// <summary>The bytes of a NORMAL token's text.</summary>
    private protected abstract byte[] NormalPiece(string text);

    /// <summary>The byte of "&lt;0xNN&gt;".</summary>
    private static byte ParseByteToken(string text)
    {
        if (text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
            && byte.TryParse(text.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
            return b;
        throw new FormatException($"byte token '{text}' is not of the form <0xNN>");
    }

    /// <summary>
    /// Detokenizes as llama_detokenize(remove_special: false, unparse_special: false): the pieces joined, the
    /// SentencePiece prefix space taken off the first piece, and (for vocabularies with clean_spaces) the
    /// clean-up of " ." " ," " 's" ...; invalid UTF-8 becomes U+FFFD.
    /// </summary>
    public string Decode(IEnumerable<int> ids) => Detokenize(ids, removeSpecial: false, unparseSpecial: false);

    /// <summary>llama_detokenize with its two flags (see <see cref="Decode"/>).</summary>
    public string Detokenize(IEnumerable<int> ids, bool removeSpecial, bool unparseSpecial)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var list = ids as IReadOnlyList<int> ?? ids.ToArray();
        int start = 0, count = list.Count;
        bool removeSpace = AddSpacePrefix;
        if (removeSpecial && AddBos && count > 0 && list[0] == Bos) { removeSpace = false; start++; count--; }
        if (removeSpecial && AddEos && count > 0 && list[start + count - 1] == Eos) count--;
        var bytes = new List<byte>();
        for (int i = start; i < start + count; i++)
        {
            var piece = TokenToBytes(list[i], unparseSpecial);
            int skip = removeSpace && piece.Length > 0 && piece[0] == (byte)' ' ? 1 : 0;
            removeSpace = false;
            for (int k = skip; k < piece.Length; k++) bytes.Add(piece[k]);
        }
        if (CleanSpaces) CleanUp(bytes);
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>llama.cpp's three clean-up passes over the bytes (only when the vocabulary sets clean_spaces).</summary>
    private static void CleanUp(List<byte> t)
    {
        if (t.Count == 0) return;
        // pass 1: " ?", " !", " .", " ," lose the space
        var o = new List<byte>(t.Count) { t[0] };
        for (int i = 1; i < t.Count; i++)
        {
            byte x = t[i];
            if (t[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') o.RemoveAt(o.Count - 1);
            o.Add(x);
        }
        // pass 2: a lone apostrophe between spaces loses both spaces
        var src = o;
        o = new List<byte>(src.Count) { src[0] };
        var buf = src.ToArray();
        for (int i = 1; i < buf.Length; i++)
        {
            byte x = buf[i];
            if (x == '\'' && i + 1 < buf.Length && buf[i - 1] == ' ' && buf[i + 1] == ' ')
            {
                o.RemoveAt(o.Count - 1);
                buf[++i] = 0; // llama.cpp overwrites the next space with NUL and skips it (the NUL is then no space for the next test)
            }
            o.Add(x);
        }
        // pass 3: " 's", " 'm", " 're", " 've" lose the space
        src = o;
        o = new List<byte>(src.Count) { src[0] };
        for (int i = 1; i < src.Count; i++)
        {
            byte x = src[i];
            if (src[i - 1] == ' ' && x == '\'' && i + 1 < src.Count)
            {
                byte x1 = src[i + 1];
                if (x1 is (byte)'s' or (byte)'m') o.RemoveAt(o.Count - 1);
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < src.Count)
                {
                    byte x2 = src[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) o.RemoveAt(o.Count - 1);
                }
            }
            o.Add(x);
        }
        t.Clear();
        t.AddRange(o);
    }

    // ------------------------------------------------------------------ loading

    /// <summary>Builds the tokenizer described by a GGUF file's metadata (a vocab-only file is enough).</summary>
    /// <exception cref="NotSupportedException">a tokenizer model or pre-tokenizer this library does not implement.</exception>
    /// <exception cref="InvalidDataException">missing or malformed tokenizer metadata.</exception>
    public static Tokenizer FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string model = file.GetString("tokenizer.ggml.model")
            ?? throw new InvalidDataException($"{file.FilePath}: no tokenizer.ggml.model in the metadata (not a model or vocabulary file?)");
        return model switch
        {
            "llama" => new SpmTokenizer(VocabData.Load(file, model, null)),
            "gpt2" => CreateBpe(file, model),
            "bert" => new WordPieceTokenizer(VocabData.Load(file, model, null)),
            "t5" => new UgmTokenizer(VocabData.Load(file, model, null)),
            _ => throw new NotSupportedException($"{file.FilePath}: tokenizer model '{model}' is not supported (supported: 'llama' = SentencePiece, 'gpt2' = byte-level BPE, 'bert' = WordPiece, 't5' = SentencePiece unigram)"),
        };
    }

    private static ByteLevelBpeTokenizer CreateBpe(GgufFile file, string model)
    {
        string? pre = file.GetString("tokenizer.ggml.pre");
        var family = PreTokenizer.FamilyFor(pre);
        var v = VocabData.Load(file, model, family);
        string[] merges = file.TryGetValue("tokenizer.ggml.merges", out var mv)
            ? mv.AsStringArray() ?? throw new InvalidDataException($"{file.FilePath}: tokenizer.ggml.merges is not a string array")
            : throw new InvalidDataException($"{file.FilePath}: byte-level BPE vocabulary without tokenizer.ggml.merges");
        return new ByteLevelBpeTokenizer(v, family, merges);
    }
}
