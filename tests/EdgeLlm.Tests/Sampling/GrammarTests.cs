using System.Text;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tests.Tokenizers;
using EdgeLlm.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Sampling;

/// <summary>
/// <see cref="GbnfGrammar"/> (llama.cpp's GBNF: parsing, errors, what it matches) and
/// <see cref="GrammarConstraint"/> against llama.cpp's own grammar sampler, token by token, on real vocabularies.
/// </summary>
public class GrammarTests(ITestOutputHelper output)
{
    /// <summary>llama.cpp's grammars/arithmetic.gbnf, as a user would write it.</summary>
    internal const string Arithmetic = """
        root  ::= (expr "=" ws term "\n")+
        expr  ::= term ([-+*/] term)*
        term  ::= ident | num | "(" ws expr ")" ws
        ident ::= [a-z] [a-z0-9_]* ws
        num   ::= [0-9]+ ws
        ws    ::= [ \t\n]*
        """;

    /// <summary>JSON, after llama.cpp's grammars/json.gbnf (object at the root; escapes; bounded whitespace).</summary>
    internal const string Json = """
        root   ::= object
        value  ::= object | array | string | number | ("true" | "false" | "null") ws

        object ::=
          "{" ws (
                    string ":" ws value
            ("," ws string ":" ws value)*
          )? "}" ws

        array  ::=
          "[" ws (
                    value
            ("," ws value)*
          )? "]" ws

        string ::=
          "\"" (
            [^"\\\x7F\x00-\x1F] |
            "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
          )* "\"" ws

        number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

        # Optional space: by convention, applied in this grammar after literal chars when allowed
        ws ::= | " " | "\n" [ \t]{0,20}
        """;

    /// <summary>Characters outside ASCII, split across byte tokens: partial UTF-8 at token boundaries.</summary>
    internal const string Unicode = """
        root ::= greeting ("!" | "。")
        greeting ::= "日本" [ぁ-ゖ]{1,3} | "é"{2,4} | [^a-zA-Z\n!。]{2} "ü"
        """;

    /// <summary>Bounded repetition of a group, words and a list.</summary>
    internal const string List = """
        root ::= item{1,3} "done"
        item ::= "- " word (" " word)? "\n"
        word ::= [a-z]+ | "Once" | "upon"
        """;

    /// <summary>A shared model, or one of llama.cpp's vocabulary-only test files (ggml-vocab-*).</summary>
    private static string PathOf(string model) =>
        model.StartsWith("ggml-vocab-", StringComparison.Ordinal) ? Path.Combine(SharedData.Tokenizer, model + ".gguf") : SharedData.Model(model);

    private static Tokenizer Tok(string model) => Tokenizer.FromGguf(GgufFile.Open(PathOf(model)));

    [Fact]
    public void Arithmetic_MatchesWhatItShould()
    {
        var g = GbnfGrammar.Parse(Arithmetic);
        Assert.True(g.IsMatch("1+2=3\n"));
        Assert.True(g.IsMatch("(a1 *b)/7 =\tx\n2=2\n"));
        Assert.False(g.IsPrefix("(a1 * b"));        // no space after an operator
        Assert.False(g.IsMatch("1+2=3"));          // the newline is part of the sentence
        Assert.True(g.IsPrefix("1+2=3"));
        Assert.False(g.IsPrefix("1++"));
        Assert.False(g.IsPrefix("A=1\n"));         // identifiers are lower case
        Assert.False(g.IsMatch(""));               // + needs one equation
        Assert.True(g.IsPrefix(""));
    }

    [Fact]
    public void Json_MatchesObjectsOnly()
    {
        var g = GbnfGrammar.Parse(Json);
        Assert.True(g.IsMatch("{\"a\": [1, -2.5e+3, true, null, \"\\u00e9\\n\"], \"b\": {}}"));
        Assert.True(g.IsMatch("{\n  \"k\": \"日本\"\n}"));
        Assert.False(g.IsPrefix("[1]"));
        Assert.False(g.IsPrefix("{\"a\":01"));
        Assert.False(g.IsPrefix("{\"a\":\"\\x"));
        Assert.False(g.IsPrefix("{\"a\":\"\t"));   // raw control character
        Assert.True(g.IsPrefix("{\"a\": tr"));
    }

