using EdgeLlm.Gguf;

namespace EdgeLlm.Synth;

/// <summary>
/// A valid, loadable vocabulary of an exact size, laid out the way llama.cpp's converter writes the
/// real one (special tokens where the real model has them, byte tokens, token types), filled with
/// made-up pieces. It is not the real vocabulary: its purpose is that embedding and output matrices
/// have the real number of rows and that llama.cpp and EdgeLlm accept the file.
/// </summary>
internal sealed class SynthVocab
{
    // llama.h enum llama_token_type.
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    private const int Llama3SpecialCount = 256;
    private const int Qwen2RegularCount = 151643;

    private static readonly string[] s_qwen2Specials =
    [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
        "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
        "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
        "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    ];

    private static readonly string[] s_smolLmSpecials =
    [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
        "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
        "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>",
    ];

    private static readonly string[] s_llama3Named =
    [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    ];

    public required string Model { get; init; }
    public required string Pre { get; init; }
    public required string[] Tokens { get; init; }
    public required int[] TokenTypes { get; init; }
    public float[]? Scores { get; init; }
    public string[]? Merges { get; init; }
    public uint Bos { get; init; }
    public uint Eos { get; init; }
    public uint? UnknownId { get; init; }
    public uint? PaddingId { get; init; }
    public bool AddBos { get; init; }
    public bool AddEos { get; init; }

    /// <summary>The fewest tokens a vocabulary of <paramref name="kind"/> can have.</summary>
    public static int MinimumSize(SynthVocabKind kind) => kind switch
    {
        SynthVocabKind.SentencePiece => 3 + 256 + 1,
        SynthVocabKind.Llama3Bpe => 256 + Llama3SpecialCount + 1,
        SynthVocabKind.Qwen2Bpe => 256 + s_qwen2Specials.Length + 1,
        SynthVocabKind.SmolLmBpe => s_smolLmSpecials.Length + 256 + 1,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown vocabulary kind"),
    };

    /// <summary>Builds the vocabulary of <paramref name="shape"/> (exactly <see cref="SynthShape.VocabSize"/> tokens).</summary>
    public static SynthVocab Create(SynthShape shape)
    {
        int size = shape.VocabSize;
        switch (shape.Vocab)
        {
            case SynthVocabKind.SentencePiece:
                return AddedTokens(shape.Architecture).Length > 0 ? WithAdded(size, shape.Architecture) : SentencePiece(size);
            case SynthVocabKind.Llama3Bpe:
            {
                var (tokens, types, merges) = ByteLevelBpe(size - Llama3SpecialCount, size);
                int regular = size - Llama3SpecialCount;
                for (int i = 0; i < Llama3SpecialCount; i++)
                {
                    // Llama 3.1/3.2 order: 11 named control tokens, the rest reserved (numbering continues from 3).
                    tokens[regular + i] = i < s_llama3Named.Length ? s_llama3Named[i] : $"<|reserved_special_token_{i - s_llama3Named.Length + 3}|>";
                    types[regular + i] = Control;
                }
                return new SynthVocab
                {
                    Model = "gpt2", Pre = "llama-bpe", Tokens = tokens, TokenTypes = types, Merges = merges,
                    Bos = (uint)regular, Eos = (uint)regular + 1, AddBos = true,
                };
            }
            case SynthVocabKind.Qwen2Bpe:
            {
                int specials = s_qwen2Specials.Length;
                int regular = Math.Min(size - specials, Qwen2RegularCount);
                var (tokens, types, merges) = ByteLevelBpe(regular, size);
                for (int i = 0; i < specials; i++)
                {
                    tokens[regular + i] = s_qwen2Specials[i];
                    // The converter marks added tokens that are not "special" in tokenizer.json as user-defined.
                    types[regular + i] = s_qwen2Specials[i].Contains("tool_call", StringComparison.Ordinal) ? UserDefined : Control;
                }
                // config.json's vocab_size exceeds the tokenizer: the converter pads with unused [PADn] tokens.
                for (int id = regular + specials; id < size; id++)
                {
                    tokens[id] = $"[PAD{id}]";
                    types[id] = Unused;
                }
                return new SynthVocab
                {
                    Model = "gpt2", Pre = "qwen2", Tokens = tokens, TokenTypes = types, Merges = merges,
                    Bos = (uint)regular, Eos = (uint)regular, PaddingId = (uint)regular, AddBos = false,
                };
            }
            case SynthVocabKind.SmolLmBpe:
            {
                int specials = s_smolLmSpecials.Length;
                var (regularTokens, regularTypes, merges) = ByteLevelBpe(size - specials, size - specials);
                var tokens = new string[size];
                var types = new int[size];
                for (int i = 0; i < specials; i++) { tokens[i] = s_smolLmSpecials[i]; types[i] = Control; }
                Array.Copy(regularTokens, 0, tokens, specials, regularTokens.Length);
                Array.Copy(regularTypes, 0, types, specials, regularTypes.Length);
                return new SynthVocab
                {
                    Model = "gpt2", Pre = "smollm", Tokens = tokens, TokenTypes = types, Merges = merges,
                    Bos = 0, Eos = 0, UnknownId = 0, AddBos = false,
                };
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(shape), shape.Vocab, "unknown vocabulary kind");
        }
    }

    /// <summary>Writes the tokenizer.ggml.* keys in the converter's order.</summary>
    public void WriteTo(GgufWriter w)
    {
        w.Set("tokenizer.ggml.model", Model);
        w.Set("tokenizer.ggml.pre", Pre);
        w.Set("tokenizer.ggml.tokens", GgufValue.From(Tokens));
        if (Scores is not null) w.Set("tokenizer.ggml.scores", GgufValue.From(Scores));
        w.Set("tokenizer.ggml.token_type", GgufValue.From(TokenTypes));
        if (Merges is not null) w.Set("tokenizer.ggml.merges", GgufValue.From(Merges));
        w.Set("tokenizer.ggml.bos_token_id", Bos);
        w.Set("tokenizer.ggml.eos_token_id", Eos);
        if (UnknownId is uint unk) w.Set("tokenizer.ggml.unknown_token_id", unk);
        if (PaddingId is uint pad) w.Set("tokenizer.ggml.padding_token_id", pad);
        w.Set("tokenizer.ggml.add_bos_token", AddBos);
        w.Set("tokenizer.ggml.add_eos_token", AddEos);
    }

    /// <summary>
    /// Llama 2's layout: &lt;unk&gt; (0), &lt;s&gt; (1), &lt;/s&gt; (2), byte tokens &lt;0x00&gt;..&lt;0xFF&gt;
    /// (3..258, score 0), then pieces with decreasing scores -(id - 259), as in the real file.
    /// The filler pieces are words over a..z, alternately with and without the "▁" word marker.
    /// </summary>
    private static SynthVocab SentencePiece(int size)
    {
        var tokens = new string[size];
        var types = new int[size];
        var scores = new float[size];
        tokens[0] = "<unk>"; types[0] = Unknown;
        tokens[1] = "<s>"; types[1] = Control;
        tokens[2] = "</s>"; types[2] = Control;
        for (int b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = Byte;
        }
        for (int id = 259; id < size; id++)
        {
            int k = id - 259;
            tokens[id] = (k % 2 == 0 ? "\u2581" : "") + Word(k / 2);
            types[id] = Normal;
            scores[id] = -k;
        }
        return new SynthVocab
        {
            Model = "llama", Pre = "default", Tokens = tokens, TokenTypes = types, Scores = scores,
            Bos = 1, Eos = 2, UnknownId = 0, AddBos = true,
        };
    }

    /// <summary>
    /// A SentencePiece vocabulary with the chat tokens of <paramref name="arch"/> after it (control tokens),
    /// then [PADn] up to the embedding rows. Phi-3: at most 32,000 SentencePiece tokens, its 11 added
    /// tokens (<see cref="s_phi3Added"/>; &lt;|endoftext|&gt; is end of sequence and padding, as the converter
    /// writes them; llama.cpp looks &lt;|endoftext|&gt; up by text for models named phi3, so a phi3 file
    /// needs it), padding to 32,064. Gemma 3: &lt;start_of_turn&gt; and &lt;end_of_turn&gt; (which ends a turn).
    /// </summary>
    private static SynthVocab WithAdded(int size, string arch)
    {
        var added = AddedTokens(arch);
        bool phi3 = arch == "phi3";
        int regular = phi3 ? Math.Min(size - added.Length, 32000) : size - added.Length;
        var sp = SentencePiece(regular);
        var tokens = new string[size];
        var types = new int[size];
        var scores = new float[size];
        Array.Copy(sp.Tokens, tokens, regular);
        Array.Copy(sp.TokenTypes, types, regular);
        Array.Copy(sp.Scores!, scores, regular);
        for (int i = 0; i < added.Length; i++)
        {
            tokens[regular + i] = added[i];
            types[regular + i] = Control;
        }
        for (int id = regular + added.Length; id < size; id++)
        {
            tokens[id] = $"[PAD{id}]";
            types[id] = Unused;
        }
        return new SynthVocab
        {
            Model = "llama", Pre = "default", Tokens = tokens, TokenTypes = types, Scores = scores,
            Bos = 1, Eos = phi3 ? (uint)regular : 2, UnknownId = 0, PaddingId = phi3 ? (uint)regular : null, AddBos = !phi3,
            AddEos = arch == "gemma-embedding", // (EmbeddingGemma ends every text with <eos>, as sentence-transformers encodes it)
        };
    }

    private static readonly string[] s_gemma3Added = ["<start_of_turn>", "<end_of_turn>"]; // Gemma 2 and 3

    /// <summary>The chat tokens a synthetic vocabulary of <paramref name="arch"/> adds after its SentencePiece tokens.</summary>
    internal static string[] AddedTokens(string arch) => arch switch
    {
        "phi3" => s_phi3Added,
        "gemma" or "gemma2" or "gemma3" or "gemma-embedding" => s_gemma3Added,
        _ => [],
    };

    private static readonly string[] s_phi3Added =
    [
        "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>", "<|placeholder4|>",
        "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
    ];


    /// <summary>Bijective base-26 word: 0 = "a", 25 = "z", 26 = "aa", ...</summary>
    private static string Word(int k)
    {
        Span<char> buf = stackalloc char[8];
        int pos = buf.Length;
        k++;
        while (k > 0)
        {
            k--;
            buf[--pos] = (char)('a' + k % 26);
            k /= 26;
        }
        return new string(buf[pos..]);
    }

    /// <summary>
    /// Byte-level BPE (GPT-2 style): the 256 byte characters of GPT-2's bytes_to_unicode in its
    /// order, then <paramref name="regular"/> - 256 merged tokens, each made by one merge rule
    /// "left right" of two earlier tokens: first every pair of byte characters, then pairs
    /// followed by one more byte character. Arrays are sized <paramref name="total"/>; slots past
    /// <paramref name="regular"/> are left for the caller's special tokens.
    /// </summary>
    private static (string[] Tokens, int[] Types, string[] Merges) ByteLevelBpe(int regular, int total)
    {
        if (regular < 257) throw new ArgumentException($"a byte-level BPE vocabulary needs more than 256 regular tokens, got {regular}");
        var tokens = new string[total];
        var types = new int[total];
        var chars = ByteChars();
        for (int i = 0; i < 256; i++) { tokens[i] = chars[i]; types[i] = Normal; }
        var merges = new string[regular - 256];
        int id = 256;
        // Two-character tokens.
        for (int a = 0; a < 256 && id < regular; a++)
        {
            for (int b = 0; b < 256 && id < regular; b++)
            {
                tokens[id] = chars[a] + chars[b];
                types[id] = Normal;
                merges[id - 256] = chars[a] + " " + chars[b];
                id++;
            }
        }
        // Three-character tokens: a two-character token followed by a byte character.
        for (int pair = 256; id < regular; pair++)
        {
            for (int b = 0; b < 256 && id < regular; b++)
            {
                tokens[id] = tokens[pair] + chars[b];
                types[id] = Normal;
                merges[id - 256] = tokens[pair] + " " + chars[b];
                id++;
            }
        }
        return (tokens, types, merges);
    }

    /// <summary>
    /// GPT-2's bytes_to_unicode: printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
    /// themselves, the other 68 bytes map to U+0100 onwards (so space is 'Ġ', newline 'Ċ').
    /// Returned in the order GPT-2's vocabulary lists them.
    /// </summary>
    internal static string[] ByteChars()
    {
        var order = new List<(int Byte, int Char)>(256);
        bool Printable(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        for (int b = 0; b < 256; b++) if (Printable(b)) order.Add((b, b));
        int n = 0;
        for (int b = 0; b < 256; b++) if (!Printable(b)) order.Add((b, 256 + n++));
        return order.Select(o => ((char)o.Char).ToString()).ToArray();
    }
}
