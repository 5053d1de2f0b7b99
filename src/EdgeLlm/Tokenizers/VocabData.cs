using EdgeLlm.Gguf;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// The vocabulary as llama.cpp's llama_vocab::impl::load leaves it: tokens, scores, attributes (including
/// the ones it changes by token text), special ids and flags. Kept apart from the tokenizers so both kinds
/// share one loading path.
/// </summary>
internal sealed class VocabData
{
    public required string Model { get; init; }
    public string? Pre { get; init; }
    public required string[] Tokens { get; init; }
    public required float[] Scores { get; init; }
    public required TokenAttributes[] Attrs { get; init; }
    public required Dictionary<string, int> TokenToId { get; init; }
    public required int[] SpecialTokens { get; init; }
    public required HashSet<int> Eog { get; init; }
    public int Bos { get; init; }
    public int Eos { get; init; }
    public int Eot { get; init; }
    public int Eom { get; init; }
    public int Unk { get; init; }
    public int Pad { get; init; }
    public int Sep { get; init; }
    public bool AddBos { get; init; }
    public bool AddEos { get; init; }
    public bool AddSep { get; init; }
    public bool AddSpacePrefix { get; init; }
    public bool CleanSpaces { get; init; }

    /// <summary>UGM: tokenizer.ggml.remove_extra_whitespaces (runs of spaces become one, none at the ends).</summary>
    public bool RemoveExtraWhitespaces { get; init; }

    /// <summary>UGM: tokenizer.ggml.precompiled_charsmap (SentencePiece's normalization rules), or empty.</summary>
    public byte[] PrecompiledCharsmap { get; init; } = [];

    private const int Null = Tokenizer.NoToken;

