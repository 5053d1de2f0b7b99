namespace EdgeLlm.Chat.Jinja;

/// <summary>A node of the parsed template, with its position for error messages.</summary>
internal abstract class Node(int line, int column)
{
    public int Line { get; } = line;
    public int Column { get; } = column;
}

// ---- statements ----

internal abstract class Stmt(int line, int column) : Node(line, column);

internal sealed class TextStmt(string text, int line, int column) : Stmt(line, column)
{
    public string Text { get; } = text;
}

internal sealed class OutputStmt(Expr expr, int line, int column) : Stmt(line, column)
{
    public Expr Expr { get; } = expr;
}

internal sealed class IfStmt(List<(Expr Cond, List<Stmt> Body)> branches, List<Stmt>? elseBody, int line, int column) : Stmt(line, column)
{
    public List<(Expr Cond, List<Stmt> Body)> Branches { get; } = branches;
    public List<Stmt>? Else { get; } = elseBody;
}

internal sealed class ForStmt(Target target, Expr iter, Expr? filter, List<Stmt> body, List<Stmt>? elseBody, int line, int column) : Stmt(line, column)
{
    public Target Target { get; } = target;
    public Expr Iter { get; } = iter;
    public Expr? Filter { get; } = filter;
    public List<Stmt> Body { get; } = body;
    public List<Stmt>? Else { get; } = elseBody;
}

/// <summary>An assignment target: a name, <c>ns.attr</c>, or a tuple of names.</summary>
internal sealed class Target(string? name, string? nsName, string? nsAttr, List<Target>? tuple, int line, int column) : Node(line, column)
{
    public string? Name { get; } = name;
    public string? NamespaceName { get; } = nsName;
    public string? NamespaceAttr { get; } = nsAttr;
    public List<Target>? Tuple { get; } = tuple;
}

internal sealed class SetStmt(Target target, Expr value, int line, int column) : Stmt(line, column)
{
    public Target Target { get; } = target;
    public Expr Value { get; } = value;
}

/// <summary><c>{% set x %}...{% endset %}</c>: captures the rendered body (optionally through filters).</summary>
internal sealed class SetBlockStmt(Target target, List<Stmt> body, List<FilterExpr> filters, int line, int column) : Stmt(line, column)
{
    public Target Target { get; } = target;
    public List<Stmt> Body { get; } = body;
    public List<FilterExpr> Filters { get; } = filters;
}

/// <summary><c>{% filter f %}...{% endfilter %}</c>.</summary>
internal sealed class FilterBlockStmt(List<Stmt> body, List<FilterExpr> filters, int line, int column) : Stmt(line, column)
{
    public List<Stmt> Body { get; } = body;
    public List<FilterExpr> Filters { get; } = filters;
}

internal sealed class MacroStmt(string name, List<(string Name, Expr? Default)> parameters, List<Stmt> body, int line, int column) : Stmt(line, column)
{
    public string Name { get; } = name;
    public List<(string Name, Expr? Default)> Parameters { get; } = parameters;
    public List<Stmt> Body { get; } = body;
}

internal sealed class BreakStmt(int line, int column) : Stmt(line, column);

internal sealed class ContinueStmt(int line, int column) : Stmt(line, column);

/// <summary>Hugging Face's <c>{% generation %}</c> block (marks assistant text for training masks): renders its body.</summary>
internal sealed class BlockStmt(List<Stmt> body, int line, int column) : Stmt(line, column)
{
    public List<Stmt> Body { get; } = body;
}

// ---- expressions ----

internal abstract class Expr(int line, int column) : Node(line, column);

internal sealed class LiteralExpr(Value value, int line, int column) : Expr(line, column)
{
    public Value Value { get; } = value;
}

internal sealed class NameExpr(string name, int line, int column) : Expr(line, column)
{
    public string Name { get; } = name;
}

internal sealed class ListExpr(List<Expr> items, bool isTuple, int line, int column) : Expr(line, column)
{
    public List<Expr> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
}

internal sealed class DictExpr(List<(Expr Key, Expr Value)> items, int line, int column) : Expr(line, column)
{
    public List<(Expr Key, Expr Value)> Items { get; } = items;
}

internal sealed class GetAttrExpr(Expr obj, string name, int line, int column) : Expr(line, column)
{
    public Expr Obj { get; } = obj;
    public string Name { get; } = name;
}

internal sealed class GetItemExpr(Expr obj, Expr index, int line, int column) : Expr(line, column)
{
    public Expr Obj { get; } = obj;
    public Expr Index { get; } = index;
}

internal sealed class SliceExpr(Expr obj, Expr? start, Expr? stop, Expr? step, int line, int column) : Expr(line, column)
{
    public Expr Obj { get; } = obj;
    public Expr? Start { get; } = start;
    public Expr? Stop { get; } = stop;
    public Expr? Step { get; } = step;
}

internal sealed class CallExpr(Expr callee, List<Expr> args, List<(string Name, Expr Value)> kwargs, int line, int column) : Expr(line, column)
{
    public Expr Callee { get; } = callee;
    public List<Expr> Args { get; } = args;
    public List<(string Name, Expr Value)> Kwargs { get; } = kwargs;
}

internal sealed class FilterExpr(Expr? operand, string name, List<Expr> args, List<(string Name, Expr Value)> kwargs, int line, int column) : Expr(line, column)
{
    /// <summary>Null inside <c>{% filter %}</c> and <c>{% set %}</c> blocks, where the operand is the captured text.</summary>
    public Expr? Operand { get; } = operand;
    public string Name { get; } = name;
    public List<Expr> Args { get; } = args;
    public List<(string Name, Expr Value)> Kwargs { get; } = kwargs;
}

internal sealed class TestExpr(Expr operand, string name, List<Expr> args, bool negated, int line, int column) : Expr(line, column)
{
    public Expr Operand { get; } = operand;
    public string Name { get; } = name;
    public List<Expr> Args { get; } = args;
    public bool Negated { get; } = negated;
}

internal sealed class UnaryExpr(string op, Expr operand, int line, int column) : Expr(line, column)
{
    /// <summary>"-", "+" or "not".</summary>
    public string Op { get; } = op;
    public Expr Operand { get; } = operand;
}

internal sealed class BinaryExpr(string op, Expr left, Expr right, int line, int column) : Expr(line, column)
{
    /// <summary>"+", "-", "*", "/", "//", "%", "**", "~", "and", "or".</summary>
    public string Op { get; } = op;
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}

/// <summary>A comparison chain: <c>a &lt; b &lt;= c</c>, <c>x in y</c>, <c>x not in y</c>.</summary>
internal sealed class CompareExpr(Expr first, List<(string Op, Expr Right)> rest, int line, int column) : Expr(line, column)
{
    public Expr First { get; } = first;
    public List<(string Op, Expr Right)> Rest { get; } = rest;
}

internal sealed class CondExpr(Expr test, Expr then, Expr? otherwise, int line, int column) : Expr(line, column)
{
    public Expr Test { get; } = test;
    public Expr Then { get; } = then;
    public Expr? Else { get; } = otherwise;
}
