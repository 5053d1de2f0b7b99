using System.Globalization;
using System.Text;

namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// A template value. The interpreter sees nothing but these: no .NET object reaches a template,
/// so there is nothing to reflect over (the sandbox). Semantics follow Python as Jinja2 exposes
/// it: truthiness, equality (1 == 1.0 == True), str() and repr().
/// </summary>
internal abstract class Value
{
    /// <summary>Python's bool(value).</summary>
    public abstract bool IsTruthy { get; }

    /// <summary>Python's type name, for error messages ("str", "list", ...).</summary>
    public abstract string TypeName { get; }

    /// <summary>Python's str(value); Jinja2 prints this (undefined prints as empty).</summary>
    public virtual string ToPyStr() => ToRepr();

    /// <summary>Python's repr(value).</summary>
    public abstract string ToRepr();

    public override string ToString() => ToPyStr();

    public static readonly NoneValue None = new();
    public static readonly BoolValue True = new(true);
    public static readonly BoolValue False = new(false);

    public static BoolValue Bool(bool b) => b ? True : False;

    public static StringValue Str(string s) => new(s);

    public static IntValue Int(long v) => new(v);

    /// <summary>Python ==.</summary>
    public static bool PyEquals(Value a, Value b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.IsNumeric && b.IsNumeric)
        {
            if (a is FloatValue || b is FloatValue) return a.AsDouble() == b.AsDouble();
            return a.AsLong() == b.AsLong();
        }
        switch (a)
        {
            case StringValue sa: return b is StringValue sb && string.Equals(sa.Value, sb.Value, StringComparison.Ordinal);
            case NoneValue: return b is NoneValue;
            case UndefinedValue: return b is UndefinedValue;
            case ListValue la:
                if (b is not ListValue lb || la.IsTuple != lb.IsTuple || la.Items.Count != lb.Items.Count) return false;
                for (int i = 0; i < la.Items.Count; i++)
                    if (!PyEquals(la.Items[i], lb.Items[i])) return false;
                return true;
            case DictValue da:
                if (b is not DictValue db || da.Items.Count != db.Items.Count) return false;
                foreach (var kv in da.Items)
                    if (!db.Items.TryGetValue(kv.Key, out var other) || !PyEquals(kv.Value, other)) return false;
                return true;
            default: return false;
        }
    }

    /// <summary>True for int, float and bool (bool is an int in Python).</summary>
    public bool IsNumeric => this is IntValue or FloatValue or BoolValue;

    public long AsLong() => this switch
    {
        IntValue i => i.Value,
        BoolValue b => b.Value ? 1 : 0,
        FloatValue f => (long)f.Value,
        _ => throw new JinjaRuntimeError($"expected a number, got {TypeName}"),
    };

    public double AsDouble() => this switch
    {
        IntValue i => i.Value,
        BoolValue b => b.Value ? 1 : 0,
        FloatValue f => f.Value,
        _ => throw new JinjaRuntimeError($"expected a number, got {TypeName}"),
    };

    /// <summary>Python's len(); null when the value has no length.</summary>
    public int? Length => this switch
    {
        StringValue s => s.CodePointCount,
        ListValue l => l.Items.Count,
        DictValue d => d.Items.Count,
        UndefinedValue => 0,
        _ => null,
    };

    /// <summary>Iterates as Python's iter(): list items, dict keys, string characters; undefined is empty.</summary>
    public IReadOnlyList<Value> Iterate()
    {
        switch (this)
        {
            case ListValue l: return l.Items.ToArray();
            case DictValue d: return d.Items.Keys.ToArray();
            case StringValue s: return s.CodePoints().Select(c => (Value)new StringValue(c)).ToArray();
            case UndefinedValue: return [];
            default: throw new JinjaRuntimeError($"'{TypeName}' object is not iterable");
        }
    }
}