    [Fact]
    public void Repetitions_CountAsWritten()
    {
        var g = GbnfGrammar.Parse("root ::= \"a\"{2} \"b\"{1,3} \"c\"{2,} \"d\"? \"e\"* \"f\"+");
        Assert.True(g.IsMatch("aabccf"));
        Assert.True(g.IsMatch("aabbbcccccdeeeff"));
        Assert.False(g.IsMatch("abccf"));     // a{2}
        Assert.False(g.IsMatch("aabbbbccf")); // b{1,3}
        Assert.False(g.IsMatch("aabcf"));     // c{2,}
        Assert.False(g.IsMatch("aabccddf"));  // d?
        Assert.False(g.IsMatch("aabcc"));     // f+
        var words = GbnfGrammar.Parse("root ::= (\"ab\" | [0-9]){0,2} \".\"");
        Assert.True(words.IsMatch("."));
        Assert.True(words.IsMatch("ab7."));
        Assert.False(words.IsMatch("ab7ab."));
    }

    [Fact]
    public void Classes_Escapes_AndAnyChar()
    {
        var g = GbnfGrammar.Parse("root ::= [\\x41-\\x43] [^\\n\\]] \"\\u00e9\\U0001F600\" . [-a] [a\\-]\n");
        Assert.True(g.IsMatch("Bxé😀z-a"));
        Assert.True(g.IsMatch("C]é😀\n--".Replace("]", "y")));
        Assert.False(g.IsMatch("Dxé😀z-a"));   // D is outside \x41-\x43
        Assert.False(g.IsMatch("B\né😀z-a"));  // [^\n\]]
        Assert.False(g.IsMatch("B]é😀z-a"));
        Assert.False(g.IsMatch("Bxé😀zb-"));   // [-a] is '-' or 'a'
        // Alternatives continue on the next line only inside parentheses (as in llama.cpp).
        var comments = GbnfGrammar.Parse("# a comment\nroot ::= x # trailing\n\nx ::= (\"1\"\n  | \"2\") # alternatives on the next line\n");
        Assert.Throws<GbnfParseException>(() => GbnfGrammar.Parse("root ::= \"1\"\n  | \"2\""));
        Assert.True(comments.IsMatch("2"));
        Assert.Equal("root", comments.Root);
        var other = GbnfGrammar.Parse("start ::= \"s\"\nroot ::= \"r\"", root: "start");
        Assert.True(other.IsMatch("s"));
        Assert.False(other.IsMatch("r"));
    }

    [Theory]
    [InlineData("root ::= x", "rule 'x' is used but never defined", 1, 10)]
    [InlineData("rot ::= \"a\"", "no rule 'root'", 0, 0)]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", "'root' is defined twice", 2, 1)]
    [InlineData("root ::= \"a", "unterminated string literal", 1, 10)]
    [InlineData("root ::= [a-", "unterminated character class", 1, 10)]
    [InlineData("root ::= (\"a\"", "expecting ')'", 1, 14)]
    [InlineData("root := \"a\"", "expecting ::=", 1, 6)]
    [InlineData("root ::= \"\\q\"", "unknown escape '\\q'", 1, 11)]
    [InlineData("root ::= \"\\x4\"", "expecting 2 hex digits", 1, 11)]
    [InlineData("root ::= * \"a\"", "expecting an item before", 1, 10)]
    [InlineData("root ::= \"a\"{3,2}", "maximum is below the minimum", 1, 13)]
    [InlineData("root ::= \"a\"{2001}", "at most 2000", 1, 13)]
    [InlineData("root ::= \"a\"{x}", "expecting a repetition count", 1, 14)]
    [InlineData("root ::= expr\nexpr ::= expr \"+\" num | num\nnum ::= [0-9]", "'expr' is left-recursive", 2, 1)]
    [InlineData("root ::= a\na ::= b? a \"x\"\nb ::= \"y\"", "'a' is left-recursive", 2, 1)]
    [InlineData("root ::= <[x]>", "expecting a token id in <[...]>", 1, 12)]
    [InlineData("root ::= <[42]", "expecting ']>' after the token id", 1, 14)]
    [InlineData("root ::= <|end|", "unterminated token reference", 1, 10)]
    [InlineData("root ::= \"a\" <>", "empty token reference", 1, 14)]
    [InlineData("root ::= \"a\" !x", "expecting a newline or the end", 1, 14)]
    [InlineData("root ::= \"a\" $", "expecting a newline or the end", 1, 14)]
    [InlineData("", "no rules", 0, 0)]
    public void BadGrammars_AreRefused_ByPosition(string text, string message, int line, int column)
    {
        var e = Assert.Throws<GbnfParseException>(() => GbnfGrammar.Parse(text));
        output.WriteLine(e.Message);
        Assert.Contains(message, e.Message);
        Assert.Equal(line, e.Line);
        Assert.Equal(column, e.Column);
    }

