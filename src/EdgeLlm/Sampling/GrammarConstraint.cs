using EdgeLlm.Tokenizers;

namespace EdgeLlm.Sampling;

/// <summary>
/// Constrains generation to the sentences of a <see cref="GbnfGrammar"/>, as llama.cpp's grammar sampler
/// does: a token is allowed when its bytes keep the output a prefix of some sentence, an
/// end-of-generation token only when the output is a whole sentence, and a token whose bytes end inside
/// a UTF-8 sequence only when some completion of that sequence can come next.
/// </summary>
/// <remarks>
/// Where it differs from llama.cpp, on purpose: control tokens (BOS, <c>&lt;|im_start|&gt;</c>, ...) are never
/// allowed (llama.cpp matches their text, so a grammar with <c>.</c> lets a model emit <c>&lt;s&gt;</c>
/// mid-answer); a NUL byte is never allowed (llama.cpp reads token text as C strings, so it never
/// allows one either); and bytes that are not UTF-8 (an overlong form, a surrogate, a lead byte above F4) are
/// never allowed (llama.cpp decodes them loosely). When the output is a whole sentence that nothing can
/// extend, <see cref="IsComplete"/> is true and generation ends, as it would with the only token then allowed.
/// Token references (<c>&lt;[id]&gt;</c>, <c>&lt;|im_end|&gt;</c>, <c>!&lt;...&gt;</c>; see <see cref="GbnfGrammar"/>) match one
/// whole token by id, as in llama.cpp: a named one is allowed where the grammar has it even if it is a control or
/// end-of-generation token (llama.cpp allows an end-of-generation token only where the grammar can end, so one named
/// in a grammar never matches there); a negated one allows any one token other than it except control tokens (so
/// <c>(!&lt;|end|&gt;)*</c> does not let the model emit other special tokens mid-answer), and a token whose characters
/// would run on from a string into a token reference is not allowed (llama.cpp lets "oken" through after "ok" when a
/// reference follows; a reference here takes whole tokens only).
/// </remarks>
public sealed class GrammarConstraint : TokenConstraint
{
    private readonly Tokenizer _tokenizer;
    private readonly GbnfGrammar _grammar;
    private StackSet _stacks;
    private Utf8Partial _partial;

    // The automaton's states met so far, interned, each with its transitions once taken: the grammar is
    // compiled into a DFA lazily, as generation visits it. Inside a JSON string, say, a character leads
    // back to the same state, so masking the whole vocabulary costs a dictionary lookup per character.
    private readonly Dictionary<StackSet, StackSet> _states = new();
    private readonly int[] _tokenIds;          // the grammar's token references, bound to this vocabulary (GbnfGrammar.Tokens' order)
    private readonly HashSet<int> _named = []; // the ids they name: every other token meets them alike
    private const int MaxStates = 100_000; // then the table starts again (memory stays bounded on grammars with deep nesting)

