using EdgeLlm.Tokenizers;

namespace EdgeLlm.Sampling;

/// <summary>
/// Constrains generation to one JSON object (OpenAI's <c>response_format: {"type": "json_object"}</c>,
/// llama.cpp's json.gbnf with an object at the root): a token is allowed only when its bytes keep the
/// output a prefix of valid JSON (RFC 8259: strings with valid escapes and valid UTF-8, numbers in
/// JSON's grammar, true/false/null), and once the object is closed only an end-of-generation token is.
/// </summary>
/// <remarks>
/// Written by hand rather than with System.Text.Json: its reader parses complete or streamed
/// documents but cannot say whether a byte prefix can still become valid JSON, which is the question
/// asked here for every candidate token. Whitespace follows llama.cpp's json.gbnf: none before the
/// root object, and between tokens nothing, one space, or a newline and up to <see cref="MaxIndent"/>
/// spaces or tabs (a model that only emits newlines would otherwise never finish); integer parts
/// have at most <see cref="MaxIntegerDigits"/> digits, and nesting is capped at <see cref="MaxDepth"/>.
/// Used as llama.cpp's common sampler uses a grammar: the sampled token is checked first, and only a
/// rejected token makes the sampler run again over the logits of the allowed tokens.
/// </remarks>
public sealed class JsonConstraint : TokenConstraint
{
    /// <summary>Most spaces or tabs after the newline of a line break between tokens of the JSON text (llama.cpp's json.gbnf: 20).</summary>
    public const int MaxIndent = 20;

    /// <summary>Most digits in a number's integer part (llama.cpp's json.gbnf: 16).</summary>
    public const int MaxIntegerDigits = 16;

    /// <summary>Deepest nesting of objects and arrays.</summary>
    public const int MaxDepth = 64;

    private readonly Tokenizer _tokenizer;
    private State _state = State.Start;

    /// <summary>A constraint at the start of the output (nothing generated yet).</summary>
    /// <param name="tokenizer">The model's tokenizer (token bytes, end-of-generation tokens).</param>
    /// <param name="schema">Also hold the object to this schema (<see cref="JsonSchemaNode"/>: types, properties, required, items, enums, length bounds); null: any object.</param>
    public JsonConstraint(Tokenizer tokenizer, JsonSchemaNode? schema = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _state = State.StartWith(schema);
    }

    /// <summary>The object is closed: only an end-of-generation token may follow.</summary>
    public override bool IsComplete => _state.Mode == Mode.Done;

    /// <inheritdoc/>
    protected override string Subject => "the JSON output";

    /// <summary>Whether <paramref name="token"/> may come next.</summary>
    public override bool Allows(int token)
    {
        if (_tokenizer.IsEndOfGeneration(token)) return IsComplete;
        if (IsComplete) return false;
        byte[] bytes = _tokenizer.TokenToBytes(token);
        if (bytes.Length == 0) return false; // control or unused tokens add no JSON
        var s = _state;
        foreach (byte b in bytes)
            if (!s.Feed(b)) return false;
        return true;
    }

    /// <summary>Records a token that <see cref="Allows"/> accepted.</summary>
    /// <exception cref="ArgumentException">the token is not allowed here.</exception>
    public override void Accept(int token)
    {
        if (_tokenizer.IsEndOfGeneration(token))
        {
            if (!IsComplete) throw new ArgumentException($"token {token} ends generation before the JSON object is complete", nameof(token));
            return;
        }
        var s = _state;
        byte[] bytes = _tokenizer.TokenToBytes(token);
        bool ok = bytes.Length > 0 && !IsComplete;
        for (int i = 0; ok && i < bytes.Length; i++) ok = s.Feed(bytes[i]);
        if (!ok) throw new ArgumentException($"token {token} ('{_tokenizer.TokenText(token)}') does not continue the JSON output", nameof(token));
        _state = s;
    }

