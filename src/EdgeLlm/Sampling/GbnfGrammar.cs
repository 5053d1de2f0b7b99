using System.Globalization;
using System.Text;

namespace EdgeLlm.Sampling;

/// <summary>A GBNF grammar that does not parse, or that cannot be used (undefined rule, no root, left recursion).</summary>
public sealed class GbnfParseException : FormatException
{
    internal GbnfParseException(string message, int line, int column)
        : base(line > 0 ? $"grammar line {line}, column {column}: {message}" : $"grammar: {message}")
    {
        Line = line;
        Column = column;
    }

    /// <summary>1-based line of the grammar text where the problem is (0: the grammar as a whole).</summary>
    public int Line { get; }

    /// <summary>1-based column (in UTF-16 code units) on <see cref="Line"/>.</summary>
    public int Column { get; }
}

/// <summary>
/// A grammar in llama.cpp's GBNF (the text of <c>llama-cli --grammar</c> and of the server's
/// <c>grammar</c> field): rules <c>name ::= alternatives</c>, string literals with <c>\x \u \U \t \r \n</c>
/// escapes, character classes <c>[a-z]</c> / <c>[^...]</c>, <c>.</c>, grouping, <c>* + ?</c> and
/// <c>{m}</c> <c>{m,}</c> <c>{m,n}</c> repetitions, <c>#</c> comments. Generation starts at the rule
/// <c>root</c> (or the one named). Rules are read as llama.cpp reads them (repetitions rewritten into
/// right-recursive helper rules, at most 2000 repetitions), and the same grammars are refused: an
/// undefined rule, a missing root, left recursion; a rule defined twice is refused too (llama.cpp
/// silently keeps the last definition, which hides the mistake). Token references, as llama.cpp reads them (its
/// PR 17816): <c>&lt;[id]&gt;</c> is the token with that id, <c>&lt;text&gt;</c> (e.g. <c>&lt;|im_end|&gt;</c>,
/// <c>&lt;think&gt;</c>) the token whose text is exactly that, brackets included, and <c>!</c> before either matches
/// one token other than it. A token reference matches one whole token, by id, whatever its text: it is bound to a
/// vocabulary when a <see cref="GrammarConstraint"/> is made (a text that is not one token of it is refused
/// there), and <see cref="IsMatch"/>/<see cref="IsPrefix"/>, which read characters, never match one.
/// </summary>
/// <remarks>
/// Matching is llama.cpp's pushdown automaton: the state is a set of stacks of grammar positions, each
/// with a character class on top; a code point keeps the stacks whose top accepts it. Written by hand:
/// no .NET library parses GBNF or answers "can this prefix still match", which is the question asked
/// for each candidate token.
/// </remarks>
public sealed class GbnfGrammar
{
    /// <summary>Most repetitions <c>{m,n}</c> may ask for (llama.cpp's MAX_REPETITION_THRESHOLD; a larger max means no max).</summary>
    public const int MaxRepetitions = 2000;

    internal enum Kind : byte { End, Alt, RuleRef, Chars, Token }

    /// <summary>A token reference (<see cref="Kind.Token"/>'s value indexes them): by <paramref name="Id"/> (<c>&lt;[id]&gt;</c>) or by <paramref name="Text"/> (<c>&lt;text&gt;</c>); <paramref name="Negated"/> for <c>!</c>.</summary>
    internal readonly record struct TokenRef(int Id, string? Text, bool Negated)
    {
        public override string ToString() => (Negated ? "!" : "") + (Text ?? $"<[{Id}]>");
    }

    internal readonly record struct Element(Kind Kind, int Value);

    /// <summary>A character class: ranges of code points (inclusive pairs), negated for <c>[^...]</c>; <c>.</c> is negated and empty.</summary>
    internal sealed record CharSet(bool Negated, uint[] Ranges)
    {
        public bool Matches(uint c)
        {
            bool found = false;
            for (int i = 0; i < Ranges.Length && !found; i += 2) found = Ranges[i] <= c && c <= Ranges[i + 1];
            return found != Negated;
        }