/// <summary>Jinja2's default Undefined: prints empty, is falsy and iterates as empty; most other uses fail.</summary>
internal sealed class UndefinedValue(string description) : Value
{
    /// <summary>Jinja2's message for a failing use: "'x' is undefined" or "'dict object' has no attribute 'y'".</summary>
    public string Description { get; } = description;

    public override bool IsTruthy => false;
    public override string TypeName => "Undefined";
    public override string ToPyStr() => "";
    public override string ToRepr() => "Undefined";

    public JinjaRuntimeError Fail() => new(Description);
}

internal sealed class NoneValue : Value
{
    public override bool IsTruthy => false;
    public override string TypeName => "NoneType";
    public override string ToRepr() => "None";
}

internal sealed class BoolValue(bool value) : Value
{
    public bool Value { get; } = value;
    public override bool IsTruthy => Value;
    public override string TypeName => "bool";
    public override string ToRepr() => Value ? "True" : "False";
}

internal sealed class IntValue(long value) : Value
{
    public long Value { get; } = value;
    public override bool IsTruthy => Value != 0;
    public override string TypeName => "int";
    public override string ToRepr() => Value.ToString(CultureInfo.InvariantCulture);
}

internal sealed class FloatValue(double value) : Value
{
    public double Value { get; } = value;
    public override bool IsTruthy => Value != 0;
    public override string TypeName => "float";
    public override string ToRepr() => PyFormat.FloatRepr(Value);
}

internal sealed class StringValue(string value) : Value
{
    public string Value { get; } = value;
    public override bool IsTruthy => Value.Length > 0;
    public override string TypeName => "str";
    public override string ToPyStr() => Value;
    public override string ToRepr() => PyFormat.StringRepr(Value);

    /// <summary>True when the string has surrogate pairs, so UTF-16 indices differ from Python's code-point indices.</summary>
    public bool HasSurrogates
    {
        get
        {
            foreach (char c in Value)
                if (char.IsSurrogate(c)) return true;
            return false;
        }
    }

    public int CodePointCount => HasSurrogates ? CodePoints().Count : Value.Length;

    /// <summary>The string split into Python characters (code points).</summary>
    public List<string> CodePoints()
    {
        var list = new List<string>(Value.Length);
        for (int i = 0; i < Value.Length; i++)
        {
            if (char.IsHighSurrogate(Value[i]) && i + 1 < Value.Length && char.IsLowSurrogate(Value[i + 1]))
            {
                list.Add(Value.Substring(i, 2));
                i++;
            }
            else list.Add(Value[i].ToString());
        }
        return list;
    }
}

/// <summary>A Python list, or a tuple (<see cref="IsTuple"/>: printed with parentheses).</summary>
internal sealed class ListValue(List<Value> items, bool isTuple = false) : Value
{
    public List<Value> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
    public override bool IsTruthy => Items.Count > 0;
    public override string TypeName => IsTuple ? "tuple" : "list";

    public override string ToRepr()
    {
        var sb = new StringBuilder(IsTuple ? "(" : "[");
        for (int i = 0; i < Items.Count; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(Items[i].ToRepr());
        }
        if (IsTuple && Items.Count == 1) sb.Append(',');
        return sb.Append(IsTuple ? ')' : ']').ToString();
    }
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality.</summary>
internal sealed class DictValue : Value
{
    public OrderedDictionary<Value, Value> Items { get; } = new(KeyComparer.Instance);
    public override bool IsTruthy => Items.Count > 0;
    public override string TypeName => "dict";

    public Value? Get(string key) => Items.TryGetValue(new StringValue(key), out var v) ? v : null;

    public void Set(string key, Value value) => Items[new StringValue(key)] = value;

    public override string ToRepr()
    {
        var sb = new StringBuilder("{");
        bool first = true;
        foreach (var kv in Items)
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append(kv.Key.ToRepr()).Append(": ").Append(kv.Value.ToRepr());
        }
        return sb.Append('}').ToString();
    }

    /// <summary>Python hashing: 1, 1.0 and True are the same key; lists and dicts are unhashable.</summary>
    private sealed class KeyComparer : IEqualityComparer<Value>
    {
        public static readonly KeyComparer Instance = new();

