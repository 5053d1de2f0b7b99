using System.Globalization;
using System.Runtime.CompilerServices;

namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// Recursive-descent parser over the lexer's tokens, with jinja2/parser.py's grammar and
/// precedence: conditional (<c>x if c else y</c>) &lt; or &lt; and &lt; not &lt; comparisons
/// (== != &lt; &lt;= &gt; &gt;= in, not in) &lt; + - &lt; ~ &lt; * / // % &lt; ** &lt; unary -
/// &lt; primary with postfix (.attr [i] [a:b] (args)), filters (<c>|f</c>) and tests (<c>is t</c>).
/// </summary>
internal sealed class Parser
{
    private readonly List<Token> _tokens;
    private readonly int _maxNesting;
    private int _pos;
    private int _depth;

    private Parser(List<Token> tokens, int maxNesting)
    {
        _tokens = tokens;
        _maxNesting = maxNesting;
    }

    public static List<Stmt> Parse(string source, TemplateLimits limits)
    {
        var parser = new Parser(Lexer.Tokenize(source), limits.MaxNesting);
        var body = parser.ParseBody([], out _);
        return body;
    }

    private Token Cur => _tokens[_pos];
    private Token Peek(int n = 1) => _tokens[Math.Min(_pos + n, _tokens.Count - 1)];
    private Token Next() => _tokens[_pos++];

    private static TemplateException Error(string reason, Token at) => new(reason, at.Line, at.Column);

