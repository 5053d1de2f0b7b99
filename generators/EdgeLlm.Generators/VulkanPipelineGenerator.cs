using System;
using System.Collections.Generic;
using System.Linq;
using EdgeLlm.Generators.Helpers;
using EdgeLlm.Generators.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators;

/// <summary>
/// Emits, per model config, the table of Vulkan compute pipelines its forward pass needs (shader
/// variant and specialization constants: dimensions, head counts, row bytes, workgroup sizes,
/// rms epsilon, rope constants) and registers it with <c>EdgeLlm.Vulkan.VulkanPipelineRegistry</c>
/// from a module initializer, so a Vulkan context for a matching model builds its pipelines from
/// constants fixed at compile time.
/// <para>
/// Runs in the EdgeLlm.Vulkan project (the registry lives there): AdditionalFiles with metadata
/// <c>EdgeLlmVulkanConfig="true"</c> (the same configs TransformerGenerator reads, parsed by its
/// <see cref="TransformerGenerator.Parser"/>) and the property <c>EdgeLlmVulkanSpecializations</c>
/// (names, ';'-separated; <c>*</c> or empty for all). Config errors are reported by
/// TransformerGenerator where the configs are compiled into EdgeLlm.Core; here a config with
/// errors just yields no table, so a bad file is not reported twice.
/// </para>
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class VulkanPipelineGenerator : IIncrementalGenerator
{
    /// <summary>Step name for incrementality tests.</summary>
    internal const string TableStep = "VulkanPipelineTable";

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var selection = context.AnalyzerConfigOptionsProvider.Select(static (o, _) =>
            SelectionProperty.Read(o.GlobalOptions, "EdgeLlmVulkanSpecializations"));

        var specs = context.AdditionalTextsProvider
            .Combine(context.AnalyzerConfigOptionsProvider)
            .Where(static p => p.Right.GetOptions(p.Left).TryGetValue("build_metadata.AdditionalFiles.EdgeLlmVulkanConfig", out var v)
                               && string.Equals(v, "true", StringComparison.OrdinalIgnoreCase))
            .Select(static (p, ct) =>
            {
                var text = p.Left.GetText(ct);
                return text is null ? null : TransformerGenerator.Parser.Parse(p.Left.Path, text, ct).Spec;
            })
            .Combine(selection)
            .Select(static (p, _) => p.Left is { } s && new TransformerGenerator.BuildOptions(p.Right, "").Selects(s.Name) ? s : null)
            .WithTrackingName(TableStep);

        // Two configs of one name would register two tables of that name: the registry refuses
        // the second at load, so the clash is an error here already (TransformerGenerator reports
        // ELLM1011 for the same files in EdgeLlm.Core).
        var names = specs.Select(static (s, _) => s?.Name ?? "").Collect().Select(static (all, _) =>
        {
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            return all.Where(n => n.Length > 0 && !seen.Add(n)).Select(n => n.ToLowerInvariant()).Distinct().OrderBy(n => n, StringComparer.Ordinal).ToEquatableArray();
        });
        context.RegisterSourceOutput(specs.Combine(names), static (spc, p) =>
        {
            var (spec, dups) = p;
            if (spec is null || dups.AsSpan().IndexOf(spec.Name.ToLowerInvariant()) >= 0) return;
            spc.AddSource(spec.ClassName + ".VulkanPipelines.g.cs", SourceText.From(VulkanPipelineEmitter.Emit(spec), System.Text.Encoding.UTF8));
        });
    }
}