    /// <summary>
    /// Token references (llama.cpp's <c>&lt;[id]&gt;</c>, <c>&lt;text&gt;</c>, <c>!</c>): one whole token by id, bound to the
    /// vocabulary. On Qwen2's: <c>&lt;|im_start|&gt;</c> (a control token) is allowed only where the grammar names it, the
    /// text between takes any tokens but <c>&lt;|im_end|&gt;</c> (and no other control token), and <c>&lt;|im_end|&gt;</c>
    /// (end of generation) closes it; a text reference that is not one token is refused when the constraint is made.
    /// </summary>
    [Fact]
    public void TokenReferences_MatchWholeTokensById()
    {
        var tok = Tok("ggml-vocab-qwen2");
        int start = tok.TokenId("<|im_start|>")!.Value, end = tok.TokenId("<|im_end|>")!.Value, endOfText = tok.TokenId("<|endoftext|>")!.Value;
        int hello = tok.Encode("hello", addSpecial: false).Single();
        var g = GbnfGrammar.Parse($"root ::= <|im_start|> \"ok\" (!<|im_end|>)* <[{end}]>");
        Assert.False(g.IsPrefix("ok"));                     // characters never match a token reference
        var c = new GrammarConstraint(tok, g);
        var mask = new float[tok.VocabSize];
        Assert.Equal(1, c.Mask(mask));                      // only the named control token
        Assert.False(float.IsNegativeInfinity(mask[start]));
        Assert.False(c.Allows(hello));
        c.Accept(start);
        foreach (int id in tok.Encode("ok", addSpecial: false)) c.Accept(id);
        Assert.True(c.Allows(hello));                       // !<|im_end|>: any other token...
        Assert.False(c.Allows(start));                      // ...but no control token
        Assert.False(c.Allows(endOfText));
        Assert.True(c.Allows(end));                         // <[id]> of <|im_end|>, an end-of-generation token
        c.Accept(hello);
        c.Accept(tok.Encode(" <|im_end|> as text", addSpecial: false)[0]);
        c.Accept(end);
        Assert.True(c.IsComplete);

        var unknown = Assert.Throws<ArgumentException>(() => new GrammarConstraint(tok, GbnfGrammar.Parse("root ::= <|nope|>")));
        Assert.Contains("token reference <|nope|> is not one token of this model's vocabulary", unknown.Message, StringComparison.Ordinal);
        var outside = Assert.Throws<ArgumentException>(() => new GrammarConstraint(tok, GbnfGrammar.Parse("root ::= !<[99999999]>")));
        Assert.Contains("token reference !<[99999999]> is outside this model's vocabulary", outside.Message, StringComparison.Ordinal);

        // Where a token can be read both ways (by id and as characters), both readings stay open.
        var either = new GrammarConstraint(tok, GbnfGrammar.Parse($"root ::= (<[{hello}]> \"!\") | (\"hello\" \"?\")"));
        either.Accept(hello);
        Assert.True(either.Allows(tok.Encode("!", addSpecial: false).Single()));
        Assert.True(either.Allows(tok.Encode("?", addSpecial: false).Single()));
    }

