using EdgeLlm.Chat;
using Xunit;

namespace EdgeLlm.Tests.Chat;

public class ReasoningSplitterTests
{
    [Theory]
    [InlineData("<think>\nLet me see.\n</think>\n\nHello!", false, "\nLet me see.\n", "Hello!")]
    [InlineData("  <think>a</think>b", false, "a", "b")]
    [InlineData("Let me see.\n</think>\n\nHello!", true, "Let me see.\n", "Hello!")] // the prompt opened the block
    [InlineData("\n</think>\n\nHi", true, "\n", "Hi")]
    [InlineData("Hello <think>not reasoning</think>", false, "", "Hello <think>not reasoning</think>")]
    [InlineData("<think>never closed", false, "never closed", "")]
    [InlineData("<think>cut in the tag </thi", false, "cut in the tag </thi", "")]
    [InlineData("<th", false, "", "<th")]
    [InlineData("", false, "", "")]
    [InlineData("<think></think>", false, "", "")]
    [InlineData("<think>a</think>b</think>c", false, "a", "b</think>c")]
    [InlineData("Plain answer.", false, "", "Plain answer.")]
    public void Splits_AndStreamingInAnyPieces_GivesTheSame(string answer, bool open, string reasoning, string content)
    {
        Assert.Equal((reasoning, content), ReasoningSplitter.Split(answer, open));
        // One character at a time, and in pieces of 3: the parts concatenate to the same texts.
        foreach (int size in new[] { 1, 3 })
            Assert.Equal((reasoning, content), InPieces(new ReasoningSplitter(open), answer, size));
    }

    /// <summary>Mistral's [THINK] … [/THINK] (Magistral, Ministral 3 Reasoning): the same rules with the other tags, in any pieces.</summary>
    [Theory]
    [InlineData("[THINK]Let me see.[/THINK]\n\nHello!", false, "Let me see.", "Hello!")]
    [InlineData("Let me see.[/THINK]Hi", true, "Let me see.", "Hi")]
    [InlineData("<think>not these</think>x", false, "", "<think>not these</think>x")]
    [InlineData("[THINK]cut [/THI", false, "cut [/THI", "")]
    [InlineData("Hello [THINK]no[/THINK]", false, "", "Hello [THINK]no[/THINK]")]
    public void MistralTags_Split_InAnyPieces(string answer, bool open, string reasoning, string content)
    {
        foreach (int size in new[] { 1, 2, 5, answer.Length + 1 })
            Assert.Equal((reasoning, content), InPieces(new ReasoningSplitter(open, mistralTags: true), answer, size));
    }

    /// <summary>Streams <paramref name="answer"/> through <paramref name="splitter"/> in pieces of <paramref name="size"/> characters and joins the parts.</summary>
    private static (string Reasoning, string Content) InPieces(ReasoningSplitter splitter, string answer, int size)
    {
        string r = "", c = "";
        for (int i = 0; i < answer.Length; i += size)
        {
            var (pr, pc) = splitter.Push(answer.Substring(i, Math.Min(size, answer.Length - i)));
            r += pr;
            c += pc;
        }
        var (fr, fc) = splitter.Flush();
        return (r + fr, c + fc);
    }

    [Fact]
    public void Detection_ByTemplateAndPrompt()
    {
        var mistral = ChatTemplate.Parse("{{ '[THINK]' + m.thinking + '[/THINK]' if m }}");
        Assert.True(ReasoningSplitter.TemplateReasons(mistral));
        Assert.True(ReasoningSplitter.WritesMistralTags(mistral));
        Assert.False(ReasoningSplitter.WritesMistralTags(ChatTemplate.Parse("{{ '<think>\n\n</think>' if x }}")));
        Assert.True(ReasoningSplitter.PromptOpensReasoning("[INST]hi[/INST][THINK]", mistralTags: true));
        Assert.False(ReasoningSplitter.PromptOpensReasoning("[INST]hi[/INST][THINK]"));
        Assert.True(ReasoningSplitter.TemplateReasons(ChatTemplate.Parse("{{ '<think>\\n\\n</think>' if x }}")));
        Assert.False(ReasoningSplitter.TemplateReasons(ChatTemplate.Fallback));
        Assert.True(ReasoningSplitter.PromptOpensReasoning("<|im_start|>assistant\n<think>\n"));
        Assert.False(ReasoningSplitter.PromptOpensReasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        Assert.False(ReasoningSplitter.PromptOpensReasoning("<|im_start|>assistant\n"));
    }
}
