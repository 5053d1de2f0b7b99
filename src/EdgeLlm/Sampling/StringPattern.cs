using System.Text;

namespace EdgeLlm.Sampling;

/// <summary>
/// A JSON Schema <c>pattern</c> (ECMA-262 regular expression) compiled for <see cref="JsonConstraint"/>: the
/// string's characters are matched as they are written, so a character that no completion of the pattern can
/// take is never sampled. The syntax is the part that describes a regular language, as llama.cpp's
/// json-schema-to-grammar takes it: literals, <c>.</c>, classes (<c>[a-z]</c>, <c>[^"]</c>), escapes
/// (<c>\d \w \s</c>, their negations, <c>\. \\ \n \t \uXXXX</c>, ...), groups (<c>(...)</c>, <c>(?:...)</c>),
/// alternation and the quantifiers <c>* + ? {m} {m,} {m,n}</c> (a lazy <c>?</c> after them changes nothing here).
/// A pattern anchored with <c>^</c> and <c>$</c> must match the whole string; without them, as JSON Schema says,
/// it must match somewhere in it. Back-references and look-arounds are refused (<see cref="ArgumentException"/>).
/// </summary>
/// <remarks>
/// Hand-written rather than System.Text.RegularExpressions: .NET's engine answers "does this string match",
/// while generation asks "can this prefix still become a match", which needs the automaton itself. The regex
/// becomes a Thompson NFA, and the NFA a DFA lazily, one state set at a time as generation visits it.
/// Characters inside a patterned string are written without JSON escapes (a pattern that needs <c>"</c> or
/// <c>\</c> cannot be satisfied).
/// </remarks>
internal sealed class StringPattern
{
    /// <summary>Most NFA states one pattern may take (a bound on <c>{m,n}</c> copies).</summary>
    public const int MaxStates = 20_000;

    // NFA: per state, either a character set with one successor, or up to two epsilon successors.
    private readonly List<CharSet?> _sets = [];
    private readonly List<int> _next = [];
    private readonly List<int> _alt = []; // second epsilon successor, -1 none
    private readonly int _accept;
    private readonly Dictionary<string, DfaState> _dfa = new(StringComparer.Ordinal);

    private StringPattern(string source, Node root)
    {
        Source = source;
        int start = NewState(null);
        var (s, e) = Build(root);
        _next[start] = s;
        _accept = NewState(null);
        _next[e] = _accept;
        Start = Intern(Closure([start]));
    }

    /// <summary>The pattern as the schema gave it.</summary>
    public string Source { get; }

    /// <summary>The state before any character.</summary>
    public DfaState Start { get; }

    /// <summary>Compiles <paramref name="pattern"/>; the message of a refusal says what and where.</summary>
    /// <exception cref="ArgumentException">a syntax error, or a construct that is not a regular language.</exception>
    public static StringPattern Parse(string pattern)
    {
        var parser = new Parser(pattern);
        var node = parser.ParseAll(out bool anchoredStart, out bool anchoredEnd);
        // Unanchored ends match anywhere: any characters may come before and after.
        if (!anchoredStart) node = new Node.Seq([new Node.Repeat(new Node.Set(CharSet.Any), 0, -1), node]);
        if (!anchoredEnd) node = new Node.Seq([node, new Node.Repeat(new Node.Set(CharSet.Any), 0, -1)]);
        return new StringPattern(pattern, node);
    }

    /// <summary>The state after <paramref name="cp"/>, or null when the pattern cannot take it there.</summary>
    public DfaState? Step(DfaState from, int cp)
    {
        if (from.Next.TryGetValue(cp, out var to)) return to;
        var targets = new List<int>();
        foreach (int s in from.States)
            if (_sets[s] is { } set && set.Contains(cp)) targets.Add(_next[s]);
        to = targets.Count == 0 ? null : Intern(Closure(targets));
        if (from.Next.Count < 4096) from.Next[cp] = to;
        return to;
    }

    /// <summary>Whether some character of U+0080 and above can follow in <paramref name="state"/> (for a UTF-8 sequence still incomplete).</summary>
    public bool TakesNonAscii(DfaState state)
    {
        foreach (int s in state.States)
            if (_sets[s] is { } set && set.AnyAbove(0x7F)) return true;
        return false;
    }

    private int NewState(CharSet? set)
    {
        if (_sets.Count >= MaxStates) throw new ArgumentException($"pattern {Source}: more than {MaxStates} automaton states (a large repetition count?)");
        _sets.Add(set);
        _next.Add(-1);
        _alt.Add(-1);
        return _sets.Count - 1;
    }