    /// <summary>
    /// Token references against llama.cpp's grammar sampler (LLamaSharp 0.30.0's build reads them), whole-vocabulary
    /// masks step by step, with the documented difference of control tokens (which a negated reference does not let
    /// through here). Not compared: a token whose characters would run on from a string into a token reference
    /// ("ok" then <c>!&lt;|im_end|&gt;</c>: llama.cpp allows "oken"; here a reference takes whole tokens only), and an
    /// end-of-generation token named by a reference (llama.cpp allows those only where the grammar can end, so
    /// <c>&lt;|im_end|&gt;</c> in a grammar never matches there; here it matches where it stands).
    /// </summary>
    [Fact]
    public void TokenReferences_AllowWhatLlamaCppAllows()
    {
        var tok = Tok("ggml-vocab-qwen2");
        string text = "root ::= <|im_start|> (!<|im_start|>)* <|im_start|>";
        using var oracle = new LlamaCppOracle(PathOf("ggml-vocab-qwen2"));
        using var theirs = oracle.Grammar(text);
        if (theirs is null)
        {
            output.WriteLine("this llama.cpp build does not read token references");
            return;
        }
        var ours = new GrammarConstraint(tok, GbnfGrammar.Parse(text));
        int[] walk = [tok.TokenId("<|im_start|>")!.Value, .. tok.Encode("ok then, <|im_end|> as text", addSpecial: false)];
        var generated = new List<int>();
        for (int i = 0; i <= walk.Length; i++)
        {
            var (_, expected, _) = CompareStep(tok, theirs, ours, text, generated, i);
            if (i == walk.Length) break;
            Assert.True(expected[walk[i]]);
            ours.Accept(walk[i]);
            theirs.Accept(walk[i]);
            generated.Add(walk[i]);
        }
        int start = tok.TokenId("<|im_start|>")!.Value;
        Assert.True(ours.Allows(start) && theirs.Allowed()[start]);
        output.WriteLine($"token references: {walk.Length} steps, the same masks as llama.cpp's but for control tokens");
    }

    /// <summary>Ambiguity and depth: the stack sets stay deduplicated, so long inputs are matched in linear time.</summary>
    [Fact]
    public void AmbiguousAndDeepInputs_AreMatched()
    {
        var ambiguous = GbnfGrammar.Parse("root ::= (\"a\" | \"aa\" | \"aaa\")+ \"b\"");
        Assert.True(ambiguous.IsMatch(new string('a', 3000) + "b"));
        Assert.False(ambiguous.IsMatch(new string('a', 3000) + "bb"));
        var json = GbnfGrammar.Parse(Json);
        string deep = "{\"a\": " + string.Concat(Enumerable.Repeat("[", 200)) + "1" + string.Concat(Enumerable.Repeat("]", 200)) + "}";
        Assert.True(json.IsMatch(deep));
        Assert.False(json.IsMatch(deep[..^2] + "}"));
        // A nullable item under * is left recursion for llama.cpp and here.
        Assert.Throws<GbnfParseException>(() => GbnfGrammar.Parse("root ::= (\"\" | \"x\")*"));
    }

    [Fact]
    public void RepetitionBlowUp_IsRefused()
    {
        // llama.cpp's guard: nested bounded repetitions multiply the rules they generate.
        var e = Assert.Throws<GbnfParseException>(() => GbnfGrammar.Parse("root ::= ((\"a\"{0,50}){0,50})"));
        Assert.Contains("repeat", e.Message);
    }

    public static TheoryData<string, string> OracleCases => new()
    {
        // stories260K: 512 tokens, mostly bytes (UTF-8 split across tokens); the others: full vocabularies
        // of real models (SentencePiece 32000, byte-level BPE 128256 and 151936).
        { "stories260K", nameof(Arithmetic) }, { "stories260K", nameof(Json) }, { "stories260K", nameof(Unicode) }, { "stories260K", nameof(List) },
        { "ggml-vocab-llama-spm", nameof(Arithmetic) }, { "ggml-vocab-llama-spm", nameof(Json) }, { "ggml-vocab-llama-spm", nameof(Unicode) }, { "ggml-vocab-llama-spm", nameof(List) },
        { "ggml-vocab-qwen2", nameof(Json) }, { "ggml-vocab-qwen2", nameof(Unicode) }, { "ggml-vocab-qwen2", nameof(List) },
        { "ggml-vocab-llama-bpe", nameof(Json) }, { "ggml-vocab-llama-bpe", nameof(Arithmetic) },
    };

