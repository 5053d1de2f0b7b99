using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// Turns a stream of token ids into text as it arrives, never emitting half a character: the bytes of each
/// token's piece (<see cref="Tokenizer.TokenToBytes(int)"/>) go through a stateful UTF-8 decoder that holds
/// back an incomplete trailing sequence until the next token completes it. An invalid sequence becomes
/// U+FFFD as soon as no further byte could make it valid; <see cref="Flush"/> turns a still-incomplete tail
/// into U+FFFD at the end of the stream. Not thread-safe: one instance per stream.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _special;
    // .NET's UTF-8 decoder replaces each maximal invalid subpart with U+FFFD (the Unicode/WHATWG practice) and
    // keeps up to three bytes of an unfinished sequence between calls when flush is false.
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    /// <summary>A decoder for <paramref name="tokenizer"/>'s ids.</summary>
    /// <param name="tokenizer">the vocabulary.</param>
    /// <param name="renderSpecial">true: control tokens emit their own text (llama_token_to_piece special=true).</param>
    public StreamingDecoder(Tokenizer tokenizer, bool renderSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _special = renderSpecial;
    }

    /// <summary>Feeds one token; returns the text it completes (possibly empty).</summary>
    public string Append(int tokenId) => DecodeBytes(_tokenizer.TokenToBytes(tokenId, _special), flush: false);

    /// <summary>Feeds raw bytes (e.g. a piece obtained elsewhere); returns the text they complete.</summary>
    public string AppendBytes(ReadOnlySpan<byte> bytes) => DecodeBytes(bytes, flush: false);

    /// <summary>Ends the stream: returns U+FFFD for any incomplete tail and resets the decoder.</summary>
    public string Flush() => DecodeBytes([], flush: true);

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        int need = _decoder.GetCharCount(bytes, flush);
        if (need > _chars.Length) _chars = new char[Math.Max(need, _chars.Length * 2)];
        int n = _decoder.GetChars(bytes, _chars, flush);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }
}
