using System.Globalization;
using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Engine;
using EdgeLlm.Sampling;

namespace EdgeLlm.Cli.Server;

/// <summary>What a chat or text completion request asks for, checked.</summary>
/// <param name="Model">the <c>model</c> field (null when absent)</param>
/// <param name="Stream">stream server-sent events</param>
/// <param name="IncludeUsage"><c>stream_options.include_usage</c>: a last chunk with the token counts</param>
/// <param name="Options">sampling, max tokens and stop strings</param>
/// <param name="Messages">the conversation (chat completions)</param>
/// <param name="Prompt">the prompt text (text completions given a string)</param>
/// <param name="PromptTokens">the prompt as token ids (text completions given an array of integers)</param>
public sealed record CompletionRequest(
    string? Model, bool Stream, bool IncludeUsage, GenerationOptions Options,
    IReadOnlyList<ChatTurn>? Messages, string? Prompt, int[]? PromptTokens)
{
    /// <summary>llama-server's <c>chat_template_kwargs</c>: extra chat template variables for this request (chat completions), or null.</summary>
    public IDictionary<string, object?>? TemplateVariables { get; init; }

    /// <summary>OpenAI's <c>tools</c>: the functions the model may call (null: none, or <c>tool_choice</c> "none").</summary>
    public IReadOnlyList<ToolSpec>? Tools { get; init; }

    /// <summary><c>tool_choice</c>: "auto" (the model decides), "required" (it must call one), or a function's name (it must call that one).</summary>
    public string ToolChoice { get; init; } = "auto";
}

/// <summary>
/// A function the model may call: its name, its declared parameter names (none when <c>parameters</c> is
/// absent; null when it declares no <c>properties</c>: any object), and the tool object as the request
/// gave it (what the chat template sees).
/// </summary>
public sealed record ToolSpec(string Name, JsonElement? Parameters, object? TemplateValue);

/// <summary>
/// Reads the JSON bodies of <c>/v1/chat/completions</c> and <c>/v1/completions</c> by hand (a
/// JsonDocument walk, AOT-safe), so that every wrong field gets a 400 that names it. A JSON null
/// counts as an absent field, and fields the server does not know are ignored (clients send many);
/// known fields it cannot honour with a non-default value (n &gt; 1, penalties) are refused.
/// </summary>
/// <remarks>
/// Sampling fields that are absent keep llama.cpp's defaults (as llama-server does): temperature 0.8,
/// top_k 40, top_p 0.95, min_p 0.05. Besides OpenAI's fields, llama.cpp's <c>top_k</c>, <c>min_p</c>,
/// <c>repeat_penalty</c> and <c>chat_template_kwargs</c> (an object of chat template variables, over
/// <c>serve --chat-template-kwargs</c>) are accepted.
/// </remarks>
public static class RequestParser
{
    /// <summary>Most stop strings one request may give.</summary>
    public const int MaxStopStrings = 16;