    private static string GrammarText(string name) => name switch
    {
        nameof(Arithmetic) => Arithmetic,
        nameof(Json) => Json,
        nameof(Unicode) => Unicode,
        nameof(List) => List,
        _ => throw new ArgumentException(name),
    };

    /// <summary>
    /// Walks the grammar with llama.cpp's grammar sampler and ours side by side: at every step both are asked
    /// which tokens of the whole vocabulary may come next, and the sets must be the same, except for the two
    /// documented differences (control tokens, and bytes that are not UTF-8, which only llama.cpp lets
    /// through); then one allowed token (drawn with a fixed seed, preferring multi-byte and multi-character
    /// tokens) is accepted by both.
    /// </summary>
    [Theory]
    [MemberData(nameof(OracleCases))]
    public void AllowedTokens_AreLlamaCpps(string model, string grammarName)
    {
        string text = GrammarText(grammarName);
        var tok = Tok(model);
        using var oracle = new LlamaCppOracle(PathOf(model));
        using var theirs = oracle.Grammar(text) ?? throw new InvalidOperationException("llama.cpp refused the grammar");
        var ours = new GrammarConstraint(tok, GbnfGrammar.Parse(text));
        var rng = new Random(grammarName.Length * 7919 + model.Length);
        var generated = new List<int>();
        int steps = 0, differences = 0, totalAllowed = 0;
        for (; steps < 40; steps++)
        {
            var (allowed, expected, diff) = CompareStep(tok, theirs, ours, text, generated, steps);
            differences += diff;
            totalAllowed += allowed.Count;
            Assert.NotEmpty(allowed);
            var content = allowed.Where(id => expected[id] && !tok.IsEndOfGeneration(id)).ToList();
            if (content.Count == 0)
            {
                Assert.True(ours.IsComplete, "nothing but the end allowed, yet the sentence is not complete");
                break;
            }
            var longer = content.Where(id => tok.TokenToBytes(id).Length > 1).ToList();
            var pool = longer.Count > 0 && rng.Next(3) > 0 ? longer : content;
            int next = pool[rng.Next(pool.Count)];
            ours.Accept(next);
            theirs.Accept(next);
            generated.Add(next);
        }
        output.WriteLine($"{model} / {grammarName}: {steps} steps, {totalAllowed} allowed tokens in all, {differences} documented differences; {Timing()}; text '{Show(tok, generated)}'");
        Assert.True(steps >= 3, "the walk ended too early to prove much");
        Assert.True(GbnfGrammar.Parse(text).IsPrefix(Encoding.UTF8.GetString(generated.SelectMany(tok.TokenToBytes).ToArray())));
    }

    [ThreadStatic] private static long s_theirTicks, s_ourTicks;

    private static string Timing()
    {
        string t = $"whole-vocabulary masks: llama.cpp {s_theirTicks * 1000.0 / System.Diagnostics.Stopwatch.Frequency:F0} ms, EdgeLlm {s_ourTicks * 1000.0 / System.Diagnostics.Stopwatch.Frequency:F0} ms";
        s_theirTicks = s_ourTicks = 0;
        return t;
    }