    /// <summary>Thompson's construction: the fragment's entry state and its exit state (an epsilon state whose successor is patched by the caller).</summary>
    private (int Start, int End) Build(Node node)
    {
        switch (node)
        {
            case Node.Set set:
                {
                    int s = NewState(set.Chars), e = NewState(null);
                    _next[s] = e;
                    return (s, e);
                }
            case Node.Seq seq:
                {
                    int s = NewState(null), cur = s;
                    foreach (var part in seq.Parts)
                    {
                        var (ps, pe) = Build(part);
                        _next[cur] = ps;
                        cur = pe;
                    }
                    return (s, cur);
                }
            case Node.Alt alt:
                {
                    // A chain of two-way splits into the branches, all joining at one exit.
                    int e = NewState(null);
                    int entry = -1, prevSplit = -1;
                    for (int i = 0; i < alt.Branches.Count; i++)
                    {
                        var (bs, be) = Build(alt.Branches[i]);
                        _next[be] = e;
                        int split = NewState(null);
                        _next[split] = bs;
                        if (prevSplit < 0) entry = split;
                        else _alt[prevSplit] = split;
                        prevSplit = split;
                    }
                    return (entry, e);
                }
            case Node.Repeat rep:
                {
                    int s = NewState(null), cur = s;
                    for (int i = 0; i < rep.Min; i++)
                    {
                        var (ps, pe) = Build(rep.Body);
                        _next[cur] = ps;
                        cur = pe;
                    }
                    if (rep.Max < 0)
                    {
                        // loop: split into the body (back to the split) or out
                        int split = NewState(null), e = NewState(null);
                        var (ps, pe) = Build(rep.Body);
                        _next[cur] = split;
                        _next[split] = ps;
                        _alt[split] = e;
                        _next[pe] = split;
                        return (s, e);
                    }
                    int exit = NewState(null);
                    for (int i = rep.Min; i < rep.Max; i++)
                    {
                        int split = NewState(null);
                        var (ps, pe) = Build(rep.Body);
                        _next[cur] = split;
                        _next[split] = ps;
                        _alt[split] = exit;
                        cur = pe;
                    }
                    _next[cur] = exit;
                    return (s, exit);
                }
            default:
                throw new InvalidOperationException(node.GetType().Name);
        }
    }

