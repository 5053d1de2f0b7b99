using System.Text.Json;

namespace EdgeLlm.Chat;

/// <summary>
/// Extra variables for a chat template from JSON (llama.cpp's <c>--chat-template-kwargs</c> and the
/// server's per-request <c>chat_template_kwargs</c>), e.g. <c>{"enable_thinking": false}</c> for
/// Qwen3. Objects become string-keyed dictionaries, arrays lists, numbers <see cref="long"/> when
/// integral and <see cref="double"/> otherwise: the values <see cref="Jinja.JinjaTemplate"/> takes.
/// </summary>
public static class TemplateVariables
{
    /// <summary>Parses a JSON object of variables.</summary>
    /// <param name="json">the JSON text</param>
    /// <param name="what">what the text is, for the error message (e.g. <c>--chat-template-kwargs</c>)</param>
    /// <exception cref="FormatException">the text is not JSON, or not an object</exception>
    public static Dictionary<string, object?> Parse(string json, string what)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using var doc = JsonDocument.Parse(json);
            return FromObject(doc.RootElement, what);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{what} is not valid JSON: {e.Message}");
        }
    }

    /// <summary>The variables of a JSON object.</summary>
    /// <exception cref="FormatException"><paramref name="obj"/> is not an object</exception>
    public static Dictionary<string, object?> FromObject(JsonElement obj, string what)
    {
        if (obj.ValueKind != JsonValueKind.Object)
            throw new FormatException($"{what} must be a JSON object of template variables (e.g. {{\"enable_thinking\": false}}), got {obj.ValueKind.ToString().ToLowerInvariant()}");
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject()) vars[p.Name] = FromJson(p.Value);
        return vars;
    }

    /// <summary>One JSON value as a template value.</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value), StringComparer.Ordinal),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out long l) ? (object)l : e.GetDouble(), // (object): a long must not widen to double
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary><paramref name="overrides"/> over <paramref name="defaults"/> (either may be null; null when both are).</summary>
    public static IDictionary<string, object?>? Merge(IDictionary<string, object?>? defaults, IDictionary<string, object?>? overrides)
    {
        if (defaults is null || defaults.Count == 0) return overrides;
        if (overrides is null || overrides.Count == 0) return defaults;
        var merged = new Dictionary<string, object?>(defaults, StringComparer.Ordinal);
        foreach (var kv in overrides) merged[kv.Key] = kv.Value;
        return merged;
    }
}
