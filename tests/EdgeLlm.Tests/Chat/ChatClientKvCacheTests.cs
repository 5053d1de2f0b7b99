using EdgeLlm.Chat;
using EdgeLlm.Engine;
using Microsoft.Extensions.AI;
using Xunit;

namespace EdgeLlm.Tests.Chat;

/// <summary><see cref="EdgeLlmChatClientOptions.CacheTypeK"/>/<see cref="EdgeLlmChatClientOptions.CacheTypeV"/>: the .NET chat API with a quantized KV cache.</summary>
public sealed class ChatClientKvCacheTests
{
    [Fact]
    public async Task AQuantizedCache_Answers_AndHeadsItCannotHold_AreRefused()
    {
        // syn-qwen2 (heads of 64) has no chat template: the fallback one renders the turns.
        using (var client = new EdgeLlmChatClient(SharedData.Model("syn-qwen2-q8_0"),
                   new EdgeLlmChatClientOptions { ContextLength = 128, Threads = 2, CacheTypeK = KvCacheType.Q4_0, CacheTypeV = KvCacheType.Q8_0 }))
        {
            var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello there")], new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });
            Assert.True(response.Usage!.OutputTokenCount > 0);
        }
        var e = Assert.Throws<ArgumentException>(() => new EdgeLlmChatClient(SharedData.Model("stories260K"),
            new EdgeLlmChatClientOptions { ContextLength = 64, CacheTypeV = KvCacheType.Q8_0 }));
        Assert.Contains("a q8_0 V cache quantizes each head in blocks of 32 values, but this model's heads have 8", e.Message, StringComparison.Ordinal);
    }
}
