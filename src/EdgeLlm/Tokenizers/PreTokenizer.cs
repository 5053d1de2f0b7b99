using System.Text;
using System.Text.RegularExpressions;
using static EdgeLlm.Tokenizers.UnicodeData;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// Byte-level BPE pre-tokenization: splits text into words with an ordered list of regexes, the way
/// llama.cpp's unicode_regex_split does. Each regex refines the pieces left by the previous one; within a
/// piece, both the matches and the gaps between them become pieces (nothing is dropped).
/// </summary>
/// <remarks>
/// Exactness notes, all following llama.cpp (src/unicode.cpp):
/// <list type="bullet">
/// <item>The GPT-2 and Llama-3 patterns run as hand-written scanners (unicode_regex_split_custom_gpt2/llama3),
/// whose corner cases (e.g. an unassigned code point matching none of the branches) differ slightly from a regex.</item>
/// <item>A pattern with \p{..} runs on a "collapsed" text: ASCII stays, every other code point becomes one
/// stand-in character for its category (letter, number, ...; non-ASCII whitespace becomes \v), and \p{L} etc.
/// become classes of the stand-in plus the ASCII members. Patterns are ECMAScript regexes (std::regex), so
/// .NET runs them with RegexOptions.ECMAScript: \s is ASCII whitespace only, as in std::regex.</item>
/// <item>A pattern without \p{..} runs on the code points themselves (std::wregex, UTF-32 on Linux). .NET
/// strings are UTF-16, so character classes holding astral ranges are rewritten as surrogate-pair
/// alternations, and positions are mapped back to code points.</item>
/// <item>ECMAScript's <c>$</c> means end of input; .NET's also matches before a final \n, so it becomes <c>\z</c>.</item>
/// </list>
/// </remarks>
internal sealed class PreTokenizer
{
    // The GPT-2 pattern, as llama.cpp spells it (its custom scanner is chosen by this exact text).
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    // Llama 3's pattern with the (?i:...) group spelled out for std::regex.
    internal const string Llama3Pattern = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    internal const string Qwen2Pattern = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt4oPattern = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string TekkenPattern = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string CjkPattern = "[一-龥ࠀ-一가-퟿]+";
    private const string DeepseekLlmLetters = "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";

    /// <summary>Per-family settings llama.cpp derives from tokenizer.ggml.pre (llama_vocab::impl::load).</summary>
    internal sealed record Family(string Name, string[] Patterns, bool IgnoreMerges = false, bool AddBos = false, bool CleanSpaces = true);

