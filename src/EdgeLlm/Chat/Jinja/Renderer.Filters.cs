using System.Globalization;
using System.Net;
using System.Text;

namespace EdgeLlm.Chat.Jinja;

/// <summary>The filters: jinja2/filters.py's built-ins that chat templates use, and Hugging Face's <c>tojson</c>.</summary>
internal sealed partial class Renderer
{
    /// <summary>Every filter name the parser accepts (an unknown filter is a syntax error, as in jinja2).</summary>
    internal static readonly HashSet<string> FilterNames =
    [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first",
        "float", "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map",
        "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
        "string", "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "wordcount",
    ];

    private Value ApplyFilter(string name, Value v, CallArgs a)
    {
        switch (name)
        {
            case "abs":
                a.Check(name);
                return v switch
                {
                    IntValue i => new IntValue(Math.Abs(i.Value)),
                    FloatValue f => new FloatValue(Math.Abs(f.Value)),
                    BoolValue b => new IntValue(b.Value ? 1 : 0),
                    _ => throw new JinjaRuntimeError($"bad operand type for abs(): '{v.TypeName}'"),
                };
            case "attr":
            {
                a.Check(name, "name");
                string attr = Str(a.Get(0, "name"), "attr name");
                if (v is UndefinedValue u) throw u.Fail();
                return TryGetMethod(v, attr) ?? (v is NamespaceValue ns && ns.Attributes.TryGetValue(attr, out var x) ? x : Missing(v, attr));
            }
            case "batch":
            {
                a.Check(name, "linecount", "fill_with");
                long n = a.Get(0, "linecount")?.AsLong() ?? throw new JinjaRuntimeError("batch() needs a line count");
                if (n <= 0) throw new JinjaRuntimeError("batch() line count must be positive");
                var fill = a.Get(1, "fill_with");
                var result = new List<Value>();
                var cur = new List<Value>();
                foreach (var item in v.Iterate())
                {
                    cur.Add(item);
                    if (cur.Count == n) { result.Add(new ListValue(cur)); cur = []; }
                }
                if (cur.Count > 0)
                {
                    if (fill is not null and not NoneValue) while (cur.Count < n) cur.Add(fill);
                    result.Add(new ListValue(cur));
                }
                return new ListValue(result);
            }
            case "capitalize":
            {
                a.Check(name);
                string s = v.ToPyStr();
                return MakeString(s.Length == 0 ? s : s[..1].ToUpperInvariant() + s[1..].ToLowerInvariant());
            }
            case "center":
            {
                a.Check(name, "width");
                string s = v.ToPyStr();
                long width = a.Get(0, "width")?.AsLong() ?? 80;
                if (width > _limits.MaxOutputChars) throw new JinjaRuntimeError("center() width exceeds the output limit");
                if (width <= s.Length) return MakeString(s);
                // Python str.center: the extra space goes left when the margin and width are both odd.
                long margin = width - s.Length;
                long left = margin / 2 + (margin & width & 1);
                return MakeString(new string(' ', (int)left) + s + new string(' ', (int)(margin - left)));
            }
            case "count":
            case "length":
                a.Check(name);
                return new IntValue(v.Length ?? throw new JinjaRuntimeError($"object of type '{v.TypeName}' has no len()"));
            case "d":
            case "default":
            {
                a.Check(name, "default_value", "boolean");
                var def = a.Get(0, "default_value") ?? Value.Str("");
                bool boolean = a.Get(1, "boolean")?.IsTruthy ?? false;
                return v is UndefinedValue || (boolean && !v.IsTruthy) ? def : v;
            }
            case "dictsort":
            {
                a.Check(name, "case_sensitive", "by", "reverse");
                if (v is not DictValue d) throw new JinjaRuntimeError("dictsort() needs a mapping");
                bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                string by = a.Get(1, "by")?.ToPyStr() ?? "key";
                int pos = by switch { "key" => 0, "value" => 1, _ => throw new JinjaRuntimeError("You can only sort by either \"key\" or \"value\"") };
                var pairs = d.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], isTuple: true)).ToList();
                return new ListValue(SortValues(pairs, x => CaseKey(((ListValue)x).Items[pos], cs), a.Get(2, "reverse")?.IsTruthy ?? false));
            }
            case "e":
            case "escape":
            case "forceescape":
                a.Check(name);
                return MakeString(WebUtility.HtmlEncode(v.ToPyStr()));
            case "first":
            {
                a.Check(name);
                var items = v.Iterate();
                return items.Count > 0 ? items[0] : new UndefinedValue("No first item, sequence was empty.");
            }
            case "last":
            {
                a.Check(name);
                var items = v.Iterate();
                return items.Count > 0 ? items[^1] : new UndefinedValue("No last item, sequence was empty.");
            }
            case "float":
            {
                a.Check(name, "default");
                var def = a.Get(0, "default") ?? new FloatValue(0);
                return ToFloat(v) is double f ? new FloatValue(f) : def;
            }
            case "int":
            {
                a.Check(name, "default", "base");
                var def = a.Get(0, "default") ?? new IntValue(0);
                int numberBase = (int)(a.Get(1, "base")?.AsLong() ?? 10);
                return ToInt(v, numberBase) is long l ? new IntValue(l) : def;
            }
            case "format":
                if (a.Keywords.Count > 0) throw new JinjaRuntimeError("format() with keyword arguments is not supported");
                return MakeString(PercentFormat(v.ToPyStr(), a.Positional));
            case "indent":
            {
                a.Check(name, "width", "first", "blank");
                var w = a.Get(0, "width");
                string ind = w is StringValue ws ? ws.Value : new string(' ', (int)Math.Clamp(w?.AsLong() ?? 4, 0, 1000));
                bool first = a.Get(1, "first")?.IsTruthy ?? false, blank = a.Get(2, "blank")?.IsTruthy ?? false;
                var lines = SplitLines(v.ToPyStr() + "\n");
                string rv;
                if (blank) rv = string.Join("\n" + ind, lines);
                else
                {
                    rv = lines[0];
                    if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? ind + l : l));
                }
                return MakeString(first ? ind + rv : rv);
            }
            case "items":
                a.Check(name);
                if (v is UndefinedValue) return new ListValue([]);
                if (v is not DictValue dict) throw new JinjaRuntimeError("Can only get item pairs from a mapping.");
                return new ListValue(dict.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], isTuple: true)).ToList());
            case "join":
            {
                a.Check(name, "d", "attribute");
                string sep = a.Get(0, "d")?.ToPyStr() ?? "";
                var attr = a.Get(1, "attribute");
                var items = v.Iterate().Select(x => attr is null or NoneValue ? x : AttrPath(x, attr));
                return MakeString(string.Join(sep, items.Select(x => x.ToPyStr())));
            }
            case "list":
                a.Check(name);
                return MakeList(v.Iterate().ToList());
            case "lower":
                a.Check(name);
                return MakeString(v.ToPyStr().ToLowerInvariant());
            case "upper":
                a.Check(name);
                return MakeString(v.ToPyStr().ToUpperInvariant());
            case "map":
            {
                var items = v.Iterate();
                if (a.Positional.Count == 0)
                {
                    a.Check(name, "attribute", "default");
                    var attr = a.Get(-1, "attribute") ?? throw new JinjaRuntimeError("map() needs a filter name or attribute=");
                    var def = a.Get(-1, "default");
                    return new ListValue(items.Select(x =>
                    {
                        var r = AttrPath(x, attr);
                        return r is UndefinedValue && def is not null ? def : r;
                    }).ToList());
                }
                string filter = Str(a.Positional[0], "map filter name");
                if (!FilterNames.Contains(filter)) throw new JinjaRuntimeError($"No filter named '{filter}'.");
                var rest = new CallArgs(a.Positional.Skip(1).ToArray(), a.Keywords);
                return new ListValue(items.Select(x => ApplyFilter(filter, x, rest)).ToList());
            }
            case "max":
            case "min":
            {
                a.Check(name, "case_sensitive", "attribute");
                bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                var attr = a.Get(1, "attribute");
                var items = v.Iterate();
                if (items.Count == 0) return new UndefinedValue($"No aggregated item, sequence was empty.");
                Value best = items[0];
                foreach (var x in items.Skip(1))
                {
                    Value kx = CaseKey(attr is null ? x : AttrPath(x, attr), cs), kb = CaseKey(attr is null ? best : AttrPath(best, attr), cs);
                    int c = Order(kx, kb);
                    if (name == "max" ? c > 0 : c < 0) best = x;
                }
                return best;
            }
            case "select":
            case "reject":
            case "selectattr":
            case "rejectattr":
            {
                bool byAttr = name.EndsWith("attr", StringComparison.Ordinal);
                bool keep = name.StartsWith("select", StringComparison.Ordinal);
                if (a.Keywords.Count > 0) throw new JinjaRuntimeError($"{name}() takes no keyword arguments");
                int k = 0;
                Value? attr = null;
                if (byAttr)
                {
                    if (a.Positional.Count == 0) throw new JinjaRuntimeError($"{name}() needs an attribute name");
                    attr = a.Positional[k++];
                }
                string? test = a.Positional.Count > k ? Str(a.Positional[k++], "test name") : null;
                if (test is not null && !TestNames.Contains(test)) throw new JinjaRuntimeError($"No test named '{test}'.");
                var testArgs = a.Positional.Skip(k).ToArray();
                var result = new List<Value>();
                foreach (var x in v.Iterate())
                {
                    var subject = attr is null ? x : AttrPath(x, attr);
                    bool ok = test is null ? subject.IsTruthy : ApplyTest(test, subject, testArgs);
                    if (ok == keep) result.Add(x);
                }
                return new ListValue(result);
            }
            case "replace":
            {
                a.Check(name, "old", "new", "count");
                string s = v.ToPyStr();
                string oldS = Str(a.Get(0, "old"), "replace old"), newS = Str(a.Get(1, "new"), "replace new");
                var countV = a.Get(2, "count");
                long count = countV is null or NoneValue ? -1 : countV.AsLong();
                return MakeString(PyReplace(s, oldS, newS, count));
            }
            case "reverse":
                a.Check(name);
                if (v is StringValue rs) return MakeString(string.Concat(Enumerable.Reverse(rs.CodePoints())));
                return new ListValue(v.Iterate().Reverse().ToList());
            case "round":
            {
                a.Check(name, "precision", "method");
                int precision = (int)Math.Clamp(a.Get(0, "precision")?.AsLong() ?? 0, -15, 15);
                string method = a.Get(1, "method")?.ToPyStr() ?? "common";
                double x = v.AsDouble(), scale = Math.Pow(10, precision);
                double r = method switch
                {
                    "common" => Math.Round(x * scale, MidpointRounding.ToEven) / scale,
                    "ceil" => Math.Ceiling(x * scale) / scale,
                    "floor" => Math.Floor(x * scale) / scale,
                    _ => throw new JinjaRuntimeError("method must be common, ceil or floor"),
                };
                return new FloatValue(r);
            }
            case "safe":
                a.Check(name);
                return v;
            case "sort":
            {
                a.Check(name, "reverse", "case_sensitive", "attribute");
                bool reverse = a.Get(0, "reverse")?.IsTruthy ?? false, cs = a.Get(1, "case_sensitive")?.IsTruthy ?? false;
                var attr = a.Get(2, "attribute");
                return new ListValue(SortValues(v.Iterate().ToList(), x => CaseKey(attr is null or NoneValue ? x : AttrPath(x, attr), cs), reverse));
            }
            case "string":
                a.Check(name);
                return v is StringValue ? v : MakeString(v.ToPyStr());
            case "sum":
            {
                a.Check(name, "attribute", "start");
                var attr = a.Get(0, "attribute");
                Value total = a.Get(1, "start") ?? new IntValue(0);
                foreach (var x in v.Iterate()) total = Binary("+", total, attr is null or NoneValue ? x : AttrPath(x, attr));
                return total;
            }
            case "title":
            {
                a.Check(name);
                // jinja2's do_title: split on runs of [-\s({\[<], capitalize each piece.
                var sb = new StringBuilder();
                bool start = true;
                foreach (char c in v.ToPyStr())
                {
                    bool sep = c is '-' or '(' or '{' or '[' or '<' || PyFormat.IsSpace(c);
                    sb.Append(sep ? c : start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
                    start = sep;
                }
                return MakeString(sb.ToString());
            }
            case "tojson":
            {
                // Hugging Face's override: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
                a.Check(name, "ensure_ascii", "indent", "separators", "sort_keys");
                var ind = a.Get(1, "indent");
                string? indent = ind switch
                {
                    null or NoneValue => null,
                    StringValue s => s.Value,
                    _ => new string(' ', (int)Math.Clamp(ind.AsLong(), 0, 1000)),
                };
                string? itemSep = null, keySep = null;
                if (a.Get(2, "separators") is ListValue { Items.Count: 2 } seps)
                {
                    itemSep = seps.Items[0].ToPyStr();
                    keySep = seps.Items[1].ToPyStr();
                }
                bool ascii = a.Get(0, "ensure_ascii")?.IsTruthy ?? false;
                return MakeString(PyFormat.JsonDumps(v, indent, itemSep, keySep, a.Get(3, "sort_keys")?.IsTruthy ?? false, _limits.MaxOutputChars, ascii));
            }
            case "trim":
            {
                a.Check(name, "chars");
                var chars = a.Get(0, "chars");
                return MakeString(PyFormat.Strip(v.ToPyStr(), chars is null or NoneValue ? null : chars.ToPyStr(), true, true));
            }
            case "truncate":
            {
                // jinja2's do_truncate with the default leeway of 5.
                a.Check(name, "length", "killwords", "end", "leeway");
                var cps = new StringValue(v.ToPyStr()).CodePoints();
                int length = (int)Math.Clamp(a.Get(0, "length")?.AsLong() ?? 255, 0, int.MaxValue);
                bool killwords = a.Get(1, "killwords")?.IsTruthy ?? false;
                string end = a.Get(2, "end")?.ToPyStr() ?? "...";
                var lw = a.Get(3, "leeway");
                long leeway = lw is null or NoneValue ? 5 : lw.AsLong();
                if (cps.Count <= length + leeway) return MakeString(string.Concat(cps));
                int keep = Math.Max(0, length - new StringValue(end).CodePointCount);
                string head = string.Concat(cps.Take(keep));
                if (killwords) return MakeString(head + end);
                int sp = head.LastIndexOf(' ');
                return MakeString((sp >= 0 ? head[..sp] : head) + end);
            }
            case "unique":
            {
                a.Check(name, "case_sensitive", "attribute");
                bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                var attr = a.Get(1, "attribute");
                var seen = new List<Value>();
                var result = new List<Value>();
                foreach (var x in v.Iterate())
                {
                    var key = CaseKey(attr is null ? x : AttrPath(x, attr), cs);
                    if (seen.Any(s => Value.PyEquals(s, key))) continue;
                    seen.Add(key);
                    result.Add(x);
                }
                return new ListValue(result);
            }
            case "wordcount":
                a.Check(name);
                return new IntValue(v.ToPyStr().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length);
            default:
                throw new JinjaRuntimeError($"No filter named '{name}'.");
        }
    }

    private static string Str(Value? v, string what) =>
        v is StringValue s ? s.Value : throw new JinjaRuntimeError($"{what} must be a string, got {v?.TypeName ?? "nothing"}");

    /// <summary>jinja2's make_attrgetter: "a.b.0" looks up items (then attributes) step by step.</summary>
    private Value AttrPath(Value item, Value attribute)
    {
        if (attribute is IntValue) return GetItem(item, attribute);
        foreach (var part in attribute.ToPyStr().Split('.'))
        {
            Value key = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? new IntValue(n) : new StringValue(part);
            item = GetItem(item, key);
        }
        return item;
    }

    /// <summary>Sort and min/max compare strings case-insensitively unless case_sensitive (jinja2's ignore_case).</summary>
    private static Value CaseKey(Value v, bool caseSensitive) =>
        !caseSensitive && v is StringValue s ? new StringValue(s.Value.ToLowerInvariant()) : v;

    private static List<Value> SortValues(List<Value> items, Func<Value, Value> key, bool reverse)
    {
        // Stable, as Python's sort; reverse=True keeps equal items in their original order too.
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        var sorted = keyed.OrderBy(x => x, Comparer<(Value Key, Value Item, int Index)>.Create((p, q) =>
        {
            int c = Order(p.Key, q.Key);
            if (reverse) c = -c;
            return c != 0 ? c : p.Index.CompareTo(q.Index);
        }));
        return sorted.Select(x => x.Item).ToList();
    }

    private static List<string> SplitLines(string s)
    {
        // Python str.splitlines for the common line ends.
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')
            {
                lines.Add(s[start..i]);
                if (s[i] == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
                start = i + 1;
            }
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    private string PyReplace(string s, string oldS, string newS, long count)
    {
        string result;
        if (oldS.Length == 0)
        {
            // Python inserts the replacement before every character and at the end.
            var cps = new StringValue(s).CodePoints();
            var sb = new StringBuilder();
            long done = 0;
            for (int i = 0; i <= cps.Count; i++)
            {
                if (count < 0 || done < count) { sb.Append(newS); done++; }
                if (i < cps.Count) sb.Append(cps[i]);
                if (sb.Length > _limits.MaxOutputChars) break;
            }
            result = sb.ToString();
        }
        else if (count < 0) result = s.Replace(oldS, newS, StringComparison.Ordinal);
        else
        {
            var sb = new StringBuilder();
            int pos = 0;
            for (long n = 0; n < count; n++)
            {
                int idx = s.IndexOf(oldS, pos, StringComparison.Ordinal);
                if (idx < 0) break;
                sb.Append(s, pos, idx - pos).Append(newS);
                pos = idx + oldS.Length;
            }
            result = sb.Append(s, pos, s.Length - pos).ToString();
        }
        return MakeString(result).Value;
    }

    private static double? ToFloat(Value v)
    {
        if (v.IsNumeric) return v.AsDouble();
        if (v is StringValue s)
        {
            string t = PyFormat.Strip(s.Value, null, true, true).Replace("_", "", StringComparison.Ordinal);
            string lower = t.ToLowerInvariant();
            if (lower is "inf" or "+inf" or "infinity" or "+infinity") return double.PositiveInfinity;
            if (lower is "-inf" or "-infinity") return double.NegativeInfinity;
            if (lower is "nan" or "+nan" or "-nan") return double.NaN;
            if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
        }
        return null;
    }

    private static long? ToInt(Value v, int numberBase)
    {
        switch (v)
        {
            case IntValue i: return i.Value;
            case BoolValue b: return b.Value ? 1 : 0;
            case FloatValue f: return double.IsFinite(f.Value) && Math.Abs(f.Value) < 9.2e18 ? (long)f.Value : null;
            case StringValue s:
            {
                string t = PyFormat.Strip(s.Value, null, true, true).Replace("_", "", StringComparison.Ordinal);
                if (numberBase == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
                if (numberBase != 10)
                {
                    try
                    {
                        bool neg = t.StartsWith('-');
                        string body = t.TrimStart('+', '-');
                        if (numberBase == 16 && body.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) body = body[2..];
                        if (numberBase == 8 && body.StartsWith("0o", StringComparison.OrdinalIgnoreCase)) body = body[2..];
                        if (numberBase == 2 && body.StartsWith("0b", StringComparison.OrdinalIgnoreCase)) body = body[2..];
                        long r = Convert.ToInt64(body, numberBase);
                        return neg ? -r : r;
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                    {
                        return null;
                    }
                }
                // jinja2 falls back to int(float(value)).
                return ToFloat(v) is double d && double.IsFinite(d) && Math.Abs(d) < 9.2e18 ? (long)d : null;
            }
            default: return null;
        }
    }

    /// <summary>Python's printf-style <c>fmt % args</c> for %s %r %d %i %f %x %o %e %g %% with flags, width and precision.</summary>
    private string PercentFormat(string fmt, IReadOnlyList<Value> args)
    {
        var sb = new StringBuilder();
        int argIndex = 0;
        Value NextArg() => argIndex < args.Count ? args[argIndex++] : throw new JinjaRuntimeError("not enough arguments for format string");
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%') { sb.Append(c); continue; }
            if (++i >= fmt.Length) throw new JinjaRuntimeError("incomplete format");
            string flags = "";
            while (i < fmt.Length && fmt[i] is '-' or '+' or ' ' or '0' or '#') flags += fmt[i++];
            int width = 0;
            while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) width = width * 10 + (fmt[i++] - '0');
            int precision = -1;
            if (i < fmt.Length && fmt[i] == '.')
            {
                i++;
                precision = 0;
                while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) precision = precision * 10 + (fmt[i++] - '0');
            }
            if (i >= fmt.Length) throw new JinjaRuntimeError("incomplete format");
            char conv = fmt[i];
            string body;
            var inv = CultureInfo.InvariantCulture;
            switch (conv)
            {
                case '%': sb.Append('%'); continue;
                case 's': body = NextArg().ToPyStr(); if (precision >= 0 && body.Length > precision) body = body[..precision]; break;
                case 'r': body = NextArg().ToRepr(); break;
                case 'd': case 'i': case 'u':
                {
                    var arg = NextArg();
                    long n = arg is FloatValue fl ? (long)fl.Value : arg.AsLong();
                    body = n.ToString(inv);
                    if (flags.Contains('+') && n >= 0) body = "+" + body;
                    break;
                }
                case 'f': case 'F':
                {
                    double d = NextArg().AsDouble();
                    body = d.ToString("F" + (precision < 0 ? 6 : precision).ToString(inv), inv);
                    if (flags.Contains('+') && d >= 0) body = "+" + body;
                    break;
                }
                case 'e': case 'E':
                {
                    double d = NextArg().AsDouble();
                    string m = d.ToString((conv == 'e' ? "e" : "E") + (precision < 0 ? 6 : precision).ToString(inv), inv);
                    // .NET writes e+006; Python writes e+06.
                    int ep = m.IndexOfAny(['e', 'E']);
                    string exp = m[(ep + 2)..].TrimStart('0');
                    body = m[..(ep + 2)] + exp.PadLeft(2, '0');
                    break;
                }
                case 'g': case 'G':
                    body = NextArg() is var g && g is FloatValue gf ? PyFormat.FloatRepr(gf.Value) : g.AsLong().ToString(inv);
                    break;
                case 'x': body = NextArg().AsLong().ToString("x", inv); break;
                case 'X': body = NextArg().AsLong().ToString("X", inv); break;
                case 'o': body = Convert.ToString(NextArg().AsLong(), 8); break;
                default: throw new JinjaRuntimeError($"unsupported format character '{conv}'");
            }
            if (body.Length < width)
                body = flags.Contains('-') ? body.PadRight(width) : flags.Contains('0') && conv is not ('s' or 'r') ? body.PadLeft(width, '0') : body.PadLeft(width);
            sb.Append(body);
            if (sb.Length > _limits.MaxOutputChars) throw new JinjaRuntimeError("formatted string exceeds the output limit");
        }
        if (argIndex < args.Count) throw new JinjaRuntimeError("not all arguments converted during string formatting");
        return sb.ToString();
    }
}
