using System.Text;

namespace EdgeLlm.Chat.Jinja;

/// <summary>The tests (<c>x is defined</c>, ...) of jinja2/tests.py, and the Python methods of str, dict and list.</summary>
internal sealed partial class Renderer
{
    /// <summary>Every test name the parser accepts.</summary>
    internal static readonly HashSet<string> TestNames =
    [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge",
        "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ];

    private bool ApplyTest(string name, Value v, Value[] args)
    {
        Value Arg(int i) => i < args.Length ? args[i] : throw new JinjaRuntimeError($"test '{name}' needs {i + 1} argument(s)");
        switch (name)
        {
            case "defined": return v is not UndefinedValue;
            case "undefined": return v is UndefinedValue;
            case "none": return v is NoneValue;
            case "boolean": return v is BoolValue;
            case "true": return v is BoolValue { Value: true };
            case "false": return v is BoolValue { Value: false };
            case "integer": return v is IntValue;
            case "float": return v is FloatValue;
            // Python's bool is a numbers.Number.
            case "number": return v.IsNumeric;
            case "string": return v is StringValue;
            case "mapping": return v is DictValue;
            // Undefined is iterable in jinja2 (it iterates as empty).
            case "iterable": return v is StringValue or ListValue or DictValue or UndefinedValue;
            case "sequence": return v is StringValue or ListValue or DictValue;
            case "callable": return v is CallableValue;
            case "escaped": return false;
            case "lower": return v is StringValue ls && ls.Value == ls.Value.ToLowerInvariant();
            case "upper": return v is StringValue us && us.Value == us.Value.ToUpperInvariant();
            case "odd": return v.AsLong() % 2 != 0;
            case "even": return v.AsLong() % 2 == 0;
            case "divisibleby":
            {
                long d = Arg(0).AsLong();
                if (d == 0) throw new JinjaRuntimeError("integer division or modulo by zero");
                return v.AsLong() % d == 0;
            }
            case "sameas":
                // Python `is`: singletons, and CPython's cached small ints (-5..256).
                return ReferenceEquals(v, Arg(0)) || (v is NoneValue && Arg(0) is NoneValue) || (v is BoolValue bv && Arg(0) is BoolValue ba && bv.Value == ba.Value)
                    || (v is IntValue iv && Arg(0) is IntValue ia && iv.Value == ia.Value && iv.Value is >= -5 and <= 256);
            case "eq": case "equalto": case "==": return Value.PyEquals(v, Arg(0));
            case "ne": case "!=": return !Value.PyEquals(v, Arg(0));
            case "lt": case "lessthan": case "<": return Order(v, Arg(0), "<") < 0;
            case "le": case "<=": return Order(v, Arg(0), "<=") <= 0;
            case "gt": case "greaterthan": case ">": return Order(v, Arg(0), ">") > 0;
            case "ge": case ">=": return Order(v, Arg(0), ">=") >= 0;
            case "in": return Contains(Arg(0), v);
            default: throw new JinjaRuntimeError($"No test named '{name}'.");
        }
    }

    private static readonly HashSet<string> s_unsafeMethods =
        ["append", "extend", "insert", "pop", "popitem", "remove", "reverse", "sort", "clear", "update", "setdefault", "add", "discard"];

    /// <summary>
    /// The Python attribute <paramref name="name"/> of a value as a bound method, or null. Methods
    /// that mutate are refused, as in Hugging Face's ImmutableSandboxedEnvironment.
    /// </summary>
    private CallableValue? TryGetMethod(Value obj, string name)
    {
        switch (obj)
        {
            case StringValue s: return StringMethod(s.Value, name);
            case DictValue d:
                switch (name)
                {
                    case "items": return Method(name, a => { a.Check(name); return new ListValue(d.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], isTuple: true)).ToList()); });
                    case "keys": return Method(name, a => { a.Check(name); return new ListValue(d.Items.Keys.ToList()); });
                    case "values": return Method(name, a => { a.Check(name); return new ListValue(d.Items.Values.ToList()); });
                    case "get":
                        return Method(name, a =>
                        {
                            a.Check(name, "key", "default");
                            var key = a.Get(0, "key") ?? throw new JinjaRuntimeError("get() needs a key");
                            return d.Items.TryGetValue(key, out var v) ? v : a.Get(1, "default") ?? Value.None;
                        });
                    case "copy":
                        return Method(name, a =>
                        {
                            var c = new DictValue();
                            foreach (var kv in d.Items) c.Items[kv.Key] = kv.Value;
                            return c;
                        });
                }
                break;
            case ListValue l:
                switch (name)
                {
                    case "index":
                        return Method(name, a =>
                        {
                            var x = a.Get(0, "value") ?? throw new JinjaRuntimeError("index() needs a value");
                            int i = l.Items.FindIndex(y => Value.PyEquals(x, y));
                            return i >= 0 ? new IntValue(i) : throw new JinjaRuntimeError($"{x.ToRepr()} is not in list");
                        });
                    case "count":
                        return Method(name, a => new IntValue(l.Items.Count(y => Value.PyEquals(a.Get(0, "value") ?? Value.None, y))));
                    case "copy":
                        return Method(name, _ => new ListValue([.. l.Items], l.IsTuple));
                }
                break;
        }
        if (obj is DictValue or ListValue && s_unsafeMethods.Contains(name))
            return Method(name, _ => throw new JinjaRuntimeError($"access to attribute '{name}' of '{obj.TypeName}' object is unsafe"));
        return null;
    }

    private static CallableValue Method(string name, Func<CallArgs, Value> f) => new(name, f);

    private CallableValue? StringMethod(string s, string name)
    {
        switch (name)
        {
            case "strip": case "lstrip": case "rstrip":
                return Method(name, a =>
                {
                    a.Check(name, "chars");
                    var chars = a.Get(0, "chars");
                    return MakeString(PyFormat.Strip(s, chars is null or NoneValue ? null : chars.ToPyStr(), name != "rstrip", name != "lstrip"));
                });
            case "upper": return Method(name, _ => MakeString(s.ToUpperInvariant()));
            case "lower": return Method(name, _ => MakeString(s.ToLowerInvariant()));
            case "title": return Method(name, a => ApplyFilter("title", new StringValue(s), a));
            case "capitalize": return Method(name, a => ApplyFilter("capitalize", new StringValue(s), a));
            case "startswith": case "endswith":
                return Method(name, a =>
                {
                    var p = a.Get(0, "prefix") ?? throw new JinjaRuntimeError($"{name}() needs an argument");
                    var options = p is ListValue { IsTuple: true } t ? t.Items : [p];
                    return Value.Bool(options.Any(o => o is StringValue os
                        ? (name == "startswith" ? s.StartsWith(os.Value, StringComparison.Ordinal) : s.EndsWith(os.Value, StringComparison.Ordinal))
                        : throw new JinjaRuntimeError($"{name} first arg must be str or a tuple of str, not {o.TypeName}")));
                });
            case "split": case "rsplit":
                return Method(name, a =>
                {
                    a.Check(name, "sep", "maxsplit");
                    var sep = a.Get(0, "sep");
                    long max = a.Get(1, "maxsplit")?.AsLong() ?? -1;
                    return new ListValue(PySplit(s, sep is null or NoneValue ? null : Str(sep, "separator"), max, name == "rsplit").Select(x => (Value)new StringValue(x)).ToList());
                });
            case "splitlines": return Method(name, _ => new ListValue(SplitLines(s).Select(x => (Value)new StringValue(x)).ToList()));
            case "replace":
                return Method(name, a =>
                {
                    var c = a.Get(2, "count");
                    return MakeString(PyReplace(s, Str(a.Get(0, "old"), "old"), Str(a.Get(1, "new"), "new"), c is null ? -1 : c.AsLong()));
                });
            case "find": case "rfind": case "index": case "rindex":
                return Method(name, a =>
                {
                    string sub = Str(a.Get(0, "sub"), "substring");
                    int i = name.StartsWith('r') ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
                    if (i < 0 && name.EndsWith("index", StringComparison.Ordinal)) throw new JinjaRuntimeError("substring not found");
                    // Python indexes code points.
                    return new IntValue(i < 0 ? -1 : new StringValue(s[..i]).CodePointCount);
                });
            case "count":
                return Method(name, a =>
                {
                    string sub = Str(a.Get(0, "sub"), "substring");
                    if (sub.Length == 0) return new IntValue(new StringValue(s).CodePointCount + 1);
                    int n = 0;
                    for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                    return new IntValue(n);
                });
            case "join":
                return Method(name, a =>
                {
                    var items = (a.Get(0, "iterable") ?? throw new JinjaRuntimeError("join() needs an iterable")).Iterate();
                    return MakeString(string.Join(s, items.Select(x => x is StringValue xs ? xs.Value : throw new JinjaRuntimeError($"sequence item: expected str instance, {x.TypeName} found"))));
                });
            case "format": return Method(name, a => MakeString(BraceFormat(s, a)));
            case "isdigit": return Method(name, _ => Value.Bool(s.Length > 0 && s.All(char.IsDigit)));
            case "isalpha": return Method(name, _ => Value.Bool(s.Length > 0 && s.All(char.IsLetter)));
            case "isalnum": return Method(name, _ => Value.Bool(s.Length > 0 && s.All(char.IsLetterOrDigit)));
            case "isspace": return Method(name, _ => Value.Bool(s.Length > 0 && s.All(PyFormat.IsSpace)));
            case "islower": return Method(name, _ => Value.Bool(s.Any(char.IsLetter) && s == s.ToLowerInvariant()));
            case "isupper": return Method(name, _ => Value.Bool(s.Any(char.IsLetter) && s == s.ToUpperInvariant()));
            default: return null;
        }
    }

    /// <summary>Python str.split / rsplit.</summary>
    private static List<string> PySplit(string s, string? sep, long maxsplit, bool fromRight)
    {
        if (sep is not null && sep.Length == 0) throw new JinjaRuntimeError("empty separator");
        var parts = new List<string>();
        if (sep is null)
        {
            // Runs of whitespace separate; leading and trailing whitespace give no empty strings.
            var words = new List<(int Start, int End)>();
            int i = 0;
            while (i < s.Length)
            {
                while (i < s.Length && PyFormat.IsSpace(s[i])) i++;
                if (i >= s.Length) break;
                int st = i;
                while (i < s.Length && !PyFormat.IsSpace(s[i])) i++;
                words.Add((st, i));
            }
            if (maxsplit < 0 || words.Count <= maxsplit + 1) return words.Select(w => s[w.Start..w.End]).ToList();
            if (!fromRight)
            {
                for (int k = 0; k < maxsplit; k++) parts.Add(s[words[k].Start..words[k].End]);
                parts.Add(PyFormat.Strip(s[words[(int)maxsplit].Start..], null, false, true));
            }
            else
            {
                int firstKept = words.Count - (int)maxsplit;
                parts.Add(PyFormat.Strip(s[..words[firstKept - 1].End], null, true, false));
                for (int k = firstKept; k < words.Count; k++) parts.Add(s[words[k].Start..words[k].End]);
            }
            return parts;
        }
        var all = s.Split(sep);
        if (maxsplit < 0 || all.Length <= maxsplit + 1) return [.. all];
        if (!fromRight)
        {
            parts.AddRange(all.Take((int)maxsplit));
            parts.Add(string.Join(sep, all.Skip((int)maxsplit)));
        }
        else
        {
            parts.Add(string.Join(sep, all.Take(all.Length - (int)maxsplit)));
            parts.AddRange(all.Skip(all.Length - (int)maxsplit));
        }
        return parts;
    }

    /// <summary>Python str.format for "{}", "{0}" and "{name}" fields (no format specs), and "{{" / "}}".</summary>
    private static string BraceFormat(string fmt, CallArgs a)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c == '{' && i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            int end = fmt.IndexOf('}', i);
            if (end < 0) throw new JinjaRuntimeError("Single '{' encountered in format string");
            string field = fmt[(i + 1)..end];
            if (field.Contains(':') || field.Contains('!')) throw new JinjaRuntimeError("format specs in str.format are not supported");
            Value v;
            if (field.Length == 0) v = auto < a.Positional.Count ? a.Positional[auto++] : throw new JinjaRuntimeError("Replacement index out of range");
            else if (int.TryParse(field, out int n)) v = n < a.Positional.Count ? a.Positional[n] : throw new JinjaRuntimeError("Replacement index out of range");
            else v = a.Keywords.FirstOrDefault(k => k.Key == field).Value ?? throw new JinjaRuntimeError($"KeyError: '{field}'");
            sb.Append(v.ToPyStr());
            i = end;
        }
        return sb.ToString();
    }
}
