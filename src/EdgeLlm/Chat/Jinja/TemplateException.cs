namespace EdgeLlm.Chat.Jinja;

/// <summary>
/// A chat template failed to parse or to render: a syntax error, a runtime error (e.g. adding a
/// string to a list, calling an unknown filter), a sandbox limit, or the template's own
/// <c>raise_exception(msg)</c>. <see cref="Exception.Message"/> names the template line and column.
/// </summary>
public sealed class TemplateException : Exception
{
    /// <summary>1-based line in the template source (0 when unknown).</summary>
    public int Line { get; }

    /// <summary>1-based column in the template source (0 when unknown).</summary>
    public int Column { get; }

    /// <summary>What went wrong, without the position: for <c>raise_exception(msg)</c>, exactly <c>msg</c>.</summary>
    public string Reason { get; }

    /// <summary>True when the template itself raised the error with <c>raise_exception</c>.</summary>
    public bool RaisedByTemplate { get; }

    public TemplateException(string reason, int line, int column, bool raisedByTemplate = false)
        : base(line > 0 ? $"template line {line}, column {column}: {reason}" : reason)
    {
        Reason = reason;
        Line = line;
        Column = column;
        RaisedByTemplate = raisedByTemplate;
    }
}

/// <summary>
/// A runtime error raised deep inside the evaluator, before the node's position is known; the
/// renderer turns it into a <see cref="TemplateException"/> at the innermost node being evaluated.
/// </summary>
internal sealed class JinjaRuntimeError(string reason, bool raisedByTemplate = false) : Exception(reason)
{
    public bool RaisedByTemplate { get; } = raisedByTemplate;
}

/// <summary>
/// Sandbox limits for rendering. Templates come from downloaded model files, so a template that
/// loops forever, recurses without end or builds a huge string must fail cleanly, not hang the
/// process or exhaust memory.
/// </summary>
public sealed record TemplateLimits
{
    /// <summary>The most characters a render may produce (also the longest string value).</summary>
    public int MaxOutputChars { get; init; } = 4 << 20;

    /// <summary>The most loop iterations (all loops together) one render may run.</summary>
    public long MaxLoopIterations { get; init; } = 1_000_000;

    /// <summary>The deepest macro call nesting.</summary>
    public int MaxCallDepth { get; init; } = 64;

    /// <summary>The most items a list or dictionary value may hold (range(), list + list, list * n).</summary>
    public int MaxCollectionItems { get; init; } = 1_000_000;

    /// <summary>The deepest nesting of blocks and expressions the parser accepts.</summary>
    public int MaxNesting { get; init; } = 200;

    /// <summary>The defaults.</summary>
    public static TemplateLimits Default { get; } = new();
}
