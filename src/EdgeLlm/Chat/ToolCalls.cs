using System.Text.Json;
using EdgeLlm.Sampling;

namespace EdgeLlm.Chat;

/// <summary>
/// Function calling in the Hermes format (Qwen2.5, Qwen3, Hermes): <see cref="ToolCallFormat.Hermes"/>'s
/// methods, kept for callers written before the other formats. New code asks
/// <see cref="ToolCallFormat.Of"/> which format a template writes.
/// </summary>
public static class ToolCalls
{
    /// <summary>Whether the template writes calls in a format EdgeLlm reads (<see cref="ToolCallFormat.Of"/> is not null).</summary>
    public static bool Supports(ChatTemplate template) => ToolCallFormat.Of(template) is not null;

    /// <summary><see cref="ToolCallFormat.Parse"/> of <see cref="ToolCallFormat.Hermes"/>.</summary>
    public static (string? Content, List<ChatToolCall> Calls) Parse(string reply, IReadOnlyCollection<string> names) =>
        ToolCallFormat.Hermes.Parse(reply, names);

    /// <summary><see cref="ToolCallFormat.RequiredCallGrammar"/> of <see cref="ToolCallFormat.Hermes"/>.</summary>
    public static GbnfGrammar RequiredCallGrammar(IReadOnlyList<(string Name, IReadOnlyList<string>? Properties)> functions) =>
        ToolCallFormat.Hermes.RequiredCallGrammar(functions);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(JsonElement))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class ToolCallsJson : System.Text.Json.Serialization.JsonSerializerContext;
