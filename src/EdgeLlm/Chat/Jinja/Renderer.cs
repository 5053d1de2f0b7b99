using System.Runtime.CompilerServices;
using System.Text;

namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// Evaluates a parsed template. Scoping follows Jinja2: a for loop gets its own scope (so
/// <c>set</c> inside a loop does not leak out: that is what <c>namespace()</c> is for), if blocks
/// do not; macros see the scope they were defined in. Every loop iteration, produced character,
/// collection item and macro call counts against <see cref="TemplateLimits"/>.
/// </summary>
internal sealed partial class Renderer
{
    private enum Flow { Normal, Break, Continue }

    /// <summary>A variable scope; lookups walk to the parent.</summary>
    private sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, Value> Vars = new(StringComparer.Ordinal);
        public Scope? Parent { get; } = parent;

        public Value? Lookup(string name)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out var v)) return v;
            return null;
        }
    }

    private readonly TemplateLimits _limits;
    private readonly DateTime _now;
    private long _iterations;
    private long _produced;
    private int _callDepth;

    private Renderer(TemplateLimits limits, DateTime now)
    {
        _limits = limits;
        _now = now;
    }

    public static string Render(List<Stmt> body, IReadOnlyDictionary<string, Value> variables, TemplateLimits limits, DateTime now)
    {
        var r = new Renderer(limits, now);
        var globals = new Scope(null);
        r.AddGlobals(globals);
        var top = new Scope(globals);
        foreach (var kv in variables) top.Vars[kv.Key] = kv.Value;
        var sb = new StringBuilder();
        r.Exec(body, top, sb);
        return sb.ToString();
    }

    private void AddGlobals(Scope g)
    {
        g.Vars["range"] = new CallableValue("range", Range);
        g.Vars["namespace"] = new CallableValue("namespace", a =>
        {
            var ns = new NamespaceValue();
            foreach (var p in a.Positional)
            {
                if (p is not DictValue d) throw new JinjaRuntimeError("namespace() takes keyword arguments or a dict");
                foreach (var kv in d.Items) ns.Attributes[kv.Key.ToPyStr()] = kv.Value;
            }
            foreach (var kv in a.Keywords) ns.Attributes[kv.Key] = kv.Value;
            return ns;
        });
        g.Vars["dict"] = new CallableValue("dict", a =>
        {
            var d = new DictValue();
            foreach (var p in a.Positional)
            {
                if (p is not DictValue src) throw new JinjaRuntimeError("dict() takes keyword arguments or a dict");
                foreach (var kv in src.Items) d.Items[kv.Key] = kv.Value;
            }
            foreach (var kv in a.Keywords) d.Set(kv.Key, kv.Value);
            return d;
        });
        // Hugging Face's additions (transformers' apply_chat_template).
        g.Vars["raise_exception"] = new CallableValue("raise_exception", a =>
            throw new JinjaRuntimeError(a.Positional.Count > 0 ? a.Positional[0].ToPyStr() : "raise_exception() called", raisedByTemplate: true));
        g.Vars["strftime_now"] = new CallableValue("strftime_now", a =>
        {
            a.Check("strftime_now", "format");
            var f = a.Get(0, "format") as StringValue ?? throw new JinjaRuntimeError("strftime_now() needs a format string");
            return Value.Str(PyFormat.Strftime(_now, f.Value));
        });
    }

    private Value Range(CallArgs a)
    {
        if (a.Keywords.Count > 0 || a.Positional.Count is 0 or > 3) throw new JinjaRuntimeError("range() takes 1 to 3 integer arguments");
        long[] n = a.Positional.Select(v => v is IntValue or BoolValue ? v.AsLong() : throw new JinjaRuntimeError($"'{v.TypeName}' object cannot be interpreted as an integer")).ToArray();
        long start = n.Length > 1 ? n[0] : 0, stop = n.Length > 1 ? n[1] : n[0], step = n.Length > 2 ? n[2] : 1;
        if (step == 0) throw new JinjaRuntimeError("range() arg 3 must not be zero");
        long count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0) : (start > stop ? (start - stop - step - 1) / -step : 0);
        if (count > _limits.MaxCollectionItems) throw new JinjaRuntimeError($"range() of {count} items exceeds the limit of {_limits.MaxCollectionItems}");
        var items = new List<Value>((int)count);
        for (long i = 0, v = start; i < count; i++, v += step) items.Add(new IntValue(v));
        return new ListValue(items);
    }

    // ---------------- output and limits ----------------

    private void Write(StringBuilder sb, string s)
    {
        _produced += s.Length;
        if (_produced > _limits.MaxOutputChars)
            throw new JinjaRuntimeError($"the template produced more than the limit of {_limits.MaxOutputChars} characters");
        sb.Append(s);
    }

    private StringValue MakeString(string s)
    {
        if (s.Length > _limits.MaxOutputChars) throw new JinjaRuntimeError($"string of {s.Length} characters exceeds the limit of {_limits.MaxOutputChars}");
        return new StringValue(s);
    }

    private ListValue MakeList(List<Value> items, bool tuple = false)
    {
        if (items.Count > _limits.MaxCollectionItems) throw new JinjaRuntimeError($"list of {items.Count} items exceeds the limit of {_limits.MaxCollectionItems}");
        return new ListValue(items, tuple);
    }

    private void CountIteration()
    {
        if (++_iterations > _limits.MaxLoopIterations)
            throw new JinjaRuntimeError($"the template ran more than the limit of {_limits.MaxLoopIterations} loop iterations");
    }

    private static TemplateException At(Node n, JinjaRuntimeError e) => new(e.Message, n.Line, n.Column, e.RaisedByTemplate);

    /// <summary>.NET exceptions a template can provoke (a comparer failing inside a sort, a cast): reported as template errors.</summary>
    private static bool IsInternal(Exception e) =>
        e is InvalidOperationException or InvalidCastException or ArgumentException or OverflowException or IndexOutOfRangeException or FormatException or KeyNotFoundException;

    private static JinjaRuntimeError Unwrap(Exception e) =>
        e.InnerException as JinjaRuntimeError ?? new JinjaRuntimeError(e is OverflowException ? "integer overflow" : e.Message);

    // ---------------- statements ----------------

    private Flow Exec(List<Stmt> body, Scope scope, StringBuilder sb)
    {
        foreach (var stmt in body)
        {
            var flow = ExecOne(stmt, scope, sb);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Stmt stmt, Scope scope, StringBuilder sb)
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new TemplateException("template recursion too deep", stmt.Line, stmt.Column);
        try
        {
            switch (stmt)
            {
                case TextStmt t:
                    Write(sb, t.Text);
                    return Flow.Normal;
                case OutputStmt o:
                    Write(sb, Eval(o.Expr, scope).ToPyStr());
                    return Flow.Normal;
                case IfStmt i:
                    foreach (var (cond, branch) in i.Branches)
                        if (Eval(cond, scope).IsTruthy) return Exec(branch, scope, sb);
                    return i.Else is null ? Flow.Normal : Exec(i.Else, scope, sb);
                case ForStmt f:
                    ExecFor(f, scope, sb);
                    return Flow.Normal;
                case SetStmt s:
                    Assign(s.Target, Eval(s.Value, scope), scope);
                    return Flow.Normal;
                case SetBlockStmt sbs:
                {
                    var inner = new StringBuilder();
                    Exec(sbs.Body, scope, inner);
                    Assign(sbs.Target, ApplyFilterChain(MakeString(inner.ToString()), sbs.Filters, scope), scope);
                    return Flow.Normal;
                }
                case FilterBlockStmt fb:
                {
                    var inner = new StringBuilder();
                    Exec(fb.Body, scope, inner);
                    Write(sb, ApplyFilterChain(MakeString(inner.ToString()), fb.Filters, scope).ToPyStr());
                    return Flow.Normal;
                }
                case MacroStmt m:
                    scope.Vars[m.Name] = MakeMacro(m, scope);
                    return Flow.Normal;
                case BlockStmt b:
                    return Exec(b.Body, scope, sb);
                case BreakStmt:
                    return Flow.Break;
                case ContinueStmt:
                    return Flow.Continue;
                default:
                    throw new JinjaRuntimeError($"unknown statement {stmt.GetType().Name}");
            }
        }
        catch (JinjaRuntimeError e)
        {
            throw At(stmt, e);
        }
        catch (Exception e) when (IsInternal(e))
        {
            throw At(stmt, Unwrap(e));
        }
    }

    private Value ApplyFilterChain(Value v, List<FilterExpr> filters, Scope scope)
    {
        foreach (var f in filters)
        {
            try { v = ApplyFilter(f.Name, v, EvalArgs(f.Args, f.Kwargs, scope)); }
            catch (JinjaRuntimeError e) { throw At(f, e); }
        }
        return v;
    }

    private void ExecFor(ForStmt f, Scope scope, StringBuilder sb)
    {
        var source = Eval(f.Iter, scope);
        IReadOnlyList<Value> items = source.Iterate();
        if (f.Filter is not null)
        {
            var kept = new List<Value>();
            var filterScope = new Scope(scope);
            foreach (var item in items)
            {
                CountIteration();
                Assign(f.Target, item, filterScope);
                if (Eval(f.Filter, filterScope).IsTruthy) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, scope, sb);
            return;
        }
        var loop = new LoopValue(items);
        for (int i = 0; i < items.Count; i++)
        {
            CountIteration();
            loop.Index0 = i;
            // A fresh scope per iteration: in jinja2 a `set` in one iteration is not seen by the next.
            var loopScope = new Scope(scope);
            loopScope.Vars["loop"] = loop;
            Assign(f.Target, items[i], loopScope);
            if (Exec(f.Body, loopScope, sb) == Flow.Break) break;
        }
    }

    private void Assign(Target t, Value v, Scope scope)
    {
        if (t.Name is not null)
        {
            scope.Vars[t.Name] = v;
            return;
        }
        if (t.NamespaceName is not null)
        {
            var ns = scope.Lookup(t.NamespaceName);
            if (ns is not NamespaceValue n)
                throw new TemplateException($"cannot assign attribute on non-namespace object '{t.NamespaceName}'", t.Line, t.Column);
            n.Attributes[t.NamespaceAttr!] = v;
            return;
        }
        var targets = t.Tuple!;
        var values = v is StringValue or ListValue or DictValue ? v.Iterate() : throw new TemplateException($"cannot unpack non-iterable {v.TypeName} object", t.Line, t.Column);
        if (values.Count != targets.Count)
            throw new TemplateException(values.Count > targets.Count ? $"too many values to unpack (expected {targets.Count})" : $"not enough values to unpack (expected {targets.Count}, got {values.Count})", t.Line, t.Column);
        for (int i = 0; i < targets.Count; i++) Assign(targets[i], values[i], scope);
    }

    private CallableValue MakeMacro(MacroStmt m, Scope defining) => new(m.Name, a =>
    {
        if (a.Positional.Count > m.Parameters.Count)
            throw new JinjaRuntimeError($"macro '{m.Name}' takes not more than {m.Parameters.Count} argument(s)");
        if (++_callDepth > _limits.MaxCallDepth)
        {
            _callDepth = 0;
            throw new JinjaRuntimeError($"macro calls nested deeper than the limit of {_limits.MaxCallDepth}");
        }
        try
        {
            var s = new Scope(defining);
            for (int i = 0; i < m.Parameters.Count; i++)
            {
                var (name, def) = m.Parameters[i];
                Value? v = i < a.Positional.Count ? a.Positional[i] : null;
                foreach (var kv in a.Keywords)
                    if (kv.Key == name) v = v is null ? kv.Value : throw new JinjaRuntimeError($"macro '{m.Name}' got multiple values for argument '{name}'");
                v ??= def is not null ? Eval(def, s) : new UndefinedValue($"'{name}' is undefined");
                s.Vars[name] = v;
            }
            foreach (var kv in a.Keywords)
                if (!m.Parameters.Any(p => p.Name == kv.Key)) throw new JinjaRuntimeError($"macro '{m.Name}' takes no keyword argument '{kv.Key}'");
            var sb = new StringBuilder();
            Exec(m.Body, s, sb);
            return new StringValue(sb.ToString());
        }
        finally
        {
            if (_callDepth > 0) _callDepth--;
        }
    });

    // ---------------- expressions ----------------

    private CallArgs EvalArgs(List<Expr> args, List<(string Name, Expr Value)> kwargs, Scope scope)
    {
        if (args.Count == 0 && kwargs.Count == 0) return CallArgs.Empty;
        var pos = args.Select(e => Eval(e, scope)).ToArray();
        var kw = kwargs.Select(k => new KeyValuePair<string, Value>(k.Name, Eval(k.Value, scope))).ToArray();
        return new CallArgs(pos, kw);
    }

    private Value Eval(Expr e, Scope scope)
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new TemplateException("template recursion too deep", e.Line, e.Column);
        try
        {
            return EvalCore(e, scope);
        }
        catch (JinjaRuntimeError err)
        {
            throw At(e, err);
        }
        catch (Exception err) when (IsInternal(err))
        {
            throw At(e, Unwrap(err));
        }
    }

    private Value EvalCore(Expr e, Scope scope)
    {
        switch (e)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return scope.Lookup(n.Name) ?? new UndefinedValue($"'{n.Name}' is undefined");
            case ListExpr le:
                return MakeList(le.Items.Select(x => Eval(x, scope)).ToList(), le.IsTuple);
            case DictExpr de:
            {
                var d = new DictValue();
                foreach (var (k, v) in de.Items) d.Items[Eval(k, scope)] = Eval(v, scope);
                return d;
            }
            case GetAttrExpr ga:
                return GetAttr(Eval(ga.Obj, scope), ga.Name);
            case GetItemExpr gi:
                return GetItem(Eval(gi.Obj, scope), Eval(gi.Index, scope));
            case SliceExpr se:
                return Slice(Eval(se.Obj, scope), se.Start is null ? null : Eval(se.Start, scope), se.Stop is null ? null : Eval(se.Stop, scope), se.Step is null ? null : Eval(se.Step, scope));
            case CallExpr ce:
            {
                var callee = Eval(ce.Callee, scope);
                var args = EvalArgs(ce.Args, ce.Kwargs, scope);
                return callee switch
                {
                    CallableValue c => c.Invoke(args),
                    UndefinedValue u => throw u.Fail(),
                    _ => throw new JinjaRuntimeError($"'{callee.TypeName}' object is not callable"),
                };
            }
            case FilterExpr fe:
                return ApplyFilter(fe.Name, Eval(fe.Operand!, scope), EvalArgs(fe.Args, fe.Kwargs, scope));
            case TestExpr te:
            {
                bool r = ApplyTest(te.Name, Eval(te.Operand, scope), te.Args.Select(a => Eval(a, scope)).ToArray());
                return Value.Bool(r != te.Negated);
            }
            case UnaryExpr ue:
            {
                var v = Eval(ue.Operand, scope);
                if (ue.Op == "not") return Value.Bool(!v.IsTruthy);
                if (v is UndefinedValue u) throw u.Fail();
                if (!v.IsNumeric) throw new JinjaRuntimeError($"bad operand type for unary {ue.Op}: '{v.TypeName}'");
                if (ue.Op == "+") return v is BoolValue ? new IntValue(v.AsLong()) : v;
                return v is FloatValue fv ? new FloatValue(-fv.Value) : new IntValue(checked(-v.AsLong()));
            }
            case BinaryExpr be:
            {
                if (be.Op == "and")
                {
                    var l = Eval(be.Left, scope);
                    return l.IsTruthy ? Eval(be.Right, scope) : l;
                }
                if (be.Op == "or")
                {
                    var l = Eval(be.Left, scope);
                    return l.IsTruthy ? l : Eval(be.Right, scope);
                }
                return Binary(be.Op, Eval(be.Left, scope), Eval(be.Right, scope));
            }
            case CompareExpr ce:
            {
                var left = Eval(ce.First, scope);
                foreach (var (op, rightExpr) in ce.Rest)
                {
                    var right = Eval(rightExpr, scope);
                    if (!Compare(op, left, right)) return Value.False;
                    left = right;
                }
                return Value.True;
            }
            case CondExpr c:
                if (Eval(c.Test, scope).IsTruthy) return Eval(c.Then, scope);
                return c.Else is null ? new UndefinedValue("the inline if-expression evaluated to false and no else section was defined") : Eval(c.Else, scope);
            default:
                throw new JinjaRuntimeError($"unknown expression {e.GetType().Name}");
        }
    }

    // ---------------- operators ----------------

    private static JinjaRuntimeError OperandError(string op, Value a, Value b)
    {
        if (a is UndefinedValue ua) return ua.Fail();
        if (b is UndefinedValue ub) return ub.Fail();
        return new JinjaRuntimeError($"unsupported operand type(s) for {op}: '{a.TypeName}' and '{b.TypeName}'");
    }

    private Value Binary(string op, Value a, Value b)
    {
        if (op == "~") return MakeString(a.ToPyStr() + b.ToPyStr());
        bool numeric = a.IsNumeric && b.IsNumeric;
        bool isFloat = a is FloatValue || b is FloatValue;
        try
        {
            switch (op)
            {
                case "+":
                    if (numeric) return isFloat ? new FloatValue(a.AsDouble() + b.AsDouble()) : new IntValue(checked(a.AsLong() + b.AsLong()));
                    if (a is StringValue sa && b is StringValue sb) return MakeString(sa.Value + sb.Value);
                    if (a is ListValue la && b is ListValue lb && la.IsTuple == lb.IsTuple)
                    {
                        if ((long)la.Items.Count + lb.Items.Count > _limits.MaxCollectionItems) throw new JinjaRuntimeError($"list exceeds the limit of {_limits.MaxCollectionItems} items");
                        return MakeList([.. la.Items, .. lb.Items], la.IsTuple);
                    }
                    break;
                case "-":
                    if (numeric) return isFloat ? new FloatValue(a.AsDouble() - b.AsDouble()) : new IntValue(checked(a.AsLong() - b.AsLong()));
                    break;
                case "*":
                    if (numeric) return isFloat ? new FloatValue(a.AsDouble() * b.AsDouble()) : new IntValue(checked(a.AsLong() * b.AsLong()));
                    if (a is StringValue or ListValue && b is IntValue or BoolValue) return Repeat(a, b.AsLong());
                    if (b is StringValue or ListValue && a is IntValue or BoolValue) return Repeat(b, a.AsLong());
                    break;
                case "/":
                    if (numeric)
                    {
                        if (b.AsDouble() == 0) throw new JinjaRuntimeError("division by zero");
                        return new FloatValue(a.AsDouble() / b.AsDouble());
                    }
                    break;
                case "//":
                    if (numeric)
                    {
                        if (b.AsDouble() == 0) throw new JinjaRuntimeError("integer division or modulo by zero");
                        if (isFloat) return new FloatValue(Math.Floor(a.AsDouble() / b.AsDouble()));
                        long x = a.AsLong(), y = b.AsLong(), q = x / y;
                        if (x % y != 0 && (x < 0) != (y < 0)) q--;
                        return new IntValue(q);
                    }
                    break;
                case "%":
                    if (numeric)
                    {
                        if (b.AsDouble() == 0) throw new JinjaRuntimeError("integer division or modulo by zero");
                        if (isFloat)
                        {
                            double x = a.AsDouble(), y = b.AsDouble(), m = x % y;
                            if (m != 0 && (m < 0) != (y < 0)) m += y;
                            return new FloatValue(m);
                        }
                        long xi = a.AsLong(), yi = b.AsLong(), r = xi % yi;
                        if (r != 0 && (r < 0) != (yi < 0)) r += yi;
                        return new IntValue(r);
                    }
                    if (a is StringValue fmt) return MakeString(PercentFormat(fmt.Value, b is ListValue { IsTuple: true } t ? t.Items : [b]));
                    break;
                case "**":
                    if (numeric)
                    {
                        if (!isFloat && b.AsLong() >= 0)
                        {
                            long bas = a.AsLong(), exp = b.AsLong(), result = 1;
                            while (exp > 0)
                            {
                                if ((exp & 1) != 0) result = checked(result * bas);
                                exp >>= 1;
                                if (exp > 0) bas = checked(bas * bas);
                            }
                            return new IntValue(result);
                        }
                        return new FloatValue(Math.Pow(a.AsDouble(), b.AsDouble()));
                    }
                    break;
            }
        }
        catch (OverflowException)
        {
            throw new JinjaRuntimeError($"integer overflow in '{op}'");
        }
        throw OperandError(op, a, b);
    }

    private Value Repeat(Value seq, long n)
    {
        if (n <= 0) return seq is StringValue ? Value.Str("") : MakeList([], ((ListValue)seq).IsTuple);
        if (seq is StringValue s)
        {
            if (s.Value.Length * n > _limits.MaxOutputChars) throw new JinjaRuntimeError($"string repetition exceeds the limit of {_limits.MaxOutputChars} characters");
            return new StringValue(string.Concat(Enumerable.Repeat(s.Value, (int)n)));
        }
        var l = (ListValue)seq;
        if (l.Items.Count * n > _limits.MaxCollectionItems) throw new JinjaRuntimeError($"list repetition exceeds the limit of {_limits.MaxCollectionItems} items");
        var items = new List<Value>();
        for (long i = 0; i < n; i++) items.AddRange(l.Items);
        return new ListValue(items, l.IsTuple);
    }

    private static bool Compare(string op, Value a, Value b)
    {
        switch (op)
        {
            case "==": return Value.PyEquals(a, b);
            case "!=": return !Value.PyEquals(a, b);
            case "in": return Contains(b, a);
            case "not in": return !Contains(b, a);
        }
        int c = Order(a, b, op);
        return op switch
        {
            "<" => c < 0,
            "<=" => c <= 0,
            ">" => c > 0,
            _ => c >= 0,
        };
    }

    /// <summary>Python ordering for &lt; &lt;= &gt; &gt;=: numbers, strings (by code point), lists and tuples.</summary>
    internal static int Order(Value a, Value b, string op = "<")
    {
        if (a.IsNumeric && b.IsNumeric)
            return a is FloatValue || b is FloatValue ? a.AsDouble().CompareTo(b.AsDouble()) : a.AsLong().CompareTo(b.AsLong());
        if (a is StringValue sa && b is StringValue sb) return CompareCodePoints(sa.Value, sb.Value);
        if (a is ListValue la && b is ListValue lb && la.IsTuple == lb.IsTuple)
        {
            for (int i = 0; i < Math.Min(la.Items.Count, lb.Items.Count); i++)
            {
                if (Value.PyEquals(la.Items[i], lb.Items[i])) continue;
                return Order(la.Items[i], lb.Items[i], op);
            }
            return la.Items.Count.CompareTo(lb.Items.Count);
        }
        if (a is UndefinedValue ua) throw ua.Fail();
        if (b is UndefinedValue ub) throw ub.Fail();
        throw new JinjaRuntimeError($"'{op}' not supported between instances of '{a.TypeName}' and '{b.TypeName}'");
    }

    /// <summary>Python compares strings by code point; UTF-16 ordinal order differs only around surrogates.</summary>
    private static int CompareCodePoints(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            int ca = CodePointAt(a, ref i), cb = CodePointAt(b, ref j);
            if (ca != cb) return ca.CompareTo(cb);
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    private static int CodePointAt(string s, ref int i)
    {
        if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            int cp = char.ConvertToUtf32(s[i], s[i + 1]);
            i += 2;
            return cp;
        }
        return s[i++];
    }

    private static bool Contains(Value container, Value item)
    {
        switch (container)
        {
            case StringValue s:
                if (item is not StringValue sub) throw new JinjaRuntimeError($"'in <string>' requires string as left operand, not {item.TypeName}");
                return s.Value.Contains(sub.Value, StringComparison.Ordinal);
            case ListValue l:
                return l.Items.Any(x => Value.PyEquals(x, item));
            case DictValue d:
                return d.Items.ContainsKey(item);
            case UndefinedValue:
                return false;
            default:
                throw new JinjaRuntimeError($"argument of type '{container.TypeName}' is not iterable");
        }
    }

    // ---------------- attribute and item access ----------------

    /// <summary>jinja2's sandboxed getattr: a Python attribute (a method) first, then the item; missing gives undefined.</summary>
    private Value GetAttr(Value obj, string name)
    {
        if (obj is UndefinedValue u) throw u.Fail();
        if (TryGetMethod(obj, name) is { } method) return method;
        switch (obj)
        {
            case DictValue d:
                return d.Get(name) ?? Missing(obj, name);
            case NamespaceValue ns:
                return ns.Attributes.TryGetValue(name, out var v) ? v : Missing(obj, name);
            case LoopValue lv:
                return lv.GetAttribute(name) ?? Missing(obj, name);
            default:
                return Missing(obj, name);
        }
    }

    private static UndefinedValue Missing(Value obj, object name) =>
        new($"'{(obj is NoneValue ? "None" : obj.TypeName + " object")}' has no attribute '{name}'");

    /// <summary>jinja2's getitem: the item first, then (for a string key) the attribute; missing gives undefined.</summary>
    private Value GetItem(Value obj, Value key)
    {
        if (obj is UndefinedValue u) throw u.Fail();
        switch (obj)
        {
            case ListValue l when key is IntValue or BoolValue:
            {
                long i = key.AsLong();
                if (i < 0) i += l.Items.Count;
                return i >= 0 && i < l.Items.Count ? l.Items[(int)i] : new UndefinedValue($"'{l.TypeName} object' has no element {key.ToRepr()}");
            }
            case StringValue s when key is IntValue or BoolValue:
            {
                var cps = s.CodePoints();
                long i = key.AsLong();
                if (i < 0) i += cps.Count;
                return i >= 0 && i < cps.Count ? new StringValue(cps[(int)i]) : new UndefinedValue($"'str object' has no element {key.ToRepr()}");
            }
            case DictValue d:
                if (key is not (ListValue { IsTuple: false } or DictValue or UndefinedValue or NamespaceValue or CallableValue or LoopValue)
                    && d.Items.TryGetValue(key, out var v)) return v;
                break;
        }
        if (key is StringValue name && obj is not DictValue) return GetAttr(obj, name.Value);
        if (key is StringValue dictName && TryGetMethod(obj, dictName.Value) is { } m) return m;
        return new UndefinedValue($"'{obj.TypeName} object' has no element {key.ToRepr()}");
    }

    private Value Slice(Value obj, Value? start, Value? stop, Value? step)
    {
        if (obj is UndefinedValue u) throw u.Fail();
        static long? Idx(Value? v) => v is null or NoneValue ? null : v is IntValue or BoolValue ? v.AsLong() : throw new JinjaRuntimeError("slice indices must be integers or None");
        long st = Idx(step) ?? 1;
        if (st == 0) throw new JinjaRuntimeError("slice step cannot be zero");
        List<string>? cps = null;
        int len;
        if (obj is StringValue s) { cps = s.CodePoints(); len = cps.Count; }
        else if (obj is ListValue l) len = l.Items.Count;
        else throw new JinjaRuntimeError($"'{obj.TypeName}' object is not subscriptable");
        // CPython's PySlice_AdjustIndices.
        long lo, hi;
        long? a = Idx(start), b = Idx(stop);
        if (st > 0)
        {
            lo = a is null ? 0 : a < 0 ? Math.Max(0, a.Value + len) : Math.Min(a.Value, len);
            hi = b is null ? len : b < 0 ? Math.Max(0, b.Value + len) : Math.Min(b.Value, len);
        }
        else
        {
            lo = a is null ? len - 1 : a < 0 ? Math.Max(-1, a.Value + len) : Math.Min(a.Value, len - 1);
            hi = b is null ? -1 : b < 0 ? Math.Max(-1, b.Value + len) : Math.Min(b.Value, len - 1);
        }
        var idx = new List<int>();
        for (long i = lo; st > 0 ? i < hi : i > hi; i += st) idx.Add((int)i);
        if (cps is not null) return new StringValue(string.Concat(idx.Select(i => cps[i])));
        var list = (ListValue)obj;
        return new ListValue(idx.Select(i => list.Items[i]).ToList(), list.IsTuple);
    }
}
