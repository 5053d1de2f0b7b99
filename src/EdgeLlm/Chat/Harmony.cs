using System.Text;
using System.Text.Json;

namespace EdgeLlm.Chat;

/// <summary>
/// OpenAI's harmony response format, which gpt-oss writes: every message is
/// <c>&lt;|start|&gt;{role}[ to={recipient}]&lt;|channel|&gt;{channel}[ {content type}]&lt;|message|&gt;{text}&lt;|end|&gt;</c>,
/// and an answer is usually an <c>analysis</c> message (the reasoning), then a <c>final</c> one (the reply) ending in
/// <c>&lt;|return|&gt;</c>; a function call is a <c>commentary</c> message addressed <c>to=functions.NAME</c>
/// whose text is the JSON arguments, ending in <c>&lt;|call|&gt;</c>. The markers are control tokens, so a chat
/// over a harmony template generates with <see cref="Engine.GenerationOptions.RenderSpecialTokens"/> on and
/// reads the answer with a <see cref="HarmonySplitter"/> (what llama-server's gpt-oss chat format does).
/// </summary>
public static class Harmony
{
    /// <summary>The markers (control tokens of o200k_harmony).</summary>
    public const string Start = "<|start|>", End = "<|end|>", Message = "<|message|>", Channel = "<|channel|>",
        Constrain = "<|constrain|>", Call = "<|call|>", Return = "<|return|>";

