using EdgeLlm.Chat;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Chat;

public sealed class ChatSessionTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new() { Sampling = new SamplerOptions { Temperature = 0 }, MaxTokens = 24 };

    // A ChatML-style template, as Qwen2.5 and SmolLM2 ship it.
    private const string ChatMl =
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    [Fact]
    public void TemplateVariables_ReachTheTemplate()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        var template = ChatTemplate.Parse("{% if enable_thinking is defined and enable_thinking is false %}{{ 'once upon a time there was a girl ' }}{% endif %}"
            + "{% for m in messages %}{{ m['content'] }} {% endfor %}");
        var options = Greedy with { MaxTokens = 1 };
        using var a = new InferenceContext(model, contextLength: 128, threads: 1);
        int plain = new ChatSession(new TextGenerator(a, tokenizer), template).Send("Hi", options).PromptTokens;
        using var b = new InferenceContext(model, contextLength: 128, threads: 1);
        var session = new ChatSession(new TextGenerator(b, tokenizer), template)
        {
            TemplateVariables = TemplateVariables.Parse("{\"enable_thinking\": false}", "test"),
        };
        int switched = session.Send("Hi", options).PromptTokens;
        output.WriteLine($"prompt tokens: {plain} plain, {switched} with enable_thinking = false");
        Assert.True(switched > plain + 5);
    }

    [Fact]
    public void SecondTurn_EvaluatesOnlyTheNewTurn()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 512, threads: 1);
        var session = new ChatSession(new TextGenerator(ctx, tokenizer), ChatTemplate.Fallback, systemPrompt: "You tell stories.");

        var r1 = session.Send("Tell me about a cat.", Greedy);
        Assert.Equal(0, r1.ReusedPromptTokens);
        int cachedAfterFirst = session.Generator.CachedTokens.Count;
        var r2 = session.Send("And a dog?", Greedy);
        output.WriteLine($"turn 1: {r1.PromptTokens} prompt tokens; turn 2: {r2.PromptTokens} prompt tokens, {r2.ReusedPromptTokens} reused");
        // Only the new turn is evaluated: the first prompt and every evaluated answer token are reused
        // (the new part is tokenized alone, as llama-cli does, so the answer's tokens stay as sampled).
        Assert.Equal(cachedAfterFirst, r2.ReusedPromptTokens);
        Assert.Equal(4, session.Messages.Count);
        Assert.Equal(["user", "assistant", "user", "assistant"], session.Messages.Select(m => m.Role));
        Assert.Equal(r1.Text, session.Messages[1].Content);

        // The same conversation in a fresh session (same turns, so the same tokens) gives the same answers.
        using var fresh = new InferenceContext(model, contextLength: 512, threads: 1);
        var again = new ChatSession(new TextGenerator(fresh, tokenizer), ChatTemplate.Fallback, systemPrompt: "You tell stories.");
        Assert.Equal(r1.Text, again.Send("Tell me about a cat.", Greedy).Text);
        Assert.Equal(r2.Text, again.Send("And a dog?", Greedy).Text);

        session.Reset();
        Assert.Empty(session.Messages);
        var r3 = session.Send("Tell me about a cat.", Greedy);
        Assert.Equal(r1.Text, r3.Text);
        Assert.True(r3.ReusedPromptTokens > 0);
    }

    [Fact]
    public void FullContext_DropsTheOldestTurns_AndSaysSo()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, contextLength: 96, threads: 1);
        var notices = new List<string>();
        var session = new ChatSession(new TextGenerator(ctx, tokenizer), ChatTemplate.Fallback) { Notice = notices.Add };
        for (int i = 0; i < 6; i++) session.Send($"Turn {i}: tell me a story about a bird.", Greedy with { MaxTokens = 12 });
        output.WriteLine(string.Join("\n", notices));
        Assert.NotEmpty(notices);
        Assert.Contains("dropped the", notices[0]);
        Assert.Equal("user", session.Messages[0].Role);
        Assert.Contains("Turn 5", session.Messages[^2].Content);

        // A turn too long even alone is refused, and the turns dropped while trying stay.
        var kept = session.Messages.ToArray();
        Assert.Throws<PromptTooLongException>(() => session.Send(string.Concat(Enumerable.Repeat("a very long turn ", 60)), Greedy));
        Assert.Equal(kept, session.Messages);

        session.OverflowPolicy = ContextOverflowPolicy.Stop;
        Assert.Throws<PromptTooLongException>(() => session.Send(string.Concat(Enumerable.Repeat("a long turn ", 40)), Greedy));
        Assert.DoesNotContain(session.Messages, m => m.Content.StartsWith("a long turn", StringComparison.Ordinal));
    }

    [Fact]
    public void Render_StripsTheTemplatesBos_WhenTheTokenizerAddsIt()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        var template = ChatTemplate.Parse("{{ bos_token }}" + ChatMl);
        string text = ChatPrompt.Render(template, tokenizer, [new ChatTurn("user", "Hi")], addGenerationPrompt: true);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", text);
        int[] ids = ChatPrompt.Tokenize(template, tokenizer, [new ChatTurn("user", "Hi")], addGenerationPrompt: true);
        Assert.Equal(tokenizer.Bos, ids[0]);
        Assert.Single(ids, tokenizer.Bos);
    }
}
