using EdgeLlm.Chat.Jinja;
using EdgeLlm.Gguf;

namespace EdgeLlm.Chat;

/// <summary>
/// A model's chat template: turns a conversation into the prompt text the model was trained on.
/// GGUF files carry it as the Jinja source <c>tokenizer.chat_template</c> (copied from the Hugging
/// Face tokenizer config); it renders here exactly as transformers' <c>apply_chat_template</c>
/// renders it (see <see cref="JinjaTemplate"/>).
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The GGUF metadata key holding the template.</summary>
    public const string GgufKey = "tokenizer.chat_template";

    /// <summary>
    /// The source of <see cref="Fallback"/>: one line "role: content" per message, then
    /// "assistant: " when a generation prompt is asked for. No BOS/EOS text: the tokenizer adds BOS.
    /// </summary>
    public const string FallbackSource =
        "{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}" +
        "{% if add_generation_prompt %}assistant: {% endif %}";

    private readonly JinjaTemplate _template;

    private ChatTemplate(string source, JinjaTemplate template, bool isFallback)
    {
        Source = source;
        _template = template;
        IsFallback = isFallback;
    }

    /// <summary>The Jinja source.</summary>
    public string Source { get; }

    /// <summary>True for <see cref="Fallback"/>.</summary>
    public bool IsFallback { get; }

    /// <summary>
    /// The plain format for models without a template (<see cref="FallbackSource"/>): e.g. a user
    /// message "Hi" renders as "user: Hi\nassistant: ". Callers that use it should say so on stderr.
    /// </summary>
    public static ChatTemplate Fallback { get; } = new(FallbackSource, JinjaTemplate.Parse(FallbackSource), isFallback: true);

    /// <summary>Parses a Jinja chat template.</summary>
    /// <exception cref="TemplateException">a syntax error, naming its line and column</exception>
    public static ChatTemplate Parse(string source, TemplateLimits? limits = null) =>
        new(source, JinjaTemplate.Parse(source, limits), isFallback: false);

    /// <summary>The template of a GGUF file (<c>tokenizer.chat_template</c>), or null when it has none.</summary>
    /// <exception cref="TemplateException">the file's template does not parse</exception>
    public static ChatTemplate? FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string? source = file.GetString(GgufKey);
        return string.IsNullOrEmpty(source) ? null : Parse(source);
    }

    /// <summary>
    /// Renders a conversation. The template sees <c>messages</c> (a list of {"role", "content"}),
    /// <c>add_generation_prompt</c>, <c>bos_token</c> and <c>eos_token</c> (empty when null),
    /// and the <paramref name="extra"/> variables (e.g. <c>tools</c>, <c>date_string</c>), which
    /// may override those.
    /// </summary>
    /// <param name="now">what <c>strftime_now</c> formats (default: the local time)</param>
    /// <exception cref="TemplateException">a template error, or the template's own <c>raise_exception</c> (e.g. roles that do not alternate)</exception>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt, string? bosToken, string? eosToken,
        DateTime? now = null, IDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<object?>(messages.Count);
        foreach (var m in messages)
        {
            var d = new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content };
            if (m.ToolCalls is { } calls)
            {
                // OpenAI's shape; the arguments as an object, as templates write them with tojson (llama.cpp does the same).
                d["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
                {
                    ["id"] = c.Id,
                    ["type"] = "function",
                    ["function"] = new Dictionary<string, object?> { ["name"] = c.Name, ["arguments"] = ArgumentsValue(c.Arguments) },
                }).ToList();
            }
            if (m.ToolCallId is not null) d["tool_call_id"] = m.ToolCallId;
            if (!string.IsNullOrEmpty(m.Reasoning))
            {
                d["reasoning_content"] = m.Reasoning;
                d["thinking"] = m.Reasoning;
            }
            list.Add(d);
        }
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = list,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bosToken ?? "",
            ["eos_token"] = eosToken ?? "",
        };
        if (extra is not null)
            foreach (var kv in extra) vars[kv.Key] = kv.Value;
        return _template.Render(vars, now);
    }

    /// <summary>Arguments JSON text as a template value (an object); text that is not JSON stays a string.</summary>
    private static object? ArgumentsValue(string arguments)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(arguments);
            return TemplateVariables.FromJson(doc.RootElement);
        }
        catch (System.Text.Json.JsonException)
        {
            return arguments;
        }
    }
}
