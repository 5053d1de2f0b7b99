using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using EdgeLlm.Gguf;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm template</c>: renders a chat template (a .jinja file, or a model's own) over a JSON
/// conversation and prints the prompt on stdout exactly, with no newline added.
/// </summary>
public static class TemplateCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var template = new Option<string?>("--template") { Description = "Jinja chat template file (instead of -m)" };
        var model = new Option<string?>("--model", "-m") { Description = "GGUF model whose tokenizer.chat_template to render (instead of --template)" };
        var messages = new Option<string?>("--messages") { Description = "JSON file: an array of {\"role\": ..., \"content\": ...}" };
        var noGen = new Option<bool>("--no-generation-prompt") { Description = "Do not end with the assistant's turn header (add_generation_prompt = false)" };
        var bos = new Option<string?>("--bos") { Description = "bos_token text (default: the model's BOS token text with -m, else empty)" };
        var eos = new Option<string?>("--eos") { Description = "eos_token text (default: the model's EOS token text with -m, else empty)" };
        var date = new Option<string?>("--date") { Description = "Fix the date strftime_now() sees (YYYY-MM-DD; default: now)" };
        var kwargs = KwargsOption();
        var cmd = new Command("template", "Render a chat template over a conversation and print the prompt") { template, model, messages, noGen, bos, eos, date, kwargs };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            string? templatePath = pr.GetValue(template), modelPath = pr.GetValue(model);
            if ((templatePath is null) == (modelPath is null)) throw new UsageException("give either --template FILE.jinja or -m MODEL");
            string messagesPath = pr.GetValue(messages) ?? throw new UsageException("give the conversation with --messages FILE.json");
            DateTime? now = null;
            if (pr.GetValue(date) is { } d)
            {
                if (!DateTime.TryParseExact(d, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
                    throw new UsageException($"--date must be YYYY-MM-DD, got '{d}'");
                now = parsed;
            }
            var variables = ParseKwargs(pr.GetValue(kwargs));
            var conversation = ReadMessages(messagesPath);

            string? bosText = pr.GetValue(bos), eosText = pr.GetValue(eos);
            ChatTemplate chat;
            string origin;
            if (templatePath is not null)
            {
                origin = templatePath;
                chat = Parse(ReadUtf8(templatePath), origin);
            }
            else
            {
                origin = modelPath!;
                using var gguf = GgufFile.Open(modelPath!);
                string? source = gguf.GetString(ChatTemplate.GgufKey);
                if (string.IsNullOrEmpty(source))
                {
                    Console.Error.WriteLine($"edgellm: {modelPath} has no chat template ({ChatTemplate.GgufKey}); using the plain fallback format (\"role: content\" lines, then \"assistant: \")");
                    chat = ChatTemplate.Fallback;
                }
                else chat = Parse(source, origin);
                if (bosText is null || eosText is null)
                {
                    var tokenizer = Tokenizer.FromGguf(gguf);
                    bosText ??= tokenizer.Bos >= 0 ? tokenizer.TokenText(tokenizer.Bos) : "";
                    eosText ??= tokenizer.Eos >= 0 ? tokenizer.TokenText(tokenizer.Eos) : "";
                }
            }

            string prompt;
            try
            {
                prompt = chat.Render(conversation, !pr.GetValue(noGen), bosText ?? "", eosText ?? "", now, variables);
            }
            catch (TemplateException e)
            {
                throw new InputException($"{origin}: {e.Message}");
            }
            var stdout = Console.OpenStandardOutput();
            stdout.Write(new UTF8Encoding(false).GetBytes(prompt));
            stdout.Flush();
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>
    /// <c>--chat-template-kwargs JSON</c> (llama.cpp's flag): extra variables for the chat template,
    /// shared by <c>template</c>, <c>chat</c> and <c>serve</c>.
    /// </summary>
    internal static Option<string?> KwargsOption() => new("--chat-template-kwargs")
    {
        Description = "Extra chat template variables as a JSON object, e.g. '{\"enable_thinking\": false}' (Qwen3: answer without thinking)",
    };

    /// <summary>The variables of <c>--chat-template-kwargs</c>, or null when it is not given.</summary>
    /// <exception cref="UsageException">not a JSON object</exception>
    internal static Dictionary<string, object?>? ParseKwargs(string? json)
    {
        if (json is null) return null;
        try { return TemplateVariables.Parse(json, "--chat-template-kwargs"); }
        catch (FormatException e) { throw new UsageException(e.Message); }
    }

    private static ChatTemplate Parse(string source, string origin)
    {
        try { return ChatTemplate.Parse(source); }
        catch (TemplateException e) { throw new InputException($"{origin}: {e.Message}"); }
    }

    private static string ReadUtf8(string path)
    {
        var bytes = File.ReadAllBytes(path);
        try { return new UTF8Encoding(false, true).GetString(bytes).TrimStart('\uFEFF'); }
        catch (DecoderFallbackException e) { throw new InputException($"{path} is not valid UTF-8 (byte offset {e.Index})"); }
    }

    /// <summary>A message's OpenAI-style <c>tool_calls</c> ({id?, function: {name, arguments}}, arguments an object or its JSON text), or null.</summary>
    private static List<ChatToolCall>? ReadToolCalls(JsonElement m, string path, int i)
    {
        if (!m.TryGetProperty("tool_calls", out var calls) || calls.ValueKind == JsonValueKind.Null) return null;
        if (calls.ValueKind != JsonValueKind.Array) throw new InputException($"{path}: message {i}: \"tool_calls\" must be an array");
        var list = new List<ChatToolCall>();
        int j = 0;
        foreach (var call in calls.EnumerateArray())
        {
            if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object
                || !f.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                throw new InputException($"{path}: message {i}: tool_calls[{j}] must be {{\"id\", \"function\": {{\"name\", \"arguments\"}}}}");
            string arguments = f.TryGetProperty("arguments", out var a) ? a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText() : "{}";
            string id = call.TryGetProperty("id", out var idValue) && idValue.ValueKind == JsonValueKind.String ? idValue.GetString()! : $"call_{j}";
            list.Add(new ChatToolCall(id, name.GetString()!, arguments));
            j++;
        }
        return list;
    }

    /// <summary>
    /// Reads a JSON array of {"role", "content"} objects, with OpenAI's optional <c>tool_calls</c> and
    /// <c>tool_call_id</c> and an assistant turn's <c>reasoning_content</c> (or <c>thinking</c>)
    /// (JsonDocument: no reflection, NativeAOT-safe).
    /// </summary>
    internal static List<ChatTurn> ReadMessages(string path)
    {
        string text = ReadUtf8(path);
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new InputException($"{path}: expected a JSON array of messages, got {doc.RootElement.ValueKind}");
            var list = new List<ChatTurn>();
            int i = 0;
            foreach (var m in doc.RootElement.EnumerateArray())
            {
                if (m.ValueKind != JsonValueKind.Object) throw new InputException($"{path}: message {i} is not an object");
                string Field(string name) =>
                    m.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                    : throw new InputException($"{path}: message {i} needs a string \"{name}\"");
                string? Optional(string name) =>
                    !m.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
                    : v.ValueKind == JsonValueKind.String ? v.GetString()!
                    : throw new InputException($"{path}: message {i}: \"{name}\" must be a string");
                string role = Field("role");
                // An assistant turn with only tool calls may leave its content out, as OpenAI's messages do.
                string content = role == "assistant" && !m.TryGetProperty("content", out _) ? "" : Field("content");
                list.Add(new ChatTurn(role, content)
                {
                    ToolCalls = ReadToolCalls(m, path, i),
                    ToolCallId = Optional("tool_call_id"),
                    Reasoning = Optional("reasoning_content") ?? Optional("thinking"),
                });
                i++;
            }
            return list;
        }
        catch (JsonException e)
        {
            throw new InputException($"{path}: invalid JSON: {e.Message}");
        }
    }
}
