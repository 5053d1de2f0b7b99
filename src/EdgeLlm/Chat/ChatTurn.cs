namespace EdgeLlm.Chat;

/// <summary>
/// One message of a conversation as a chat template renders it: <paramref name="Role"/> is
/// "system", "user", "assistant" (or "tool"), <paramref name="Content"/> its text.
/// Named ChatTurn, not ChatMessage, so that code importing both <c>EdgeLlm.Chat</c> and
/// <c>Microsoft.Extensions.AI</c> (whose <c>ChatMessage</c> <see cref="EdgeLlmChatClient"/> takes)
/// compiles without aliases.
/// </summary>
public sealed record ChatTurn(string Role, string Content);
