namespace EdgeLlm.Sampling;

/// <summary>
/// The JSON Schema string formats <see cref="JsonConstraint"/> enforces, with llama.cpp's
/// json-schema-to-grammar rules: <c>date</c> (<c>2024-02-29</c>: month 01–12, day 01–31),
/// <c>time</c> (<c>13:45:00</c>, optional <c>.123</c>, then <c>Z</c> or an offset <c>+02:00</c>: RFC 3339 wants the
/// zone), <c>date-time</c> (a date, <c>T</c>, a time) and <c>uuid</c> (8-4-4-4-12 hex digits). Each format is a
/// set of fixed-length alternatives, one class of ASCII characters per position, matched in parallel (a bit
/// per alternative). Other formats (<c>email</c>, <c>uri</c>, ...) are not enforced.
/// </summary>
internal sealed class StringFormat
{
    private StringFormat(string name, List<string[]> alternatives)
    {
        if (alternatives.Count > 128) throw new InvalidOperationException($"format {name}: {alternatives.Count} alternatives, at most 128");
        Name = name;
        Alternatives = [.. alternatives];
        All = alternatives.Count == 128 ? UInt128.MaxValue : (UInt128.One << alternatives.Count) - 1;
    }

    /// <summary>The format's name in a schema.</summary>
    public string Name { get; }

    /// <summary>Per alternative, per character position, the characters allowed there.</summary>
    public string[][] Alternatives { get; }

    /// <summary>Every alternative alive: the mask a string starts with.</summary>
    public UInt128 All { get; }

    /// <summary>The alternatives of <paramref name="alive"/> that take <paramref name="c"/> at position <paramref name="position"/>.</summary>
    public UInt128 Step(UInt128 alive, int position, char c)
    {
        UInt128 next = UInt128.Zero;
        for (int i = 0; i < Alternatives.Length; i++)
        {
            if ((alive & (UInt128.One << i)) == UInt128.Zero) continue;
            var alt = Alternatives[i];
            if (position < alt.Length && alt[position].Contains(c)) next |= UInt128.One << i;
        }
        return next;
    }

    /// <summary>Whether an alternative of <paramref name="alive"/> ends after <paramref name="length"/> characters.</summary>
    public bool CanEnd(UInt128 alive, int length)
    {
        for (int i = 0; i < Alternatives.Length; i++)
            if ((alive & (UInt128.One << i)) != UInt128.Zero && Alternatives[i].Length == length) return true;
        return false;
    }

    /// <summary>The format named <paramref name="name"/>, or null when it is not one enforced.</summary>
    public static StringFormat? Named(string name) => name switch
    {
        "date" => Date,
        "time" => Time,
        "date-time" => DateTime,
        "uuid" => Uuid,
        _ => null,
    };

    private const string Digit = "0123456789", Hex = "0123456789abcdefABCDEF";

    private static List<string[]> Lit(string s) => [s.Select(c => c.ToString()).ToArray()];

    private static List<string[]> Cls(string chars, int count = 1) => [Enumerable.Repeat(chars, count).ToArray()];

    private static List<string[]> Cat(params List<string[]>[] parts) =>
        parts.Aggregate(new List<string[]> { Array.Empty<string>() }, (acc, p) => acc.SelectMany(a => p.Select(b => a.Concat(b).ToArray())).ToList());

    private static List<string[]> Alt(params List<string[]>[] parts) => parts.SelectMany(p => p).ToList();

    private static List<string[]> Opt(List<string[]> p) => Alt(p, [Array.Empty<string>()]);

    private static readonly List<string[]> DatePart = Cat(Cls(Digit, 4), Lit("-"),
        Alt(Cat(Lit("0"), Cls("123456789")), Cat(Lit("1"), Cls("012"))), Lit("-"),
        Alt(Cat(Lit("0"), Cls("123456789")), Cat(Cls("12"), Cls(Digit)), Cat(Lit("3"), Cls("01"))));

    private static readonly List<string[]> Hour = Alt(Cat(Cls("01"), Cls(Digit)), Cat(Lit("2"), Cls("0123")));

    private static readonly List<string[]> Minute = Cat(Cls("012345"), Cls(Digit));

    private static readonly List<string[]> TimePart = Cat(Hour, Lit(":"), Minute, Lit(":"), Minute, Opt(Cat(Lit("."), Cls(Digit, 3))),
        Alt(Lit("Z"), Cat(Cls("+-"), Hour, Lit(":"), Minute)));

    private static readonly StringFormat Date = new("date", DatePart);

    private static readonly StringFormat Time = new("time", TimePart);

    private static readonly StringFormat DateTime = new("date-time", Cat(DatePart, Lit("T"), TimePart));

    private static readonly StringFormat Uuid = new("uuid", Cat(Cls(Hex, 8), Lit("-"), Cls(Hex, 4), Lit("-"), Cls(Hex, 4), Lit("-"), Cls(Hex, 4), Lit("-"), Cls(Hex, 12)));
}
