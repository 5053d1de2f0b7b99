using System.Text;

namespace EdgeLlm.Chat;

/// <summary>What to do with a reasoning model's &lt;think&gt; block (llama-server's <c>--reasoning-format</c>).</summary>
public enum ReasoningFormat
{
    /// <summary><see cref="DeepSeek"/> when the chat template writes reasoning blocks (<see cref="ReasoningSplitter.TemplateReasons"/>), else <see cref="None"/>.</summary>
    Auto,

    /// <summary>The block stays in the reply text.</summary>
    None,

    /// <summary>The block is split off as the reasoning (<see cref="ReasoningSplitter"/>).</summary>
    DeepSeek,
}

/// <summary>
/// Splits a model's answer, as it streams, into its reasoning and its reply: <see cref="ReasoningSplitter"/>
/// for &lt;think&gt; blocks, <see cref="HarmonySplitter"/> for gpt-oss's harmony channels.
/// </summary>
public abstract class AnswerSplitter
{
    private protected AnswerSplitter()
    {
    }

    /// <summary>Takes the next piece of the answer; returns the reasoning and reply text it completes (either may be empty).</summary>
    public abstract (string Reasoning, string Content) Push(string piece);

    /// <summary>The end of the answer: what was held back goes to the part it was in.</summary>
    public abstract (string Reasoning, string Content) Flush();

    /// <summary>Splits a whole answer.</summary>
    public (string Reasoning, string Content) SplitAll(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var (r, c) = Push(answer);
        var (r2, c2) = Flush();
        return (r + r2, c + c2);
    }
}

/// <summary>
/// Splits a reasoning model's answer into its reasoning and its reply, as llama-server's
/// <c>--reasoning-format deepseek</c> does for Qwen3 and DeepSeek-R1: the text between an opening
/// <c>&lt;think&gt;</c> (at the very start of the answer, or left open at the end of the prompt) and
/// <c>&lt;/think&gt;</c> is reasoning; the rest, with the whitespace after the closing tag dropped, is
/// the reply. Mistral's reasoning models (Magistral, Ministral 3 Reasoning) write <c>[THINK]</c> …
/// <c>[/THINK]</c> instead (<see cref="MistralOpen"/>; llama.cpp's Magistral chat format): the tags are
/// the template's (<see cref="WritesMistralTags"/>). Text arrives in pieces (streaming); a piece that may be the
/// beginning of a tag is held back until the next piece decides, so the tags never reach either part.
/// </summary>
public sealed class ReasoningSplitter : AnswerSplitter
{
    /// <summary>The opening tag.</summary>
    public const string Open = "<think>";

    /// <summary>The closing tag.</summary>
    public const string Close = "</think>";

    /// <summary>Mistral's opening tag (a control token in Tekken vocabularies: the text must be generated with special tokens rendered).</summary>
    public const string MistralOpen = "[THINK]";

    /// <summary>Mistral's closing tag.</summary>
    public const string MistralClose = "[/THINK]";

    private enum State { Start, Reasoning, AfterClose, Content }

    private State _state;
    private readonly StringBuilder _held = new();
    private readonly string _open, _close;

    /// <param name="startsInReasoning">the prompt ends with an open <c>&lt;think&gt;</c> (the template opened the reasoning block)</param>
    /// <param name="mistralTags">the tags are <c>[THINK]</c> and <c>[/THINK]</c> (<see cref="WritesMistralTags"/>)</param>
    public ReasoningSplitter(bool startsInReasoning, bool mistralTags = false)
    {
        _state = startsInReasoning ? State.Reasoning : State.Start;
        (_open, _close) = mistralTags ? (MistralOpen, MistralClose) : (Open, Close);
    }

    /// <summary>
    /// True when a template writes reasoning blocks (mentions both tags of either kind): what llama-server's
    /// <c>--reasoning-format auto</c> keys on, simplified.
    /// </summary>
    public static bool TemplateReasons(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        return template.Source.Contains(Open, StringComparison.Ordinal) && template.Source.Contains(Close, StringComparison.Ordinal)
            || WritesMistralTags(template);
    }

    /// <summary>True when the template's reasoning blocks are Mistral's <c>[THINK]</c> … <c>[/THINK]</c> (it mentions both and not &lt;think&gt;).</summary>
    public static bool WritesMistralTags(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        return template.Source.Contains(MistralOpen, StringComparison.Ordinal) && template.Source.Contains(MistralClose, StringComparison.Ordinal)
            && !template.Source.Contains(Open, StringComparison.Ordinal);
    }

    /// <summary>True when a rendered prompt leaves a reasoning block open (ends with the opening tag, whitespace aside).</summary>
    public static bool PromptOpensReasoning(string prompt, bool mistralTags = false)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return prompt.TrimEnd().EndsWith(mistralTags ? MistralOpen : Open, StringComparison.Ordinal);
    }

    /// <inheritdoc/>
    public override (string Reasoning, string Content) Push(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        _held.Append(piece);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        while (_held.Length > 0)
        {
            string text = _held.ToString();
            switch (_state)
            {
                case State.Start:
                {
                    string lead = text.TrimStart();
                    if (lead.StartsWith(_open, StringComparison.Ordinal))
                    {
                        _held.Clear().Append(lead[_open.Length..]);
                        _state = State.Reasoning;
                        continue;
                    }
                    if (_open.StartsWith(lead, StringComparison.Ordinal)) return (reasoning.ToString(), content.ToString()); // "", "<th": wait
                    _state = State.Content;
                    continue;
                }
                case State.Reasoning:
                {
                    int close = text.IndexOf(_close, StringComparison.Ordinal);
                    if (close >= 0)
                    {
                        reasoning.Append(text, 0, close);
                        _held.Clear().Append(text, close + _close.Length, text.Length - close - _close.Length);
                        _state = State.AfterClose;
                        continue;
                    }
                    int keep = PartialTagLength(text, _close);
                    reasoning.Append(text, 0, text.Length - keep);
                    _held.Remove(0, text.Length - keep);
                    return (reasoning.ToString(), content.ToString());
                }
                case State.AfterClose:
                {
                    string rest = text.TrimStart();
                    if (rest.Length == 0)
                    {
                        _held.Clear();
                        return (reasoning.ToString(), content.ToString());
                    }
                    _held.Clear().Append(rest);
                    _state = State.Content;
                    continue;
                }
                default:
                    content.Append(text);
                    _held.Clear();
                    break;
            }
        }
        return (reasoning.ToString(), content.ToString());
    }

    /// <inheritdoc/>
    public override (string Reasoning, string Content) Flush()
    {
        string text = _held.ToString();
        _held.Clear();
        return _state == State.Reasoning ? (text, "") : ("", _state == State.AfterClose ? "" : text);
    }

    /// <summary>Splits a whole answer.</summary>
    public static (string Reasoning, string Content) Split(string answer, bool startsInReasoning)
    {
        return new ReasoningSplitter(startsInReasoning).SplitAll(answer);
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that is a proper beginning of <paramref name="tag"/>.</summary>
    private static int PartialTagLength(string text, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, text.Length); n > 0; n--)
        {
            if (string.CompareOrdinal(text, text.Length - n, tag, 0, n) == 0) return n;
        }
        return 0;
    }
}
