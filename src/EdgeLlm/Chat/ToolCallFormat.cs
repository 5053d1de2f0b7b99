using System.Text;
using System.Text.Json;
using EdgeLlm.Sampling;

namespace EdgeLlm.Chat;

/// <summary>
/// How a model family writes a function call, as its chat template teaches it (llama.cpp's
/// <c>common_chat_format</c>s): which the template uses (<see cref="Of"/>), how calls are read out of a
/// reply (<see cref="Parse"/>) and the grammar that forces one call (<see cref="RequiredCallGrammar"/>).
/// <list type="bullet">
/// <item><see cref="Hermes"/>: <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>
/// blocks, anywhere in the reply (Qwen2.5, Qwen3, Hermes, SmolLM3).</item>
/// <item><see cref="Llama3"/>: the reply is <c>{"name": ..., "parameters": {...}}</c> (Llama 3.1, 3.2, 3.3),
/// read as llama.cpp reads it: at the start of the reply only.</item>
/// <item><see cref="Mistral"/>: <c>[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]</c> (Mistral Nemo,
/// Mistral Small), the call ids nine letters and digits, as those templates demand.</item>
/// <item><see cref="Harmony"/>: a <c>commentary</c> message addressed <c>to=functions.NAME</c> whose text is the
/// arguments (gpt-oss; <see cref="Chat.Harmony"/>), as a <see cref="HarmonySplitter"/> writes it into the reply.</item>
/// </list>
/// </summary>
/// <remarks>
/// Llama 3's <c>&lt;|python_tag|&gt;</c> and Mistral's <c>[TOOL_CALLS]</c> are control tokens, which
/// detokenize to nothing and which grammars never allow (see <see cref="GrammarConstraint"/>): the reply is
/// read with or without them, and a required call is the JSON alone. Llama 3's built-in tools
/// (<c>brave_search.call(...)</c>) are not read.
/// </remarks>
public abstract class ToolCallFormat
{
    private protected ToolCallFormat()
    {
    }

    /// <summary>Hermes-style <c>&lt;tool_call&gt;</c> blocks.</summary>
    public static ToolCallFormat Hermes { get; } = new HermesFormat();

    /// <summary>Llama 3.x's bare JSON call.</summary>
    public static ToolCallFormat Llama3 { get; } = new Llama3Format();

    /// <summary>Mistral's <c>[TOOL_CALLS]</c> array.</summary>
    public static ToolCallFormat Mistral { get; } = new MistralFormat();

    /// <summary>gpt-oss's harmony calls (read from a <see cref="HarmonySplitter"/>'s reply).</summary>
    public static ToolCallFormat Harmony { get; } = new HarmonyToolCalls();

    /// <summary>
    /// Whether <see cref="RequiredCallGrammar(IReadOnlyList{ToolFunction})"/> can force a call: not in harmony, whose
    /// calls are made of control tokens, which a grammar never produces.
    /// </summary>
    public virtual bool CanRequireCall => true;

    /// <summary>Short name: <c>hermes</c>, <c>llama3</c>, <c>mistral</c>, <c>harmony</c>.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// The format a chat template writes calls in, by what its source contains (as llama.cpp decides):
    /// <c>&lt;tool_call&gt;</c> → Hermes, <c>[TOOL_CALLS]</c> → Mistral,
    /// <c>&lt;|start_header_id|&gt;ipython&lt;|end_header_id|&gt;</c> → Llama 3; null when none.
    /// </summary>
    public static ToolCallFormat? Of(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        string s = template.Source;
        if (Chat.Harmony.Writes(template)) return Harmony;
        if (s.Contains("<tool_call>", StringComparison.Ordinal)) return Hermes;
        if (s.Contains("[TOOL_CALLS]", StringComparison.Ordinal)) return Mistral;
        if (s.Contains("<|start_header_id|>ipython<|end_header_id|>", StringComparison.Ordinal)) return Llama3;
        return null;
    }

