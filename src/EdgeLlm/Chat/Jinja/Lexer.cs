using System.Globalization;
using System.Text;

namespace EdgeLlm.Chat.Jinja;

internal enum TokenKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof }

internal readonly record struct Token(TokenKind Kind, string Text, int Line, int Column)
{
    public bool IsOp(string op) => Kind == TokenKind.Op && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
}

/// <summary>
/// Splits a template into text and tag tokens with the whitespace rules of Hugging Face's Jinja2
/// environment (jinja2/lexer.py): <c>trim_blocks</c> (drop the first newline after a block or
/// comment tag), <c>lstrip_blocks</c> (drop spaces and tabs between the start of a line and a
/// block or comment tag), the <c>-</c> markers (<c>{%-</c> strips all whitespace before,
/// <c>-%}</c> all after), <c>{%+</c> (no lstrip), and keep_trailing_newline off (one trailing
/// newline of the source is dropped).
/// </summary>
internal sealed class Lexer
{
    private readonly string _s;
    private readonly List<int> _lineStarts = [0];
    private readonly List<Token> _tokens = [];

    private Lexer(string source)
    {
        // jinja2 normalizes \r\n and \r to \n, and drops one final newline (keep_trailing_newline=False).
        string s = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (s.EndsWith('\n')) s = s[..^1];
        _s = s;
        for (int i = 0; i < s.Length; i++)
            if (s[i] == '\n') _lineStarts.Add(i + 1);
    }