        /// <summary>Whether some code point in [lo, hi] matches (the completions of a partial UTF-8 sequence).</summary>
        public bool MatchesAny(uint lo, uint hi)
        {
            if (lo > hi) return false;
            if (!Negated)
            {
                for (int i = 0; i < Ranges.Length; i += 2)
                    if (Ranges[i] <= hi && lo <= Ranges[i + 1]) return true;
                return false;
            }
            // Negated: some point of [lo, hi] lies outside every range. Walk up from lo past covering ranges.
            uint p = lo;
            bool moved = true;
            while (moved)
            {
                moved = false;
                for (int i = 0; i < Ranges.Length; i += 2)
                {
                    if (Ranges[i] <= p && p <= Ranges[i + 1])
                    {
                        if (Ranges[i + 1] >= hi) return false;
                        p = Ranges[i + 1] + 1;
                        moved = true;
                    }
                }
            }
            return true;
        }
    }

    internal readonly Element[] Elements;
    internal readonly int[] RuleStart;
    internal readonly CharSet[] Sets;
    internal readonly TokenRef[] Tokens;
    private readonly string[] _ruleNames;
    private readonly int _root;

    private GbnfGrammar(string text, Element[] elements, int[] ruleStart, CharSet[] sets, TokenRef[] tokens, string[] ruleNames, int root)
    {
        Text = text;
        Tokens = tokens;
        Elements = elements;
        RuleStart = ruleStart;
        Sets = sets;
        _ruleNames = ruleNames;
        _root = root;
    }

    /// <summary>The grammar's text, as given.</summary>
    public string Text { get; }

    /// <summary>The start rule's name.</summary>
    public string Root => _ruleNames[_root];

    /// <summary>Rules after parsing, the helper rules of groups and repetitions included.</summary>
    public int RuleCount => RuleStart.Length;

