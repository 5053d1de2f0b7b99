using EdgeLlm.Generators.Helpers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators.Model;

/// <summary>
/// A diagnostic as plain values (descriptor id, file path, span, message arguments): a
/// <see cref="Location"/> would pin the syntax tree and break equality between runs.
/// </summary>
internal sealed record DiagnosticInfo(string Id, string Path, TextSpan Span, LinePositionSpan LineSpan, EquatableArray<string> Arguments)
{
    public Diagnostic ToDiagnostic()
    {
        var location = Path.Length == 0 ? Location.None : Location.Create(Path, Span, LineSpan);
        var args = new object[Arguments.Length];
        for (int i = 0; i < args.Length; i++) args[i] = Arguments[i];
        return Diagnostic.Create(DiagnosticDescriptors.ById(Id), location, args);
    }
}

/// <summary>What parsing one config file produced: a spec, or diagnostics (errors leave Spec null).</summary>
internal sealed record ParseResult(string ConfigName, ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);