    public static List<Token> Tokenize(string source)
    {
        var lexer = new Lexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private (int Line, int Column) Position(int offset)
    {
        int idx = _lineStarts.BinarySearch(offset);
        if (idx < 0) idx = ~idx - 1;
        return (idx + 1, offset - _lineStarts[idx] + 1);
    }

    private TemplateException Error(string reason, int offset)
    {
        var (line, col) = Position(offset);
        return new TemplateException(reason, line, col);
    }

    private void Add(TokenKind kind, string text, int offset)
    {
        var (line, col) = Position(offset);
        _tokens.Add(new Token(kind, text, line, col));
    }

    private void Run()
    {
        int pos = 0;
        bool lineStarting = true; // jinja2: did the previous match end with a newline (or is this the start)?
        while (pos < _s.Length)
        {
            int idx = FindTagStart(pos);
            string text = _s[pos..idx];
            int textOffset = pos;
            if (idx >= _s.Length)
            {
                if (text.Length > 0) Add(TokenKind.Text, text, textOffset);
                break;
            }
            char kind = _s[idx + 1];
            char mod = idx + 2 < _s.Length ? _s[idx + 2] : '\0';
            if (mod == '-') text = PyFormat.Strip(text, null, left: false, right: true);
            else if (kind != '{' && mod != '+')
            {
                // lstrip_blocks: only spaces/tabs between the line start and the tag.
                int lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || lineStarting) && text.AsSpan(lpos).IndexOfAnyExcept(' ', '\t') < 0)
                    text = text[..lpos];
            }
            if (text.Length > 0) Add(TokenKind.Text, text, textOffset);

            int inner = idx + 2 + (mod is '-' or '+' ? 1 : 0);
            if (kind == '#')
            {
                int end = _s.IndexOf("#}", inner, StringComparison.Ordinal);
                if (end < 0) throw Error("unclosed comment: missing '#}'", idx);
                bool strip = end > inner && _s[end - 1] == '-';
                pos = AfterTag(end + 2, strip, trimNewline: true);
            }
            else if (kind == '%' && TryRaw(idx, inner, out int rawEnd))
            {
                pos = rawEnd;
            }
            else
            {
                bool block = kind == '%';
                Add(block ? TokenKind.BlockBegin : TokenKind.VarBegin, block ? "{%" : "{{", idx);
                var (end, strip) = TagTokens(inner, block ? '%' : '}', idx);
                Add(block ? TokenKind.BlockEnd : TokenKind.VarEnd, block ? "%}" : "}}", end);
                pos = AfterTag(end + 2, strip, trimNewline: block);
            }
            lineStarting = pos > 0 && _s[pos - 1] == '\n';
        }
        Add(TokenKind.Eof, "", _s.Length);
    }

    private int FindTagStart(int from)
    {
        for (int i = from; i + 1 < _s.Length; i++)
            if (_s[i] == '{' && _s[i + 1] is '{' or '%' or '#') return i;
        return _s.Length;
    }

    /// <summary>Position after a closing tag: skip all whitespace after a '-' marker, else (block/comment) one newline.</summary>
    private int AfterTag(int pos, bool strip, bool trimNewline)
    {
        if (strip)
            while (pos < _s.Length && PyFormat.IsSpace(_s[pos])) pos++;
        else if (trimNewline && pos < _s.Length && _s[pos] == '\n') pos++;
        return pos;
    }

    /// <summary>{% raw %}...{% endraw %}: the text between is emitted verbatim.</summary>
    private bool TryRaw(int tagStart, int inner, out int after)
    {
        after = 0;
        int p = inner;
        while (p < _s.Length && PyFormat.IsSpace(_s[p])) p++;
        if (string.CompareOrdinal(_s, p, "raw", 0, 3) != 0) return false;
        p += 3;
        while (p < _s.Length && PyFormat.IsSpace(_s[p])) p++;
        bool stripAfterOpen = p < _s.Length && _s[p] == '-';
        if (stripAfterOpen) p++;
        if (string.CompareOrdinal(_s, p, "%}", 0, 2) != 0) return false;
        int bodyStart = AfterTag(p + 2, stripAfterOpen, trimNewline: true);
        int search = bodyStart;
        while (true)
        {
            int open = _s.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw Error("missing {% endraw %}", tagStart);
            int q = open + 2;
            bool stripBefore = q < _s.Length && _s[q] == '-';
            if (q < _s.Length && _s[q] is '-' or '+') q++;
            while (q < _s.Length && PyFormat.IsSpace(_s[q])) q++;
            if (string.CompareOrdinal(_s, q, "endraw", 0, 6) != 0) { search = open + 2; continue; }
            q += 6;
            while (q < _s.Length && PyFormat.IsSpace(_s[q])) q++;
            bool strip = q < _s.Length && _s[q] == '-';
            if (strip) q++;
            if (string.CompareOrdinal(_s, q, "%}", 0, 2) != 0) throw Error("malformed {% endraw %}", open);
            string body = _s[bodyStart..open];
            if (stripBefore) body = PyFormat.Strip(body, null, false, true);
            if (body.Length > 0) Add(TokenKind.Text, body, bodyStart);
            after = AfterTag(q + 2, strip, trimNewline: true);
            return true;
        }
    }

    /// <summary>Tokenizes a tag's contents up to its closing "%}" or "}}" (not counted inside brackets, as jinja2 does).</summary>
    private (int End, bool Strip) TagTokens(int p, char closer, int tagStart)
    {
        int depth = 0;
        while (true)
        {
            while (p < _s.Length && PyFormat.IsSpace(_s[p])) p++;
            if (p >= _s.Length) throw Error(closer == '%' ? "unclosed block tag: missing '%}'" : "unclosed expression: missing '}}'", tagStart);
            char c = _s[p];
            if (depth == 0)
            {
                if (c == '-' && p + 2 < _s.Length && _s[p + 1] == closer && _s[p + 2] == '}') return (p + 1, true);
                if (c == closer && p + 1 < _s.Length && _s[p + 1] == '}') return (p, false);
            }
            if (char.IsLetter(c) || c == '_')
            {
                int st = p;
                while (p < _s.Length && (char.IsLetterOrDigit(_s[p]) || _s[p] == '_')) p++;
                Add(TokenKind.Name, _s[st..p], st);
            }
            else if (char.IsAsciiDigit(c))
            {
                int st = p;
                bool isFloat = false;
                while (p < _s.Length && (char.IsAsciiDigit(_s[p]) || _s[p] == '_')) p++;
                if (p + 1 < _s.Length && _s[p] == '.' && char.IsAsciiDigit(_s[p + 1]))
                {
                    isFloat = true;
                    p++;
                    while (p < _s.Length && (char.IsAsciiDigit(_s[p]) || _s[p] == '_')) p++;
                }
                if (p < _s.Length && _s[p] is 'e' or 'E')
                {
                    int q = p + 1;
                    if (q < _s.Length && _s[q] is '+' or '-') q++;
                    if (q < _s.Length && char.IsAsciiDigit(_s[q]))
                    {
                        isFloat = true;
                        p = q;
                        while (p < _s.Length && char.IsAsciiDigit(_s[p])) p++;
                    }
                }
                Add(isFloat ? TokenKind.Float : TokenKind.Int, _s[st..p].Replace("_", "", StringComparison.Ordinal), st);
            }
            else if (c is '\'' or '"')
            {
                int st = p;
                Add(TokenKind.String, ReadString(ref p), st);
            }
            else
            {
                string op = ReadOperator(p) ?? throw Error($"unexpected character '{c}'", p);
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}")
                {
                    if (depth == 0) throw Error($"unexpected '{op}'", p);
                    depth--;
                }
                Add(TokenKind.Op, op, p);
                p += op.Length;
            }
        }
    }

    private static readonly string[] s_operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private string? ReadOperator(int p)
    {
        foreach (var op in s_operators)
            if (string.CompareOrdinal(_s, p, op, 0, op.Length) == 0) return op;
        return null;
    }

    /// <summary>A string literal with Python's escapes (jinja2 decodes them the same way); unknown escapes keep the backslash.</summary>
    private string ReadString(ref int p)
    {
        int start = p;
        char quote = _s[p++];
        var sb = new StringBuilder();
        while (true)
        {
            if (p >= _s.Length) throw Error("unterminated string literal", start);
            char c = _s[p++];
            if (c == quote) return sb.ToString();
            if (c != '\\') { sb.Append(c); continue; }
            if (p >= _s.Length) throw Error("unterminated string literal", start);
            char e = _s[p++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '0': sb.Append('\0'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break; // line continuation
                case 'x': sb.Append(Hex(ref p, 2, start)); break;
                case 'u': sb.Append(Hex(ref p, 4, start)); break;
                case 'U': sb.Append(Hex(ref p, 8, start)); break;
                default: sb.Append('\\').Append(e); break;
            }
        }
    }

    private string Hex(ref int p, int n, int start)
    {
        if (p + n > _s.Length || !int.TryParse(_s.AsSpan(p, n), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp) || cp > 0x10FFFF)
            throw Error("bad \\x, \\u or \\U escape in string literal", start);
        p += n;
        return cp is >= 0xD800 and <= 0xDFFF ? ((char)cp).ToString() : char.ConvertFromUtf32(cp);
    }
}
