namespace EdgeLlm.Chat;

/// <summary>
/// One message of a conversation as a chat template renders it: <paramref name="Role"/> is
/// "system", "user", "assistant" (or "tool"), <paramref name="Content"/> its text.
/// Named ChatTurn, not ChatMessage, so that code importing both <c>EdgeLlm.Chat</c> and
/// <c>Microsoft.Extensions.AI</c> (whose <c>ChatMessage</c> <see cref="EdgeLlmChatClient"/> takes)
/// compiles without aliases.
/// </summary>
public sealed record ChatTurn(string Role, string Content)
{
    /// <summary>An assistant turn's function calls (the template sees <c>message.tool_calls</c>, each {id, type, function: {name, arguments}}).</summary>
    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }

    /// <summary>A tool turn's answer to this call id (<c>message.tool_call_id</c>).</summary>
    public string? ToolCallId { get; init; }

    /// <summary>
    /// An assistant turn's reasoning, apart from its <see cref="Content"/>: the template sees it as
    /// <c>message.reasoning_content</c> (Qwen3, DeepSeek) and as <c>message.thinking</c> (gpt-oss), as
    /// llama.cpp passes it. Most templates drop it from earlier turns; null: none.
    /// </summary>
    public string? Reasoning { get; init; }
}

/// <summary>A function call the assistant made: its id, the function's name and its arguments as JSON text (an object).</summary>
public sealed record ChatToolCall(string Id, string Name, string Arguments);
