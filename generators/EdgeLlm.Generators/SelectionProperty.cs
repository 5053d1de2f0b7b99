using Microsoft.CodeAnalysis.Diagnostics;

namespace EdgeLlm.Generators;

/// <summary>
/// Reads a build's selection of configs (<c>EdgeLlmSpecializations</c>, <c>EdgeLlmVulkanSpecializations</c>).
/// </summary>
/// <remarks>
/// MSBuild hands properties to the compiler in a global .editorconfig, where ';' starts a comment:
/// <c>build_property.EdgeLlmSpecializations = a;b</c> reaches the generator as <c>a</c>. So the
/// projects (src/EdgeLlm, src/EdgeLlm.Vulkan) also pass the list with ',' separators as
/// <c>NAMEList</c>, and that one is read first; the plain property is the fallback for a build that
/// sets it directly (a single name, or names separated by ',').
/// </remarks>
internal static class SelectionProperty
{
    public static string Read(AnalyzerConfigOptions globals, string property)
    {
        if (globals.TryGetValue("build_property." + property + "List", out var list) && !string.IsNullOrWhiteSpace(list))
            return list;
        return globals.TryGetValue("build_property." + property, out var plain) ? plain ?? "" : "";
    }
}
