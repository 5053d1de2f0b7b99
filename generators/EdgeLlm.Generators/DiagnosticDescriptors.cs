using Microsoft.CodeAnalysis;

namespace EdgeLlm.Generators;

/// <summary>
/// The generator's diagnostics: ELLM1xxx for config and parse errors (style guide). Every error
/// points into the config file; a config with an error generates nothing, and the build fails
/// with the message, never with a crashed generator.
/// </summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "EdgeLlm.Generator";
    private const string HelpLink = "https://github.com/edgellm/edgellm/blob/main/README.md#source-generator";

    public static readonly DiagnosticDescriptor InvalidJson = Make("ELLM1001",
        "Model config is not valid JSON", "Model config '{0}' is not valid JSON: {1}");

    public static readonly DiagnosticDescriptor MissingField = Make("ELLM1002",
        "Model config lacks a required field", "Model config '{0}' lacks the required field '{1}'");

    public static readonly DiagnosticDescriptor WrongFieldType = Make("ELLM1003",
        "Model config field has the wrong type", "Field '{0}' must be {1}, but is {2}");

    public static readonly DiagnosticDescriptor UnknownArchitecture = Make("ELLM1004",
        "Unknown model architecture", "Architecture '{0}' is not one EdgeLlm can specialize (supported: {1})");

    public static readonly DiagnosticDescriptor UnknownWeightType = Make("ELLM1005",
        "Unknown weight type", "'{0}' is not a known {1} (expected one of: {2})");

    public static readonly DiagnosticDescriptor HeadsDoNotDivide = Make("ELLM1006",
        "Attention heads do not divide", "{0}");

    public static readonly DiagnosticDescriptor RowNotMultipleOfBlock = Make("ELLM1007",
        "Row length is not a multiple of the block size", "Tensor '{0}' has rows of {1} values, which do not divide into {2} blocks of {3} values");

    public static readonly DiagnosticDescriptor UnknownTensor = Make("ELLM1008",
        "Unknown tensor kind in overrides", "'{0}' is not a tensor kind that can be overridden (expected one of: {1})");

    public static readonly DiagnosticDescriptor UnsupportedRopeScaling = Make("ELLM1009",
        "Unsupported rope scaling", "rope_scaling type '{0}' is not supported (only 'llama3', or null)");

    public static readonly DiagnosticDescriptor UnknownSpecialization = Make("ELLM1010",
        "Requested specialization has no config", "EdgeLlmSpecializations names '{0}', but no model config (AdditionalFiles with EdgeLlmConfig=\"true\") has that name");

    public static readonly DiagnosticDescriptor DuplicateName = Make("ELLM1011",
        "Two configs share a specialization name", "Specialization name '{0}' is used by more than one config");

    public static readonly DiagnosticDescriptor ValueOutOfRange = Make("ELLM1012",
        "Model config value is out of range", "Field '{0}' is {1}, but must be {2}");

    public static DiagnosticDescriptor ById(string id) => id switch
    {
        "ELLM1001" => InvalidJson,
        "ELLM1002" => MissingField,
        "ELLM1003" => WrongFieldType,
        "ELLM1004" => UnknownArchitecture,
        "ELLM1005" => UnknownWeightType,
        "ELLM1006" => HeadsDoNotDivide,
        "ELLM1007" => RowNotMultipleOfBlock,
        "ELLM1008" => UnknownTensor,
        "ELLM1009" => UnsupportedRopeScaling,
        "ELLM1010" => UnknownSpecialization,
        "ELLM1011" => DuplicateName,
        _ => ValueOutOfRange,
    };

    private static DiagnosticDescriptor Make(string id, string title, string format) =>
        new(id, title, format, Category, DiagnosticSeverity.Error, isEnabledByDefault: true,
            description: title + ".", helpLinkUri: HelpLink);
}