    /// <summary>
    /// The calls in a reply naming one of <paramref name="names"/> (arguments as compact JSON text, a fresh
    /// id each), and what is left as the content (null when only whitespace). Text that is not a
    /// well-formed call of a known function stays content.
    /// </summary>
    public (string? Content, List<ChatToolCall> Calls) Parse(string reply, IReadOnlyCollection<string> names)
    {
        ArgumentNullException.ThrowIfNull(reply);
        ArgumentNullException.ThrowIfNull(names);
        var (raw, calls) = ParseRaw(reply, names);
        return (ContentOrNull(calls.Count > 0 ? raw : reply), calls);
    }

    /// <summary>
    /// The calls in <paramref name="reply"/> and the reply with them taken out, untrimmed: text before the first
    /// call stays verbatim at its start (what <see cref="ToolCallStreamer"/> relies on).
    /// </summary>
    internal abstract (string Raw, List<ChatToolCall> Calls) ParseRaw(string reply, IReadOnlyCollection<string> names);

    /// <summary>
    /// How much of a reply written so far is content for sure: it cannot be, or become, part of a call
    /// (<see cref="ToolCallStreamer"/> streams it at once and holds the rest).
    /// </summary>
    internal abstract int Releasable(string text);

    /// <summary>The index of the first character that is not whitespace, or -1.</summary>
    private protected static int FirstNonSpace(string text)
    {
        for (int i = 0; i < text.Length; i++)
            if (!char.IsWhiteSpace(text[i])) return i;
        return -1;
    }

    /// <summary>Up to where <paramref name="text"/> cannot hold the start of <paramref name="marker"/>: before it, or before a tail that could begin it.</summary>
    private protected static int BeforeMarker(string text, string marker)
    {
        int at = text.IndexOf(marker, StringComparison.Ordinal);
        if (at >= 0) return at;
        for (int k = Math.Min(marker.Length - 1, text.Length); k > 0; k--)
            if (text.AsSpan(text.Length - k).SequenceEqual(marker.AsSpan(0, k))) return text.Length - k;
        return text.Length;
    }

    /// <summary>
    /// The grammar of one required call (OpenAI's <c>tool_choice: "required"</c> or a named function) naming
    /// one of <paramref name="functions"/>, nothing before or after it. The arguments follow each function's
    /// parameter schema as llama.cpp's json-schema-to-grammar lays out an object: the <c>required</c>
    /// properties first, all of them, in declared order, then any of the others in declared order, each at
    /// most once; a property's value held to its <c>type</c> (string, integer, number, boolean, null, array,
    /// object, or a list of them), <c>enum</c> or <c>const</c> (deeper structure is any JSON of that type).
    /// No parameters, or none declared: <c>{}</c>; parameters without <c>properties</c>: any object.
    /// </summary>
    public GbnfGrammar RequiredCallGrammar(IReadOnlyList<ToolFunction> functions)
    {
        ArgumentNullException.ThrowIfNull(functions);
        if (functions.Count == 0) throw new ArgumentException("no function to call", nameof(functions));
        var calls = new StringBuilder();
        var rules = new StringBuilder();
        for (int i = 0; i < functions.Count; i++)
        {
            var f = functions[i];
            if (calls.Length > 0) calls.Append(" | ");
            calls.Append($"\"{{\\\"name\\\": \\\"{GbnfEscape(f.Name)}\\\", \\\"{ArgumentsKey}\\\": \" {ArgumentsRule(f.Parameters, $"f{i}", rules)} \"}}\"");
        }
        return GbnfGrammar.Parse($$"""
            root    ::= {{CallRoot}}
            call    ::= {{calls}}
            {{rules}}
            value   ::= object | array | string | number | ("true" | "false" | "null") ws
            object  ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}"
            array   ::= "[" ws ( value ("," ws value)* )? "]" ws
            string  ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
            number  ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
            integer ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ws
            ws      ::= | " " | "\n" [ \t]{0,20}
            """);
    }

