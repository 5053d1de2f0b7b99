namespace EdgeLlm.Chat;

/// <summary>One message of a conversation: <paramref name="Role"/> is "system", "user", "assistant" (or "tool").</summary>
public sealed record ChatMessage(string Role, string Content);