        public bool Equals(Value? x, Value? y) => x is not null && y is not null && PyEquals(x, y);

        public int GetHashCode(Value v) => v switch
        {
            StringValue s => StringComparer.Ordinal.GetHashCode(s.Value),
            IntValue or BoolValue => v.AsLong().GetHashCode(),
            FloatValue f => f.Value == Math.Floor(f.Value) && Math.Abs(f.Value) < 9e18 ? ((long)f.Value).GetHashCode() : f.Value.GetHashCode(),
            NoneValue => 0x5eed,
            ListValue { IsTuple: true } t => t.Items.Aggregate(17, (h, i) => h * 31 + GetHashCode(i)),
            _ => throw new JinjaRuntimeError($"unhashable type: '{v.TypeName}'"),
        };
    }
}

/// <summary>Jinja2's namespace(): the one mutable object, whose attributes <c>set ns.x = ...</c> assigns.</summary>
internal sealed class NamespaceValue : Value
{
    public Dictionary<string, Value> Attributes { get; } = new(StringComparer.Ordinal);
    public override bool IsTruthy => true;
    public override string TypeName => "Namespace";
    public override string ToRepr() => "<Namespace>";
}

/// <summary>Positional and keyword arguments of a call.</summary>
internal sealed record CallArgs(IReadOnlyList<Value> Positional, IReadOnlyList<KeyValuePair<string, Value>> Keywords)
{
    public static readonly CallArgs Empty = new([], []);

    /// <summary>Python-style parameter binding: argument <paramref name="index"/> by position, else by keyword <paramref name="name"/>.</summary>
    public Value? Get(int index, string name)
    {
        if (index >= 0 && index < Positional.Count) return Positional[index];
        foreach (var kv in Keywords)
            if (kv.Key == name) return kv.Value;
        return null;
    }

    /// <summary>Fails when more positional arguments or other keywords were given than <paramref name="names"/> allows.</summary>
    public void Check(string function, params string[] names)
    {
        if (Positional.Count > names.Length)
            throw new JinjaRuntimeError($"{function}() takes at most {names.Length} argument(s) ({Positional.Count} given)");
        foreach (var kv in Keywords)
            if (Array.IndexOf(names, kv.Key) < 0)
                throw new JinjaRuntimeError($"{function}() got an unexpected keyword argument '{kv.Key}'");
    }
}

/// <summary>A function a template can call: a built-in global, a bound method, a macro.</summary>
internal sealed class CallableValue(string name, Func<CallArgs, Value> invoke) : Value
{
    public string Name { get; } = name;
    public Func<CallArgs, Value> Invoke { get; } = invoke;
    public override bool IsTruthy => true;
    public override string TypeName => "function";
    public override string ToRepr() => $"<function {Name}>";
}

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
internal sealed class LoopValue(IReadOnlyList<Value> items) : Value
{
    public IReadOnlyList<Value> Items { get; } = items;
    public int Index0 { get; set; }
    public override bool IsTruthy => true;
    public override string TypeName => "LoopContext";
    public override string ToRepr() => $"<LoopContext {Index0 + 1}/{Items.Count}>";

    public Value? GetAttribute(string name) => name switch
    {
        "index" => Int(Index0 + 1),
        "index0" => Int(Index0),
        "revindex" => Int(Items.Count - Index0),
        "revindex0" => Int(Items.Count - Index0 - 1),
        "first" => Bool(Index0 == 0),
        "last" => Bool(Index0 == Items.Count - 1),
        "length" => Int(Items.Count),
        "depth" => Int(1),
        "depth0" => Int(0),
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new UndefinedValue("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new UndefinedValue("there is no next item"),
        "cycle" => new CallableValue("loop.cycle", a =>
        {
            if (a.Positional.Count == 0) throw new JinjaRuntimeError("no items for cycling given");
            return a.Positional[Index0 % a.Positional.Count];
        }),
        "changed" => null,
        _ => null,
    };
}
