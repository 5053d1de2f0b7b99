using System.Text;
using System.Text.Json;
using EdgeLlm.Sampling;

namespace EdgeLlm.Chat;

/// <summary>
/// Function calling in the Hermes format, the one Qwen2.5, Qwen3 and the Hermes models are trained on:
/// the chat template lists the tools, and the model answers a call as
/// <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>. This reads such calls out
/// of a reply, and builds the grammar that forces one when a call is required.
/// </summary>
/// <remarks>
/// Other formats (Llama 3.1's bare JSON, Mistral's [TOOL_CALLS]) are not read yet: <see cref="Supports"/>
/// is false for their templates, and the server refuses tools for them rather than return calls as text.
/// </remarks>
public static class ToolCalls
{
    private const string Open = "<tool_call>", Close = "</tool_call>";

    /// <summary>Whether the template writes Hermes-style calls (its source has <c>&lt;tool_call&gt;</c>).</summary>
    public static bool Supports(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        return template.Source.Contains(Open, StringComparison.Ordinal);
    }

    /// <summary>
    /// The calls in a reply: each well-formed block naming one of <paramref name="names"/> becomes a call
    /// (arguments as compact JSON text), and what is left is the content (null when only whitespace).
    /// A block that is not JSON, or names an unknown function, stays in the content.
    /// </summary>
    public static (string? Content, List<ChatToolCall> Calls) Parse(string reply, IReadOnlyCollection<string> names)
    {
        ArgumentNullException.ThrowIfNull(reply);
        var calls = new List<ChatToolCall>();
        var content = new StringBuilder();
        int pos = 0;
        while (true)
        {
            int start = reply.IndexOf(Open, pos, StringComparison.Ordinal);
            int end = start < 0 ? -1 : reply.IndexOf(Close, start + Open.Length, StringComparison.Ordinal);
            if (end < 0)
            {
                content.Append(reply, pos, reply.Length - pos);
                break;
            }
            string body = reply[(start + Open.Length)..end];
            if (ReadCall(body, names) is { } call)
            {
                content.Append(reply, pos, start - pos);
                calls.Add(call with { Id = "call_" + Guid.NewGuid().ToString("N")[..24] });
            }
            else content.Append(reply, pos, end + Close.Length - pos);
            pos = end + Close.Length;
        }
        string rest = content.ToString().Trim();
        return (rest.Length == 0 ? null : rest, calls);
    }

    private static ChatToolCall? ReadCall(string body, IReadOnlyCollection<string> names)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String) return null;
            string name = n.GetString()!;
            if (!names.Contains(name)) return null;
            string arguments = "{}";
            if (root.TryGetProperty("arguments", out var a))
            {
                // Compact JSON text, as OpenAI sends it; a model that wrote the arguments as a string of JSON keeps that string.
                arguments = a.ValueKind == JsonValueKind.String ? a.GetString()! : JsonSerializer.Serialize(a, ToolCallsJson.Default.JsonElement);
            }
            return new ChatToolCall("", name, arguments);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The grammar of one required call (OpenAI's <c>tool_choice: "required"</c> or a named function): the
    /// Hermes block naming one of <paramref name="functions"/> with a JSON object of arguments (llama.cpp's
    /// json.gbnf rules), nothing before or after it. A function's arguments take only its declared
    /// properties as keys (values any JSON); one declaring none takes <c>{}</c>; null properties: any object.
    /// </summary>
    /// <param name="functions">name and declared parameter names (null: not declared) of each function that may be called</param>
    public static GbnfGrammar RequiredCallGrammar(IReadOnlyList<(string Name, IReadOnlyList<string>? Properties)> functions)
    {
        ArgumentNullException.ThrowIfNull(functions);
        if (functions.Count == 0) throw new ArgumentException("no function to call", nameof(functions));
        var calls = new StringBuilder();
        var rules = new StringBuilder();
        for (int i = 0; i < functions.Count; i++)
        {
            var (name, props) = functions[i];
            if (calls.Length > 0) calls.Append(" | ");
            string args = props is null ? "object" : props.Count == 0 ? "\"{}\"" : $"args{i}";
            calls.Append($"\"{name}\\\", \\\"arguments\\\": \" {args}");
            if (props is { Count: > 0 })
            {
                string keys = string.Join(" | ", props.Select(p => "\"\\\"" + GbnfEscape(p) + "\\\"\""));
                rules.Append($"args{i} ::= \"{{\" ws ( key{i} ws \":\" ws value (\",\" ws key{i} ws \":\" ws value)* )? \"}}\"\n");
                rules.Append($"key{i} ::= {keys}\n");
            }
        }
        return GbnfGrammar.Parse($$"""
            root   ::= "<tool_call>\n{\"name\": \"" call "}\n</tool_call>"
            call   ::= {{calls}}
            {{rules}}
            value  ::= object | array | string | number | ("true" | "false" | "null") ws
            object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}"
            array  ::= "[" ws ( value ("," ws value)* )? "]" ws
            string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
            number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
            ws     ::= | " " | "\n" [ \t]{0,20}
            """);
    }

    /// <summary>A string as the inside of a GBNF literal.</summary>
    private static string GbnfEscape(string s)
    {
        var b = new StringBuilder();
        foreach (char c in s)
        {
            if (c is '"' or '\\') b.Append('\\').Append(c);
            else if (c < 0x20 || c > 0x7E) b.Append($"\\u{(int)c:X4}");
            else b.Append(c);
        }
        return b.ToString();
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(JsonElement))]
internal sealed partial class ToolCallsJson : System.Text.Json.Serialization.JsonSerializerContext;
