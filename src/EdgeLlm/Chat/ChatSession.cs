using EdgeLlm.Engine;

namespace EdgeLlm.Chat;

/// <summary>What a <see cref="ChatSession"/> does when the conversation no longer fits in the context.</summary>
public enum ContextOverflowPolicy
{
    /// <summary>Drop the oldest user/assistant turns (the system prompt stays) until the prompt fits, and say so through <see cref="ChatSession.Notice"/>.</summary>
    DropOldestTurns,

    /// <summary>Refuse the turn with a <see cref="PromptTooLongException"/>; the caller decides (e.g. /reset).</summary>
    Stop,
}

/// <summary>
/// A multi-turn conversation with one model: keeps the messages, renders them with the model's chat
/// template (<see cref="ChatPrompt"/>) each turn, and generates the assistant's answer with a
/// <see cref="TextGenerator"/>, whose prefix reuse keeps the KV cache of earlier turns, so only the
/// new turn is evaluated. Generation ends at the template's end-of-turn token (the vocabulary's
/// end-of-generation set: <c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;</c>, <c>&lt;/s&gt;</c>, …).
/// </summary>
public sealed class ChatSession
{
    private readonly List<ChatTurn> _messages = [];
    private readonly DateTime? _now;

    // The rendered text the model has seen so far (last prompt + its answer) and the exact tokens it was
    // given and produced for it. A next turn whose rendering extends that text tokenizes only the new
    // part, as llama-cli's conversation mode does (common_chat_format_single): re-tokenizing the whole
    // conversation could split the earlier answer differently from the tokens that were sampled, and
    // then the KV cache would be reused only up to the first difference.
    private string? _seenText;
    private int[] _seenTokens = [];

    /// <summary>Creates a session.</summary>
    /// <param name="generator">the generator (and through it the context and tokenizer) the session uses; the session should be its only user</param>
    /// <param name="template">the chat template; usually <see cref="ChatPrompt.TemplateFor"/> of the model's file</param>
    /// <param name="systemPrompt">an optional system message put first in every rendering</param>
    /// <param name="now">what the template's <c>strftime_now</c> sees (default: the current local time)</param>
    public ChatSession(TextGenerator generator, ChatTemplate template, string? systemPrompt = null, DateTime? now = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(template);
        Generator = generator;
        Template = template;
        SystemPrompt = systemPrompt;
        _now = now;
    }

    /// <summary>The generator.</summary>
    public TextGenerator Generator { get; }

    /// <summary>The chat template.</summary>
    public ChatTemplate Template { get; }

    /// <summary>The system message (null or empty: none). A change applies from the next turn.</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>
    /// Extra variables the template sees (see <see cref="Chat.TemplateVariables"/>), e.g.
    /// <c>enable_thinking = false</c> for Qwen3; null: none. A change applies from the next turn.
    /// </summary>
    public IDictionary<string, object?>? TemplateVariables { get; set; }

    /// <summary>What happens when the conversation outgrows the context (default: drop the oldest turns).</summary>
    public ContextOverflowPolicy OverflowPolicy { get; set; } = ContextOverflowPolicy.DropOldestTurns;

    /// <summary>
    /// Receives the reasoning of an answer as it streams, apart from the reply, when the template writes
    /// harmony messages (gpt-oss, <see cref="Harmony"/>): the <c>analysis</c> channel comes here, and
    /// <see cref="Stream"/> yields only the reply. Null: the reasoning is dropped. Templates with
    /// &lt;think&gt; blocks keep them in the reply.
    /// </summary>
    public Action<string>? Reasoning { get; set; }

    /// <summary>Receives messages for the user, such as "dropped the 2 oldest turns to fit the context".</summary>
    public Action<string>? Notice { get; set; }

    /// <summary>The user and assistant messages so far (without the system prompt).</summary>
    public IReadOnlyList<ChatTurn> Messages => _messages;

    /// <summary>The result of the last turn's generation.</summary>
    public GenerationResult? LastResult => Generator.LastResult;

    /// <summary>Forgets the conversation (the system prompt stays). The KV cache of the system prompt is reused.</summary>
    public void Reset()
    {
        _messages.Clear();
        _seenText = null;
    }

    /// <summary>The full conversation as the template renders it, with a system message when one is set.</summary>
    public IReadOnlyList<ChatTurn> Conversation()
    {
        var all = new List<ChatTurn>(_messages.Count + 1);
        if (!string.IsNullOrEmpty(SystemPrompt)) all.Add(new ChatTurn("system", SystemPrompt));
        all.AddRange(_messages);
        return all;
    }

    /// <summary>Sends a user message and generates the answer in one call.</summary>
    public GenerationResult Send(string userMessage, GenerationOptions options, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        foreach (var piece in Stream(userMessage, options, cancellationToken))
            onText?.Invoke(piece);
        return Generator.LastResult!;
    }

    /// <summary>
    /// Sends a user message and streams the answer. When the enumeration ends (also when it is cut
    /// short or cancelled), the answer so far is kept as the assistant's message, so the next turn
    /// continues the conversation.
    /// </summary>
    /// <exception cref="PromptTooLongException">the turn does not fit even alone, or <see cref="OverflowPolicy"/> is Stop</exception>
    /// <exception cref="Jinja.TemplateException">the template rejects the conversation</exception>
    public IEnumerable<string> Stream(string userMessage, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        ArgumentNullException.ThrowIfNull(options);
        // A turn that is refused leaves the conversation as it was, including turns FitPrompt dropped.
        var before = _messages.ToArray();
        _messages.Add(new ChatTurn("user", userMessage));
        try
        {
            var (text, prompt) = FitPrompt(options);
            if (Harmony.Writes(Template))
            {
                // The channels are control tokens: rendered, they let the splitter keep the reply apart.
                options = options with { RenderSpecialTokens = true };
                return StreamHarmony(Generator.Stream(prompt, options, cancellationToken), new HarmonySplitter(Harmony.OpenHeader(text)));
            }
            return StreamCore(Generator.Stream(prompt, options, cancellationToken), text, prompt);
        }
        catch
        {
            _messages.Clear();
            _messages.AddRange(before);
            throw;
        }
    }