    /// <summary>The states reachable from <paramref name="states"/> by epsilon moves, keeping those that read a character and the accepting one.</summary>
    private int[] Closure(List<int> states)
    {
        var seen = new HashSet<int>();
        var stack = new Stack<int>(states);
        var kept = new List<int>();
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            if (s < 0 || !seen.Add(s)) continue;
            if (_sets[s] is not null || s == _accept) { kept.Add(s); continue; }
            stack.Push(_next[s]);
            stack.Push(_alt[s]);
        }
        kept.Sort();
        return [.. kept];
    }

    private DfaState Intern(int[] states)
    {
        string key = string.Join(',', states);
        if (_dfa.TryGetValue(key, out var known)) return known;
        var state = new DfaState(states, Array.IndexOf(states, _accept) >= 0);
        if (_dfa.Count < 100_000) _dfa[key] = state;
        return state;
    }

    /// <summary>A set of NFA states (a DFA state): its transitions, taken once, are kept.</summary>
    internal sealed class DfaState(int[] states, bool accepting)
    {
        public int[] States { get; } = states;

        /// <summary>The string may end here.</summary>
        public bool Accepting { get; } = accepting;

        public Dictionary<int, DfaState?> Next { get; } = [];
    }

    /// <summary>A set of code points: sorted, disjoint inclusive ranges, possibly negated.</summary>
    internal sealed class CharSet(List<(int Lo, int Hi)> ranges, bool negated)
    {
        public static readonly CharSet Any = new([(0, 0x10FFFF)], false);

        public bool Contains(int cp)
        {
            bool inside = false;
            foreach (var (lo, hi) in ranges)
                if (cp >= lo && cp <= hi) { inside = true; break; }
            return inside != negated;
        }

        public bool AnyAbove(int cp)
        {
            if (negated) return true; // a negated class always leaves some non-ASCII character in
            foreach (var (_, hi) in ranges)
                if (hi > cp) return true;
            return false;
        }
    }

    private abstract record Node
    {
        public sealed record Set(CharSet Chars) : Node;
        public sealed record Seq(List<Node> Parts) : Node;
        public sealed record Alt(List<Node> Branches) : Node;
        public sealed record Repeat(Node Body, int Min, int Max) : Node; // Max -1: no bound
    }

    /// <summary>A recursive-descent parser of the supported regex syntax.</summary>
    private sealed class Parser(string text)
    {
        /// <summary>Deepest nesting of groups (the parser and the construction recurse per level).</summary>
        private const int MaxDepth = 64;

        private int _pos;
        private int _depth;

        public Node ParseAll(out bool anchoredStart, out bool anchoredEnd)
        {
            anchoredStart = text.StartsWith('^');
            if (anchoredStart) _pos = 1;
            anchoredEnd = false;
            var node = ParseAlt(top: true);
            if (_pos < text.Length && text[_pos] == '$' && _pos == text.Length - 1)
            {
                anchoredEnd = true;
                _pos++;
            }
            if (_pos < text.Length) throw Error(text[_pos] == ')' ? "unbalanced ')'" : $"unexpected '{text[_pos]}'");
            return node;
        }

        private ArgumentException Error(string what) => new($"pattern {text}: {what} at character {_pos + 1}");

        private Node ParseAlt(bool top)
        {
            var branches = new List<Node> { ParseSeq(top) };
            while (_pos < text.Length && text[_pos] == '|')
            {
                _pos++;
                branches.Add(ParseSeq(top));
            }
            return branches.Count == 1 ? branches[0] : new Node.Alt(branches);
        }

        private Node ParseSeq(bool top)
        {
            var parts = new List<Node>();
            while (_pos < text.Length && text[_pos] is not ('|' or ')'))
            {
                if (text[_pos] == '$')
                {
                    if (top && _pos == text.Length - 1) break;
                    throw Error("'$' is supported only at the end");
                }
                if (text[_pos] == '^') throw Error("'^' is supported only at the start");
                var atom = ParseAtom();
                parts.Add(ParseQuantifier(atom));
            }
            return parts.Count == 1 ? parts[0] : new Node.Seq(parts);
        }

        private Node ParseQuantifier(Node atom)
        {
            while (_pos < text.Length)
            {
                char c = text[_pos];
                int min, max;
                if (c == '*') { min = 0; max = -1; _pos++; }
                else if (c == '+') { min = 1; max = -1; _pos++; }
                else if (c == '?') { min = 0; max = 1; _pos++; }
                else if (c == '{' && TryBraces(out min, out max)) { }
                else break;
                if (_pos < text.Length && text[_pos] == '?') _pos++; // lazy: the same language
                if (max >= 0 && min > max) throw Error($"{{{min},{max}}}: the minimum is above the maximum");
                if (min > 1000 || max > 1000) throw Error("a repetition count above 1000");
                atom = new Node.Repeat(atom, min, max);
            }
            return atom;
        }

        private bool TryBraces(out int min, out int max)
        {
            min = max = 0;
            int end = text.IndexOf('}', _pos);
            if (end < 0) return false;
            string inner = text[(_pos + 1)..end];
            int comma = inner.IndexOf(',');
            if (comma < 0)
            {
                if (!int.TryParse(inner, out min) || min < 0) return false;
                max = min;
            }
            else
            {
                if (!int.TryParse(inner[..comma], out min) || min < 0) return false;
                string hi = inner[(comma + 1)..];
                if (hi.Length == 0) max = -1;
                else if (!int.TryParse(hi, out max) || max < 0) return false;
            }
            _pos = end + 1;
            return true;
        }

        private Node ParseAtom()
        {
            char c = text[_pos];
            switch (c)
            {
                case '(':
                    if (++_depth > MaxDepth) throw Error($"groups nested deeper than {MaxDepth}");
                    _pos++;
                    if (_pos < text.Length && text[_pos] == '?')
                    {
                        if (_pos + 1 < text.Length && text[_pos + 1] == ':') _pos += 2;
                        else throw Error("look-arounds and named groups are not supported");
                    }
                    var inner = ParseAlt(top: false);
                    if (_pos >= text.Length || text[_pos] != ')') throw Error("missing ')'");
                    _pos++;
                    _depth--;
                    return inner;
                case '[':
                    return new Node.Set(ParseClass());
                case '.':
                    _pos++;
                    return new Node.Set(new CharSet([(0x0A, 0x0A), (0x0D, 0x0D)], negated: true)); // any but a line end
                case '\\':
                    return new Node.Set(ParseEscape(inClass: false));
                case '*' or '+' or '?' or '{' when c != '{' || TryPeekBraces():
                    throw Error($"'{c}' has nothing to repeat");
                default:
                    int cp = char.ConvertToUtf32(text, _pos);
                    _pos += char.IsSurrogatePair(text, _pos) ? 2 : 1;
                    return new Node.Set(new CharSet([(cp, cp)], false));
            }
        }

        private bool TryPeekBraces()
        {
            int save = _pos;
            bool ok = TryBraces(out _, out _);
            _pos = save;
            return ok;
        }

        private CharSet ParseClass()
        {
            _pos++; // '['
            bool negated = _pos < text.Length && text[_pos] == '^';
            if (negated) _pos++;
            var ranges = new List<(int, int)>();
            var negatedParts = new List<CharSet>();
            bool first = true;
            while (true)
            {
                if (_pos >= text.Length) throw Error("missing ']'");
                if (text[_pos] == ']' && !first) { _pos++; break; }
                first = false;
                int lo;
                if (text[_pos] == '\\')
                {
                    var esc = ParseEscape(inClass: true);
                    if (!IsSingle(esc, out lo))
                    {
                        negatedParts.Add(esc);
                        continue;
                    }
                }
                else
                {
                    lo = char.ConvertToUtf32(text, _pos);
                    _pos += char.IsSurrogatePair(text, _pos) ? 2 : 1;
                }
                int hi = lo;
                if (_pos + 1 < text.Length && text[_pos] == '-' && text[_pos + 1] != ']')
                {
                    _pos++;
                    if (text[_pos] == '\\')
                    {
                        if (!IsSingle(ParseEscape(inClass: true), out hi)) throw Error("a class escape cannot end a range");
                    }
                    else
                    {
                        hi = char.ConvertToUtf32(text, _pos);
                        _pos += char.IsSurrogatePair(text, _pos) ? 2 : 1;
                    }
                    if (hi < lo) throw Error("a range out of order");
                }
                ranges.Add((lo, hi));
            }
            if (negatedParts.Count == 0) return new CharSet(Normalize(ranges), negated);
            // \d, \w, \s (and their negations) inside a class: resolve into plain ranges over the code points.
            var all = new List<(int, int)>(ranges);
            foreach (var part in negatedParts) all.AddRange(Ranges(part));
            return new CharSet(Normalize(all), negated);
        }

        private static bool IsSingle(CharSet set, out int cp)
        {
            var r = Ranges(set);
            cp = r.Count == 1 && r[0].Lo == r[0].Hi ? r[0].Lo : -1;
            return cp >= 0;
        }

        /// <summary>The code point ranges a set covers (a negated set complemented).</summary>
        private static List<(int Lo, int Hi)> Ranges(CharSet set)
        {
            var result = new List<(int, int)>();
            int at = 0;
            bool inside = set.Contains(0);
            for (int cp = 1; cp <= 0x10000; cp++)
            {
                bool now = cp < 0x10000 && set.Contains(cp);
                if (now == inside) continue;
                if (inside) result.Add((at, cp - 1));
                at = cp;
                inside = now;
            }
            if (set.Contains(0x10FFFF)) result.Add((0x10000, 0x10FFFF));
            return result;
        }

        private static List<(int Lo, int Hi)> Normalize(List<(int Lo, int Hi)> ranges)
        {
            ranges.Sort();
            var merged = new List<(int, int)>();
            foreach (var (lo, hi) in ranges)
            {
                if (merged.Count > 0 && lo <= merged[^1].Item2 + 1) merged[^1] = (merged[^1].Item1, Math.Max(merged[^1].Item2, hi));
                else merged.Add((lo, hi));
            }
            return merged;
        }

        private static readonly List<(int, int)> Digits = [('0', '9')];
        private static readonly List<(int, int)> Word = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        private static readonly List<(int, int)> Space = [(9, 13), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)];

        private CharSet ParseEscape(bool inClass)
        {
            _pos++; // '\'
            if (_pos >= text.Length) throw Error("a '\\' at the end");
            char c = text[_pos++];
            switch (c)
            {
                case 'd': return new CharSet(Digits, false);
                case 'D': return new CharSet(Digits, true);
                case 'w': return new CharSet(Word, false);
                case 'W': return new CharSet(Word, true);
                case 's': return new CharSet(Space, false);
                case 'S': return new CharSet(Space, true);
                case 'n': return Single('\n');
                case 'r': return Single('\r');
                case 't': return Single('\t');
                case 'f': return Single('\f');
                case 'v': return Single('\v');
                case '0': return Single('\0');
                case 'b' when inClass: return Single('\b');
                case 'u':
                    if (_pos + 4 <= text.Length && int.TryParse(text.AsSpan(_pos, 4), System.Globalization.NumberStyles.HexNumber, null, out int u))
                    {
                        _pos += 4;
                        return Single(u);
                    }
                    throw Error("\\u needs four hex digits");
                case 'x':
                    if (_pos + 2 <= text.Length && int.TryParse(text.AsSpan(_pos, 2), System.Globalization.NumberStyles.HexNumber, null, out int x))
                    {
                        _pos += 2;
                        return Single(x);
                    }
                    throw Error("\\x needs two hex digits");
                default:
                    if (char.IsAsciiLetterOrDigit(c)) throw Error($"\\{c} is not supported (back-references, word boundaries and the like are not a regular language)");
                    return Single(c);
            }
        }

        private static CharSet Single(int cp) => new([(cp, cp)], false);
    }
}
