using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators.Helpers;

/// <summary>The kinds of JSON value <see cref="JsonReader"/> produces.</summary>
internal enum JsonKind { Object, Array, String, Number, True, False, Null }

/// <summary>
/// A parsed JSON value that remembers where it is in the file, so diagnostics can point at the
/// exact field. (System.Text.Json is not reliably loadable inside every compiler host, and its DOM
/// forgets positions; config files are small, so a small reader is the simpler dependency.)
/// </summary>
internal sealed class JsonNode
{
    public JsonNode(JsonKind kind, TextSpan span) { Kind = kind; Span = span; }

    public JsonKind Kind { get; }

    /// <summary>The value's characters in the file.</summary>
    public TextSpan Span { get; }

    /// <summary>Object members in file order: name, the span of the name, value.</summary>
    public List<(string Name, TextSpan NameSpan, JsonNode Value)> Members { get; } = new();

    public List<JsonNode> Items { get; } = new();

    public string? String { get; set; }

    public double Number { get; set; }

    /// <summary>The number as written (to tell 5 from 5.0, and to keep the exact text for floats).</summary>
    public string? RawNumber { get; set; }

    public JsonNode? this[string name]
    {
        get
        {
            foreach (var m in Members) if (m.Name == name) return m.Value;
            return null;
        }
    }

    public static string KindName(JsonKind kind) => kind switch
    {
        JsonKind.Object => "an object",
        JsonKind.Array => "an array",
        JsonKind.String => "a string",
        JsonKind.Number => "a number",
        JsonKind.True or JsonKind.False => "a boolean",
        _ => "null",
    };
}

/// <summary>Thrown by <see cref="JsonReader"/> with the position of the first bad character.</summary>
internal sealed class JsonParseException : Exception
{
    public JsonParseException(string message, int position) : base(message) => Position = position;

    public int Position { get; }
}

/// <summary>A strict RFC 8259 reader (no comments, no trailing commas) that keeps spans.</summary>
internal sealed class JsonReader
{
    private readonly string _s;
    private int _i;

    private JsonReader(string s) => _s = s;

    public static JsonNode Parse(string text)
    {
        var r = new JsonReader(text);
        r.SkipWs();
        var v = r.Value(0);
        r.SkipWs();
        if (r._i < text.Length) throw new JsonParseException("unexpected text after the JSON value", r._i);
        return v;
    }

    private void SkipWs()
    {
        while (_i < _s.Length && (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r')) _i++;
    }

    private JsonNode Value(int depth)
    {
        if (depth > 64) throw new JsonParseException("JSON nested too deeply", _i);
        if (_i >= _s.Length) throw new JsonParseException("unexpected end of file", _i);
        char c = _s[_i];
        switch (c)
        {
            case '{': return Object(depth);
            case '[': return Array(depth);
            case '"':
            {
                int start = _i;
                string s = StringLiteral();
                return new JsonNode(JsonKind.String, TextSpan.FromBounds(start, _i)) { String = s };
            }
            case 't': return Literal("true", JsonKind.True);
            case 'f': return Literal("false", JsonKind.False);
            case 'n': return Literal("null", JsonKind.Null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return NumberLiteral();
                throw new JsonParseException($"unexpected character '{c}'", _i);
        }
    }

    private JsonNode Literal(string word, JsonKind kind)
    {
        if (string.CompareOrdinal(_s, _i, word, 0, word.Length) != 0) throw new JsonParseException($"expected '{word}'", _i);
        var node = new JsonNode(kind, new TextSpan(_i, word.Length));
        _i += word.Length;
        return node;
    }

    private JsonNode NumberLiteral()
    {
        int start = _i;
        if (_s[_i] == '-') _i++;
        while (_i < _s.Length && (char.IsDigit(_s[_i]) || _s[_i] is '.' or 'e' or 'E' or '+' or '-')) _i++;
        string raw = _s.Substring(start, _i - start);
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
            throw new JsonParseException($"'{raw}' is not a number", start);
        return new JsonNode(JsonKind.Number, TextSpan.FromBounds(start, _i)) { Number = d, RawNumber = raw };
    }

    private string StringLiteral()
    {
        _i++; // opening quote
        var sb = new StringBuilder();
        while (true)
        {
            if (_i >= _s.Length) throw new JsonParseException("unterminated string", _i);
            char c = _s[_i++];
            if (c == '"') return sb.ToString();
            if (c < ' ') throw new JsonParseException("control character in string", _i - 1);
            if (c != '\\') { sb.Append(c); continue; }
            if (_i >= _s.Length) throw new JsonParseException("unterminated escape", _i);
            char e = _s[_i++];
            switch (e)
            {
                case '"': sb.Append('"'); break;
                case '\\': sb.Append('\\'); break;
                case '/': sb.Append('/'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'u':
                    if (_i + 4 > _s.Length || !int.TryParse(_s.Substring(_i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int code))
                        throw new JsonParseException("bad \\u escape", _i);
                    sb.Append((char)code);
                    _i += 4;
                    break;
                default: throw new JsonParseException($"bad escape '\\{e}'", _i - 1);
            }
        }
    }

    private JsonNode Object(int depth)
    {
        int start = _i++;
        var node = new List<(string, TextSpan, JsonNode)>();
        SkipWs();
        if (_i < _s.Length && _s[_i] == '}')
        {
            _i++;
            return new JsonNode(JsonKind.Object, TextSpan.FromBounds(start, _i));
        }
        while (true)
        {
            SkipWs();
            if (_i >= _s.Length || _s[_i] != '"') throw new JsonParseException("expected a member name in quotes", _i);
            int nameStart = _i;
            string name = StringLiteral();
            var nameSpan = TextSpan.FromBounds(nameStart, _i);
            SkipWs();
            if (_i >= _s.Length || _s[_i] != ':') throw new JsonParseException("expected ':'", _i);
            _i++;
            SkipWs();
            node.Add((name, nameSpan, Value(depth + 1)));
            SkipWs();
            if (_i < _s.Length && _s[_i] == ',') { _i++; continue; }
            if (_i < _s.Length && _s[_i] == '}') { _i++; break; }
            throw new JsonParseException("expected ',' or '}'", _i);
        }
        var result = new JsonNode(JsonKind.Object, TextSpan.FromBounds(start, _i));
        result.Members.AddRange(node);
        return result;
    }

    private JsonNode Array(int depth)
    {
        int start = _i++;
        var items = new List<JsonNode>();
        SkipWs();
        if (_i < _s.Length && _s[_i] == ']') { _i++; return new JsonNode(JsonKind.Array, TextSpan.FromBounds(start, _i)); }
        while (true)
        {
            SkipWs();
            items.Add(Value(depth + 1));
            SkipWs();
            if (_i < _s.Length && _s[_i] == ',') { _i++; continue; }
            if (_i < _s.Length && _s[_i] == ']') { _i++; break; }
            throw new JsonParseException("expected ',' or ']'", _i);
        }
        var result = new JsonNode(JsonKind.Array, TextSpan.FromBounds(start, _i));
        result.Items.AddRange(items);
        return result;
    }
}