    /// <summary>Parses GBNF text.</summary>
    /// <param name="text">the grammar</param>
    /// <param name="root">the rule generation starts from (llama.cpp: <c>root</c>)</param>
    /// <exception cref="GbnfParseException">the text is not GBNF, or the grammar cannot be used; the message names the line and column.</exception>
    public static GbnfGrammar Parse(string text, string root = "root")
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(root);
        var p = new Parser(text);
        p.ParseAll();
        return p.Build(root);
    }

    /// <summary>Reads and parses a GBNF file (UTF-8).</summary>
    /// <exception cref="GbnfParseException">as <see cref="Parse"/>, with the file name in the message.</exception>
    public static GbnfGrammar Load(string path, string root = "root")
    {
        string text = File.ReadAllText(path, new UTF8Encoding(false, true));
        try
        {
            return Parse(text, root);
        }
        catch (GbnfParseException e)
        {
            throw new GbnfParseException($"{path}: {e.Message}", 0, 0);
        }
    }

    /// <summary>True when all of <paramref name="text"/> is a sentence of the grammar.</summary>
    public bool IsMatch(string text) => Run(text, out var stacks) && stacks.Exists(s => s.Length == 0);

    /// <summary>True when <paramref name="text"/> can still be continued into a sentence of the grammar (or already is one).</summary>
    public bool IsPrefix(string text) => Run(text, out _);

    private bool Run(string text, out List<int[]> stacks)
    {
        stacks = InitialStacks();
        foreach (var rune in text.EnumerateRunes())
        {
            stacks = AcceptChar(stacks, (uint)rune.Value);
            if (stacks.Count == 0) return false;
        }
        return true;
    }

    // ---- the automaton (llama.cpp's llama_grammar_advance_stack / accept) -------------------------

    internal bool IsEndOfSequence(int pos) => Elements[pos].Kind is Kind.End or Kind.Alt;

    internal List<int[]> InitialStacks()
    {
        var stacks = new List<int[]>();
        int pos = RuleStart[_root];
        while (true)
        {
            Advance(IsEndOfSequence(pos) ? [] : [pos], stacks);
            while (!IsEndOfSequence(pos)) pos++;
            if (Elements[pos].Kind != Kind.Alt) break;
            pos++;
        }
        return stacks;
    }

    /// <summary>Expands the rule references on top of <paramref name="stack"/> until every stack has a character class on top (or is empty: the grammar is complete).</summary>
    internal void Advance(int[] stack, List<int[]> into)
    {
        var todo = new Stack<int[]>();
        todo.Push(stack);
        HashSet<int[]>? seen = null;
        while (todo.Count > 0)
        {
            var cur = todo.Pop();
            if (cur.Length == 0 || Elements[cur[^1]].Kind is Kind.Chars or Kind.Token)
            {
                AddUnique(into, cur);
                continue;
            }
            seen ??= new HashSet<int[]>(StackComparer.Instance);
            if (!seen.Add(cur)) continue;
            int pos = cur[^1];
            int sub = RuleStart[Elements[pos].Value];
            while (true)
            {
                bool cont = !IsEndOfSequence(pos + 1), nonEmpty = !IsEndOfSequence(sub);
                var next = new int[cur.Length - 1 + (cont ? 1 : 0) + (nonEmpty ? 1 : 0)];
                Array.Copy(cur, next, cur.Length - 1);
                int n = cur.Length - 1;
                if (cont) next[n++] = pos + 1;
                if (nonEmpty) next[n] = sub;
                todo.Push(next);
                while (!IsEndOfSequence(sub)) sub++;
                if (Elements[sub].Kind != Kind.Alt) break;
                sub++;
            }
        }
    }

    /// <summary>The stacks after code point <paramref name="c"/>.</summary>
    internal List<int[]> AcceptChar(IReadOnlyList<int[]> stacks, uint c)
    {
        var result = new List<int[]>();
        foreach (var st in stacks)
        {
            if (st.Length == 0) continue;
            int pos = st[^1];
            if (Elements[pos].Kind != Kind.Chars || !Sets[Elements[pos].Value].Matches(c)) continue;
            Pop(st, pos, result);
        }
        return result;
    }

    /// <summary>The stacks after one whole token, through the token references on top that <paramref name="matches"/> accepts (by their index in <see cref="Tokens"/>; stacks with characters on top drop out).</summary>
    internal List<int[]> AcceptToken(IReadOnlyList<int[]> stacks, Func<int, bool> matches)
    {
        var result = new List<int[]>();
        foreach (var st in stacks)
        {
            if (st.Length == 0) continue;
            int pos = st[^1];
            if (Elements[pos].Kind != Kind.Token || !matches(Elements[pos].Value)) continue;
            Pop(st, pos, result);
        }
        return result;
    }

    /// <summary>The top of <paramref name="st"/> (at <paramref name="pos"/>) matched: the next element, or the rule's end, expanded into <paramref name="result"/>.</summary>
    private void Pop(int[] st, int pos, List<int[]> result)
    {
        int[] next;
        if (!IsEndOfSequence(pos + 1))
        {
            next = (int[])st.Clone();
            next[^1] = pos + 1;
        }
        else
        {
            next = st[..^1];
        }
        Advance(next, result);
    }

    internal static void AddUnique(List<int[]> stacks, int[] stack)
    {
        foreach (var s in stacks)
            if (s.AsSpan().SequenceEqual(stack)) return;
        stacks.Add(stack);
    }

    internal sealed class StackComparer : IEqualityComparer<int[]>
    {
        public static readonly StackComparer Instance = new();
        public bool Equals(int[]? a, int[]? b) => a.AsSpan().SequenceEqual(b);
        public int GetHashCode(int[] s)
        {
            var h = new HashCode();
            foreach (int x in s) h.Add(x);
            return h.ToHashCode();
        }
    }

    // ---- the parser (llama.cpp's llama_grammar_parser, read for its grammar; written afresh) ---------

    private sealed class Parser(string src)
    {
        private readonly string _src = src;
        private int _pos;
        private readonly Dictionary<string, int> _symbols = new(StringComparer.Ordinal);
        private readonly List<string> _names = [];
        private readonly List<List<Element>?> _rules = [];
        private readonly List<int> _firstUse = []; // where each symbol was first seen (for "undefined rule")
        private readonly List<int> _defined = [];  // where each rule's definition starts (for "left recursion")
        private readonly List<CharSet> _sets = [];
        private readonly List<TokenRef> _tokens = [];
        private readonly Dictionary<(bool, string), int> _setIndex = [];

        private char Cur => _pos < _src.Length ? _src[_pos] : '\0';
        private char At(int i) => _pos + i < _src.Length ? _src[_pos + i] : '\0';
        private bool AtEnd => _pos >= _src.Length;

        private GbnfParseException Error(string message, int? at = null)
        {
            int p = Math.Min(at ?? _pos, _src.Length);
            int line = 1, col = 1;
            for (int i = 0; i < p; i++)
            {
                if (_src[i] == '\n') { line++; col = 1; }
                else col++;
            }
            string near = p < _src.Length ? $" (at '{Excerpt(p)}')" : " (at the end of the text)";
            return new GbnfParseException(message + near, line, col);
        }

        private string Excerpt(int p)
        {
            int end = p;
            while (end < _src.Length && end - p < 20 && _src[end] != '\n' && _src[end] != '\r') end++;
            return _src[p..end];
        }

        private static bool IsWordChar(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '-';

        private void SkipSpace(bool newlineOk)
        {
            while (!AtEnd)
            {
                char c = Cur;
                if (c is ' ' or '\t' || (newlineOk && c is '\r' or '\n')) _pos++;
                else if (c == '#')
                {
                    while (!AtEnd && Cur is not ('\r' or '\n')) _pos++;
                }
                else break;
            }
        }

        private string ParseName()
        {
            int start = _pos;
            while (IsWordChar(Cur)) _pos++;
            if (_pos == start) throw Error("expecting a rule name");
            return _src[start.._pos];
        }

        private int SymbolId(string name, int at)
        {
            if (_symbols.TryGetValue(name, out int id)) return id;
            id = _names.Count;
            _symbols[name] = id;
            _names.Add(name);
            _rules.Add(null);
            _firstUse.Add(at);
            _defined.Add(-1);
            return id;
        }

        private int GenerateSymbolId(string baseName)
        {
            int id = _names.Count;
            string name = baseName + "_" + id.ToString(CultureInfo.InvariantCulture);
            _symbols[name] = id;
            _names.Add(name);
            _rules.Add(null);
            _firstUse.Add(_pos);
            _defined.Add(_pos);
            return id;
        }

        private void AddRule(int id, List<Element> rule) => _rules[id] = rule;

        public void ParseAll()
        {
            SkipSpace(true);
            while (!AtEnd) ParseRule();
        }

        private void ParseRule()
        {
            int start = _pos;
            string name = ParseName();
            SkipSpace(false);
            int id = SymbolId(name, start);
            if (_rules[id] is not null) throw Error($"rule '{name}' is defined twice", start);
            _defined[id] = start;
            if (!(Cur == ':' && At(1) == ':' && At(2) == '=')) throw Error("expecting ::=");
            _pos += 3;
            SkipSpace(true);
            ParseAlternates(name, id, nested: false);
            if (Cur == '\r') _pos += At(1) == '\n' ? 2 : 1;
            else if (Cur == '\n') _pos++;
            else if (!AtEnd) throw Error("expecting a newline or the end of the text");
            SkipSpace(true);
        }

        private void ParseAlternates(string ruleName, int ruleId, bool nested)
        {
            var rule = new List<Element>();
            ParseSequence(ruleName, rule, nested);
            while (Cur == '|')
            {
                rule.Add(new Element(Kind.Alt, 0));
                _pos++;
                SkipSpace(true);
                ParseSequence(ruleName, rule, nested);
            }
            rule.Add(new Element(Kind.End, 0));
            AddRule(ruleId, rule);
        }

        private void ParseSequence(string ruleName, List<Element> rule, bool nested)
        {
            int lastSymStart = rule.Count;
            long prevRules = 1;

            void Repeat(int minTimes, int maxTimes, int at) // maxTimes < 0: no max
            {
                bool noMax = maxTimes < 0;
                if (lastSymStart == rule.Count) throw Error("expecting an item before */+/?/{", at);
                var prev = rule.GetRange(lastSymStart, rule.Count - lastSymStart);
                long total = !noMax && maxTimes > 0 ? maxTimes : minTimes > 0 ? minTimes : 1;
                if (prevRules * total >= MaxRepetitions)
                    throw Error($"this repetition would repeat {prevRules * total} rules (at most {MaxRepetitions - 1}): reduce the counts or the nesting", at);
                if (minTimes == 0) rule.RemoveRange(lastSymStart, rule.Count - lastSymStart);
                else for (int i = 1; i < minTimes; i++) rule.AddRange(prev);
                int lastRec = 0;
                int nOpt = noMax ? 1 : maxTimes - minTimes;
                for (int i = 0; i < nOpt; i++)
                {
                    var rec = new List<Element>(prev);
                    int recId = GenerateSymbolId(ruleName);
                    if (i > 0 || noMax) rec.Add(new Element(Kind.RuleRef, noMax ? recId : lastRec));
                    rec.Add(new Element(Kind.Alt, 0));
                    rec.Add(new Element(Kind.End, 0));
                    AddRule(recId, rec);
                    lastRec = recId;
                }
                if (nOpt > 0) rule.Add(new Element(Kind.RuleRef, lastRec));
                prevRules *= total;
            }

            while (!AtEnd)
            {
                char c = Cur;
                int at = _pos;
                if (c == '"')
                {
                    _pos++;
                    lastSymStart = rule.Count;
                    prevRules = 1;
                    while (Cur != '"')
                    {
                        if (AtEnd) throw Error("unterminated string literal", at);
                        uint ch = ParseChar();
                        rule.Add(new Element(Kind.Chars, Set(false, [ch, ch])));
                    }
                    _pos++;
                    SkipSpace(nested);
                }
                else if (c == '[')
                {
                    _pos++;
                    bool negated = false;
                    if (Cur == '^') { negated = true; _pos++; }
                    lastSymStart = rule.Count;
                    prevRules = 1;
                    var ranges = new List<uint>();
                    while (Cur != ']')
                    {
                        if (AtEnd) throw Error("unterminated character class", at);
                        uint lo = ParseChar(), hi = lo;
                        if (Cur == '-' && At(1) != ']')
                        {
                            if (_pos + 1 >= _src.Length) throw Error("unterminated character class", at);
                            _pos++;
                            hi = ParseChar();
                        }
                        ranges.Add(lo);
                        ranges.Add(hi);
                    }
                    _pos++;
                    rule.Add(new Element(Kind.Chars, Set(negated, [.. ranges])));
                    SkipSpace(nested);
                }
                else if (IsWordChar(c))
                {
                    string name = ParseName();
                    int id = SymbolId(name, at);
                    SkipSpace(nested);
                    lastSymStart = rule.Count;
                    prevRules = 1;
                    rule.Add(new Element(Kind.RuleRef, id));
                }
                else if (c == '(')
                {
                    _pos++;
                    SkipSpace(true);
                    int before = _names.Count;
                    int sub = GenerateSymbolId(ruleName);
                    ParseAlternates(ruleName, sub, nested: true);
                    prevRules = Math.Max(1, _names.Count - before);
                    lastSymStart = rule.Count;
                    rule.Add(new Element(Kind.RuleRef, sub));
                    if (Cur != ')') throw Error("expecting ')' to close the group", _pos);
                    _pos++;
                    SkipSpace(nested);
                }
                else if (c == '.')
                {
                    _pos++;
                    lastSymStart = rule.Count;
                    prevRules = 1;
                    rule.Add(new Element(Kind.Chars, Set(true, [])));
                    SkipSpace(nested);
                }
                else if (c is '*' or '+' or '?')
                {
                    _pos++;
                    SkipSpace(nested);
                    Repeat(c == '+' ? 1 : 0, c == '?' ? 1 : -1, at);
                }
                else if (c == '{')
                {
                    _pos++;
                    SkipSpace(nested);
                    int min = ParseInt("expecting a repetition count after '{'");
                    SkipSpace(nested);
                    int max;
                    if (Cur == '}')
                    {
                        max = min;
                        _pos++;
                    }
                    else if (Cur == ',')
                    {
                        _pos++;
                        SkipSpace(nested);
                        max = -1;
                        if (Cur is >= '0' and <= '9')
                        {
                            max = ParseInt("expecting a repetition count");
                            SkipSpace(nested);
                        }
                        if (Cur != '}') throw Error("expecting '}'");
                        _pos++;
                    }
                    else throw Error("expecting ',' or '}' in a repetition");
                    SkipSpace(nested);
                    if (min > MaxRepetitions) throw Error($"{min} repetitions: at most {MaxRepetitions}", at);
                    if (max > MaxRepetitions) max = -1;
                    if (max >= 0 && max < min) throw Error($"repetition {{{min},{max}}}: the maximum is below the minimum", at);
                    Repeat(min, max, at);
                }
                else if (c == '<' || (c == '!' && At(1) == '<'))
                {
                    // A token reference: <[id]>, <text> (brackets included in the token's text), ! for any other token.
                    bool negated = c == '!';
                    if (negated) _pos++;
                    int open = _pos;
                    _pos++;
                    TokenRef t;
                    if (Cur == '[')
                    {
                        _pos++;
                        int id = ParseInt("expecting a token id in <[...]>");
                        if (Cur != ']' || At(1) != '>') throw Error("expecting ']>' after the token id");
                        _pos += 2;
                        t = new TokenRef(id, null, negated);
                    }
                    else
                    {
                        while (!AtEnd && Cur != '>' && Cur is not ('\r' or '\n')) _pos++;
                        if (Cur != '>') throw Error("unterminated token reference (expecting '>')", at);
                        _pos++;
                        if (_pos - open == 2) throw Error("empty token reference '<>'", at);
                        t = new TokenRef(-1, _src[open.._pos], negated);
                    }
                    lastSymStart = rule.Count;
                    prevRules = 1;
                    int index = _tokens.IndexOf(t);
                    if (index < 0) { index = _tokens.Count; _tokens.Add(t); }
                    rule.Add(new Element(Kind.Token, index));
                    SkipSpace(nested);
                }
                else break;
            }
        }

        private int ParseInt(string what)
        {
            int start = _pos;
            while (Cur is >= '0' and <= '9') _pos++;
            if (_pos == start) throw Error(what);
            if (!int.TryParse(_src.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                return int.MaxValue;
            return v;
        }

        private uint ParseChar()
        {
            int at = _pos;
            if (Cur == '\\')
            {
                char e = At(1);
                _pos += 2;
                switch (e)
                {
                    case 'x': return ParseHex(2, at);
                    case 'u': return ParseHex(4, at);
                    case 'U': return ParseHex(8, at);
                    case 't': return '\t';
                    case 'r': return '\r';
                    case 'n': return '\n';
                    case '\\' or '"' or '[' or ']' or '-': return e;
                    default: throw Error($"unknown escape '\\{e}'", at);
                }
            }
            if (AtEnd) throw Error("unexpected end of the text");
            if (char.IsHighSurrogate(Cur) && char.IsLowSurrogate(At(1)))
            {
                uint v = (uint)char.ConvertToUtf32(Cur, At(1));
                _pos += 2;
                return v;
            }
            return _src[_pos++];
        }

        private uint ParseHex(int digits, int at)
        {
            uint v = 0;
            for (int i = 0; i < digits; i++)
            {
                char c = Cur;
                int d = c is >= '0' and <= '9' ? c - '0' : c is >= 'a' and <= 'f' ? c - 'a' + 10 : c is >= 'A' and <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) throw Error($"expecting {digits} hex digits in the escape", at);
                v = (v << 4) | (uint)d;
                _pos++;
            }
            return v;
        }

        private int Set(bool negated, uint[] ranges)
        {
            var key = (negated, string.Join(',', ranges));
            if (_setIndex.TryGetValue(key, out int i)) return i;
            _sets.Add(new CharSet(negated, ranges));
            _setIndex[key] = _sets.Count - 1;
            return _sets.Count - 1;
        }

        public GbnfGrammar Build(string root)
        {
            for (int id = 0; id < _rules.Count; id++)
                if (_rules[id] is null) throw Error($"rule '{_names[id]}' is used but never defined", _firstUse[id]);
            if (_rules.Count == 0) throw new GbnfParseException("the grammar has no rules", 0, 0);
            if (!_symbols.TryGetValue(root, out int rootId)) throw new GbnfParseException($"the grammar has no rule '{root}' to start from", 0, 0);

            var elements = new List<Element>();
            var starts = new int[_rules.Count];
            for (int id = 0; id < _rules.Count; id++)
            {
                starts[id] = elements.Count;
                elements.AddRange(_rules[id]!);
            }
            var g = new GbnfGrammar(_src, [.. elements], starts, [.. _sets], [.. _tokens], [.. _names], rootId);
            CheckLeftRecursion(g);
            return g;
        }

        private void CheckLeftRecursion(GbnfGrammar g)
        {
            int n = _rules.Count;
            var visited = new bool[n];
            var inProgress = new bool[n];
            var mayBeEmpty = new bool[n];

            int culprit = -1;
            bool Detect(int r)
            {
                if (inProgress[r]) { culprit = r; return true; }
                inProgress[r] = true;
                var rule = _rules[r]!;
                bool atStart = true;
                foreach (var e in rule)
                {
                    if (e.Kind is Kind.End or Kind.Alt)
                    {
                        if (atStart) { mayBeEmpty[r] = true; break; }
                        atStart = true;
                    }
                    else atStart = false;
                }
                bool recurse = true;
                foreach (var e in rule)
                {
                    if (e.Kind == Kind.RuleRef && recurse)
                    {
                        if (Detect(e.Value)) return true;
                        if (!mayBeEmpty[e.Value]) recurse = false;
                    }
                    else if (e.Kind is Kind.End or Kind.Alt) recurse = true;
                    else recurse = false;
                }
                inProgress[r] = false;
                visited[r] = true;
                return false;
            }

            for (int r = 0; r < n; r++)
            {
                if (visited[r]) continue;
                Array.Clear(inProgress);
                if (Detect(r))
                {
                    // A generated helper (a group or a repetition, named base_N) is reported as the rule it belongs to.
                    string name = BaseName(culprit);
                    int at = _symbols.TryGetValue(name, out int user) && _defined[user] >= 0 ? _defined[user] : _defined[culprit];
                    throw Error($"rule '{name}' is left-recursive (it can reach itself before reading any character); llama.cpp refuses such grammars too: rewrite it with repetition, e.g. x ::= item (\",\" item)*", at);
                }
            }
        }

        private bool IsGenerated(int id)
        {
            string name = _names[id];
            int us = name.LastIndexOf('_');
            return us > 0 && int.TryParse(name.AsSpan(us + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n == id;
        }

        private string BaseName(int id) => IsGenerated(id) ? _names[id][.._names[id].LastIndexOf('_')] : _names[id];
    }
}
