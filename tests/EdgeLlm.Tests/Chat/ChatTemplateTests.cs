using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using EdgeLlm.Gguf;
using Xunit;

namespace EdgeLlm.Tests.Chat;

public class ChatTemplateTests
{
    [Fact]
    public void Fallback_RoleColonLines_ThenAssistantPrompt()
    {
        var msgs = new List<ChatTurn> { new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello"), new("user", "Bye") };
        Assert.Equal("system: Be brief.\nuser: Hi\nassistant: Hello\nuser: Bye\nassistant: ", ChatTemplate.Fallback.Render(msgs, true, "<s>", "</s>"));
        Assert.Equal("user: Hi\n", ChatTemplate.Fallback.Render([new("user", "Hi")], false, null, null));
        Assert.True(ChatTemplate.Fallback.IsFallback);
    }

    [Fact]
    public void FromGguf_ReadsTemplate_OrNullWhenAbsent()
    {
        string with = Path.Combine(Path.GetTempPath(), $"edgellm-chat-{Environment.ProcessId}-with.gguf");
        string without = Path.Combine(Path.GetTempPath(), $"edgellm-chat-{Environment.ProcessId}-without.gguf");
        try
        {
            new GgufWriter().Set("general.architecture", "llama")
                .Set(ChatTemplate.GgufKey, "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
                .Write(with);
            new GgufWriter().Set("general.architecture", "llama").Write(without);
            using (var f = GgufFile.Open(with))
            {
                var t = ChatTemplate.FromGguf(f);
                Assert.NotNull(t);
                Assert.False(t.IsFallback);
                Assert.Equal("<user>Hi<assistant>", t.Render([new("user", "Hi")], true, null, null));
            }
            using (var f = GgufFile.Open(without))
                Assert.Null(ChatTemplate.FromGguf(f));
            // stories260K has no template: callers fall back.
            using (var f = GgufFile.Open(SharedData.Model("stories260K")))
                Assert.Null(ChatTemplate.FromGguf(f));
        }
        finally
        {
            File.Delete(with);
            File.Delete(without);
        }
    }

    [Fact]
    public void StrftimeNow_UsesGivenTime()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%-d %B %Y, %A %H:%M') }}");
        Assert.Equal("05 Mar 2025|5 March 2025, Wednesday 14:07", t.Render([], false, null, null, new DateTime(2025, 3, 5, 14, 7, 0)));
    }

    [Fact]
    public void ExtraVariables_OverrideAndConvert()
    {
        var t = ChatTemplate.Parse("{{ bos_token }}|{{ x.a }}|{{ x.b|tojson }}|{{ n + 1 }}|{{ f }}|{{ none_v is none }}");
        var extra = new Dictionary<string, object?>
        {
            ["bos_token"] = "<B>",
            ["x"] = new Dictionary<string, object?> { ["a"] = "A", ["b"] = new object?[] { 1, 2.5, "s", true, null } },
            ["n"] = 41,
            ["f"] = 0.5f,
            ["none_v"] = null,
        };
        Assert.Equal("<B>|A|[1, 2.5, \"s\", true, null]|42|0.5|True", t.Render([], false, "<s>", null, extra: extra));
    }

    [Fact]
    public void ExtraVariables_OfUnknownType_AreRefused()
    {
        var t = ChatTemplate.Parse("{{ x }}");
        var e = Assert.Throws<ArgumentException>(() => t.Render([], false, null, null, extra: new Dictionary<string, object?> { ["x"] = new Uri("http://a") }));
        Assert.Contains("'x' has type Uri", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Messages_AreDictsWithRoleAndContent()
    {
        var t = ChatTemplate.Parse("{% for m in messages %}{{ m['role'] }}={{ m.content|length }};{{ 'tool_calls' in m }};{{ m.tool_calls is defined }}{% endfor %}");
        Assert.Equal("user=3;False;False", t.Render([new("user", "a😀b")], false, null, null));
    }
}