    /// <summary>Parses a chat completion request.</summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static CompletionRequest ParseChat(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var root = doc.RootElement;
        var common = ParseCommon(root, chat: true);
        var messages = ParseMessages(root);
        Dictionary<string, object?>? variables = null;
        if (Field(root, "chat_template_kwargs") is { } kwargs)
        {
            try { variables = TemplateVariables.FromObject(kwargs, "chat_template_kwargs"); }
            catch (FormatException e) { throw ApiException.BadField("chat_template_kwargs", e.Message); }
        }
        var (tools, choice) = ParseTools(root);
        if (tools is not null && (common.Options.Grammar is not null || common.Options.JsonObject || common.Options.JsonSchema is not null) && choice != "auto")
            throw ApiException.BadField("tool_choice", "a required tool call cannot be combined with a grammar or JSON output");
        return common with { Messages = messages, TemplateVariables = variables, Tools = tools, ToolChoice = choice };
    }

    /// <summary>Parses a <c>/tokenize</c> request: content (required), add_special (false), parse_special (true), with_pieces (false).</summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static (string Content, bool AddSpecial, bool ParseSpecial, bool WithPieces) ParseTokenize(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var root = doc.RootElement;
        string content = String(root, "content") ?? throw ApiException.BadField("content", "content is required: the text to tokenize");
        return (content, Bool(root, "add_special") ?? false, Bool(root, "parse_special") ?? true, Bool(root, "with_pieces") ?? false);
    }

    /// <summary>
    /// Parses a <c>/v1/embeddings</c> request (OpenAI's): <c>input</c> is a string, an array of strings, an array of
    /// token ids or an array of such arrays; <c>encoding_format</c> float (default) or base64. Each input is
    /// returned as text (to tokenize) or as token ids.
    /// </summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static (string? Model, List<(string? Text, int[]? Tokens)> Inputs, bool Base64) ParseEmbeddings(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var root = doc.RootElement;
        string? model = String(root, "model");
        string format = String(root, "encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw ApiException.BadField("encoding_format", $"encoding_format must be float or base64, got \"{format}\"");
        var input = Field(root, "input") ?? throw ApiException.BadField("input", "input is required: a string, an array of strings, or token ids");
        var list = new List<(string?, int[]?)>();
        static int[]? Ids(JsonElement e, string where)
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() == 0 || e[0].ValueKind != JsonValueKind.Number) return null;
            var ids = new int[e.GetArrayLength()];
            int i = 0;
            foreach (var t in e.EnumerateArray())
            {
                if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out ids[i]) || ids[i] < 0)
                    throw ApiException.BadField("input", $"{where}[{i}] is not a token id (a non-negative integer)");
                i++;
            }
            return ids;
        }
        if (input.ValueKind == JsonValueKind.String) list.Add((input.GetString()!, null));
        else if (input.ValueKind == JsonValueKind.Array)
        {
            if (input.GetArrayLength() == 0) throw ApiException.BadField("input", "input is an empty array");
            if (Ids(input, "input") is { } single) list.Add((null, single));
            else
            {
                int i = 0;
                foreach (var item in input.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.String) list.Add((item.GetString()!, null));
                    else if (Ids(item, $"input[{i}]") is { } ids) list.Add((null, ids));
                    else throw ApiException.BadField("input", $"input[{i}] must be a string or an array of token ids, got {Kind(item)}");
                    i++;
                }
            }
        }
        else throw ApiException.BadField("input", $"input must be a string or an array, got {Kind(input)}");
        return (model, list, format == "base64");
    }

    /// <summary>A parsed rerank request (llama-server's <c>/v1/rerank</c>, Jina's and Cohere's shape, or TEI's <c>/rerank</c>).</summary>
    public sealed record RerankRequest(string? Model, string Query, List<string> Documents, int TopN, bool Tei, bool ReturnText, bool ReturnDocuments);

    /// <summary>
    /// Parses a rerank request: <c>query</c> (a string) and <c>documents</c> (strings, or objects with a <c>text</c>, as
    /// Cohere's and Jina's APIs allow), or TEI's <c>texts</c> (the answer is then TEI's bare array, <c>return_text</c>
    /// adds each text); <c>top_n</c> (default: every document); <c>return_documents</c> adds each document as
    /// <c>{"text": ...}</c> (Jina's and Cohere's).
    /// </summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static RerankRequest ParseRerank(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var root = doc.RootElement;
        string? model = String(root, "model");
        string query = String(root, "query") ?? throw ApiException.BadField("query", "query is required: the text the documents are ranked for");
        var docsField = Field(root, "documents");
        bool tei = docsField is null && Field(root, "texts") is not null;
        string name = tei ? "texts" : "documents";
        var items = docsField ?? Field(root, "texts") ?? throw ApiException.BadField("documents", "documents is required: a non-empty array of strings");
        if (items.ValueKind != JsonValueKind.Array || items.GetArrayLength() == 0)
            throw ApiException.BadField(name, $"{name} must be a non-empty array of strings, got {(items.ValueKind == JsonValueKind.Array ? "an empty array" : Kind(items))}");
        var documents = new List<string>(items.GetArrayLength());
        int i = 0;
        foreach (var item in items.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String) documents.Add(item.GetString()!);
            else if (item.ValueKind == JsonValueKind.Object && String(item, "text") is { } text) documents.Add(text);
            else throw ApiException.BadField(name, $"{name}[{i}] must be a string (or an object with a text), got {Kind(item)}");
            i++;
        }
        int topN = documents.Count;
        if (Field(root, "top_n") is { } t)
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out topN) || topN < 1)
                throw ApiException.BadField("top_n", "top_n must be a positive integer");
        }
        return new RerankRequest(model, query, documents, topN, tei, Bool(root, "return_text") ?? false, Bool(root, "return_documents") ?? false);
    }

    /// <summary>Parses a <c>/detokenize</c> request: tokens, an array of token ids (non-negative integers).</summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static int[] ParseDetokenize(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var tokens = Field(doc.RootElement, "tokens") ?? throw ApiException.BadField("tokens", "tokens is required: an array of token ids");
        if (tokens.ValueKind != JsonValueKind.Array) throw ApiException.BadField("tokens", $"tokens must be an array of token ids, got {Kind(tokens)}");
        var ids = new int[tokens.GetArrayLength()];
        int i = 0;
        foreach (var t in tokens.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out ids[i]) || ids[i] < 0)
                throw ApiException.BadField("tokens", $"tokens[{i}] is not a token id (a non-negative integer)");
            i++;
        }
        return ids;
    }

    /// <summary>Parses a text completion request.</summary>
    /// <exception cref="ApiException">400: bad JSON or a bad field</exception>
    public static CompletionRequest ParseCompletion(ReadOnlyMemory<byte> body)
    {
        using var doc = ParseDocument(body);
        var root = doc.RootElement;
        var common = ParseCommon(root, chat: false);
        if (Bool(root, "echo") == true) throw ApiException.BadField("echo", "echo is not supported");
        if (Field(root, "suffix") is { } suffix && !(suffix.ValueKind == JsonValueKind.String && suffix.GetString()!.Length == 0))
            throw ApiException.BadField("suffix", "suffix is not supported");
        if (Field(root, "best_of") is { } bestOf && !(bestOf.ValueKind == JsonValueKind.Number && bestOf.TryGetInt32(out int b) && b == 1))
            throw ApiException.BadField("best_of", "best_of must be 1: the server makes one completion per request");
        // The legacy endpoint's logprobs: how many alternatives to list per token (0..5), the chosen token always.
        if (Integer(root, "logprobs") is { } lp)
        {
            if (lp is < 0 or > 5) throw ApiException.BadField("logprobs", $"logprobs must be 0..5 (alternatives per token), got {lp}");
            common = common with { Options = common.Options with { LogProbs = (int)lp } };
        }

        var prompt = Field(root, "prompt") ?? throw ApiException.BadField("prompt", "prompt is required");
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                return common with { Prompt = prompt.GetString() };
            case JsonValueKind.Array:
                int count = prompt.GetArrayLength();
                if (count == 0) throw ApiException.BadField("prompt", "prompt is an empty array");
                var first = prompt[0];
                if (first.ValueKind == JsonValueKind.String)
                {
                    if (count != 1) throw ApiException.BadField("prompt", $"prompt holds {count} strings; the server completes one prompt per request");
                    return common with { Prompt = first.GetString() };
                }
                if (first.ValueKind == JsonValueKind.Number)
                {
                    var tokens = new int[count];
                    int i = 0;
                    foreach (var t in prompt.EnumerateArray())
                    {
                        if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out tokens[i]) || tokens[i] < 0)
                            throw ApiException.BadField("prompt", $"prompt[{i}] is not a token id (a non-negative integer)");
                        i++;
                    }
                    return common with { PromptTokens = tokens };
                }
                if (first.ValueKind == JsonValueKind.Array)
                    throw ApiException.BadField("prompt", "prompt holds several token arrays; the server completes one prompt per request");
                throw ApiException.BadField("prompt", "prompt must be a string, an array of one string, or an array of token ids");
            default:
                throw ApiException.BadField("prompt", $"prompt must be a string, got {Kind(prompt)}");
        }
    }

    private static JsonDocument ParseDocument(ReadOnlyMemory<byte> body)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = Kind(doc.RootElement);
            doc.Dispose();
            throw new ApiException(400, $"the request body must be a JSON object, got {kind}", code: "invalid_json");
        }
        return doc;
    }

    private static CompletionRequest ParseCommon(JsonElement root, bool chat)
    {
        string? model = String(root, "model");
        bool stream = Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (Field(root, "stream_options") is { } so)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.BadField("stream_options", $"stream_options must be an object, got {Kind(so)}");
            includeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }

        long? n = Integer(root, "n");
        if (n is not null && n != 1) throw ApiException.BadField("n", $"n must be 1: the server makes one choice per request, got {n}");

        // max_completion_tokens is the newer name (chat); max_tokens the older one. Both given: the newer wins.
        long? maxTokens = Integer(root, "max_completion_tokens") ?? Integer(root, "max_tokens");
        string maxParam = Field(root, "max_completion_tokens") is not null ? "max_completion_tokens" : "max_tokens";
        if (maxTokens is < 0 or > int.MaxValue) throw ApiException.BadField(maxParam, $"{maxParam} must be >= 0, got {maxTokens}");

        var defaults = new SamplerOptions();
        double temperature = Number(root, "temperature") ?? defaults.Temperature;
        if (!(temperature >= 0 && temperature <= 100)) throw ApiException.BadField("temperature", $"temperature must be in [0, 100] (0 = greedy), got {Format(temperature)}");
        double topP = Number(root, "top_p") ?? defaults.TopP;
        if (!(topP >= 0 && topP <= 1)) throw ApiException.BadField("top_p", $"top_p must be in [0, 1], got {Format(topP)}");
        double minP = Number(root, "min_p") ?? defaults.MinP;
        if (!(minP >= 0 && minP <= 1)) throw ApiException.BadField("min_p", $"min_p must be in [0, 1], got {Format(minP)}");
        long topK = Integer(root, "top_k") ?? defaults.TopK;
        if (topK < 0 || topK > int.MaxValue) throw ApiException.BadField("top_k", $"top_k must be >= 0 (0 = off), got {topK}");
        double repeatPenalty = Number(root, "repeat_penalty") ?? defaults.RepeatPenalty;
        if (!(repeatPenalty > 0 && repeatPenalty <= 100)) throw ApiException.BadField("repeat_penalty", $"repeat_penalty must be in (0, 100] (1 = off), got {Format(repeatPenalty)}");
        foreach (var penalty in (string[])["presence_penalty", "frequency_penalty"])
        {
            double? p = Number(root, penalty);
            if (p is not null && p != 0) throw ApiException.BadField(penalty, $"{penalty} is not supported (only 0); use repeat_penalty");
        }
        ulong? seed = null;
        if (Field(root, "seed") is { } s)
        {
            // OpenAI's seed is any 64-bit integer; negative ones map to their two's complement.
            if (s.ValueKind != JsonValueKind.Number) throw ApiException.BadField("seed", $"seed must be an integer, got {Kind(s)}");
            if (s.TryGetUInt64(out ulong u)) seed = u;
            else if (s.TryGetInt64(out long l)) seed = unchecked((ulong)l);
            else throw ApiException.BadField("seed", $"seed must be a 64-bit integer, got {s.GetRawText()}");
        }

        var stops = ParseStop(root);
        bool jsonObject = false;
        JsonSchemaNode? jsonSchema = null;
        int logProbs = -1;

        if (chat)
        {
            // OpenAI's chat logprobs: true reports each token's log-probability, top_logprobs (0..20) the likeliest alternatives too.
            long? top = Integer(root, "top_logprobs");
            if (top is < 0 or > 20) throw ApiException.BadField("top_logprobs", $"top_logprobs must be 0..20, got {top}");
            if (Bool(root, "logprobs") == true) logProbs = (int)(top ?? 0);
            else if (top is > 0) throw ApiException.BadField("top_logprobs", "top_logprobs needs \"logprobs\": true");
            if (Field(root, "response_format") is { } rf)
            {
                string? type = rf.ValueKind == JsonValueKind.Object ? String(rf, "type", "response_format.type") : null;
                if (type == "json_object") jsonObject = true;
                else if (type == "json_schema")
                {
                    // {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}
                    if (!rf.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object || !js.TryGetProperty("schema", out var schemaElement))
                        throw ApiException.BadField("response_format", "response_format json_schema needs \"json_schema\": {\"name\": ..., \"schema\": {...}}");
                    try
                    {
                        jsonSchema = JsonSchemaNode.Parse(schemaElement);
                    }
                    catch (ArgumentException e)
                    {
                        throw ApiException.BadField("response_format", "response_format.json_schema." + e.Message);
                    }
                }
                else if (type != "text")
                    throw ApiException.BadField("response_format",
                        "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {...}}");
            }
        }

        // llama-server's own field, on both endpoints: "json_schema": {...} (a schema object; {} = any JSON object).
        if (Field(root, "json_schema") is { } direct && direct.ValueKind != JsonValueKind.Null)
        {
            if (jsonObject || jsonSchema is not null) throw ApiException.BadField("json_schema", "give either json_schema or response_format, not both");
            if (direct.ValueKind != JsonValueKind.Object) throw ApiException.BadField("json_schema", $"json_schema must be a JSON schema object, got {direct.ValueKind}");
            jsonObject = true;
            if (direct.EnumerateObject().Any())
            {
                try
                {
                    jsonSchema = JsonSchemaNode.Parse(direct);
                }
                catch (ArgumentException e)
                {
                    throw ApiException.BadField("json_schema", "json_schema: " + e.Message);
                }
            }
        }

        // llama-server's "grammar" field, on both endpoints: GBNF text (generation starts at the rule "root").
        GbnfGrammar? grammar = null;
        if (Field(root, "grammar") is { } g && g.ValueKind != JsonValueKind.Null)
        {
            if (g.ValueKind != JsonValueKind.String) throw ApiException.BadField("grammar", $"grammar must be a string of GBNF, got {Kind(g)}");
            if (jsonObject || jsonSchema is not null) throw ApiException.BadField("grammar", "give either grammar or JSON output (response_format, json_schema), not both");
            try
            {
                grammar = GbnfGrammar.Parse(g.GetString()!);
            }
            catch (GbnfParseException e)
            {
                throw ApiException.BadField("grammar", e.Message);
            }
        }

        var options = new GenerationOptions
        {
            MaxTokens = maxTokens is { } m ? (int)m : -1,
            Stop = stops,
            JsonObject = jsonObject,
            JsonSchema = jsonSchema,
            Grammar = grammar,
            LogProbs = logProbs,
            Sampling = defaults with
            {
                Temperature = (float)temperature,
                TopP = (float)topP,
                MinP = (float)minP,
                TopK = (int)topK,
                RepeatPenalty = (float)repeatPenalty,
                Seed = seed,
            },
        };
        return new CompletionRequest(model, stream, includeUsage, options, null, null, null);
    }

    private static string[] ParseStop(JsonElement root)
    {
        if (Field(root, "stop") is not { } stop) return [];
        if (stop.ValueKind == JsonValueKind.String)
        {
            string s = stop.GetString()!;
            return s.Length == 0 ? [] : [s];
        }
        if (stop.ValueKind != JsonValueKind.Array) throw ApiException.BadField("stop", $"stop must be a string or an array of strings, got {Kind(stop)}");
        if (stop.GetArrayLength() > MaxStopStrings) throw ApiException.BadField("stop", $"stop holds {stop.GetArrayLength()} strings; at most {MaxStopStrings} are allowed");
        var list = new List<string>();
        int i = 0;
        foreach (var e in stop.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String) throw ApiException.BadField("stop", $"stop[{i}] must be a string, got {Kind(e)}");
            string s = e.GetString()!;
            if (s.Length > 0) list.Add(s);
            i++;
        }
        return [.. list];
    }

    private static List<ChatTurn> ParseMessages(JsonElement root)
    {
        var messages = Field(root, "messages") ?? throw ApiException.BadField("messages", "messages is required");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiException.BadField("messages", $"messages must be an array, got {Kind(messages)}");
        if (messages.GetArrayLength() == 0) throw ApiException.BadField("messages", "messages is empty");
        var list = new List<ChatTurn>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string where = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.BadField(where, $"{where} must be an object, got {Kind(m)}");
            string role = String(m, "role", where + ".role") ?? throw ApiException.BadField(where + ".role", $"{where}.role is required");
            // "developer" is OpenAI's newer name for the system role.
            if (role == "developer") role = "system";
            if (role is not ("system" or "user" or "assistant" or "tool"))
                throw ApiException.BadField(where + ".role", $"{where}.role must be system, developer, user, assistant or tool, got \"{role}\"");
            string content = ParseContent(m, where, role);
            list.Add(new ChatTurn(role, content)
            {
                ToolCalls = role == "assistant" ? ParseToolCalls(m, where) : null,
                ToolCallId = role == "tool" ? String(m, "tool_call_id", where + ".tool_call_id") : null,
                // What this server answers in reasoning_content, given back (gpt-oss's templates name it thinking).
                Reasoning = role == "assistant" ? String(m, "reasoning_content", where + ".reasoning_content") ?? String(m, "thinking", where + ".thinking") : null,
            });
            i++;
        }
        return list;
    }

    /// <summary>
    /// <c>tools</c> (each <c>{"type": "function", "function": {"name", "description"?, "parameters"?}}</c>) and
    /// <c>tool_choice</c> ("none", "auto", "required" or <c>{"type": "function", "function": {"name"}}</c>).
    /// No tools, or "none": (null, "auto").
    /// </summary>
    private static (IReadOnlyList<ToolSpec>? Tools, string Choice) ParseTools(JsonElement root)
    {
        if (Field(root, "tools") is not { } tools) return (null, "auto");
        if (tools.ValueKind != JsonValueKind.Array) throw ApiException.BadField("tools", $"tools must be an array, got {Kind(tools)}");
        var list = new List<ToolSpec>();
        int i = 0;
        foreach (var t in tools.EnumerateArray())
        {
            string where = $"tools[{i++}]";
            if (t.ValueKind != JsonValueKind.Object) throw ApiException.BadField("tools", $"{where} must be an object, got {Kind(t)}");
            if (String(t, "type", "tools") is not "function") throw ApiException.BadField("tools", $"{where}.type must be \"function\"");
            if (Field(t, "function") is not { ValueKind: JsonValueKind.Object } f) throw ApiException.BadField("tools", $"{where}.function must be an object");
            string name = String(f, "name", "tools") ?? throw ApiException.BadField("tools", $"{where}.function.name is required");
            if (name.Length == 0 || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
                throw ApiException.BadField("tools", $"{where}.function.name must be 1 to 64 letters, digits, '_' or '-', got \"{name}\"");
            if (list.Exists(x => x.Name == name)) throw ApiException.BadField("tools", $"{where}: the function \"{name}\" is listed twice");
            JsonElement? parameters = null;
            if (Field(f, "parameters") is { } ps)
            {
                if (ps.ValueKind != JsonValueKind.Object) throw ApiException.BadField("tools", $"{where}.function.parameters must be a JSON schema object");
                parameters = ps.Clone();
            }
            list.Add(new ToolSpec(name, parameters, TemplateVariables.FromJson(t)));
        }
        string choice = "auto";
        if (Field(root, "tool_choice") is { } c)
        {
            if (c.ValueKind == JsonValueKind.String)
            {
                choice = c.GetString()!;
                if (choice is not ("none" or "auto" or "required")) throw ApiException.BadField("tool_choice", $"tool_choice must be none, auto, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got \"{choice}\"");
            }
            else if (c.ValueKind == JsonValueKind.Object && Field(c, "function") is { ValueKind: JsonValueKind.Object } cf && String(cf, "name", "tool_choice") is { } named)
            {
                if (!list.Exists(x => x.Name == named)) throw ApiException.BadField("tool_choice", $"tool_choice names \"{named}\", which is not in tools");
                choice = named;
            }
            else throw ApiException.BadField("tool_choice", "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        }
        if (list.Count == 0 || choice == "none") return (null, "auto");
        return (list, choice);
    }

    /// <summary>An assistant message's <c>tool_calls</c> (each {id, type, function: {name, arguments}}), or null.</summary>
    private static List<ChatToolCall>? ParseToolCalls(JsonElement message, string where)
    {
        if (Field(message, "tool_calls") is not { } calls) return null;
        string param = where + ".tool_calls";
        if (calls.ValueKind != JsonValueKind.Array) throw ApiException.BadField(param, $"{param} must be an array");
        var list = new List<ChatToolCall>();
        int j = 0;
        foreach (var call in calls.EnumerateArray())
        {
            string p = $"{param}[{j++}]";
            if (call.ValueKind != JsonValueKind.Object || Field(call, "function") is not { ValueKind: JsonValueKind.Object } f)
                throw ApiException.BadField(param, $"{p} must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}");
            string name = String(f, "name", param) ?? throw ApiException.BadField(param, $"{p}.function.name is required");
            string arguments = Field(f, "arguments") is { } a ? a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText() : "{}";
            list.Add(new ChatToolCall(String(call, "id", param) ?? $"call_{j}", name, arguments));
        }
        return list;
    }

    /// <summary>A message's content: a string, or an array of text parts (joined with newlines); null only for an assistant turn.</summary>
    private static string ParseContent(JsonElement message, string where, string role)
    {
        string param = where + ".content";
        var content = Field(message, "content");
        if (content is null)
        {
            if (role == "assistant") return "";
            throw ApiException.BadField(param, $"{param} is required");
        }
        var c = content.Value;
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiException.BadField(param, $"{param} must be a string or an array of text parts, got {Kind(c)}");
        var parts = new List<string>();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string p = $"{param}[{j}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiException.BadField(p, $"{p} must be an object, got {Kind(part)}");
            string? type = String(part, "type", p + ".type");
            if (type != "text") throw ApiException.BadField(p + ".type", $"{p}.type \"{type}\" is not supported: only text parts are");
            parts.Add(String(part, "text", p + ".text") ?? throw ApiException.BadField(p + ".text", $"{p}.text is required"));
            j++;
        }
        return string.Join("\n", parts);
    }

    // ---- typed field access: absent or null → null; a wrong type → 400 naming the field ----

    private static JsonElement? Field(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static string? String(JsonElement obj, string name, string? param = null)
    {
        if (Field(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.String) throw ApiException.BadField(param ?? name, $"{param ?? name} must be a string, got {Kind(v)}");
        return v.GetString();
    }

    private static bool? Bool(JsonElement obj, string name, string? param = null)
    {
        if (Field(obj, name) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadField(param ?? name, $"{param ?? name} must be a boolean, got {Kind(v)}"),
        };
    }

    private static double? Number(JsonElement obj, string name)
    {
        if (Field(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw ApiException.BadField(name, $"{name} must be a number, got {Kind(v)}");
        return d;
    }

    private static long? Integer(JsonElement obj, string name)
    {
        if (Field(obj, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiException.BadField(name, $"{name} must be an integer, got {Kind(v)}");
        if (v.TryGetInt64(out long l)) return l;
        // 5.0 is an integer written as a float (some clients do that); 5.5 is not.
        if (v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < 1e15) return (long)d;
        throw ApiException.BadField(name, $"{name} must be an integer, got {v.GetRawText()}");
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private static string Format(double d) => d.ToString("R", CultureInfo.InvariantCulture);
}