    /// <summary>True when <paramref name="text"/> (UTF-8) is a complete JSON object as this constraint accepts it (and, with <paramref name="schema"/>, follows it).</summary>
    public static bool IsCompleteObject(ReadOnlySpan<byte> text, JsonSchemaNode? schema = null)
    {
        var s = State.StartWith(schema);
        foreach (byte b in text)
            if (!s.Feed(b)) return false;
        return s.Mode == Mode.Done;
    }

    /// <summary>True when <paramref name="text"/> (UTF-8) can still be continued into a JSON object (following <paramref name="schema"/> when given).</summary>
    public static bool IsPrefix(ReadOnlySpan<byte> text, JsonSchemaNode? schema = null)
    {
        var s = State.StartWith(schema);
        foreach (byte b in text)
            if (!s.Feed(b)) return false;
        return true;
    }

    private enum Mode : byte
    {
        Start,          // before the root object: whitespace or '{'
        Value,          // a value is expected (after ':' or ',' in an array, or after '[')
        ValueOrClose,   // after '[': a value or ']'
        KeyOrClose,     // after '{': '"' or '}'
        Key,            // after ',' in an object: '"'
        Colon,          // after a key
        AfterValue,     // after a value inside a container: ',' or the closer
        String,         // inside a string (key or value)
        Escape,         // after '\' in a string
        Hex,            // inside \uXXXX
        Number,         // inside a number (Sub says where)
        Literal,        // inside true / false / null
        Raw,            // inside a number, true, false or null that must be one of a schema's enum values
        Done,           // the root object is closed
    }

    // Number sub-states
    private const byte NumMinus = 0, NumZero = 1, NumInt = 2, NumDot = 3, NumFrac = 4, NumE = 5, NumESign = 6, NumExp = 7;

    /// <summary>
    /// An immutable stack of open containers, shared between copies of a state: object or array, its
    /// schema (null: unconstrained), the properties already written (bit i: Schema.Properties[i]) and
    /// the schema of the value after the current key; for an array, the items begun so far (counted
    /// only under a schema, for minItems / maxItems).
    /// </summary>
    private sealed record Frame(bool IsObject, Frame? Parent, JsonSchemaNode? Schema = null, ulong Seen = 0, JsonSchemaNode? Pending = null, int Count = 0)
    {
        /// <summary>Keys come from a property list.</summary>
        public bool ListedKeys => Schema is { Properties.Length: > 0 };

        /// <summary>Every listed property is written, and no other key may come (no additionalProperties).</summary>
        public bool AllSeen => ListedKeys && Schema!.Additional is null && Seen == AllBits(Schema.Properties.Length);
    }

    private static ulong AllBits(int n) => n >= 64 ? ulong.MaxValue : (1UL << n) - 1;

    private struct State
    {
        public Mode Mode;
        public byte Sub;          // number sub-state; hex digits left; literal index
        public byte Literal;      // 't', 'f' or 'n'
        public bool InKey;        // the string being read is an object key
        public byte Utf8Left;     // continuation bytes still expected in a string
        public byte Utf8Min;      // lowest value allowed for the next continuation byte (overlongs, surrogates)
        public byte Utf8Max;      // highest value allowed for the next continuation byte
        public byte WsState;      // in the current gap between tokens: 0 nothing yet, 1 a space (ends it), 2 a newline (indent may follow)
        public byte WsRun;        // spaces/tabs after that newline; digits of a number's integer part
        public byte Depth;
        public Frame? Stack;
        public JsonSchemaNode? Next;     // the schema of the value about to start (null: any)
        public bool Schema;              // a schema is in force
        public bool IntegerOnly;         // the number being read must be an integer
        public byte[][]? MatchList;      // a string that must be one of these (escaped, without quotes): a listed key or an enum value
        public ulong Match;              // which of MatchList still match what was written
        public int MatchOffset;          // bytes of the string written so far
        public int StrLen;               // characters of the string value written so far (under minLength / maxLength)
        public int StrMin, StrMax;       // its minLength and maxLength (-1: no maximum)
        public bool SoftKeys;            // a key being read may be listed or not (properties with additionalProperties)
        public ulong SoftMatch;          // the listed keys it still matches
        public int SoftOffset;           // bytes of it read so far
        public StringPattern? Pattern;   // the string value being read must match this pattern
        public StringPattern.DfaState? PatternState; // where the pattern stands after the characters so far
        public int PatternCp;            // the code point of a UTF-8 sequence being read
        public StringFormat? Format;     // the string value being read must have this format
        public UInt128 FormatAlive;      // its alternatives still matching
        public bool NumBounded;          // the integer being read must lie in [NumMin, NumMax] (minimum / maximum)
        public bool NumNegative;         // it began with '-'
        public long NumAbs;              // the digits read so far, as a number
        public long NumMin, NumMax;