    /// <summary>
    /// <see cref="RequiredCallGrammar(IReadOnlyList{ToolFunction})"/> from parameter names alone: any of the
    /// named keys, each at most once, in the given order, values any JSON (null names: any object; none: <c>{}</c>).
    /// </summary>
    /// <param name="functions">name and declared parameter names (null: not declared) of each function that may be called</param>
    public GbnfGrammar RequiredCallGrammar(IReadOnlyList<(string Name, IReadOnlyList<string>? Properties)> functions)
    {
        ArgumentNullException.ThrowIfNull(functions);
        return RequiredCallGrammar(functions.Select(f => new ToolFunction(f.Name, f.Properties switch
        {
            null => JsonDocument.Parse("{\"type\": \"object\"}").RootElement,
            { Count: 0 } => (JsonElement?)null,
            var names => JsonDocument.Parse("{\"properties\": {" + string.Join(", ", names.Select(n => JsonSerializer.Serialize(n, ToolCallsJson.Default.String) + ": {}")) + "}}").RootElement,
        })).ToList());
    }

    /// <summary>The GBNF expression of a function's arguments (<paramref name="id"/> prefixes its rules, added to <paramref name="rules"/>).</summary>
    private static string ArgumentsRule(JsonElement? parameters, string id, StringBuilder rules)
    {
        if (parameters is not { ValueKind: JsonValueKind.Object } schema) return "\"{}\"";
        if (!schema.TryGetProperty("properties", out var props) || props.ValueKind != JsonValueKind.Object) return "object";
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
            foreach (var r in req.EnumerateArray())
                if (r.ValueKind == JsonValueKind.String) required.Add(r.GetString()!);
        var all = props.EnumerateObject().ToList();
        if (all.Count == 0) return "\"{}\"";
        // llama.cpp's layout: the required properties in declared order, then the optional ones.
        var mandatory = all.Where(p => required.Contains(p.Name)).ToList();
        var optional = all.Where(p => !required.Contains(p.Name)).ToList();
        string Kv(JsonProperty p, int k)
        {
            string name = $"{id}k{k}";
            rules.Append($"{name} ::= \"{GbnfEscape(JsonSerializer.Serialize(p.Name, ToolCallsJson.Default.String))}\" ws \":\" ws {ValueRule(p.Value)}\n");
            return name;
        }
        var body = new StringBuilder();
        int n = 0;
        foreach (var p in mandatory)
        {
            if (body.Length > 0) body.Append(" \",\" ws ");
            body.Append(Kv(p, n++));
        }
        if (optional.Count > 0)
        {
            // first_j: the first optional property present is j or a later one; rest_j: j (after a comma) or not, then the rest.
            var kvs = optional.Select(p => Kv(p, n++)).ToList();
            for (int j = optional.Count - 1; j >= 0; j--)
            {
                string next = j + 1 < optional.Count ? $" {id}r{j + 1}" : "";
                rules.Append($"{id}r{j} ::= (\",\" ws {kvs[j]})?{next}\n");
                rules.Append(j + 1 < optional.Count ? $"{id}o{j} ::= {kvs[j]}{next} | {id}o{j + 1}\n" : $"{id}o{j} ::= {kvs[j]}\n");
            }
            if (body.Length > 0) body.Append($" {id}r0");
            else body.Append($"{id}o0");
            return mandatory.Count > 0 ? $"\"{{\" ws {body} \"}}\"" : $"\"{{\" ws ({body})? \"}}\"";
        }
        return $"\"{{\" ws {body} \"}}\"";
    }

