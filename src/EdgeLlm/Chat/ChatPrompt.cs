using EdgeLlm.Tokenizers;

namespace EdgeLlm.Chat;

/// <summary>
/// Turns a conversation into prompt tokens the way llama.cpp's chat code does: render the template
/// with the vocabulary's BOS/EOS texts, drop a leading BOS text when the tokenizer adds BOS itself
/// (and a trailing EOS text when it adds EOS), so the model never sees it twice, then tokenize with
/// special tokens parsed (<c>&lt;|im_start|&gt;</c> must become one token, not text).
/// </summary>
public static class ChatPrompt
{
    /// <summary>The template to use for a model: its own (<c>tokenizer.chat_template</c>) or <see cref="ChatTemplate.Fallback"/>.</summary>
    /// <exception cref="Jinja.TemplateException">the file's template does not parse</exception>
    public static ChatTemplate TemplateFor(Gguf.GgufFile file) => ChatTemplate.FromGguf(file) ?? ChatTemplate.Fallback;

    /// <summary>Renders <paramref name="messages"/> to text as described on <see cref="ChatPrompt"/>.</summary>
    /// <param name="variables">extra template variables (see <see cref="TemplateVariables"/>), e.g. Qwen3's <c>enable_thinking</c></param>
    /// <exception cref="Jinja.TemplateException">a template error, or the template's own <c>raise_exception</c></exception>
    public static string Render(ChatTemplate template, Tokenizer tokenizer, IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt, DateTime? now = null,
        IDictionary<string, object?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(tokenizer);
        string? bos = tokenizer.Bos >= 0 ? tokenizer.TokenText(tokenizer.Bos) : null;
        string? eos = tokenizer.Eos >= 0 ? tokenizer.TokenText(tokenizer.Eos) : null;
        string text = template.Render(messages, addGenerationPrompt, bos, eos, now, variables);
        if (tokenizer.AddBos && !string.IsNullOrEmpty(bos) && text.StartsWith(bos, StringComparison.Ordinal))
            text = text[bos.Length..];
        if (tokenizer.AddEos && !string.IsNullOrEmpty(eos) && text.EndsWith(eos, StringComparison.Ordinal))
            text = text[..^eos.Length];
        return text;
    }

    /// <summary>Renders and tokenizes <paramref name="messages"/> (BOS added as the tokenizer's metadata says; special tokens parsed).</summary>
    /// <exception cref="Jinja.TemplateException">a template error, or the template's own <c>raise_exception</c></exception>
    public static int[] Tokenize(ChatTemplate template, Tokenizer tokenizer, IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt, DateTime? now = null,
        IDictionary<string, object?>? variables = null) =>
        tokenizer.Encode(Render(template, tokenizer, messages, addGenerationPrompt, now, variables), addSpecial: true, parseSpecial: true);
}