    /// <summary>One step of the comparison: our allowed tokens, llama.cpp's, and how many documented differences.</summary>
    private static (List<int> Allowed, bool[] Expected, int Differences) CompareStep(Tokenizer tok, LlamaCppOracle.GrammarSampler theirs, GrammarConstraint ours,
        string text, List<int> generated, int steps)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        bool[] expected = theirs.Allowed();
        s_theirTicks += watch.ElapsedTicks;
        watch.Restart();
        var mask = new float[tok.VocabSize];
        ours.Mask(mask);
        s_ourTicks += watch.ElapsedTicks;
        var allowed = new List<int>();
        int differences = 0;
        for (int id = 0; id < tok.VocabSize; id++)
        {
            bool mine = ours.Allows(id);
            Assert.Equal(mine, !float.IsNegativeInfinity(mask[id]));
            if (mine) allowed.Add(id);
            if (mine == expected[id]) continue;
            bool control = (tok.Attributes(id) & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0;
            bool notUtf8 = !IsUtf8Prefix(tok.TokenToBytes(id));
            // llama.cpp rejects a token ending inside a UTF-8 sequence when any completion of it is excluded
            // by a negated class ([^。] refuses the lead byte E3 of あ too); EdgeLlm when none is allowed.
            bool partialUnderNegation = mine && text.Contains("[^", StringComparison.Ordinal) && EndsInsideASequence(tok.TokenToBytes(id));
            Assert.True((!mine && (control || notUtf8)) || partialUnderNegation,
                $"step {steps} after '{Show(tok, generated)}': token {id} '{tok.TokenText(id)}' ({Hex(tok.TokenToBytes(id))}): llama.cpp {(expected[id] ? "allows" : "rejects")} it, EdgeLlm {(mine ? "allows" : "rejects")} it");
            differences++;
        }
        return (allowed, expected, differences);
    }

    /// <summary>
    /// The same comparison along a given sentence (tokenized by the model's tokenizer, so byte-fallback tokens
    /// carry the characters outside the vocabulary one UTF-8 byte at a time); at its end both allow the end of generation.
    /// </summary>
    [Theory]
    [InlineData("stories260K", nameof(Unicode), "日本ぁゖ!")]
    [InlineData("stories260K", nameof(Unicode), "ééé。")]
    [InlineData("stories260K", nameof(Unicode), "ßüü!")]
    [InlineData("ggml-vocab-qwen2", nameof(Unicode), "日本ぁゖ!")]
    [InlineData("ggml-vocab-llama-spm", nameof(Unicode), "日本ぁゖ!")]
    [InlineData("stories260K", nameof(Json), "{\"name\": \"Zoë 日本\", \"n\": [1, -2.5e+3, true],\n  \"o\": {\"q\": \"\\u00e9\\n\"}}")]
    [InlineData("ggml-vocab-llama-bpe", nameof(Json), "{\"name\": \"Zoë 日本\", \"n\": [1, -2.5e+3, true],\n  \"o\": {\"q\": \"\\u00e9\\n\"}}")]
    [InlineData("stories260K", nameof(Arithmetic), "(a1 *b)/7 =\tx\n2=2\n")]
    [InlineData("stories260K", nameof(List), "- Once upon\n- time\ndone")]
    [InlineData("ggml-vocab-qwen2", nameof(Json), "{\"名前\": \"Zoë\",\n\t\"n\": [1, -2.5e+3, null]}")]
    public void AllowedTokens_AreLlamaCpps_AlongASentence(string model, string grammarName, string sentence)
    {
        string text = GrammarText(grammarName);
        var tok = Tok(model);
        using var oracle = new LlamaCppOracle(PathOf(model));
        using var theirs = oracle.Grammar(text) ?? throw new InvalidOperationException("llama.cpp refused the grammar");
        var ours = new GrammarConstraint(tok, GbnfGrammar.Parse(text));
        int[] ids = GreedyTokens(tok, sentence);
        var generated = new List<int>();
        int differences = 0;
        for (int i = 0; i <= ids.Length; i++)
        {
            var (allowed, expected, diff) = CompareStep(tok, theirs, ours, text, generated, i);
            differences += diff;
            if (i == ids.Length) break;
            Assert.True(allowed.Contains(ids[i]) && expected[ids[i]], $"token {i} ({ids[i]} '{tok.TokenText(ids[i])}') of the sentence is not allowed");
            ours.Accept(ids[i]);
            theirs.Accept(ids[i]);
            generated.Add(ids[i]);
        }
        int eog = Enumerable.Range(0, tok.VocabSize).First(tok.IsEndOfGeneration);
        Assert.True(ours.Allows(eog) && theirs.Allowed()[eog]);
        Assert.True(ours.CanEnd);
        output.WriteLine($"{model} / {grammarName}: {ids.Length} tokens ({string.Join(' ', ids.Select(id => tok.TokenText(id)))}), {differences} documented differences; {Timing()}");
    }