    /// <summary>The GBNF expression of one property's value from its schema: <c>enum</c>, <c>const</c>, <c>type</c>, else any JSON.</summary>
    private static string ValueRule(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object) return "value";
        if (schema.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0)
            return "(" + string.Join(" | ", e.EnumerateArray().Select(v => $"\"{GbnfEscape(v.GetRawText())}\"")) + ") ws";
        if (schema.TryGetProperty("const", out var c)) return $"\"{GbnfEscape(c.GetRawText())}\" ws";
        if (!schema.TryGetProperty("type", out var t)) return "value";
        static string? OfType(JsonElement type) => type.ValueKind != JsonValueKind.String ? null : type.GetString() switch
        {
            "string" => "string",
            "integer" => "integer",
            "number" => "number",
            "boolean" => "(\"true\" | \"false\") ws",
            "null" => "\"null\" ws",
            "array" => "array",
            "object" => "object",
            _ => null,
        };
        if (t.ValueKind == JsonValueKind.Array)
        {
            var each = t.EnumerateArray().Select(OfType).ToList();
            return each.Count == 0 || each.Contains(null) ? "value" : "(" + string.Join(" | ", each) + ")";
        }
        return OfType(t) ?? "value";
    }

    /// <summary>A call of one of <paramref name="names"/> with arguments that must be a JSON object (compacted); null when it is not one.</summary>
    private protected ChatToolCall? CallOf(string name, string argumentsText, IReadOnlyCollection<string> names)
    {
        if (!names.Contains(name)) return null;
        try
        {
            using var doc = JsonDocument.Parse(argumentsText);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return null;
            return new ChatToolCall(NewId(), name, JsonSerializer.Serialize(doc.RootElement, ToolCallsJson.Default.JsonElement));
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The key of a call's arguments: <c>arguments</c>, or Llama 3's <c>parameters</c>.</summary>
    private protected virtual string ArgumentsKey => "arguments";

    /// <summary>The grammar's root around <c>call</c> (one call object).</summary>
    private protected abstract string CallRoot { get; }

    /// <summary>A fresh call id: <c>call_</c> and 24 hex digits, as OpenAI's.</summary>
    private protected virtual string NewId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    /// <summary>A call from a JSON object with <c>name</c> (one of <paramref name="names"/>) and the arguments under one of <paramref name="argumentKeys"/> (absent: <c>{}</c>); null when it is not one.</summary>
    private protected ChatToolCall? ReadCall(JsonElement root, IReadOnlyCollection<string> names, params string[] argumentKeys)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String) return null;
        string name = n.GetString()!;
        if (!names.Contains(name)) return null;
        string arguments = "{}";
        foreach (string key in argumentKeys)
        {
            if (!root.TryGetProperty(key, out var a)) continue;
            // Compact JSON text, as OpenAI sends it; a model that wrote the arguments as a string of JSON keeps that string.
            if (a.ValueKind == JsonValueKind.String) arguments = a.GetString()!;
            else if (a.ValueKind == JsonValueKind.Object) arguments = JsonSerializer.Serialize(a, ToolCallsJson.Default.JsonElement);
            else return null;
            break;
        }
        return new ChatToolCall(NewId(), name, arguments);
    }

    /// <summary>
    /// The JSON values at the start of <paramref name="text"/> from <paramref name="start"/>, one after another
    /// (whitespace, or <paramref name="separator"/>, between them): each with the index just past it. Stops at
    /// the first thing that is not a whole JSON value.
    /// </summary>
    private protected static List<(JsonElement Value, int End)> LeadingJson(string text, int start, char separator)
    {
        var found = new List<(JsonElement, int)>();
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        int pos = Encoding.UTF8.GetByteCount(text.AsSpan(0, start));
        while (true)
        {
            int p = pos;
            while (p < utf8.Length && (utf8[p] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t' || (found.Count > 0 && utf8[p] == separator))) p++;
            if (p >= utf8.Length || utf8[p] is not ((byte)'{' or (byte)'[')) break;
            var reader = new Utf8JsonReader(utf8.AsSpan(p), new JsonReaderOptions { AllowMultipleValues = true });
            try
            {
                if (!JsonElement.TryParseValue(ref reader, out var value) || value is not { } v) break;
                pos = p + (int)reader.BytesConsumed;
                found.Add((v, Encoding.UTF8.GetCharCount(utf8, 0, pos)));
            }
            catch (JsonException)
            {
                break;
            }
        }
        return found;
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

    private protected static string? ContentOrNull(string s)
    {
        string t = s.Trim();
        return t.Length == 0 ? null : t;
    }

    private sealed class HermesFormat : ToolCallFormat
    {
        private const string Open = "<tool_call>", Close = "</tool_call>";

        public override string Name => "hermes";

        private protected override string CallRoot => "\"<tool_call>\\n\" call \"\\n</tool_call>\"";

        internal override int Releasable(string text) => BeforeMarker(text, Open);

        internal override (string Raw, List<ChatToolCall> Calls) ParseRaw(string reply, IReadOnlyCollection<string> names)
        {
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
                ChatToolCall? call = null;
                try
                {
                    using var doc = JsonDocument.Parse(reply[(start + Open.Length)..end]);
                    call = ReadCall(doc.RootElement, names, "arguments");
                }
                catch (JsonException)
                {
                }
                if (call is not null)
                {
                    content.Append(reply, pos, start - pos);
                    calls.Add(call);
                }
                else content.Append(reply, pos, end + Close.Length - pos);
                pos = end + Close.Length;
            }
            return (content.ToString(), calls);
        }
    }

    /// <summary>
    /// Llama 3.x: a call is the reply itself, <c>{"name": ..., "parameters": {...}}</c> (<c>"type": "function"</c>
    /// allowed before the name, <c>arguments</c> read as <c>parameters</c>). As in llama.cpp, only at the
    /// start of the reply; several calls one after another (whitespace or <c>;</c> between them) are all
    /// read, which Llama 3.2 sometimes writes although its template renders one call per turn.
    /// </summary>
    private sealed class Llama3Format : ToolCallFormat
    {
        public override string Name => "llama3";

        private protected override string ArgumentsKey => "parameters";

        private protected override string CallRoot => "call";

        /// <summary>A call comes first: a reply that begins with <c>{</c> (or only whitespace so far) is held, any other is content.</summary>
        internal override int Releasable(string text)
        {
            int first = FirstNonSpace(text);
            return first < 0 || text[first] == '{' ? 0 : text.Length;
        }

        internal override (string Raw, List<ChatToolCall> Calls) ParseRaw(string reply, IReadOnlyCollection<string> names)
        {
            var calls = new List<ChatToolCall>();
            int end = 0;
            foreach (var (value, after) in LeadingJson(reply, 0, ';'))
            {
                if (value.ValueKind != JsonValueKind.Object) break;
                if (value.TryGetProperty("type", out var t) && !(t.ValueKind == JsonValueKind.String && t.GetString() == "function")) break;
                if (!value.TryGetProperty("parameters", out _) && !value.TryGetProperty("arguments", out _)) break;
                if (ReadCall(value, names, "parameters", "arguments") is not { } call) break;
                calls.Add(call);
                end = after;
            }
            return calls.Count == 0 ? (reply, calls) : (reply[end..].TrimStart().TrimStart(';'), calls);
        }
    }

    /// <summary>
    /// Mistral: <c>[TOOL_CALLS]</c> (a control token, so usually not in the text) then a JSON array of
    /// calls, each <c>{"name": ..., "arguments": {...}}</c>: after the marker where it is in the text, else
    /// at the start of the reply. Every element must be a call of a known function, or the array stays content.
    /// </summary>
    private sealed class MistralFormat : ToolCallFormat
    {
        private const string Marker = "[TOOL_CALLS]";

        public override string Name => "mistral";

        private protected override string CallRoot => "\"[\" call \"]\"";

        /// <summary>Nine letters and digits: Mistral Nemo's template refuses any other id.</summary>
        private protected override string NewId()
        {
            const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            Span<char> id = stackalloc char[9];
            for (int i = 0; i < id.Length; i++) id[i] = Alphabet[System.Security.Cryptography.RandomNumberGenerator.GetInt32(Alphabet.Length)];
            return new string(id);
        }

        /// <summary>A reply that begins with <c>[</c> (or only whitespace so far) is held; else content up to the marker (or a tail that could begin it).</summary>
        internal override int Releasable(string text)
        {
            int first = FirstNonSpace(text);
            return first < 0 || text[first] == '[' ? 0 : BeforeMarker(text, Marker);
        }

        internal override (string Raw, List<ChatToolCall> Calls) ParseRaw(string reply, IReadOnlyCollection<string> names)
        {
            int marker = reply.IndexOf(Marker, StringComparison.Ordinal);
            int start = marker >= 0 ? marker + Marker.Length : 0;
            var leading = LeadingJson(reply, start, ',');
            if (leading.Count == 0 || leading[0].Value.ValueKind != JsonValueKind.Array) return (reply, []);
            var calls = new List<ChatToolCall>();
            foreach (var item in leading[0].Value.EnumerateArray())
            {
                if (ReadCall(item, names, "arguments") is not { } call) return (reply, []);
                calls.Add(call);
            }
            if (calls.Count == 0) return (reply, calls);
            string before = marker >= 0 ? reply[..marker] : "";
            return (before + reply[leading[0].End..], calls);
        }
    }
}

/// <summary>A function a model may call: its name and its parameters' JSON schema (null: it takes none).</summary>
public sealed record ToolFunction(string Name, JsonElement? Parameters);

/// <summary>
/// A reply that may hold function calls, streamed: <see cref="Push"/> gives back, piece by piece, the text that
/// cannot be part of a call (in the Hermes format, everything before a <c>&lt;tool_call&gt;</c>; in Llama 3's and
/// Mistral's, a reply that does not open with <c>{</c> / <c>[</c>), and holds the rest; <see cref="Finish"/> reads
/// the calls out of the whole reply and gives the content not yet released. So a plain answer streams as it
/// is written even when tools are offered, and a call arrives whole.
/// </summary>
public sealed class ToolCallStreamer
{
    private readonly ToolCallFormat _format;
    private readonly IReadOnlyCollection<string> _names;
    private readonly StringBuilder _text = new();
    private int _released;

    /// <summary>A streamer for a reply in <paramref name="format"/> that may call <paramref name="names"/>.</summary>
    public ToolCallStreamer(ToolCallFormat format, IReadOnlyCollection<string> names)
    {
        ArgumentNullException.ThrowIfNull(format);
        ArgumentNullException.ThrowIfNull(names);
        _format = format;
        _names = names;
    }

    /// <summary>Adds a piece of the reply; returns the content it makes certain (often empty; never taken back).</summary>
    public string Push(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        _text.Append(piece);
        string text = _text.ToString();
        int safe = _format.Releasable(text);
        if (safe <= _released) return "";
        string released = text[_released..safe];
        _released = safe;
        return released;
    }

    /// <summary>
    /// The reply ended: the content not yet released (null when none; trimmed when there are calls, as
    /// <see cref="ToolCallFormat.Parse"/> gives it) and the calls.
    /// </summary>
    public (string? Content, List<ChatToolCall> Calls) Finish()
    {
        string text = _text.ToString();
        var (raw, calls) = _format.ParseRaw(text, _names);
        if (calls.Count == 0) raw = text;
        // The released text is the start of the content (formats keep the text before the first call verbatim).
        string rest = raw.StartsWith(text.AsSpan(0, _released), StringComparison.Ordinal) ? raw[_released..] : raw;
        if (calls.Count > 0) rest = _released > 0 ? rest.TrimEnd() : rest.Trim();
        return (rest.Length == 0 ? null : rest, calls);
    }
}