    /// <summary>True when a chat template writes harmony messages (its source uses the start, channel and message markers).</summary>
    public static bool Writes(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        string s = template.Source;
        return s.Contains(Start, StringComparison.Ordinal) && s.Contains(Channel, StringComparison.Ordinal) && s.Contains(Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The header a rendered prompt leaves open: the text after its last <c>&lt;|start|&gt;</c> (e.g. <c>assistant</c>,
    /// or <c>assistant&lt;|channel|&gt;final&lt;|message|&gt;</c> for a template that opens the final channel itself);
    /// empty when the prompt ends a message instead.
    /// </summary>
    public static string OpenHeader(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        int start = prompt.LastIndexOf(Start, StringComparison.Ordinal);
        if (start < 0) return "";
        string tail = prompt[(start + Start.Length)..];
        return tail.Contains(End, StringComparison.Ordinal) || tail.Contains(Call, StringComparison.Ordinal) || tail.Contains(Return, StringComparison.Ordinal) ? "" : tail;
    }

    /// <summary>The channel a header names (<c>analysis</c>, <c>commentary</c>, <c>final</c>), or "" when it names none.</summary>
    internal static string ChannelOf(string header) => WordAfter(header, Channel);

    /// <summary>The recipient a header names (<c>to=functions.get_weather</c> gives <c>functions.get_weather</c>), or "" when none.</summary>
    internal static string RecipientOf(string header) => WordAfter(header, "to=");

    /// <summary>The text after <paramref name="key"/> up to whitespace or the next marker.</summary>
    private static string WordAfter(string header, string key)
    {
        int at = header.IndexOf(key, StringComparison.Ordinal);
        if (at < 0) return "";
        int from = at + key.Length;
        while (from < header.Length && header[from] == ' ') from++;
        int end = from;
        while (end < header.Length && !char.IsWhiteSpace(header[end]) && string.CompareOrdinal(header, end, "<|", 0, 2) != 0) end++;
        return header[from..end];
    }

    /// <summary>The canonical text a <see cref="HarmonySplitter"/> writes into the content for a call to <paramref name="recipient"/>, before its arguments.</summary>
    internal static string CallOpening(string recipient) => Start + "assistant to=" + recipient + Channel + "commentary json" + Message;
}

/// <summary>
/// Splits a harmony answer (<see cref="Harmony"/>; generated with control tokens rendered) as it streams: the
/// <c>analysis</c> channel is the reasoning; <c>final</c>, <c>commentary</c> without a recipient (gpt-oss's
/// preambles) and any other channel are the reply; a message addressed to a recipient (a function call) goes
/// into the reply as <c>&lt;|start|&gt;assistant to=RECIPIENT&lt;|channel|&gt;commentary json&lt;|message|&gt;ARGUMENTS&lt;|call|&gt;</c>,
/// which <see cref="ToolCallFormat.Harmony"/> reads. Headers and markers never reach either part. Text that does
/// not follow the format (a model that answers without headers) is the reply, as it is.
/// </summary>
public sealed class HarmonySplitter : AnswerSplitter
{
    // A header longer than this without <|message|> is not one: the held text is released as reply.
    private const int MaxHeader = 256;
    private static readonly string[] MessageEnds = [Harmony.End, Harmony.Call, Harmony.Return, Harmony.Start];

    private enum Kind { Reasoning, Reply, Call }

    private readonly bool _splitReasoning;
    private readonly StringBuilder _held = new();
    private bool _inHeader;
    private int _prefilled;      // characters of _held that came from the prompt (the open header), not from the model
    private Kind _kind;
    private bool _openedInPrompt; // the message in progress was opened by the prompt (or is not harmony): no markers to close it
    private string _header = "";  // the header of the message in progress

    /// <param name="openHeader">the header the prompt leaves open (<see cref="Harmony.OpenHeader"/>)</param>
    /// <param name="splitReasoning">false: the analysis messages stay in the reply as they were written
    /// (<c>&lt;|channel|&gt;analysis&lt;|message|&gt;…&lt;|end|&gt;</c>), as llama-server's <c>--reasoning-format none</c></param>
    public HarmonySplitter(string openHeader, bool splitReasoning = true)
    {
        ArgumentNullException.ThrowIfNull(openHeader);
        _splitReasoning = splitReasoning;
        _inHeader = true;
        _held.Append(openHeader);
        _prefilled = openHeader.Length;
        // A prompt that opens a message (…<|channel|>final<|message|>) starts in it.
        if (openHeader.Contains(Harmony.Message, StringComparison.Ordinal))
        {
            int at = openHeader.IndexOf(Harmony.Message, StringComparison.Ordinal);
            _held.Clear().Append(openHeader, at + Harmony.Message.Length, openHeader.Length - at - Harmony.Message.Length);
            _prefilled = 0;
            _inHeader = false;
            _header = openHeader[..at];
            _kind = KindOf(_header);
            // A call the prompt opened still gets its canonical opening (the reply must carry the recipient).
            _openPending = _kind == Kind.Call;
            _openedInPrompt = !_openPending;
        }
    }

    private bool _openPending;

    /// <inheritdoc/>
    public override (string Reasoning, string Content) Push(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        _held.Append(piece);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        Drain(reasoning, content, final: false);
        return (reasoning.ToString(), content.ToString());
    }

    /// <inheritdoc/>
    public override (string Reasoning, string Content) Flush()
    {
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        Drain(reasoning, content, final: true);
        // The answer ended inside a message (a call ends with <|call|>, an end of generation, so always here).
        if (!_inHeader) Close(content);
        _openedInPrompt = true;
        return (reasoning.ToString(), content.ToString());
    }

    private void Drain(StringBuilder reasoning, StringBuilder content, bool final)
    {
        if (_openPending)
        {
            _openPending = false;
            Open(content);
        }
        while (_held.Length > 0)
        {
            string text = _held.ToString();
            if (_inHeader)
            {
                int message = text.IndexOf(Harmony.Message, StringComparison.Ordinal);
                if (message >= 0)
                {
                    _header = text[..message];
                    _held.Remove(0, message + Harmony.Message.Length);
                    _prefilled = 0;
                    _inHeader = false;
                    _kind = KindOf(_header);
                    Open(content);
                    continue;
                }
                if (final || text.Length - _prefilled > MaxHeader || !CouldBeHeader(text.AsSpan(_prefilled)))
                {
                    // Not harmony: what the model wrote is the reply, and so is everything after it.
                    content.Append(text, _prefilled, text.Length - _prefilled);
                    _held.Clear();
                    _prefilled = 0;
                    _inHeader = false;
                    _kind = Kind.Reply;
                    _openedInPrompt = true; // no closing markers to write for it
                }
                return;
            }
            // In a message: up to the first marker that ends it.
            int end = -1;
            string? marker = null;
            foreach (string m in MessageEnds)
            {
                int at = text.IndexOf(m, StringComparison.Ordinal);
                if (at >= 0 && (end < 0 || at < end)) (end, marker) = (at, m);
            }
            if (end >= 0)
            {
                Emit(text[..end], reasoning, content);
                Close(content);
                // <|start|> opens the next header itself; the other markers are consumed.
                _held.Remove(0, marker == Harmony.Start ? end : end + marker!.Length);
                _inHeader = true;
                _prefilled = 0;
                _openedInPrompt = false;
                continue;
            }
            int keep = final ? 0 : PartialMarker(text);
            Emit(text[..^keep], reasoning, content);
            _held.Remove(0, text.Length - keep);
            return;
        }
    }

    private static Kind KindOf(string header)
    {
        if (Harmony.RecipientOf(header).Length > 0) return Kind.Call;
        return Harmony.ChannelOf(header) == "analysis" ? Kind.Reasoning : Kind.Reply;
    }

    /// <summary>Writes what opens the message just entered (a call's canonical header; the analysis header when reasoning stays inline).</summary>
    private void Open(StringBuilder content)
    {
        _openedInPrompt = false;
        if (_kind == Kind.Call) content.Append(Harmony.CallOpening(Harmony.RecipientOf(_header)));
        else if (_kind == Kind.Reasoning && !_splitReasoning) content.Append(Harmony.Channel).Append("analysis").Append(Harmony.Message);
    }

    private void Close(StringBuilder content)
    {
        if (_openedInPrompt) return;
        if (_kind == Kind.Call) content.Append(Harmony.Call);
        else if (_kind == Kind.Reasoning && !_splitReasoning) content.Append(Harmony.End);
    }

    private void Emit(string text, StringBuilder reasoning, StringBuilder content)
    {
        if (text.Length == 0) return;
        if (_kind == Kind.Reasoning && _splitReasoning) reasoning.Append(text);
        else content.Append(text);
    }

    /// <summary>Whether text the model wrote in header position can still be (the start of) a header.</summary>
    private static bool CouldBeHeader(ReadOnlySpan<char> text)
    {
        if (text.Length == 0) return true;
        // After the prompt's open role: <|channel|>, <|constrain|>, or " to=..."; after a message: <|start|>.
        return text[0] == '<' || text[0] == ' ';
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that is a proper beginning of a marker that ends a message.</summary>
    private static int PartialMarker(string text)
    {
        int best = 0;
        foreach (string m in MessageEnds)
        {
            for (int n = Math.Min(m.Length - 1, text.Length); n > best; n--)
            {
                if (string.CompareOrdinal(text, text.Length - n, m, 0, n) == 0)
                {
                    best = n;
                    break;
                }
            }
        }
        return best;
    }
}

/// <summary>
/// <see cref="ToolCallFormat.Harmony"/>: the calls a <see cref="HarmonySplitter"/> wrote into the reply,
/// <c>&lt;|start|&gt;assistant to=functions.NAME&lt;|channel|&gt;commentary json&lt;|message|&gt;{...}&lt;|call|&gt;</c>.
/// A call of a function that was not offered, or whose arguments are not a JSON object, stays in the content.
/// </summary>
internal sealed class HarmonyToolCalls : ToolCallFormat
{
    public override string Name => "harmony";

    public override bool CanRequireCall => false;

    private protected override string CallRoot => throw new NotSupportedException("a harmony call is made of control tokens, which a grammar cannot force");

    internal override int Releasable(string text) => BeforeMarker(text, Chat.Harmony.Start);

    internal override (string Raw, List<ChatToolCall> Calls) ParseRaw(string reply, IReadOnlyCollection<string> names)
    {
        var calls = new List<ChatToolCall>();
        var content = new StringBuilder();
        int pos = 0;
        while (true)
        {
            int start = reply.IndexOf(Chat.Harmony.Start, pos, StringComparison.Ordinal);
            int message = start < 0 ? -1 : reply.IndexOf(Chat.Harmony.Message, start, StringComparison.Ordinal);
            int end = message < 0 ? -1 : reply.IndexOf(Chat.Harmony.Call, message, StringComparison.Ordinal);
            if (end < 0)
            {
                content.Append(reply, pos, reply.Length - pos);
                break;
            }
            string recipient = Chat.Harmony.RecipientOf(reply[start..message]);
            string name = recipient.StartsWith("functions.", StringComparison.Ordinal) ? recipient["functions.".Length..] : recipient;
            string arguments = reply[(message + Chat.Harmony.Message.Length)..end];
            if (CallOf(name, arguments.Trim().Length == 0 ? "{}" : arguments, names) is { } call)
            {
                content.Append(reply, pos, start - pos);
                calls.Add(call);
            }
            else content.Append(reply, pos, end + Chat.Harmony.Call.Length - pos);
            pos = end + Chat.Harmony.Call.Length;
        }
        return (content.ToString(), calls);
    }
}