    private string Describe(Token t) => t.Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VarEnd => "end of print statement",
        TokenKind.String => "string literal",
        _ => $"'{t.Text}'",
    };

    private void ExpectOp(string op)
    {
        if (!Cur.IsOp(op)) throw Error($"expected '{op}', got {Describe(Cur)}", Cur);
        _pos++;
    }

    private string ExpectName()
    {
        if (Cur.Kind != TokenKind.Name) throw Error($"expected a name, got {Describe(Cur)}", Cur);
        return Next().Text;
    }

    private void ExpectBlockEnd()
    {
        if (Cur.Kind != TokenKind.BlockEnd) throw Error($"expected end of statement block, got {Describe(Cur)}", Cur);
        _pos++;
    }

    private void Enter(Token at)
    {
        // Both a fixed nesting limit and a stack check: a template is untrusted input.
        if (++_depth > _maxNesting || !RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Error($"template nested too deeply (limit {_maxNesting})", at);
    }

    private void Leave() => _depth--;

    // ---------------- statements ----------------

    /// <summary>Parses statements until a block tag whose keyword is in <paramref name="endTags"/> (left unconsumed after the keyword).</summary>
    private List<Stmt> ParseBody(string[] endTags, out string endTag)
    {
        var body = new List<Stmt>();
        Token start = Cur;
        Enter(start);
        while (true)
        {
            var t = Cur;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0) throw Error($"unexpected end of template: expected {string.Join(" or ", endTags.Select(e => "{% " + e + " %}"))}", t);
                    endTag = "";
                    Leave();
                    return body;
                case TokenKind.Text:
                    body.Add(new TextStmt(t.Text, t.Line, t.Column));
                    _pos++;
                    break;
                case TokenKind.VarBegin:
                    _pos++;
                    var e = ParseTuple(withCondExpr: true);
                    if (Cur.Kind != TokenKind.VarEnd) throw Error($"expected end of print statement, got {Describe(Cur)}", Cur);
                    _pos++;
                    body.Add(new OutputStmt(e, t.Line, t.Column));
                    break;
                case TokenKind.BlockBegin:
                    var kw = Peek();
                    if (kw.Kind != TokenKind.Name) throw Error("expected a statement keyword after '{%'", kw);
                    if (Array.IndexOf(endTags, kw.Text) >= 0)
                    {
                        _pos += 2;
                        endTag = kw.Text;
                        Leave();
                        return body;
                    }
                    _pos += 2;
                    body.Add(ParseStatement(kw));
                    break;
                default:
                    throw Error($"unexpected {Describe(t)}", t);
            }
        }
    }

    private Stmt ParseStatement(Token kw)
    {
        switch (kw.Text)
        {
            case "if": return ParseIf(kw);
            case "for": return ParseFor(kw);
            case "set": return ParseSet(kw);
            case "macro": return ParseMacro(kw);
            case "filter":
            {
                var filters = ParseFilterChain(kw);
                ExpectBlockEnd();
                var body = ParseBody(["endfilter"], out _);
                ExpectBlockEnd();
                return new FilterBlockStmt(body, filters, kw.Line, kw.Column);
            }
            case "generation":
            {
                ExpectBlockEnd();
                var body = ParseBody(["endgeneration"], out _);
                ExpectBlockEnd();
                return new BlockStmt(body, kw.Line, kw.Column);
            }
            case "break":
                ExpectBlockEnd();
                return new BreakStmt(kw.Line, kw.Column);
            case "continue":
                ExpectBlockEnd();
                return new ContinueStmt(kw.Line, kw.Column);
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endfilter" or "endgeneration":
                throw Error($"unexpected '{{% {kw.Text} %}}' without its opening tag", kw);
            default:
                throw Error($"unknown or unsupported tag '{kw.Text}'", kw);
        }
    }

    private IfStmt ParseIf(Token kw)
    {
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? elseBody = null;
        var cond = ParseTuple(withCondExpr: false);
        ExpectBlockEnd();
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"], out string end);
            branches.Add((cond, body));
            if (end == "elif")
            {
                cond = ParseTuple(withCondExpr: false);
                ExpectBlockEnd();
                continue;
            }
            if (end == "else")
            {
                ExpectBlockEnd();
                elseBody = ParseBody(["endif"], out _);
            }
            ExpectBlockEnd();
            return new IfStmt(branches, elseBody, kw.Line, kw.Column);
        }
    }

    private ForStmt ParseFor(Token kw)
    {
        var target = ParseAssignTarget(allowNamespace: false);
        if (!Cur.IsName("in")) throw Error($"expected 'in' in for loop, got {Describe(Cur)}", Cur);
        _pos++;
        var iter = ParseTuple(withCondExpr: false, stopAtName: "recursive");
        if (Cur.IsName("recursive")) throw Error("recursive for loops are not supported", Cur);
        Expr? filter = null;
        if (Cur.IsName("if"))
        {
            _pos++;
            filter = ParseExpression(withCondExpr: true);
        }
        ExpectBlockEnd();
        var body = ParseBody(["endfor", "else"], out string end);
        List<Stmt>? elseBody = null;
        if (end == "else")
        {
            ExpectBlockEnd();
            elseBody = ParseBody(["endfor"], out _);
        }
        ExpectBlockEnd();
        return new ForStmt(target, iter, filter, body, elseBody, kw.Line, kw.Column);
    }

    private Stmt ParseSet(Token kw)
    {
        var target = ParseAssignTarget(allowNamespace: true);
        if (Cur.IsOp("="))
        {
            _pos++;
            var value = ParseTuple(withCondExpr: true);
            ExpectBlockEnd();
            return new SetStmt(target, value, kw.Line, kw.Column);
        }
        var filters = Cur.IsOp("|") ? ParseFilterChain(kw) : [];
        ExpectBlockEnd();
        var body = ParseBody(["endset"], out _);
        ExpectBlockEnd();
        return new SetBlockStmt(target, body, filters, kw.Line, kw.Column);
    }

    private Target ParseAssignTarget(bool allowNamespace)
    {
        var t = Cur;
        bool paren = Cur.IsOp("(");
        if (paren) _pos++;
        var items = new List<Target>();
        while (true)
        {
            var nt = Cur;
            string name = ExpectName();
            if (allowNamespace && Cur.IsOp(".") && !paren && items.Count == 0)
            {
                _pos++;
                string attr = ExpectName();
                return new Target(null, name, attr, null, nt.Line, nt.Column);
            }
            items.Add(new Target(name, null, null, null, nt.Line, nt.Column));
            if (!Cur.IsOp(",")) break;
            _pos++;
            if (Cur.Kind != TokenKind.Name) break;
        }
        if (paren) ExpectOp(")");
        return items.Count == 1 && !paren ? items[0] : new Target(null, null, null, items, t.Line, t.Column);
    }

    private MacroStmt ParseMacro(Token kw)
    {
        string name = ExpectName();
        var parameters = new List<(string, Expr?)>();
        ExpectOp("(");
        while (!Cur.IsOp(")"))
        {
            if (parameters.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            string p = ExpectName();
            Expr? def = null;
            if (Cur.IsOp("="))
            {
                _pos++;
                def = ParseExpression(withCondExpr: true);
            }
            else if (parameters.Any(x => x.Item2 is not null)) throw Error("non-default macro argument follows default argument", Cur);
            parameters.Add((p, def));
        }
        _pos++;
        ExpectBlockEnd();
        var body = ParseBody(["endmacro"], out _);
        if (Cur.Kind == TokenKind.Name && Cur.Text == name) _pos++;
        ExpectBlockEnd();
        return new MacroStmt(name, parameters, body, kw.Line, kw.Column);
    }

    /// <summary>The filters of <c>{% filter a|b(1) %}</c> or <c>{% set x | f %}</c> (operand filled in at render).</summary>
    private List<FilterExpr> ParseFilterChain(Token kw)
    {
        var list = new List<FilterExpr>();
        bool first = kw.Text == "filter";
        while (first || Cur.IsOp("|"))
        {
            if (!first) _pos++;
            first = false;
            list.Add(ParseFilterCall(null));
        }
        return list;
    }

    // ---------------- expressions ----------------

    /// <summary>An expression, or a tuple when commas follow (<c>{{ a, b }}</c>, <c>for x in a, b</c>).</summary>
    private Expr ParseTuple(bool withCondExpr, string? stopAtName = null)
    {
        var t = Cur;
        var first = ParseExpression(withCondExpr);
        if (!Cur.IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (Cur.IsOp(","))
        {
            _pos++;
            if (Cur.Kind is TokenKind.BlockEnd or TokenKind.VarEnd || Cur.IsOp(")") || (stopAtName is not null && Cur.IsName(stopAtName)) || Cur.IsName("if")) break;
            items.Add(ParseExpression(withCondExpr));
        }
        return new ListExpr(items, isTuple: true, t.Line, t.Column);
    }

    private Expr ParseExpression(bool withCondExpr)
    {
        Enter(Cur);
        var e = withCondExpr ? ParseCondExpr() : ParseOr();
        Leave();
        return e;
    }

    private Expr ParseCondExpr()
    {
        var expr = ParseOr();
        while (Cur.IsName("if"))
        {
            var t = Next();
            var test = ParseOr();
            Expr? otherwise = null;
            if (Cur.IsName("else"))
            {
                _pos++;
                otherwise = ParseCondExpr();
            }
            expr = new CondExpr(test, expr, otherwise, t.Line, t.Column);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Cur.IsName("or"))
        {
            var t = Next();
            left = new BinaryExpr("or", left, ParseAnd(), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Cur.IsName("and"))
        {
            var t = Next();
            left = new BinaryExpr("and", left, ParseNot(), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not"))
        {
            var t = Next();
            Enter(t);
            var operand = ParseNot();
            Leave();
            return new UnaryExpr("not", operand, t.Line, t.Column);
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var t = Cur;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == TokenKind.Op && Cur.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                string op = Next().Text;
                rest.Add((op, ParseMath1()));
            }
            else if (Cur.IsName("in"))
            {
                _pos++;
                rest.Add(("in", ParseMath1()));
            }
            else if (Cur.IsName("not") && Peek().IsName("in"))
            {
                _pos += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, t.Line, t.Column);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Cur.IsOp("+") || Cur.IsOp("-"))
        {
            var t = Next();
            left = new BinaryExpr(t.Text, left, ParseConcat(), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Cur.IsOp("~"))
        {
            var t = Next();
            left = new BinaryExpr("~", left, ParseMath2(), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Cur.Kind == TokenKind.Op && Cur.Text is "*" or "/" or "//" or "%")
        {
            var t = Next();
            left = new BinaryExpr(t.Text, left, ParsePow(), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (Cur.IsOp("**"))
        {
            var t = Next();
            left = new BinaryExpr("**", left, ParseUnary(withFilter: true), t.Line, t.Column);
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        var t = Cur;
        Expr node;
        if (t.IsOp("-") || t.IsOp("+"))
        {
            _pos++;
            Enter(t);
            node = new UnaryExpr(t.Text, ParseUnary(withFilter: false), t.Line, t.Column);
            Leave();
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterAndTests(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case TokenKind.Name:
                _pos++;
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(Value.True, t.Line, t.Column),
                    "false" or "False" => new LiteralExpr(Value.False, t.Line, t.Column),
                    "none" or "None" => new LiteralExpr(Value.None, t.Line, t.Column),
                    _ => new NameExpr(t.Text, t.Line, t.Column),
                };
            case TokenKind.String:
            {
                // Adjacent literals concatenate, as in Python.
                string s = Next().Text;
                while (Cur.Kind == TokenKind.String) s += Next().Text;
                return new LiteralExpr(new StringValue(s), t.Line, t.Column);
            }
            case TokenKind.Int:
                _pos++;
                if (!long.TryParse(t.Text, NumberStyles.None, CultureInfo.InvariantCulture, out long l)) throw Error($"integer literal {t.Text} is too large", t);
                return new LiteralExpr(new IntValue(l), t.Line, t.Column);
            case TokenKind.Float:
                _pos++;
                return new LiteralExpr(new FloatValue(double.Parse(t.Text, NumberStyles.Float, CultureInfo.InvariantCulture)), t.Line, t.Column);
            case TokenKind.Op when t.Text == "(":
            {
                _pos++;
                Enter(t);
                Expr e;
                if (Cur.IsOp(")")) e = new ListExpr([], isTuple: true, t.Line, t.Column);
                else
                {
                    var first = ParseExpression(withCondExpr: true);
                    if (Cur.IsOp(","))
                    {
                        var items = new List<Expr> { first };
                        while (Cur.IsOp(","))
                        {
                            _pos++;
                            if (Cur.IsOp(")")) break;
                            items.Add(ParseExpression(withCondExpr: true));
                        }
                        e = new ListExpr(items, isTuple: true, t.Line, t.Column);
                    }
                    else e = first;
                }
                ExpectOp(")");
                Leave();
                return e;
            }
            case TokenKind.Op when t.Text == "[":
            {
                _pos++;
                Enter(t);
                var items = new List<Expr>();
                while (!Cur.IsOp("]"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (Cur.IsOp("]")) break;
                    items.Add(ParseExpression(withCondExpr: true));
                }
                _pos++;
                Leave();
                return new ListExpr(items, isTuple: false, t.Line, t.Column);
            }
            case TokenKind.Op when t.Text == "{":
            {
                _pos++;
                Enter(t);
                var items = new List<(Expr, Expr)>();
                while (!Cur.IsOp("}"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (Cur.IsOp("}")) break;
                    var k = ParseExpression(withCondExpr: true);
                    ExpectOp(":");
                    items.Add((k, ParseExpression(withCondExpr: true)));
                }
                _pos++;
                Leave();
                return new DictExpr(items, t.Line, t.Column);
            }
            default:
                throw Error($"unexpected {Describe(t)}", t);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("."))
            {
                _pos++;
                var a = Cur;
                if (a.Kind == TokenKind.Name) { _pos++; node = new GetAttrExpr(node, a.Text, t.Line, t.Column); }
                else if (a.Kind == TokenKind.Int) { _pos++; node = new GetItemExpr(node, new LiteralExpr(new IntValue(long.Parse(a.Text, CultureInfo.InvariantCulture)), a.Line, a.Column), t.Line, t.Column); }
                else throw Error($"expected an attribute name after '.', got {Describe(a)}", a);
            }
            else if (t.IsOp("["))
            {
                _pos++;
                Enter(t);
                node = ParseSubscript(node, t);
                Leave();
            }
            else if (t.IsOp("("))
            {
                node = ParseCall(node);
            }
            else return node;
        }
    }

    private Expr ParseSubscript(Expr obj, Token t)
    {
        Expr? start = null, stop = null, step = null;
        if (!Cur.IsOp(":")) start = ParseExpression(withCondExpr: true);
        if (!Cur.IsOp(":"))
        {
            if (start is null) throw Error("expected an index", Cur);
            ExpectOp("]");
            return new GetItemExpr(obj, start, t.Line, t.Column);
        }
        _pos++;
        if (!Cur.IsOp(":") && !Cur.IsOp("]")) stop = ParseExpression(withCondExpr: true);
        if (Cur.IsOp(":"))
        {
            _pos++;
            if (!Cur.IsOp("]")) step = ParseExpression(withCondExpr: true);
        }
        ExpectOp("]");
        return new SliceExpr(obj, start, stop, step, t.Line, t.Column);
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) ParseArgs()
    {
        var t = Cur;
        ExpectOp("(");
        Enter(t);
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Cur.IsOp(")"))
        {
            if (args.Count + kwargs.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            if (Cur.Kind == TokenKind.Name && Peek().IsOp("="))
            {
                string name = Next().Text;
                _pos++;
                kwargs.Add((name, ParseExpression(withCondExpr: true)));
            }
            else
            {
                if (kwargs.Count > 0) throw Error("positional argument follows keyword argument", Cur);
                args.Add(ParseExpression(withCondExpr: true));
            }
        }
        _pos++;
        Leave();
        return (args, kwargs);
    }

    private CallExpr ParseCall(Expr callee)
    {
        var t = Cur;
        var (args, kwargs) = ParseArgs();
        return new CallExpr(callee, args, kwargs, t.Line, t.Column);
    }

    private Expr ParseFilterAndTests(Expr node)
    {
        while (true)
        {
            if (Cur.IsOp("|"))
            {
                _pos++;
                node = ParseFilterCall(node);
            }
            else if (Cur.IsName("is"))
            {
                node = ParseTest(node);
            }
            else if (Cur.IsOp("("))
            {
                node = ParseCall(node);
            }
            else return node;
        }
    }

    private FilterExpr ParseFilterCall(Expr? operand)
    {
        var t = Cur;
        string name = ExpectName();
        while (Cur.IsOp(".")) { _pos++; name += "." + ExpectName(); }
        if (!Renderer.FilterNames.Contains(name)) throw Error($"no filter named '{name}'", t);
        List<Expr> args = [];
        List<(string, Expr)> kwargs = [];
        if (Cur.IsOp("(")) (args, kwargs) = ParseArgs();
        return new FilterExpr(operand, name, args, kwargs, t.Line, t.Column);
    }

    private TestExpr ParseTest(Expr operand)
    {
        var t = Next(); // 'is'
        bool negated = false;
        if (Cur.IsName("not")) { _pos++; negated = true; }
        string name = ExpectName();
        while (Cur.IsOp(".")) { _pos++; name += "." + ExpectName(); }
        if (!Renderer.TestNames.Contains(name)) throw Error($"no test named '{name}'", t);
        var args = new List<Expr>();
        if (Cur.IsOp("("))
        {
            var (a, kw) = ParseArgs();
            if (kw.Count > 0) throw Error("tests take no keyword arguments", t);
            args = a;
        }
        else if ((Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Int or TokenKind.Float || Cur.IsOp("(") || Cur.IsOp("[") || Cur.IsOp("{"))
                 && !Cur.IsName("else") && !Cur.IsName("or") && !Cur.IsName("and"))
        {
            // jinja2: `x is divisibleby 3`, `x is equalto y` (one argument without parentheses).
            if (Cur.IsName("is")) throw Error("you cannot chain multiple tests with 'is'", Cur);
            args.Add(ParsePostfix(ParsePrimary()));
        }
        return new TestExpr(operand, name, args, negated, t.Line, t.Column);
    }
}
