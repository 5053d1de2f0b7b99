using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using EdgeLlm.Generators.Helpers;
using EdgeLlm.Generators.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators;

/// <summary>
/// Emits one transformer forward pass per model config, specialized at compile time to that
/// config's shape and per-tensor weight types, and registers it with
/// <c>EdgeLlm.Specialized.SpecializationRegistry</c> from a module initializer.
/// <para>
/// Inputs: AdditionalFiles with metadata <c>EdgeLlmConfig="true"</c> (Hugging Face config.json
/// fields plus an <c>"edgellm"</c> section), the MSBuild property <c>EdgeLlmSpecializations</c>
/// (names to generate, ';'-separated, <c>*</c> or empty for all) and <c>EdgeLlmIsa</c> /
/// <c>IlcInstructionSet</c> (noted in the header).
/// </para>
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed partial class TransformerGenerator : IIncrementalGenerator
{
    /// <summary>Options read from the build, as plain values.</summary>
    internal sealed record BuildOptions(string Selection, string Isa)
    {
        public bool Selects(string name)
        {
            if (Selection.Trim().Length == 0 || Selection.Trim() == "*") return true;
            foreach (var s in Selection.Split(';', ','))
                if (string.Equals(s.Trim(), name, StringComparison.OrdinalIgnoreCase)) return true;
            return false;
        }
    }

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var options = context.AnalyzerConfigOptionsProvider.Select(static (o, _) =>
        {
            string sel = SelectionProperty.Read(o.GlobalOptions, "EdgeLlmSpecializations");
            string isa = o.GlobalOptions.TryGetValue("build_property.EdgeLlmIsa", out var i) && !string.IsNullOrWhiteSpace(i) ? i!
                : o.GlobalOptions.TryGetValue("build_property.IlcInstructionSet", out var ilc) && !string.IsNullOrWhiteSpace(ilc) ? "IlcInstructionSet " + ilc
                : "chosen at run time by the library kernels (Vector128/256, AVX2 where supported)";
            return new BuildOptions(sel, isa);
        });

        var results = context.AdditionalTextsProvider
            .Combine(context.AnalyzerConfigOptionsProvider)
            .Where(static p => p.Right.GetOptions(p.Left).TryGetValue("build_metadata.AdditionalFiles.EdgeLlmConfig", out var v)
                               && string.Equals(v, "true", StringComparison.OrdinalIgnoreCase))
            .Select(static (p, ct) => p.Left)
            .WithTrackingName(TrackingNames.ConfigFiles)
            .Select(static (file, ct) =>
            {
                var text = file.GetText(ct);
                return text is null
                    ? new ParseResult(System.IO.Path.GetFileNameWithoutExtension(file.Path), null,
                        new[] { new DiagnosticInfo(DiagnosticDescriptors.InvalidJson.Id, file.Path, default, default,
                            new[] { System.IO.Path.GetFileName(file.Path), "the file could not be read" }.ToEquatableArray()) }.ToEquatableArray())
                    : Parser.Parse(file.Path, text, ct);
            })
            .WithTrackingName(TrackingNames.Execute);

        // Diagnostics go out on their own, so the source output depends only on the equatable specs
        // (and a diagnostic's location never has to live in a cached model; dotnet/runtime#92509).
        context.RegisterSourceOutput(results.Select(static (r, _) => r.Diagnostics).WithTrackingName(TrackingNames.Diagnostics),
            static (spc, diags) =>
            {
                foreach (var d in diags) spc.ReportDiagnostic(d.ToDiagnostic());
            });

        // Names used by more than one config (reported as ELLM1011 below) generate nothing: their
        // classes and hint names would clash. Reduced to an equatable list so that it stays cached.
        var duplicates = results.Select(static (r, _) => r.ConfigName).Collect().Select(static (all, _) =>
        {
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            return all.Where(n => !seen.Add(n)).Select(n => n.ToLowerInvariant()).Distinct().OrderBy(n => n, StringComparer.Ordinal).ToEquatableArray();
        });
        var selected = results
            .Combine(options)
            .Combine(duplicates)
            .Select(static (p, _) =>
            {
                var ((result, opts), dups) = p;
                if (result.Spec is not { } s || !opts.Selects(s.Name) || dups.AsSpan().IndexOf(s.Name.ToLowerInvariant()) >= 0) return null;
                return s with { Isa = opts.Isa };
            })
            .WithTrackingName(TrackingNames.Output);
        context.RegisterSourceOutput(selected, static (spc, spec) =>
        {
            if (spec is null) return;
            spc.AddSource(spec.ClassName + ".Transformer.g.cs", SourceText.From(Emitter.Emit(spec), System.Text.Encoding.UTF8));
        });

        // Whole-set checks: requested names without a config, and duplicate names.
        var names = results.Select(static (r, _) => r.ConfigName).Collect();
        context.RegisterSourceOutput(names.Combine(options), static (spc, p) =>
        {
            var (all, opts) = p;
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var n in all)
                if (!seen.Add(n)) spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.DuplicateName, Location.None, n));
            string sel = opts.Selection.Trim();
            if (sel.Length == 0 || sel == "*") return;
            foreach (var s in sel.Split(';', ','))
            {
                string want = s.Trim();
                if (want.Length > 0 && !seen.Contains(want))
                    spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnknownSpecialization, Location.None, want));
            }
        });
    }
}