    /// <summary>The pre-tokenizer family for a tokenizer.ggml.pre value (null or empty: llama.cpp's "default").</summary>
    /// <exception cref="NotSupportedException">an unknown pre-tokenizer name.</exception>
    public static Family FamilyFor(string? pre)
    {
        string[] gpt2 = [Gpt2Pattern];
        string[] llama3 = [Llama3Pattern];
        string[] qwen2 = [Qwen2Pattern];
        string[] starcoder = [@"\p{N}", Gpt2Pattern];
        string[] deepseek3 = [@"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"];
        string[] poro = [" ?[^(\\s|.,!?…。，、।۔،)]+"];
        return pre switch
        {
            null or "" or "default" => new("default", [@"[\p{P}\$\+<=>\^~\|]+", Gpt2Pattern, @"\p{N}+", "[0-9][0-9][0-9]"]),
            "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2"
                => new("llama3", llama3, IgnoreMerges: true, AddBos: true),
            "deepseek-llm" => new(pre, ["[\r\n]", DeepseekLlmLetters, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", CjkPattern, @"\p{N}+"], CleanSpaces: false),
            "deepseek-coder" => new(pre, ["[\r\n]", @"\s?\p{L}+", @"\s?\p{P}+", CjkPattern, @"\p{N}"], CleanSpaces: false),
            "deepseek-v3" or "hunyuan-dense" => new(pre, deepseek3, CleanSpaces: false),
            "falcon" => new(pre, [@"[\p{P}\$\+<=>\^~\|`]+", Gpt2Pattern, "[0-9][0-9][0-9]"]),
            "mpt" or "olmo" or "jais" or "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es" or "jina-v2-de"
                or "a.x-4.0" or "mellum" or "exaone4" or "jina-v1-en" or "jina-v2-code" or "roberta-bpe" => new(pre, gpt2),
            "trillion" => new(pre, gpt2, CleanSpaces: false),
            "starcoder" or "refact" or "codeshell" or "exaone" or "minerva-7b" => new(pre, starcoder),
            "command-r" or "smollm" => new(pre, starcoder, CleanSpaces: false),
            "qwen2" or "deepseek-r1-qwen" or "hunyuan" or "grok-2" => new(pre, qwen2, CleanSpaces: false),
            "stablelm2" or "megrez" => new(pre, qwen2),
            "dbrx" or "smaug-bpe" => new(pre, llama3),
            "glm4" or "chatglm-bpe" => new(pre, llama3),
            "poro-chat" => new(pre, poro, CleanSpaces: false),
            "bloom" or "gpt3-finnish" => new(pre, poro),
            "tekken" => new(pre, [TekkenPattern], IgnoreMerges: true, AddBos: true, CleanSpaces: false),
            "gpt-4o" or "llama4" => new(pre, [Gpt4oPattern], CleanSpaces: false),
            "chameleon" => new(pre, ["<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", @"\p{N}", @"[\p{P}!-/:-@\[-`{-~]", Gpt2Pattern], AddBos: true, CleanSpaces: false),
            "bailingmoe" or "bailingmoe2" or "llada-moe" => new(pre, [@"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"], CleanSpaces: false),
            "seed-coder" => new(pre, [@"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"], CleanSpaces: false),
            _ => throw new NotSupportedException($"unknown pre-tokenizer type (tokenizer.ggml.pre): '{pre}'"),
        };
    }

    private abstract class Step
    {
        /// <summary>Splits each piece (lengths in code points, in order) into smaller pieces.</summary>
        public abstract List<int> Split(int[] cpts, Context ctx, List<int> pieces);
    }

    /// <summary>Text views built lazily once per Split call and shared by the steps.</summary>
    private sealed class Context(int[] cpts)
    {
        private string? _collapsed;
        private string? _wide;
        private int[]? _wideToCpt;

        /// <summary>One character per code point: ASCII as is, others replaced by their category's stand-in.</summary>
        public string Collapsed => _collapsed ??= Collapse(cpts);

        /// <summary>UTF-16 text with non-ASCII whitespace as \v (llama.cpp's std::wregex input).</summary>
        public string Wide { get { BuildWide(); return _wide!; } }

        /// <summary>Code point index of each UTF-16 index (and of the end).</summary>
        public int[] WideToCpt { get { BuildWide(); return _wideToCpt!; } }

        /// <summary>UTF-16 index of each code point index.</summary>
        public int[] CptToWide { get; private set; } = [];

        private void BuildWide()
        {
            if (_wide is not null) return;
            var sb = new StringBuilder(cpts.Length);
            var map = new List<int>(cpts.Length + 1);
            var back = new int[cpts.Length + 1];
            for (int i = 0; i < cpts.Length; i++)
            {
                back[i] = sb.Length;
                int c = cpts[i];
                if (c > 0x7F && (Flags(c) & CptFlags.Whitespace) != 0) c = 0x0B;
                int before = sb.Length;
                Append(sb, c);
                for (int k = before; k < sb.Length; k++) map.Add(i);
            }
            back[cpts.Length] = sb.Length;
            map.Add(cpts.Length);
            _wide = sb.ToString();
            _wideToCpt = map.ToArray();
            CptToWide = back;
        }

        private static string Collapse(int[] cpts)
        {
            var chars = new char[cpts.Length];
            for (int i = 0; i < cpts.Length; i++)
            {
                int c = cpts[i];
                if (c < 128) { chars[i] = (char)c; continue; }
                var f = Flags(c);
                if ((f & CptFlags.Whitespace) != 0) { chars[i] = '\v'; continue; }
                chars[i] = (f & CptFlags.CategoryMask) switch
                {
                    CptFlags.Number => '\u00D1',
                    CptFlags.Letter => '\u00D2',
                    CptFlags.Punctuation => '\u00D3',
                    CptFlags.AccentMark => '\u00D4',
                    CptFlags.Symbol => '\u00D5',
                    _ => '\u00D0',
                };
            }
            return new string(chars);
        }
    }

    private readonly Step[] _steps;

    public PreTokenizer(IReadOnlyList<string> patterns)
    {
        _steps = new Step[patterns.Count];
        for (int i = 0; i < patterns.Count; i++)
        {
            _steps[i] = patterns[i] switch
            {
                Gpt2Pattern => new Gpt2Step(),
                Llama3Pattern => new Llama3Step(),
                var p => new RegexStep(p),
            };
        }
    }

    /// <summary>Splits <paramref name="text"/> into words (not yet byte-encoded).</summary>
    public List<string> Split(string text)
    {
        var cpts = CodePoints(text);
        var ctx = new Context(cpts);
        var pieces = new List<int> { cpts.Length };
        foreach (var step in _steps) pieces = step.Split(cpts, ctx, pieces);
        var words = new List<string>(pieces.Count);
        var sb = new StringBuilder();
        int start = 0;
        foreach (int len in pieces)
        {
            sb.Clear();
            for (int i = start; i < start + len; i++) Append(sb, cpts[i]);
            words.Add(sb.ToString());
            start += len;
        }
        return words;
    }

    // ---- hand-written scanners (llama.cpp unicode_regex_split_custom_gpt2 / _llama3) ----

    /// <summary>Bounded view of one piece: code points and flags outside it read as "nothing".</summary>
    private readonly ref struct Piece(int[] cpts, int ini, int end)
    {
        public const int OutOfRange = -1;
        public int Cpt(int pos) => pos >= ini && pos < end ? cpts[pos] : OutOfRange;
        public CptFlags Fl(int pos) => pos >= ini && pos < end ? Flags(cpts[pos]) : CptFlags.None;
    }

    private static bool IsWs(CptFlags f) => (f & CptFlags.Whitespace) != 0;
    private static bool IsLetter(CptFlags f) => (f & CptFlags.Letter) != 0;
    private static bool IsNumber(CptFlags f) => (f & CptFlags.Number) != 0;

    /// <summary>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</summary>
    private sealed class Gpt2Step : Step
    {
        public override List<int> Split(int[] cpts, Context ctx, List<int> pieces)
        {
            var output = new List<int>(pieces.Count);
            int start = 0;
            foreach (int length in pieces)
            {
                int ini = start, end = start + length;
                start = end;
                var p = new Piece(cpts, ini, end);
                int prevEnd = ini;
                int Add(int e) { int len = e - prevEnd; if (len > 0) output.Add(len); prevEnd = e; return len; }

                for (int pos = ini; pos < end;)
                {
                    int cpt = p.Cpt(pos);
                    var flags = p.Fl(pos);
                    if (cpt == '\'' && pos + 1 < end)
                    {
                        int next = p.Cpt(pos + 1);
                        if (next is 's' or 't' or 'm' or 'd') { pos += Add(pos + 2); continue; }
                        if (pos + 2 < end)
                        {
                            int next2 = p.Cpt(pos + 2);
                            if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l')) { pos += Add(pos + 3); continue; }
                        }
                    }
                    var flags2 = cpt == ' ' ? p.Fl(pos + 1) : flags;
                    if (IsLetter(flags2))
                    {
                        if (cpt == ' ') pos++;
                        while (IsLetter(flags2)) flags2 = p.Fl(++pos);
                        Add(pos);
                        continue;
                    }
                    if (IsNumber(flags2))
                    {
                        if (cpt == ' ') pos++;
                        while (IsNumber(flags2)) flags2 = p.Fl(++pos);
                        Add(pos);
                        continue;
                    }
                    if (!(IsWs(flags2) || IsLetter(flags2) || IsNumber(flags2)) && flags2 != CptFlags.None)
                    {
                        if (cpt == ' ') pos++;
                        while (!(IsWs(flags2) || IsLetter(flags2) || IsNumber(flags2)) && flags2 != CptFlags.None) flags2 = p.Fl(++pos);
                        Add(pos);
                        continue;
                    }
                    int nws = 0;
                    while (IsWs(p.Fl(pos + nws))) nws++;
                    if (nws > 1 && p.Cpt(pos + nws) != Piece.OutOfRange) { pos += nws - 1; Add(pos); continue; }
                    if (nws > 0) { pos += nws; Add(pos); continue; }
                    Add(++pos);
                }
            }
            return output;
        }
    }

    /// <summary>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</summary>
    private sealed class Llama3Step : Step
    {
        public override List<int> Split(int[] cpts, Context ctx, List<int> pieces)
        {
            var output = new List<int>(pieces.Count);
            int start = 0;
            foreach (int length in pieces)
            {
                int ini = start, end = start + length;
                start = end;
                var p = new Piece(cpts, ini, end);
                int prevEnd = ini;
                int Add(int e) { int len = e - prevEnd; if (len > 0) output.Add(len); prevEnd = e; return len; }

                for (int pos = ini; pos < end;)
                {
                    int cpt = p.Cpt(pos);
                    var flags = p.Fl(pos);
                    if (cpt == '\'' && pos + 1 < end)
                    {
                        int next = ToLowerAscii(p.Cpt(pos + 1));
                        if (next is 's' or 't' or 'm' or 'd') { pos += Add(pos + 2); continue; }
                        if (pos + 2 < end)
                        {
                            int next2 = ToLowerAscii(p.Cpt(pos + 2));
                            if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l')) { pos += Add(pos + 3); continue; }
                        }
                    }
                    // [^\r\n\p{L}\p{N}]?\p{L}+
                    if (!(cpt == '\r' || cpt == '\n' || IsNumber(flags)))
                    {
                        if (IsLetter(flags) || IsLetter(p.Fl(pos + 1)))
                        {
                            pos++;
                            while (IsLetter(p.Fl(pos))) pos++;
                            Add(pos);
                            continue;
                        }
                    }
                    // \p{N}{1,3}
                    if (IsNumber(flags))
                    {
                        int first = pos;
                        while (IsNumber(p.Fl(pos)))
                        {
                            if (++pos - first >= 3) { Add(pos); first = pos; }
                        }
                        Add(pos);
                        continue;
                    }
                    // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the first code point's flags for "in range")
                    var flags2 = cpt == ' ' ? p.Fl(pos + 1) : flags;
                    if (!(IsWs(flags2) || IsLetter(flags2) || IsNumber(flags2)) && flags != CptFlags.None)
                    {
                        if (cpt == ' ') pos++;
                        while (!(IsWs(flags2) || IsLetter(flags2) || IsNumber(flags2)) && flags2 != CptFlags.None) flags2 = p.Fl(++pos);
                        int c2 = p.Cpt(pos);
                        while (c2 is '\r' or '\n') c2 = p.Cpt(++pos);
                        Add(pos);
                        continue;
                    }
                    int nws = 0, lastRn = 0;
                    while (IsWs(p.Fl(pos + nws)))
                    {
                        int c2 = p.Cpt(pos + nws);
                        if (c2 is '\r' or '\n') lastRn = pos + nws + 1;
                        nws++;
                    }
                    if (lastRn > 0) { pos = lastRn; Add(pos); continue; }
                    if (nws > 1 && p.Cpt(pos + nws) != Piece.OutOfRange) { pos += nws - 1; Add(pos); continue; }
                    if (nws > 0) { pos += nws; Add(pos); continue; }
                    Add(++pos);
                }
            }
            return output;
        }
    }

    // ---- general regexes ----

    private sealed class RegexStep : Step
    {
        private static readonly string[] s_categories = [@"\p{N}", @"\p{L}", @"\p{P}", @"\p{M}", @"\p{S}", @"\p{Lu}", @"\p{Ll}", @"\p{Lt}", @"\p{Lm}", @"\p{Lo}"];
        private readonly Regex _regex;
        private readonly bool _collapsed;

        public RegexStep(string pattern)
        {
            _collapsed = s_categories.Any(c => pattern.Contains(c, StringComparison.Ordinal));
            string net;
            if (_collapsed)
            {
                if (pattern.Any(ch => ch >= 128))
                    throw new NotSupportedException($"pre-tokenizer regex mixes unicode categories and non-ASCII characters (llama.cpp does not support it either): {pattern}");
                net = CollapsePattern(pattern);
            }
            else
            {
                net = RewriteAstralClasses(pattern);
            }
            net = DollarToEndOfInput(net);
            _regex = new Regex(net, RegexOptions.ECMAScript);
        }

        public override List<int> Split(int[] cpts, Context ctx, List<int> pieces)
        {
            var output = new List<int>(pieces.Count);
            string text = _collapsed ? ctx.Collapsed : ctx.Wide;
            int[]? toCpt = _collapsed ? null : ctx.WideToCpt;
            int[]? toWide = _collapsed ? null : ctx.CptToWide;
            int start = 0; // in code points
            foreach (int length in pieces)
            {
                int wStart = toWide is null ? start : toWide[start];
                int wEnd = toWide is null ? start + length : toWide[start + length];
                int prev = start;
                for (var m = _regex.Match(text, wStart, wEnd - wStart); m.Success; m = m.NextMatch())
                {
                    int mStart = toCpt is null ? m.Index : toCpt[m.Index];
                    int mEnd = toCpt is null ? m.Index + m.Length : toCpt[m.Index + m.Length];
                    if (mStart > prev) output.Add(mStart - prev);
                    output.Add(mEnd - mStart);
                    prev = mEnd;
                }
                if (prev < start + length) output.Add(start + length - prev);
                start += length;
            }
            return output;
        }

        /// <summary>llama.cpp's category rewrite: \p{X} becomes [stand-in + ASCII members] (no extra brackets inside a class).</summary>
        private static string CollapsePattern(string p)
        {
            var sb = new StringBuilder();
            bool inside = false;
            for (int i = 0; i < p.Length; i++)
            {
                if (p[i] == '[' && (i == 0 || p[i - 1] != '\\')) { sb.Append('['); inside = true; continue; }
                if (inside && p[i] == ']' && p[i - 1] != '\\') { sb.Append(']'); inside = false; continue; }
                if (p[i] == '\\' && i + 3 < p.Length && p[i + 1] == 'p' && p[i + 2] == '{')
                {
                    int close = p.IndexOf('}', i + 3);
                    if (close >= 0 && close <= i + 10)
                    {
                        string members = p.Substring(i, close - i + 1) switch
                        {
                            @"\p{N}" => @"\u00D10-9",
                            @"\p{L}" or @"\p{Lu}" or @"\p{Ll}" or @"\p{Lt}" or @"\p{Lm}" or @"\p{Lo}" => @"\u00D2A-Za-z",
                            @"\p{P}" => @"\u00D3!-#%-*,-/:-;?-@\[-\]_\{\}",
                            @"\p{M}" => @"\u00D4",
                            @"\p{S}" => @"\u00D5\$\+<->^`\|",
                            _ => "",
                        };
                        if (members.Length > 0)
                        {
                            if (!inside) sb.Append('[');
                            sb.Append(members);
                            if (!inside) sb.Append(']');
                            i = close;
                            continue;
                        }
                    }
                }
                sb.Append(p[i]);
            }
            return sb.ToString();
        }

        /// <summary>Unescaped <c>$</c> outside a class becomes <c>\z</c> (ECMAScript: end of input only).</summary>
        private static string DollarToEndOfInput(string p)
        {
            var sb = new StringBuilder(p.Length + 4);
            bool inClass = false;
            for (int i = 0; i < p.Length; i++)
            {
                char c = p[i];
                if (c == '\\' && i + 1 < p.Length) { sb.Append(c).Append(p[++i]); continue; }
                if (inClass) { if (c == ']') inClass = false; sb.Append(c); continue; }
                if (c == '[') { inClass = true; sb.Append(c); if (i + 1 < p.Length && p[i + 1] == '^') sb.Append(p[++i]); if (i + 1 < p.Length && p[i + 1] == ']') sb.Append(p[++i]); continue; }
                if (c == '$') { sb.Append(@"\z"); continue; }
                sb.Append(c);
            }
            return sb.ToString();
        }

        /// <summary>
        /// A class holding astral code points (surrogate pairs in UTF-16) becomes
        /// (?:[BMP members]|\uD801[\uDC00-\uDC4F]|...) so that it matches one code point, as in std::wregex.
        /// </summary>
        private static string RewriteAstralClasses(string p)
        {
            var sb = new StringBuilder(p.Length);
            for (int i = 0; i < p.Length; i++)
            {
                char c = p[i];
                if (c == '\\' && i + 1 < p.Length) { sb.Append(c).Append(p[++i]); continue; }
                if (c != '[') { sb.Append(c); continue; }
                // parse the class body
                int j = i + 1;
                bool negated = j < p.Length && p[j] == '^';
                if (negated) j++;
                var bmp = new StringBuilder();
                var astral = new List<(int Lo, int Hi)>();
                bool first = true;
                while (j < p.Length && (p[j] != ']' || first))
                {
                    first = false;
                    (int lo, string loText, int next) = ReadClassAtom(p, j);
                    j = next;
                    if (j + 1 < p.Length && p[j] == '-' && p[j + 1] != ']')
                    {
                        (int hi, string hiText, int after) = ReadClassAtom(p, j + 1);
                        j = after;
                        if (lo >= 0x10000 || hi >= 0x10000)
                        {
                            if (lo < 0x10000) { bmp.Append(loText).Append("-\\uFFFF"); lo = 0x10000; }
                            astral.Add((lo, hi));
                        }
                        else bmp.Append(loText).Append('-').Append(hiText);
                    }
                    else if (lo >= 0x10000) astral.Add((lo, lo));
                    else bmp.Append(loText);
                }
                if (j >= p.Length) throw new ArgumentException($"unterminated character class in pre-tokenizer regex: {p}");
                i = j; // at ']'
                if (astral.Count == 0) { sb.Append('[').Append(negated ? "^" : "").Append(bmp).Append(']'); continue; }
                if (negated) throw new NotSupportedException($"negated character class with astral code points in pre-tokenizer regex: {p}");
                sb.Append("(?:");
                if (bmp.Length > 0) sb.Append('[').Append(bmp).Append("]|");
                bool firstAlt = true;
                foreach (var (lo, hi) in astral)
                {
                    for (int h = HighOf(lo); h <= HighOf(hi); h++)
                    {
                        int from = Math.Max(lo, 0x10000 + ((h - 0xD800) << 10));
                        int to = Math.Min(hi, 0x10000 + ((h - 0xD800) << 10) + 0x3FF);
                        if (!firstAlt) sb.Append('|');
                        firstAlt = false;
                        sb.Append($"\\u{h:X4}[\\u{LowOf(from):X4}-\\u{LowOf(to):X4}]");
                    }
                }
                sb.Append(')');
            }
            return sb.ToString();

            static int HighOf(int cpt) => 0xD800 + ((cpt - 0x10000) >> 10);
            static int LowOf(int cpt) => 0xDC00 + ((cpt - 0x10000) & 0x3FF);
        }

        /// <summary>One member of a class: its code point (or -1 for an escape class like \s) and its pattern text.</summary>
        private static (int Cpt, string Text, int Next) ReadClassAtom(string p, int j)
        {
            if (p[j] == '\\')
            {
                string t = p.Substring(j, 2);
                int cpt = p[j + 1] switch { 'r' => '\r', 'n' => '\n', 't' => '\t', 's' or 'S' or 'd' or 'D' or 'w' or 'W' => -1, var e => e };
                return (cpt, t, j + 2);
            }
            if (char.IsHighSurrogate(p[j]) && j + 1 < p.Length && char.IsLowSurrogate(p[j + 1]))
                return (char.ConvertToUtf32(p[j], p[j + 1]), p.Substring(j, 2), j + 2);
            return (p[j], p[j].ToString(), j + 1);
        }
    }
}