    private IEnumerable<string> StreamCore(IEnumerable<string> pieces, string promptText, int[] prompt)
    {
        var answer = new System.Text.StringBuilder();
        _seenText = null;
        try
        {
            foreach (var piece in pieces)
            {
                answer.Append(piece);
                yield return piece;
            }
        }
        finally
        {
            string text = answer.ToString();
            _messages.Add(new ChatTurn("assistant", text));
            var result = Generator.LastResult;
            // The sampled tokens stand for the answer only when they decode to exactly its text (not when
            // a stop string cut it).
            if (result is not null && result.Reason != FinishReason.StopString && StreamedText(result.Tokens) == text)
            {
                _seenText = promptText + text;
                _seenTokens = [.. prompt, .. result.Tokens];
            }
        }
    }

    /// <summary>
    /// A harmony answer: the reply pieces are yielded, the reasoning goes to <see cref="Reasoning"/>, and both are
    /// kept in the assistant's turn. The sampled tokens never stand for the turn (the template renders the reply
    /// alone), so the next turn re-tokenizes the conversation, and the KV cache is reused up to this answer.
    /// </summary>
    private IEnumerable<string> StreamHarmony(IEnumerable<string> pieces, HarmonySplitter splitter)
    {
        var reply = new System.Text.StringBuilder();
        var reasoning = new System.Text.StringBuilder();
        _seenText = null;
        try
        {
            foreach (var piece in pieces)
            {
                var (r, c) = splitter.Push(piece);
                if (r.Length > 0)
                {
                    reasoning.Append(r);
                    Reasoning?.Invoke(r);
                }
                if (c.Length > 0)
                {
                    reply.Append(c);
                    yield return c;
                }
            }
            var (r2, c2) = splitter.Flush();
            if (r2.Length > 0)
            {
                reasoning.Append(r2);
                Reasoning?.Invoke(r2);
            }
            if (c2.Length > 0)
            {
                reply.Append(c2);
                yield return c2;
            }
        }
        finally
        {
            _messages.Add(new ChatTurn("assistant", reply.ToString()) { Reasoning = reasoning.Length > 0 ? reasoning.ToString() : null });
        }
    }

    /// <summary>The text a generation streams for <paramref name="tokens"/> (no leading-space strip, unlike Decode).</summary>
    private string StreamedText(IReadOnlyList<int> tokens)
    {
        var decoder = new Tokenizers.StreamingDecoder(Generator.Tokenizer);
        var sb = new System.Text.StringBuilder();
        foreach (int t in tokens) sb.Append(decoder.Append(t));
        return sb.Append(decoder.Flush()).ToString();
    }

    /// <summary>The tokens of <paramref name="text"/>: the seen tokens plus the new part when it extends the seen text.</summary>
    private int[] TokenizeTurn(string text)
    {
        var tokenizer = Generator.Tokenizer;
        if (_seenText is not null && text.Length > _seenText.Length && text.StartsWith(_seenText, StringComparison.Ordinal))
            return [.. _seenTokens, .. tokenizer.Encode(text[_seenText.Length..], addSpecial: false, parseSpecial: true)];
        return tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
    }

    /// <summary>
    /// The prompt for the conversation with a generation prompt, after dropping the oldest turns if it
    /// leaves less than the room an answer needs: <see cref="GenerationOptions.MaxTokens"/> (at most half
    /// the context), or a quarter of the context (at most 512 tokens) when there is no limit.
    /// </summary>
    private (string Text, int[] Tokens) FitPrompt(GenerationOptions options)
    {
        int ctx = Generator.Context.ContextLength;
        int room = options.MaxTokens > 0 ? Math.Min(options.MaxTokens, ctx / 2) : Math.Min(512, ctx / 4);
        room = Math.Max(room, 1);
        int dropped = 0;
        while (true)
        {
            string text = ChatPrompt.Render(Template, Generator.Tokenizer, Conversation(), addGenerationPrompt: true, _now, TemplateVariables);
            int[] prompt = TokenizeTurn(text);
            if (prompt.Length + room <= ctx) return (text, ReportDropped(prompt, dropped));
            // Only the new user message is left (or the policy forbids dropping): a short answer may still fit.
            bool canDrop = OverflowPolicy == ContextOverflowPolicy.DropOldestTurns && _messages.Count > 1;
            if (!canDrop)
            {
                if (prompt.Length < ctx && OverflowPolicy == ContextOverflowPolicy.DropOldestTurns) return (text, ReportDropped(prompt, dropped));
                throw new PromptTooLongException(prompt.Length, ctx);
            }
            // Drop the oldest message and, when it was a user turn, the answer to it, so roles keep alternating.
            _messages.RemoveAt(0);
            if (_messages.Count > 1 && _messages[0].Role == "assistant") _messages.RemoveAt(0);
            dropped++;
        }
    }

    private int[] ReportDropped(int[] prompt, int dropped)
    {
        if (dropped > 0)
            Notice?.Invoke($"the conversation outgrew the context ({Generator.Context.ContextLength} tokens): dropped the {dropped} oldest turn{(dropped == 1 ? "" : "s")}; the prompt is now {prompt.Length} tokens");
        return prompt;
    }
}
