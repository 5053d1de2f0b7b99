using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeLlm.Cli.Server;

// The response bodies of the OpenAI-compatible API (https://platform.openai.com/docs/api-reference),
// serialized with System.Text.Json source generation (ServerJsonContext) so that NativeAOT needs no
// reflection. Property names become snake_case ("finish_reason", "prompt_tokens").

/// <summary>The body of every error response: <c>{"error": {...}}</c>.</summary>
public sealed class ErrorResponse
{
    public required ErrorBody Error { get; init; }
}

/// <summary>OpenAI's error object; <c>param</c> and <c>code</c> are written as null when unknown.</summary>
public sealed class ErrorBody
{
    public required string Message { get; init; }
    public required string Type { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Param { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Code { get; init; }
}

/// <summary>Token counts of one request.</summary>
public sealed class Usage
{
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public int TotalTokens { get; init; }
    /// <summary>OpenAI's <c>prompt_tokens_details.cached_tokens</c>: prompt tokens whose KV cache the slot kept from its previous request.</summary>
    public PromptTokensDetails? PromptTokensDetails { get; init; }
}

/// <summary>
/// llama-server's <c>timings</c> object (beside <c>usage</c>, in a whole response and in a stream's last chunk):
/// prompt and generation times, and with speculative decoding how many proposals there were and how many were kept.
/// </summary>
public sealed class Timings
{
    public int PromptN { get; init; }
    public double PromptMs { get; init; }
    public double PromptPerTokenMs { get; init; }
    public double PromptPerSecond { get; init; }
    public int PredictedN { get; init; }
    public double PredictedMs { get; init; }
    public double PredictedPerTokenMs { get; init; }
    public double PredictedPerSecond { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DraftN { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DraftNAccepted { get; init; }
}

/// <summary>Details of the prompt's tokens.</summary>
public sealed class PromptTokensDetails
{
    public int CachedTokens { get; init; }
}

/// <summary><c>POST /v1/chat/completions</c> without streaming.</summary>
public sealed class ChatCompletion
{
    public required string Id { get; init; }
    public string Object { get; init; } = "chat.completion";
    public long Created { get; init; }
    public required string Model { get; init; }
    public required IReadOnlyList<ChatChoice> Choices { get; init; }
    public required Usage Usage { get; init; }
    public string SystemFingerprint { get; init; } = ServerInfo.Fingerprint;
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Timings? Timings { get; init; }
}

/// <summary>One choice of a chat completion (the server makes exactly one).</summary>
public sealed class ChatChoice
{
    public int Index { get; init; }
    public required AssistantMessage Message { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; init; }
    public required string FinishReason { get; init; }
}

/// <summary>The generated message.</summary>
public sealed class AssistantMessage
{
    public string Role { get; init; } = "assistant";
    /// <summary>The reply's text; null when it is only tool calls (as OpenAI writes it).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public required string? Content { get; init; }
    /// <summary>The functions the model called (<c>tools</c> in the request), or absent.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<ToolCallOut>? ToolCalls { get; init; }
    /// <summary>llama-server's field: the model's reasoning (its &lt;think&gt; block), when the server splits it off.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ReasoningContent { get; init; }
}

/// <summary>One function call of a reply: <c>{"id", "type": "function", "function": {"name", "arguments"}}</c> (arguments: JSON text); in a stream also its <c>index</c>.</summary>
public sealed class ToolCallOut
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Index { get; init; }
    public required string Id { get; init; }
    public string Type { get; init; } = "function";
    public required FunctionCallOut Function { get; init; }
}

/// <summary>The function called and its arguments (JSON text).</summary>
public sealed class FunctionCallOut
{
    public required string Name { get; init; }
    public required string Arguments { get; init; }
}

/// <summary>One server-sent event of a streamed chat completion.</summary>
public sealed class ChatCompletionChunk
{
    public required string Id { get; init; }
    public string Object { get; init; } = "chat.completion.chunk";
    public long Created { get; init; }
    public required string Model { get; init; }
    public string SystemFingerprint { get; init; } = ServerInfo.Fingerprint;
    public required IReadOnlyList<ChunkChoice> Choices { get; init; }
    /// <summary>Only in the last chunk, and only with <c>stream_options.include_usage</c>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
    /// <summary>Only in the chunk with the finish reason.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Timings? Timings { get; init; }
}

/// <summary>A choice of a chunk: a piece of the message (<c>delta</c>), and the finish reason in the last one.</summary>
public sealed class ChunkChoice
{
    public int Index { get; init; }
    public required ChunkDelta Delta { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; init; }
}

/// <summary>What a chunk adds to the message; the last chunk's delta is <c>{}</c>.</summary>
public sealed class ChunkDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Role { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Content { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ReasoningContent { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<ToolCallOut>? ToolCalls { get; init; }
}

/// <summary><c>POST /v1/completions</c>, streamed (one per event, <c>usage</c> only in the last with include_usage) or not.</summary>
public sealed class TextCompletion
{
    public required string Id { get; init; }
    public string Object { get; init; } = "text_completion";
    public long Created { get; init; }
    public required string Model { get; init; }
    public string SystemFingerprint { get; init; } = ServerInfo.Fingerprint;
    public required IReadOnlyList<TextChoice> Choices { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Timings? Timings { get; init; }
}

/// <summary>One choice of a text completion.</summary>
public sealed class TextChoice
{
    public int Index { get; init; }
    public required string Text { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; init; }
}

/// <summary><c>GET /v1/models</c>.</summary>
public sealed class ModelList
{
    public string Object { get; init; } = "list";
    public required IReadOnlyList<ModelCard> Data { get; init; }
}

/// <summary>The one model the server holds.</summary>
public sealed class ModelCard
{
    public required string Id { get; init; }
    public string Object { get; init; } = "model";
    public long Created { get; init; }
    public string OwnedBy { get; init; } = "edgellm";
}

/// <summary><c>GET /health</c>: always 200 while the server runs, with the slots' state.</summary>
public sealed class HealthStatus
{
    public string Status { get; init; } = "ok";
    public int SlotsIdle { get; init; }
    public int SlotsProcessing { get; init; }
    public int Queued { get; init; }
}

/// <summary>Constants shared by the responses.</summary>
public static class ServerInfo
{
    /// <summary>OpenAI's <c>system_fingerprint</c>: names the engine.</summary>
    public const string Fingerprint = "edgellm";
}

/// <summary>Source-generated serializers for every response type (NativeAOT: no reflection).</summary>
// Serialization only (the requests are read with JsonDocument): fast-path writers without the metadata that reading
// needs, which keeps the NativeAOT binary smaller.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, GenerationMode = JsonSourceGenerationMode.Serialization)]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(TextCompletion))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(HealthStatus))]
public sealed partial class ServerJsonContext : JsonSerializerContext;