    // Texts llama.cpp recognises at load (llama-vocab.cpp, "auto-detect special tokens by text"); the first
    // one present wins (llama.cpp walks a hash map, so its pick among several present is unspecified).
    private static readonly string[] s_eotTexts = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"];
    private static readonly string[] s_eomTexts = ["<|eom_id|>"];
    private static readonly string[] s_fimPreTexts = ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
    private static readonly string[] s_fimSufTexts = ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
    private static readonly string[] s_fimMidTexts = ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
    private static readonly string[] s_fimPadTexts = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
    private static readonly string[] s_fimRepTexts = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
    private static readonly string[] s_fimSepTexts = ["<|file_sep|>"];
    private static readonly string[] s_eogTexts = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~["];

    public static VocabData Load(GgufFile file, string model, PreTokenizer.Family? family)
    {
        string where = file.FilePath;
        bool spm = model == "llama";
        bool wpm = model == "bert";
        bool ugm = model == "t5";

        string[] tokens = file.TryGetValue("tokenizer.ggml.tokens", out var tv)
            ? tv.AsStringArray() ?? throw new InvalidDataException($"{where}: tokenizer.ggml.tokens is not a string array")
            : throw new InvalidDataException($"{where}: no tokenizer.ggml.tokens (cannot find tokenizer vocab)");
        int n = tokens.Length;
        tokens = (string[])tokens.Clone();

        var scores = new float[n];
        if (file.TryGetValue("tokenizer.ggml.scores", out var sv))
        {
            var s = sv.AsFloatArray() ?? throw new InvalidDataException($"{where}: tokenizer.ggml.scores is not a numeric array");
            if (s.Length < n) throw new InvalidDataException($"{where}: tokenizer.ggml.scores has {s.Length} entries for {n} tokens");
            Array.Copy(s, scores, n);
        }

        var attrs = new TokenAttributes[n];
        int[]? types = null;
        if (file.TryGetValue("tokenizer.ggml.token_type", out var ttv))
        {
            types = ttv.AsInt32Array() ?? throw new InvalidDataException($"{where}: tokenizer.ggml.token_type is not an integer array");
            if (types.Length < n) throw new InvalidDataException($"{where}: tokenizer.ggml.token_type has {types.Length} entries for {n} tokens");
        }

        var tokenToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            if (string.IsNullOrEmpty(tokens[i])) tokens[i] = $"[EMPTY_{i}]"; // as llama.cpp
            if (!tokenToId.TryAdd(tokens[i], i))
                throw new InvalidDataException($"{where}: duplicate token in vocabulary: '{tokens[i]}' has ids {tokenToId[tokens[i]]} and {i}");
            attrs[i] = types is null ? TokenAttributes.Normal : types[i] switch
            {
                2 => TokenAttributes.Unknown,
                5 => TokenAttributes.Unused,
                1 => TokenAttributes.Normal,
                3 => TokenAttributes.Control,
                4 => TokenAttributes.UserDefined,
                6 => TokenAttributes.Byte,
                _ => TokenAttributes.Undefined,
            };
        }

        // Defaults per model (llama_vocab::impl::load), then the metadata.
        int bos = spm ? 1 : 11, eos = spm ? 2 : 11, unk = spm ? 0 : Null;
        int eot = Null, eom = Null, sep = Null, pad = Null, mask = Null;
        int fimPre = Null, fimSuf = Null, fimMid = Null, fimPad = Null, fimRep = Null, fimSep = Null;
        if (family?.Name is "glm4" or "chatglm-bpe") bos = Null;
        bool addBos = spm || (family?.AddBos ?? false);
        bool addEos = false, addSep = false;
        if (wpm)
        {
            // llama.cpp's WordPiece defaults: BERT's [CLS] 101 first and [SEP] 102 last, [UNK] 100, [PAD] 0, [MASK] 103
            (bos, eos, unk, sep, pad, mask) = (101, Null, 100, 102, 0, 103);
            addBos = addSep = true;
        }
        if (ugm)
        {
            // llama.cpp's UGM defaults (T5's layout): no BOS, EOS 1 last, [UNK] 2, pad 0
            (bos, eos, unk, sep, pad, mask) = (Null, 1, 2, Null, 0, Null);
            addBos = false;
            addEos = true;
        }
        bool addSpacePrefix = spm;
        bool cleanSpaces = !spm && !ugm && (family?.CleanSpaces ?? true);
        addSpacePrefix = file.GetBool("tokenizer.ggml.add_space_prefix") ?? addSpacePrefix;

        void ReadId(string key, ref int id)
        {
            if (id >= n) id = Null; // default out of range: disabled
            long? v = file.GetInt("tokenizer.ggml." + key);
            if (v is long l && l >= 0 && l < n) id = (int)l;
        }
        ReadId("bos_token_id", ref bos);
        ReadId("eos_token_id", ref eos);
        ReadId("eot_token_id", ref eot);
        ReadId("eom_token_id", ref eom);
        ReadId("unknown_token_id", ref unk);
        ReadId("seperator_token_id", ref sep); // sic: llama.cpp's key name
        ReadId("padding_token_id", ref pad);
        ReadId("mask_token_id", ref mask);
        ReadId("fim_pre_token_id", ref fimPre);
        ReadId("fim_suf_token_id", ref fimSuf);
        ReadId("fim_mid_token_id", ref fimMid);
        ReadId("fim_pad_token_id", ref fimPad);
        ReadId("fim_rep_token_id", ref fimRep);
        ReadId("fim_sep_token_id", ref fimSep);
        ReadId("prefix_token_id", ref fimPre); // deprecated spellings
        ReadId("suffix_token_id", ref fimSuf);
        ReadId("middle_token_id", ref fimMid);

        addBos = file.GetBool("tokenizer.ggml.add_bos_token") ?? addBos;
        addEos = file.GetBool("tokenizer.ggml.add_eos_token") ?? addEos;
        addSep = file.GetBool("tokenizer.ggml.add_sep_token") ?? addSep;
        if (addSep && sep == Null) throw new InvalidDataException($"{where}: tokenizer.ggml.add_sep_token is true, but tokenizer.ggml.seperator_token_id is not set");
        if (addBos && bos == Null) throw new InvalidDataException($"{where}: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
        if (addEos && eos == Null) throw new InvalidDataException($"{where}: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");

        // Tokens found by text are forced to CONTROL (llama.cpp: "control-looking token ... will be overridden").
        void FindByText(ref int id, string[] texts)
        {
            if (id != Null) return;
            foreach (var t in texts)
            {
                if (tokenToId.TryGetValue(t, out int found)) { id = found; attrs[found] |= TokenAttributes.Control; return; }
            }
        }
        FindByText(ref eot, s_eotTexts);
        FindByText(ref eom, s_eomTexts);
        FindByText(ref fimPre, s_fimPreTexts);
        FindByText(ref fimSuf, s_fimSufTexts);
        FindByText(ref fimMid, s_fimMidTexts);
        FindByText(ref fimPad, s_fimPadTexts);
        FindByText(ref fimRep, s_fimRepTexts);
        FindByText(ref fimSep, s_fimSepTexts);

        // Control tokens named "unused" are unused.
        for (int i = 0; i < n; i++)
            if ((attrs[i] & TokenAttributes.Control) != 0 && tokens[i].Contains("unused", StringComparison.Ordinal)) attrs[i] |= TokenAttributes.Unused;

        // End-of-generation set.
        var eog = new HashSet<int>();
        foreach (int id in new[] { fimPad, fimRep, fimSep }) if (id != Null) eog.Add(id);
        foreach (var t in s_eogTexts)
        {
            if (tokenToId.TryGetValue(t, out int id)) { eog.Add(id); attrs[id] |= TokenAttributes.Control; }
        }
        // gpt-oss: these render as text (llama.cpp sets them USER_DEFINED).
        foreach (var t in new[] { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>" })
            if (tokenToId.TryGetValue(t, out int id)) attrs[id] = TokenAttributes.UserDefined;
        foreach (int id in new[] { eos, eot, eom }) if (id != Null) eog.Add(id);
        // o200k_harmony / solar-open: <|end|> is not an end of generation when <|return|>/<|call|> exist.
        {
            bool Has(string t) => tokenToId.TryGetValue(t, out int id) && eog.Contains(id);
            if (tokenToId.TryGetValue("<|end|>", out int endId) && eog.Contains(endId)
                && ((Has("<|return|>") && Has("<|call|>")) || ((Has("<|call|>") || Has("<|calls|>")) && Has("<|flush|>"))))
            {
                eog.Remove(endId);
                attrs[endId] = TokenAttributes.UserDefined;
            }
            if (Has("<|tool_response>") && tokenToId.TryGetValue("</s>", out int sId) && eog.Contains(sId))
            {
                eog.Remove(sId);
                attrs[sId] = TokenAttributes.Normal;
            }
        }

        // Special-token cache: ids matched literally in text, longest text first (stable for equal lengths).
        var special = Enumerable.Range(0, n)
            .Where(i => (attrs[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0)
            .OrderByDescending(i => tokens[i].Length).ThenBy(i => i).ToArray();

        // Per-model strip attributes (llama.cpp sets these by general.name / tokenizer.ggml.pre).
        string name = (file.GetString("general.name") ?? "").ToLowerInvariant();
        string arch = file.GetString("general.architecture") ?? "";
        void SetAttr(string text, TokenAttributes a, bool on)
        {
            if (tokenToId.TryGetValue(text, out int id)) attrs[id] = on ? attrs[id] | a : attrs[id] & ~a;
        }
        if ((family?.Name is "jina-v2-de" or "jina-v2-es" or "jina-v2-code") || arch is "nomic-bert-moe" or "jina-bert-v3")
            SetAttr("<mask>", TokenAttributes.LStrip, true);
        else if (name.Contains("phi-3", StringComparison.Ordinal) || name.Contains("phi3", StringComparison.Ordinal))
        {
            foreach (int id in special) attrs[id] |= TokenAttributes.RStrip;
            SetAttr("</s>", TokenAttributes.RStrip, true);
            foreach (var t in new[] { "<unk>", "<s>", "<|endoftext|>" }) SetAttr(t, TokenAttributes.RStrip, false);
        }
        else if (name.Contains("modern-bert", StringComparison.Ordinal))
            SetAttr("[MASK]", TokenAttributes.LStrip, true);

        return new VocabData
        {
            Model = model, Pre = spm ? null : file.GetString("tokenizer.ggml.pre"),
            Tokens = tokens, Scores = scores, Attrs = attrs, TokenToId = tokenToId, SpecialTokens = special, Eog = eog,
            Bos = bos, Eos = eos, Eot = eot, Eom = eom, Unk = unk, Pad = pad, Sep = sep,
            AddBos = addBos, AddEos = addEos, AddSep = addSep, AddSpacePrefix = addSpacePrefix, CleanSpaces = cleanSpaces,
            RemoveExtraWhitespaces = file.GetBool("tokenizer.ggml.remove_extra_whitespaces") ?? false,
            PrecompiledCharsmap = !ugm ? [] : file.TryGetValue("tokenizer.ggml.precompiled_charsmap", out var cm)
                ? cm.AsBytes() ?? throw new InvalidDataException($"{where}: tokenizer.ggml.precompiled_charsmap is not an array of bytes")
                : [],
        };
    }
}
