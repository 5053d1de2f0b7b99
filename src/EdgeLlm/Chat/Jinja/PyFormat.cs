using System.Globalization;
using System.Text;

namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// Python's text formats, reproduced exactly because chat templates print them into prompts:
/// repr() of floats and strings, json.dumps (as Hugging Face's <c>tojson</c> calls it), strftime,
/// and str.isspace.
/// </summary>
internal static class PyFormat
{
    /// <summary>Python str.isspace for one char: .NET's char.IsWhiteSpace plus the separators U+001C..U+001F.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || (c >= '\x1c' && c <= '\x1f');

    /// <summary>Python str.strip/lstrip/rstrip: whitespace when <paramref name="chars"/> is null, else those characters.</summary>
    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        bool Strippable(char c) => chars is null ? IsSpace(c) : chars.Contains(c, StringComparison.Ordinal);
        if (left) while (start < end && Strippable(s[start])) start++;
        if (right) while (end > start && Strippable(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>
    /// Python repr(float): the shortest digits that round-trip, in fixed notation when the decimal
    /// exponent is in [-4, 16), else as d.ddde+XX (CPython's float_repr_style 'short').
    /// </summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        // .NET Core's "R" gives the shortest round-trip digits; only their layout differs from Python's.
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = r.StartsWith('-');
        if (negative) r = r[1..];
        int exp = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exp = int.Parse(r.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.', StringComparison.Ordinal);
        string digits = dot >= 0 ? r.Remove(dot, 1) : r;
        // value = 0.<digits> * 10^decpt
        int decpt = (dot >= 0 ? dot : r.Length) + exp;
        int lead = 0;
        while (lead < digits.Length && digits[lead] == '0') lead++;
        digits = digits[lead..].TrimEnd('0');
        decpt -= lead;
        string sign = negative ? "-" : "";
        if (digits.Length == 0) return sign + "0.0";
        if (decpt > -4 && decpt <= 16)
        {
            if (decpt <= 0) return sign + "0." + new string('0', -decpt) + digits;
            if (decpt >= digits.Length) return sign + digits + new string('0', decpt - digits.Length) + ".0";
            return sign + digits[..decpt] + "." + digits[decpt..];
        }
        int x = decpt - 1;
        string mant = digits.Length > 1 ? digits[..1] + "." + digits[1..] : digits;
        return sign + mant + "e" + (x < 0 ? "-" : "+") + Math.Abs(x).ToString("00", CultureInfo.InvariantCulture);
    }

    /// <summary>Python repr(str): single quotes unless the text has ' and no ", escapes for control characters.</summary>
    public static string StringRepr(string s)
    {
        char q = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        var sb = new StringBuilder(s.Length + 2).Append(q);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(q).ToString();
    }

    /// <summary>
    /// Python json.dumps(value, ensure_ascii=False, indent, separators, sort_keys): what Hugging
    /// Face's <c>tojson</c> filter returns. Without indent the separators are ", " and ": "; with
    /// indent, "," and ": ".
    /// </summary>
    public static string JsonDumps(Value value, string? indent, string? itemSeparator, string? keySeparator, bool sortKeys, int maxChars, bool ensureAscii = false)
    {
        itemSeparator ??= indent is null ? ", " : ",";
        keySeparator ??= ": ";
        var sb = new StringBuilder();
        WriteJson(sb, value, indent, itemSeparator, keySeparator, sortKeys, 0, maxChars, ensureAscii);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, Value v, string? indent, string itemSep, string keySep, bool sortKeys, int level, int maxChars, bool ascii)
    {
        if (sb.Length > maxChars) throw new JinjaRuntimeError($"tojson output is longer than the limit of {maxChars} characters");
        if (level > 200) throw new JinjaRuntimeError("tojson: value nested too deeply");
        switch (v)
        {
            case NoneValue: sb.Append("null"); break;
            case BoolValue b: sb.Append(b.Value ? "true" : "false"); break;
            case IntValue i: sb.Append(i.Value.ToString(CultureInfo.InvariantCulture)); break;
            case FloatValue f:
                sb.Append(double.IsNaN(f.Value) ? "NaN" : double.IsPositiveInfinity(f.Value) ? "Infinity" : double.IsNegativeInfinity(f.Value) ? "-Infinity" : FloatRepr(f.Value));
                break;
            case StringValue s: JsonString(sb, s.Value, ascii); break;
            case ListValue l:
                if (l.Items.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int k = 0; k < l.Items.Count; k++)
                {
                    if (k > 0) sb.Append(itemSep);
                    NewLine(sb, indent, level + 1);
                    WriteJson(sb, l.Items[k], indent, itemSep, keySep, sortKeys, level + 1, maxChars, ascii);
                }
                NewLine(sb, indent, level);
                sb.Append(']');
                break;
            case DictValue d:
                if (d.Items.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                IEnumerable<KeyValuePair<Value, Value>> items = d.Items;
                if (sortKeys) items = items.OrderBy(kv => JsonKey(kv.Key), StringComparer.Ordinal);
                bool first = true;
                foreach (var kv in items)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    NewLine(sb, indent, level + 1);
                    JsonString(sb, JsonKey(kv.Key), ascii);
                    sb.Append(keySep);
                    WriteJson(sb, kv.Value, indent, itemSep, keySep, sortKeys, level + 1, maxChars, ascii);
                }
                NewLine(sb, indent, level);
                sb.Append('}');
                break;
            default:
                throw new JinjaRuntimeError($"Object of type {v.TypeName} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder sb, string? indent, int level)
    {
        if (indent is null) return;
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(indent);
    }

    /// <summary>json.dumps turns non-string keys into strings: true, null, 1, 1.5.</summary>
    private static string JsonKey(Value k) => k switch
    {
        StringValue s => s.Value,
        BoolValue b => b.Value ? "true" : "false",
        NoneValue => "null",
        IntValue or FloatValue => k.ToRepr(),
        _ => throw new JinjaRuntimeError($"keys must be str, int, float, bool or None, not {k.TypeName}"),
    };

    /// <summary>
    /// A JSON string as json.dumps writes it: with ensure_ascii=False only ", \ and control
    /// characters are escaped; with ensure_ascii=True also every non-ASCII UTF-16 unit (\uXXXX).
    /// </summary>
    public static void JsonString(StringBuilder sb, string s, bool ascii = false)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    private static readonly string[] s_days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    private static readonly string[] s_months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    /// <summary>
    /// Python's datetime.strftime in the C locale for the directives templates use (%d %b %Y %B
    /// %a %A %m %y %H %I %M %S %p %j %e %%, and glibc's %-d style no-padding flag).
    /// </summary>
    public static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%' || i + 1 >= format.Length) { sb.Append(c); continue; }
            char d = format[++i];
            bool noPad = false;
            if (d == '-' && i + 1 < format.Length) { noPad = true; d = format[++i]; }
            string Num(int v, int width) => noPad ? v.ToString(inv) : v.ToString(new string('0', width), inv);
            switch (d)
            {
                case 'd': sb.Append(Num(t.Day, 2)); break;
                case 'e': sb.Append(noPad ? t.Day.ToString(inv) : t.Day.ToString(inv).PadLeft(2)); break;
                case 'm': sb.Append(Num(t.Month, 2)); break;
                case 'Y': sb.Append(t.Year.ToString(inv)); break;
                case 'y': sb.Append(Num(t.Year % 100, 2)); break;
                case 'b': case 'h': sb.Append(s_months[t.Month - 1][..3]); break;
                case 'B': sb.Append(s_months[t.Month - 1]); break;
                case 'a': sb.Append(s_days[(int)t.DayOfWeek][..3]); break;
                case 'A': sb.Append(s_days[(int)t.DayOfWeek]); break;
                case 'w': sb.Append(((int)t.DayOfWeek).ToString(inv)); break;
                case 'H': sb.Append(Num(t.Hour, 2)); break;
                case 'I': sb.Append(Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2)); break;
                case 'M': sb.Append(Num(t.Minute, 2)); break;
                case 'S': sb.Append(Num(t.Second, 2)); break;
                case 'p': sb.Append(t.Hour < 12 ? "AM" : "PM"); break;
                case 'j': sb.Append(Num(t.DayOfYear, 3)); break;
                case 'f': sb.Append((t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv)); break;
                case 'F': sb.Append(t.ToString("yyyy-MM-dd", inv)); break;
                case 'T': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'D': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'z': case 'Z': break; // naive datetime: empty, as in Python
                case '%': sb.Append('%'); break;
                default: sb.Append('%').Append(noPad ? "-" : "").Append(d); break;
            }
        }
        return sb.ToString();
    }
}