    private static string Show(Tokenizer tok, List<int> ids) =>
        Encoding.UTF8.GetString(ids.SelectMany(tok.TokenToBytes).ToArray()).Replace("\n", "\\n");

    private static string Hex(byte[] b) => Convert.ToHexString(b);

    /// <summary>
    /// The sentence as the longest-matching tokens of the vocabulary, left to right (byte tokens for what no
    /// token spells): unlike <see cref="Tokenizer.Encode"/>, no SentencePiece space prefix, and a model
    /// may well sample such a sequence.
    /// </summary>
    private static int[] GreedyTokens(Tokenizer tok, string sentence)
    {
        var byBytes = new Dictionary<string, int>();
        for (int id = 0; id < tok.VocabSize; id++)
        {
            if ((tok.Attributes(id) & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            var b = tok.TokenToBytes(id);
            if (b.Length > 0) byBytes.TryAdd(Convert.ToHexString(b), id);
        }
        byte[] text = Encoding.UTF8.GetBytes(sentence);
        var ids = new List<int>();
        for (int i = 0; i < text.Length;)
        {
            int n = Math.Min(16, text.Length - i);
            while (n > 0 && !byBytes.ContainsKey(Convert.ToHexString(text, i, n))) n--;
            if (n == 0) throw new InvalidOperationException($"no token for byte {text[i]:X2}");
            ids.Add(byBytes[Convert.ToHexString(text, i, n)]);
            i += n;
        }
        return [.. ids];
    }

    private static bool EndsInsideASequence(byte[] bytes)
    {
        for (int i = bytes.Length - 1, back = 1; i >= 0 && back <= 4; i--, back++)
        {
            byte b = bytes[i];
            if ((b & 0xC0) == 0x80) continue;
            int len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            return len > back;
        }
        return false;
    }

    private static bool IsUtf8Prefix(byte[] bytes)
    {
        // Valid UTF-8, where the last sequence may be unfinished.
        for (int n = bytes.Length; n >= Math.Max(0, bytes.Length - 3); n--)
        {
            try
            {
                new UTF8Encoding(false, true).GetString(bytes, 0, n);
                // The rest must be the start of a sequence.
                var rest = bytes.AsSpan(n);
                if (rest.Length == 0) return true;
                byte lead = rest[0];
                int len = lead is >= 0xC2 and <= 0xDF ? 2 : lead is >= 0xE0 and <= 0xEF ? 3 : lead is >= 0xF0 and <= 0xF4 ? 4 : 0;
                if (len == 0 || rest.Length >= len) return false;
                for (int i = 1; i < rest.Length; i++) if ((rest[i] & 0xC0) != 0x80) return false;
                return true;
            }
            catch (DecoderFallbackException)
            {
            }
        }
        return false;
    }

    [Fact]
    public void Generation_FollowsTheGrammar_AndEndsWithIt()
    {
        using var model = Model.Load(SharedData.Model("stories260K"));
        var tok = Tokenizer.FromGguf(model.File);
        using var ctx = new InferenceContext(model, 256, 1);
        var gen = new TextGenerator(ctx, tok);
        // Words of at most 8 letters: a tiny model left to [a-z]+ may spell one word forever.
        var grammar = GbnfGrammar.Parse(List.Replace("[a-z]+", "[a-z]{1,8}"));
        foreach (float temp in new[] { 0f, 0.9f })
        {
            string text = string.Concat(gen.Stream(tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false),
                new GenerationOptions { Grammar = grammar, MaxTokens = 120, Sampling = new SamplerOptions { Temperature = temp, Seed = 7 } }));
            output.WriteLine($"temp {temp}: '{text.Replace("\n", "\\n")}' ({gen.LastResult!.Reason})");
            Assert.Equal(FinishReason.EndOfGeneration, gen.LastResult!.Reason);
            Assert.True(grammar.IsMatch(text), text);
        }
        Assert.Throws<ArgumentException>(() => gen.Stream([1], new GenerationOptions { Grammar = grammar, JsonObject = true }).ToList());
    }
}
