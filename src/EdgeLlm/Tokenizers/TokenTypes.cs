namespace EdgeLlm.Tokenizers;

/// <summary>
/// Token types as stored in GGUF's tokenizer.ggml.token_type (llama.h enum llama_token_type), as
/// llama.cpp sees them after loading (it promotes some tokens to <see cref="Control"/> by their text).
/// </summary>
public enum TokenType
{
    /// <summary>No type given.</summary>
    Undefined = 0,
    /// <summary>An ordinary piece of text.</summary>
    Normal = 1,
    /// <summary>The unknown token (&lt;unk&gt;).</summary>
    Unknown = 2,
    /// <summary>A control token (BOS, EOS, chat markers): no text of its own.</summary>
    Control = 3,
    /// <summary>An added token that is always matched literally in text (even without special-token parsing).</summary>
    UserDefined = 4,
    /// <summary>An unused slot.</summary>
    Unused = 5,
    /// <summary>A SentencePiece byte-fallback token &lt;0xNN&gt;.</summary>
    Byte = 6,
}

/// <summary>Per-token attribute bits, as llama.h's llama_token_attr.</summary>
[Flags]
public enum TokenAttributes
{
    /// <summary>No attribute.</summary>
    Undefined = 0,
    /// <summary>The unknown token.</summary>
    Unknown = 1 << 0,
    /// <summary>An unused slot.</summary>
    Unused = 1 << 1,
    /// <summary>An ordinary piece of text.</summary>
    Normal = 1 << 2,
    /// <summary>A control token.</summary>
    Control = 1 << 3,
    /// <summary>An added token matched literally in text.</summary>
    UserDefined = 1 << 4,
    /// <summary>A byte-fallback token.</summary>
    Byte = 1 << 5,
    /// <summary>Normalized (unused by the tokenizers here).</summary>
    Normalized = 1 << 6,
    /// <summary>Whitespace to the left of this token is removed when it is split out of text.</summary>
    LStrip = 1 << 7,
    /// <summary>Whitespace to the right of this token is removed when it is split out of text.</summary>
    RStrip = 1 << 8,
    /// <summary>Single word (unused by the tokenizers here).</summary>
    SingleWord = 1 << 9,
}