        public static State Start => new() { Mode = Mode.Start };

        public static State StartWith(JsonSchemaNode? schema) => new() { Mode = Mode.Start, Next = schema, Schema = schema is not null };

        private readonly bool Allowed(JsonTypes t) => Next is null || (Next.Types & t) != 0;

        private static bool IsWs(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r';

        public bool Feed(byte b)
        {
            // Whitespace between tokens: allowed wherever the grammar allows ws, capped.
            if (IsWs(b) && Mode is Mode.Value or Mode.ValueOrClose or Mode.KeyOrClose or Mode.Key or Mode.Colon or Mode.AfterValue)
            {
                // llama.cpp's json.gbnf: ws ::= | " " | "\n" [ \t]{0,20}
                switch (WsState)
                {
                    case 0:
                        if (b == (byte)' ') { WsState = 1; return true; }
                        if (b == (byte)'\n') { WsState = 2; WsRun = 0; return true; }
                        return false;
                    case 2:
                        if (b is (byte)' ' or (byte)'\t' && WsRun < MaxIndent) { WsRun++; return true; }
                        return false;
                    default:
                        return false;
                }
            }
            if (Mode is not (Mode.String or Mode.Escape or Mode.Hex or Mode.Number)) WsState = 0;

            switch (Mode)
            {
                case Mode.Start:
                    if (b != (byte)'{') return false;
                    if (Next?.AnyOf is not null) Next = Next.Pick(JsonTypes.Object);
                    if (!Allowed(JsonTypes.Object) || (Schema && Next is null)) return false;
                    return Open(isObject: true);
                case Mode.Value:
                    return StartValue(b);
                case Mode.ValueOrClose:
                    if (b == (byte)']') return Close(isObject: false);
                    if (Stack!.Schema is { } arr)
                    {
                        if (arr.MaxItems == 0) return false;
                        Stack = Stack with { Count = 1 };
                    }
                    return StartValue(b);
                case Mode.KeyOrClose:
                    if (b == (byte)'}') return Close(isObject: true);
                    if (b != (byte)'"') return false;
                    return StartKey();
                case Mode.Key:
                    if (b != (byte)'"') return false;
                    return StartKey();
                case Mode.Colon:
                    if (b != (byte)':') return false;
                    Mode = Mode.Value;
                    Next = Schema ? Stack!.Pending ?? JsonSchemaNode.AnyValue : null;
                    return true;
                case Mode.AfterValue:
                    return AfterValue(b);
                case Mode.String:
                    return StringByte(b);
                case Mode.Escape:
                    if (b == (byte)'u') { Mode = Mode.Hex; Sub = 4; return true; }
                    if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                    {
                        Mode = Mode.String;
                        return true;
                    }
                    return false;
                case Mode.Hex:
                    if (!Uri.IsHexDigit((char)b)) return false;
                    if (--Sub == 0) Mode = Mode.String;
                    return true;
                case Mode.Number:
                    return NumberByte(b);
                case Mode.Raw:
                    return RawByte(b);
                case Mode.Literal:
                    {
                        string word = Literal == (byte)'t' ? "true" : Literal == (byte)'f' ? "false" : "null";
                        if (b != (byte)word[Sub]) return false;
                        if (++Sub == word.Length) EndValue();
                        return true;
                    }
                default: // Done
                    return false;
            }
        }

        private bool Open(bool isObject)
        {
            if (Depth >= MaxDepth) return false;
            Stack = new Frame(isObject, Stack, Schema ? Next ?? JsonSchemaNode.AnyValue : null);
            Depth++;
            Mode = isObject ? Mode.KeyOrClose : Mode.ValueOrClose;
            if (!isObject && Schema) Next = Stack.Schema!.Items ?? JsonSchemaNode.AnyValue;
            return true;
        }

        /// <summary>The opening quote of a key: with a property list, the key must be one not written yet.</summary>
        /// <summary>
        /// A key of an object under a schema just closed: its value's schema becomes pending. A listed key
        /// (read softly, beside additionalProperties) takes its own and must not repeat; any other takes the
        /// additionalProperties schema, or any value in a free-form object.
        /// </summary>
        private bool KeyClosed()
        {
            var schema = Stack!.Schema;
            if (SoftKeys)
            {
                SoftKeys = false;
                var keys = schema!.KeyBytes;
                for (int i = 0; i < keys.Length; i++)
                {
                    if ((SoftMatch & (1UL << i)) == 0 || keys[i].Length != SoftOffset) continue;
                    if ((Stack.Seen & (1UL << i)) != 0) return false; // a listed key at most once
                    Stack = Stack with { Seen = Stack.Seen | (1UL << i), Pending = schema.Properties[i].Schema };
                    return true;
                }
            }
            Stack = Stack with { Pending = schema?.Additional ?? JsonSchemaNode.AnyValue };
            return true;
        }

        private bool StartKey()
        {
            Mode = Mode.String;
            InKey = true;
            MatchList = null;
            SoftKeys = false;
            if (Stack!.ListedKeys && Stack.Schema!.Additional is not null)
            {
                // Listed or not: read as a free key, noting which listed key it still spells.
                SoftKeys = true;
                SoftMatch = AllBits(Stack.Schema.Properties.Length);
                SoftOffset = 0;
            }
            else if (Stack.ListedKeys)
            {
                var props = Stack.Schema!.Properties;
                ulong open = AllBits(props.Length) & ~Stack.Seen;
                if (open == 0) return false;
                MatchList = Stack.Schema.KeyBytes;
                Match = open;
                MatchOffset = 0;
            }
            return true;
        }

        private bool Close(bool isObject)
        {
            if (Stack is null || Stack.IsObject != isObject) return false;
            if (!isObject && Stack.Schema is { } arr && Stack.Count < arr.MinItems) return false; // minItems not reached
            if (isObject && Stack.Schema is { } os && (os.Required & ~Stack.Seen) != 0) return false; // a required property is missing
            Stack = Stack.Parent;
            Depth--;
            EndValue();
            return true;
        }

        /// <summary>A value just ended: the enclosing container expects ',' or its closer; the root ends the output.</summary>
        private void EndValue() => Mode = Stack is null ? Mode.Done : Mode.AfterValue;

        private bool AfterValue(byte b)
        {
            if (b == (byte)',')
            {
                if (Stack!.IsObject)
                {
                    if (Stack.AllSeen) return false; // no listed key is left for another member
                    Mode = Mode.Key;
                }
                else
                {
                    Mode = Mode.Value;
                    if (Schema)
                    {
                        var arr = Stack.Schema!;
                        if (arr.MaxItems >= 0 && Stack.Count >= arr.MaxItems) return false; // maxItems reached
                        Stack = Stack with { Count = Stack.Count + 1 };
                        Next = arr.Items ?? JsonSchemaNode.AnyValue;
                    }
                }
                return true;
            }
            if (b == (byte)'}') return Close(isObject: true);
            if (b == (byte)']') return Close(isObject: false);
            return false;
        }

        private bool StartValue(byte b)
        {
            if (Next?.AnyOf is not null)
            {
                // the first byte's JSON type picks the alternative (JsonSchemaNode keeps them type-disjoint)
                var type = b switch
                {
                    (byte)'{' => JsonTypes.Object,
                    (byte)'[' => JsonTypes.Array,
                    (byte)'"' => JsonTypes.String,
                    (byte)'-' or (>= (byte)'0' and <= (byte)'9') => JsonTypes.Number | JsonTypes.Integer,
                    (byte)'t' or (byte)'f' => JsonTypes.Boolean,
                    (byte)'n' => JsonTypes.Null,
                    _ => JsonTypes.None,
                };
                if (type == JsonTypes.None || Next.Pick(type) is not { } alt) return false;
                Next = alt;
                return StartValue(b);
            }
            if (Next?.RawEnum is { } raw && b != (byte)'"')
            {
                // A number, boolean or null from the enum: written exactly as listed.
                Mode = Mode.Raw;
                MatchList = raw;
                Match = AllBits(raw.Length);
                MatchOffset = 0;
                return RawByte(b);
            }
            switch (b)
            {
                case (byte)'{': return Allowed(JsonTypes.Object) && Open(isObject: true);
                case (byte)'[': return Allowed(JsonTypes.Array) && Open(isObject: false);
                case (byte)'"':
                    if (!Allowed(JsonTypes.String)) return false;
                    Mode = Mode.String;
                    InKey = false;
                    StrLen = 0;
                    (StrMin, StrMax) = Next is { } sn ? (sn.MinLength, sn.MaxLength) : (0, -1);
                    Format = Next?.Format;
                    if (Format is not null) FormatAlive = Format.All;
                    Pattern = Next?.Pattern;
                    PatternState = Pattern?.Start;
                    MatchList = Next?.Enum;
                    if (MatchList is not null) { Match = AllBits(MatchList.Length); MatchOffset = 0; }
                    return true;
                case (byte)'-' or (>= (byte)'0' and <= (byte)'9'):
                    if (!Allowed(JsonTypes.Number | JsonTypes.Integer)) return false;
                    IntegerOnly = Next is not null && (Next.Types & JsonTypes.Number) == 0;
                    Mode = Mode.Number;
                    (Sub, WsRun) = b switch { (byte)'-' => (NumMinus, (byte)0), (byte)'0' => (NumZero, (byte)1), _ => (NumInt, (byte)1) };
                    NumBounded = IntegerOnly && Next!.HasIntegerBounds;
                    if (!NumBounded) return true;
                    (NumMin, NumMax, NumNegative, NumAbs) = (Next!.IntegerMin, Next.IntegerMax, b == (byte)'-', b == (byte)'-' ? 0 : b - '0');
                    return NumberViable();
                case (byte)'t' or (byte)'f' or (byte)'n':
                    if (!Allowed(b == (byte)'n' ? JsonTypes.Null : JsonTypes.Boolean)) return false;
                    Mode = Mode.Literal;
                    Literal = b;
                    Sub = 1;
                    return true;
                default:
                    return false;
            }
        }

        /// <summary>
        /// A byte of a string under a <c>pattern</c>: each character (a UTF-8 sequence once complete) steps the
        /// pattern's automaton; the closing quote needs it in an accepting state. No escapes (the characters are
        /// written as they are); the byte's UTF-8 well-formedness is <see cref="StringByte"/>'s to check.
        /// </summary>
        private bool PatternByte(StringPattern pattern, byte b)
        {
            if (b == (byte)'"')
            {
                if (!PatternState!.Accepting) return false;
                Pattern = null;
                PatternState = null;
                return true;
            }
            if (b == (byte)'\\' || b < 0x20) return false;
            if (Utf8Left > 0)
            {
                PatternCp = (PatternCp << 6) | (b & 0x3F);
                if (Utf8Left > 1) return true;
                PatternState = pattern.Step(PatternState!, PatternCp);
                return PatternState is not null;
            }
            if (b < 0x80)
            {
                PatternState = pattern.Step(PatternState!, b);
                return PatternState is not null;
            }
            PatternCp = b >= 0xF0 ? b & 0x07 : b >= 0xE0 ? b & 0x0F : b & 0x1F;
            return pattern.TakesNonAscii(PatternState!);
        }

        private bool StringByte(byte b)
        {
            if (MatchList is not null) return MatchByte(b);
            if (Format is { } format && !InKey)
            {
                // Every format is ASCII without escapes: one byte, one character.
                if (b == (byte)'"')
                {
                    if (!format.CanEnd(FormatAlive, StrLen) || StrLen < StrMin) return false;
                    Format = null;
                    EndValue();
                    return true;
                }
                if (b >= 0x80 || b == (byte)'\\' || (StrMax >= 0 && StrLen >= StrMax)) return false;
                FormatAlive = format.Step(FormatAlive, StrLen, (char)b);
                StrLen++;
                return FormatAlive != UInt128.Zero;
            }
            if (Pattern is { } pattern && !InKey && !PatternByte(pattern, b)) return false;
            if (InKey && SoftKeys && SoftMatch != 0 && b != (byte)'"')
            {
                // An escape in the key: compare no further (listed keys are matched as written, unescaped).
                ulong still = 0;
                var keys = Stack!.Schema!.KeyBytes;
                if (b != (byte)'\\')
                    for (int i = 0; i < keys.Length; i++)
                        if ((SoftMatch & (1UL << i)) != 0 && keys[i].Length > SoftOffset && keys[i][SoftOffset] == b) still |= 1UL << i;
                SoftMatch = still;
                SoftOffset++;
            }
            if (Utf8Left > 0)
            {
                if (b < Utf8Min || b > Utf8Max) return false;
                Utf8Left--;
                Utf8Min = 0x80;
                Utf8Max = 0xBF;
                return true;
            }
            if (b == (byte)'"')
            {
                if (InKey)
                {
                    InKey = false;
                    Mode = Mode.Colon;
                    if (Schema && !KeyClosed()) return false;
                }
                else
                {
                    if (StrLen < StrMin) return false; // minLength not reached
                    EndValue();
                }
                return true;
            }
            if (b < 0x20) return false; // control characters must be escaped
            if (b < 0x80 || b >= 0xC2)
            {
                // A character begins (an escape, an ASCII character or a UTF-8 lead byte): maxLength counts it.
                if (!InKey && StrMax >= 0 && StrLen >= StrMax) return false;
                StrLen++;
            }
            if (b == (byte)'\\') { Mode = Mode.Escape; return true; }
            if (b < 0x80) return true;
            // UTF-8 lead bytes, with the ranges of the next byte that keep the sequence well-formed (RFC 3629)
            (Utf8Left, Utf8Min, Utf8Max) = b switch
            {
                >= 0xC2 and <= 0xDF => ((byte)1, (byte)0x80, (byte)0xBF),
                0xE0 => ((byte)2, (byte)0xA0, (byte)0xBF),
                >= 0xE1 and <= 0xEC or 0xEE or 0xEF => ((byte)2, (byte)0x80, (byte)0xBF),
                0xED => ((byte)2, (byte)0x80, (byte)0x9F),
                0xF0 => ((byte)3, (byte)0x90, (byte)0xBF),
                >= 0xF1 and <= 0xF3 => ((byte)3, (byte)0x80, (byte)0xBF),
                0xF4 => ((byte)3, (byte)0x80, (byte)0x8F),
                _ => ((byte)0, (byte)0, (byte)0),
            };
            return Utf8Left > 0;
        }

        /// <summary>A byte of a string that must be one of <see cref="MatchList"/> (its escaped form, compared byte for byte).</summary>
        private bool MatchByte(byte b)
        {
            var list = MatchList!;
            if (b == (byte)'"')
            {
                for (int i = 0; i < list.Length; i++)
                {
                    if ((Match & (1UL << i)) == 0 || list[i].Length != MatchOffset) continue;
                    MatchList = null;
                    if (InKey)
                    {
                        InKey = false;
                        Mode = Mode.Colon;
                        Stack = Stack! with { Seen = Stack.Seen | (1UL << i), Pending = Stack.Schema!.Properties[i].Schema };
                    }
                    else EndValue();
                    return true;
                }
                // not the end of a candidate: the quote can only continue one as part of an escape (\")
            }
            ulong still = 0;
            for (int i = 0; i < list.Length; i++)
                if ((Match & (1UL << i)) != 0 && list[i].Length > MatchOffset && list[i][MatchOffset] == b) still |= 1UL << i;
            if (still == 0) return false;
            Match = still;
            MatchOffset++;
            return true;
        }

        /// <summary>A byte of a listed number / true / false / null; a byte no candidate continues ends the value when one is complete.</summary>
        private bool RawByte(byte b)
        {
            var list = MatchList!;
            ulong still = 0;
            for (int i = 0; i < list.Length; i++)
                if ((Match & (1UL << i)) != 0 && list[i].Length > MatchOffset && list[i][MatchOffset] == b) still |= 1UL << i;
            if (still != 0)
            {
                Match = still;
                MatchOffset++;
                return true;
            }
            for (int i = 0; i < list.Length; i++)
            {
                if ((Match & (1UL << i)) == 0 || list[i].Length != MatchOffset) continue;
                MatchList = null;
                EndValue();
                WsState = 0;
                return Feed(b);
            }
            return false;
        }

        /// <summary>
        /// Whether the integer begun so far can still end inside [NumMin, NumMax]: as it is, or with k more digits
        /// (|value| in [abs·10^k, abs·10^k + 10^k − 1], up to <see cref="MaxIntegerDigits"/> digits in all); "-" alone
        /// can still become any negative integer, or -0. A leading 0 takes no more digits.
        /// </summary>
        private readonly bool NumberViable()
        {
            int digits = Sub == NumMinus ? 0 : WsRun;
            if (digits > 0 && Fits(NumAbs, NumAbs)) return true;
            if (Sub == NumZero) return false;
            long scale = 1;
            for (int k = 1; digits + k <= MaxIntegerDigits; k++)
            {
                scale *= 10;
                // "-" alone: the first digit may be 1..9 (or 0, checked as -0 below).
                long lo = digits == 0 ? scale / 10 : NumAbs * scale, hi = digits == 0 ? scale - 1 : NumAbs * scale + scale - 1;
                if (Fits(lo, hi)) return true;
            }
            return digits == 0 && NumMin <= 0 && NumMax >= 0; // -0
        }

        /// <summary>Whether some magnitude in [lo, hi] (with the number's sign) lies in [NumMin, NumMax].</summary>
        private readonly bool Fits(long lo, long hi) =>
            NumNegative ? -hi <= NumMax && -lo >= NumMin : lo <= NumMax && hi >= NumMin;

        private bool NumberByte(byte b)
        {
            bool digit = b is >= (byte)'0' and <= (byte)'9';
            switch (Sub)
            {
                case NumMinus:
                    if (b == (byte)'0') { Sub = NumZero; WsRun = 1; NumAbs = 0; return !NumBounded || NumberViable(); }
                    if (digit) { Sub = NumInt; WsRun = 1; NumAbs = b - '0'; return !NumBounded || NumberViable(); }
                    return false;
                case NumZero:
                case NumInt:
                    if (digit && Sub == NumInt)
                    {
                        if (++WsRun > MaxIntegerDigits) return false;
                        NumAbs = NumAbs * 10 + (b - '0');
                        return !NumBounded || NumberViable();
                    }
                    if (IntegerOnly && b is (byte)'.' or (byte)'e' or (byte)'E') return false; // "type": "integer"
                    if (b == (byte)'.') { Sub = NumDot; return true; }
                    if (b is (byte)'e' or (byte)'E') { Sub = NumE; return true; }
                    break;
                case NumDot:
                    if (digit) { Sub = NumFrac; return true; }
                    return false;
                case NumFrac:
                    if (digit) return true;
                    if (b is (byte)'e' or (byte)'E') { Sub = NumE; return true; }
                    break;
                case NumE:
                    if (b is (byte)'+' or (byte)'-') { Sub = NumESign; return true; }
                    if (digit) { Sub = NumExp; return true; }
                    return false;
                case NumESign:
                    if (digit) { Sub = NumExp; return true; }
                    return false;
                case NumExp:
                    if (digit) return true;
                    break;
            }
            // The number is complete (0, digits, fraction or exponent): this byte belongs to what follows it.
            if (NumBounded)
            {
                long value = NumNegative ? -NumAbs : NumAbs;
                if (value < NumMin || value > NumMax) return false;
                NumBounded = false;
            }
            EndValue();
            WsState = 0;
            return Feed(b);
        }
    }
}