    /// <summary>A constraint at the start of the output (nothing generated yet).</summary>
    public GrammarConstraint(Tokenizer tokenizer, GbnfGrammar grammar)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(grammar);
        _tokenizer = tokenizer;
        _grammar = grammar;
        _tokenIds = new int[grammar.Tokens.Length];
        for (int i = 0; i < _tokenIds.Length; i++)
        {
            var t = grammar.Tokens[i];
            int id = t.Text is null ? t.Id : tokenizer.TokenId(t.Text)
                ?? throw new ArgumentException($"the grammar's token reference {t} is not one token of this model's vocabulary", nameof(grammar));
            if ((uint)id >= (uint)tokenizer.VocabSize)
                throw new ArgumentException($"the grammar's token reference {t} is outside this model's vocabulary (0..{tokenizer.VocabSize - 1})", nameof(grammar));
            _tokenIds[i] = id;
            _named.Add(id);
        }
        _stacks = Intern(grammar.InitialStacks());
    }

    /// <summary>The output is a whole sentence of the grammar: an end-of-generation token may come next.</summary>
    public bool CanEnd => _partial.Remain == 0 && _stacks.CanEnd;

    /// <inheritdoc/>
    public override bool IsComplete => _partial.Remain == 0 && _stacks.AllEmpty;

    /// <inheritdoc/>
    protected override string Subject => "the grammar";

    /// <inheritdoc/>
    public override bool Allows(int token) => Step(token, commit: false);

    /// <inheritdoc/>
    public override void Accept(int token)
    {
        if (!Step(token, commit: true))
            throw new ArgumentException(_tokenizer.IsEndOfGeneration(token)
                ? $"token {token} ends generation before the output is a sentence of the grammar"
                : $"token {token} ('{_tokenizer.TokenText(token)}') does not continue the grammar", nameof(token));
    }

    private bool Step(int token, bool commit)
    {
        // Token references on top of some stacks: this token, whole, by id.
        StackSet? byId = _stacks.HasTokenTop && _partial.Remain == 0 ? TokenNext(_stacks, token) : null;
        bool control = (_tokenizer.Attributes(token) & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0;
        StackSet? stacks = null;
        var partial = _partial;
        if (_tokenizer.IsEndOfGeneration(token))
        {
            if (byId is null) return CanEnd;
        }
        else if (!control)
        {
            stacks = ByText(token, ref partial);
            if (stacks is not null && byId is not null && partial.Remain == 0)
            {
                var both = new List<int[]>(stacks.Stacks); // both readings of the token stay possible
                foreach (var st in byId.Stacks) GbnfGrammar.AddUnique(both, st);
                stacks = Intern(both);
            }
        }
        if (stacks is null)
        {
            if (byId is null) return false;
            stacks = byId;
            partial = default;
        }
        if (commit)
        {
            _stacks = stacks;
            _partial = partial;
            if (_states.Count > MaxStates)
            {
                _states.Clear();
                _stacks = Intern(_stacks.Stacks.ToList());
            }
        }
        return true;
    }

    /// <summary>The stacks after <paramref name="token"/>'s bytes read as characters, or null when they do not continue the grammar.</summary>
    private StackSet? ByText(int token, ref Utf8Partial partial)
    {
        byte[] bytes = _tokenizer.TokenToBytes(token);
        if (bytes.Length == 0) return null;
        var stacks = _stacks;
        foreach (byte b in bytes)
        {
            if (b == 0 || !partial.Feed(b, out uint cp)) return null;
            if (partial.Remain > 0) continue;
            stacks = Next(stacks, cp);
            if (stacks.Stacks.Length == 0) return null;
        }
        if (partial.Remain > 0)
        {
            var (lo, hi) = partial.Completions();
            foreach (var s in stacks.Stacks)
                if (s.Length > 0 && _grammar.Elements[s[^1]].Kind == GbnfGrammar.Kind.Chars && _grammar.Sets[_grammar.Elements[s[^1]].Value].MatchesAny(lo, hi))
                    return stacks;
            return null;
        }
        return stacks;
    }

    /// <summary>The stacks after <paramref name="token"/> as one whole token through the token references on top, or null when none takes it.</summary>
    private StackSet? TokenNext(StackSet from, int token)
    {
        // A negated reference takes any token but its own, control tokens excepted; so the tokens the grammar does not
        // name meet its references alike, and share one entry (-1) of the cache; unnamed control tokens meet none.
        // A token a negated reference may take is text: no NUL, UTF-8 (its last sequence may stay open) with at least one
        // whole character, as llama.cpp's grammar takes them.
        bool control = (_tokenizer.Attributes(token) & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0;
        bool named = _named.Contains(token);
        if (!named && (control || !IsText(_tokenizer.TokenToBytes(token)))) return null;
        int key = named ? token : -1;
        if (!from.ByToken.TryGetValue(key, out var to))
        {
            bool other = !control && IsText(_tokenizer.TokenToBytes(token));
            var list = _grammar.AcceptToken(from.Stacks, i => _grammar.Tokens[i].Negated ? _tokenIds[i] != token && other : _tokenIds[i] == token);
            from.ByToken[key] = to = list.Count == 0 ? null : Intern(list);
        }
        return to;
    }

    /// <summary>No NUL, UTF-8 or a prefix of it, and at least one whole character.</summary>
    private static bool IsText(byte[] bytes)
    {
        var p = default(Utf8Partial);
        bool any = false;
        foreach (byte b in bytes)
        {
            if (b == 0 || !p.Feed(b, out _)) return false;
            any |= p.Remain == 0;
        }
        return any;
    }

    private StackSet Next(StackSet from, uint cp)
    {
        if (!from.Next.TryGetValue(cp, out var to))
            from.Next[cp] = to = Intern(_grammar.AcceptChar(from.Stacks, cp));
        return to;
    }

    private StackSet Intern(List<int[]> stacks)
    {
        stacks.Sort(StackOrder);
        var set = new StackSet([.. stacks], _grammar);
        if (_states.TryGetValue(set, out var known)) return known;
        _states.Add(set, set);
        return set;
    }

    private static int StackOrder(int[] a, int[] b) => a.AsSpan().SequenceCompareTo(b);

    /// <summary>A state of the automaton: its stacks (sorted, so that equal sets compare equal) and the transitions taken from it.</summary>
    private sealed class StackSet : IEquatable<StackSet>
    {
        public readonly int[][] Stacks;
        public readonly Dictionary<uint, StackSet> Next = [];
        public readonly Dictionary<int, StackSet?> ByToken = [];
        public readonly bool CanEnd, AllEmpty, HasTokenTop;
        private readonly int _hash;

        public StackSet(int[][] stacks, GbnfGrammar grammar)
        {
            foreach (var s in stacks)
                if (s.Length > 0 && grammar.Elements[s[^1]].Kind == GbnfGrammar.Kind.Token) HasTokenTop = true;
            Stacks = stacks;
            var h = new HashCode();
            bool any = false, all = true;
            foreach (var s in stacks)
            {
                h.Add(s.Length);
                foreach (int x in s) h.Add(x);
                if (s.Length == 0) any = true;
                else all = false;
            }
            _hash = h.ToHashCode();
            CanEnd = any;
            AllEmpty = all;
        }

        public bool Equals(StackSet? other)
        {
            if (other is null || other._hash != _hash || other.Stacks.Length != Stacks.Length) return false;
            for (int i = 0; i < Stacks.Length; i++)
                if (!Stacks[i].AsSpan().SequenceEqual(other.Stacks[i])) return false;
            return true;
        }

        public override bool Equals(object? obj) => Equals(obj as StackSet);
        public override int GetHashCode() => _hash;
    }

    /// <summary>A UTF-8 sequence begun in one token and finished in a later one.</summary>
    private struct Utf8Partial
    {
        public uint Value;
        public int Remain;  // continuation bytes still expected
        public int Length;  // the sequence's whole length

        /// <summary>Takes one byte; false when the bytes are not UTF-8. <paramref name="cp"/> is set when a code point completes.</summary>
        public bool Feed(byte b, out uint cp)
        {
            cp = 0;
            if (Remain > 0)
            {
                if ((b & 0xC0) != 0x80) return false;
                Value = (Value << 6) | (uint)(b & 0x3F);
                if (--Remain > 0)
                {
                    var (lo, hi) = Completions();
                    return lo <= hi && !(lo >= 0xD800 && hi <= 0xDFFF); // not only overlongs or surrogates ahead
                }
                cp = Value;
                uint min = Length switch { 2 => 0x80u, 3 => 0x800u, _ => 0x10000u };
                return cp >= min && cp <= 0x10FFFF && cp is not (>= 0xD800 and <= 0xDFFF);
            }
            if (b < 0x80) { cp = b; return true; }
            if (b is >= 0xC2 and <= 0xDF) { Value = (uint)(b & 0x1F); Remain = Length = 2; }
            else if (b is >= 0xE0 and <= 0xEF) { Value = (uint)(b & 0x0F); Remain = Length = 3; }
            else if (b is >= 0xF0 and <= 0xF4) { Value = (uint)(b & 0x07); Remain = Length = 4; }
            else return false;
            Remain--;
            return true;
        }

        /// <summary>The code points this unfinished sequence can still become (llama.cpp's llama_grammar_match_partial_char range, without overlongs and surrogates' edges).</summary>
        public readonly (uint Lo, uint Hi) Completions()
        {
            int shift = Remain * 6;
            uint lo = Value << shift, hi = lo | ((1u << shift) - 1);
            uint min = Length switch { 2 => 0x80u, 3 => 0x800u, _ => 0x10000u };
            if (lo < min) lo = min;
            if (hi > 0x10FFFF) hi = 0x10FFFF;
            return (lo, hi);
        }
    }
}
