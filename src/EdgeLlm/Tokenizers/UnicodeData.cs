using System.Globalization;
using System.Text;

namespace EdgeLlm.Tokenizers;

/// <summary>
/// Code point classes as llama.cpp's unicode.cpp sees them (unicode_cpt_flags): one general category
/// group per code point plus the White_Space property. Categories come from .NET's Unicode tables;
/// llama.cpp ships its own (unicode-data.cpp), so a code point assigned in one Unicode version and not
/// in the other can differ; every other code point agrees.
/// </summary>
internal static class UnicodeData
{
    [Flags]
    internal enum CptFlags : ushort
    {
        None = 0,          // out of range (llama.cpp's unicode_cpt_flags{}): matches no class at all
        Undefined = 0x0001,
        Number = 0x0002,   // \p{N}
        Letter = 0x0004,   // \p{L}
        Separator = 0x0008,// \p{Z}
        AccentMark = 0x0010,// \p{M}
        Punctuation = 0x0020,// \p{P}
        Symbol = 0x0040,   // \p{S}
        Control = 0x0080,  // \p{C}
        CategoryMask = 0x00FF,
        Whitespace = 0x0100,
    }

    private static readonly CptFlags[] s_bmp = BuildBmp();

    private static CptFlags[] BuildBmp()
    {
        var t = new CptFlags[0x10000];
        for (int c = 0; c < t.Length; c++) t[c] = Compute(c);
        return t;
    }

    /// <summary>The flags of code point <paramref name="cpt"/>.</summary>
    public static CptFlags Flags(int cpt) => (uint)cpt < 0x10000 ? s_bmp[cpt] : (uint)cpt <= 0x10FFFF ? Compute(cpt) : CptFlags.Undefined;

    private static CptFlags Compute(int cpt)
    {
        CptFlags f;
        if (cpt is >= 0xD800 and <= 0xDFFF) f = CptFlags.Control; // surrogates are category Cs
        else
        {
            f = CharUnicodeInfo.GetUnicodeCategory(cpt) switch
            {
                UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                    or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CptFlags.Letter,
                UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => CptFlags.AccentMark,
                UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CptFlags.Number,
                UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CptFlags.Separator,
                UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                    or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
                    or UnicodeCategory.OtherPunctuation => CptFlags.Punctuation,
                UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol => CptFlags.Symbol,
                UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse => CptFlags.Control,
                _ => CptFlags.Undefined,
            };
        }
        if (IsWhiteSpaceProperty(cpt)) f |= CptFlags.Whitespace;
        return f;
    }

    /// <summary>The Unicode White_Space property (llama.cpp's unicode_set_whitespace).</summary>
    private static bool IsWhiteSpaceProperty(int c) =>
        c is (>= 0x09 and <= 0x0D) or 0x20 or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    /// <summary>The code points of a string; a lone surrogate becomes U+FFFD (what its UTF-8 encoding would decode to).</summary>
    public static int[] CodePoints(string s)
    {
        var list = new List<int>(s.Length);
        foreach (var r in s.EnumerateRunes()) list.Add(r.Value); // EnumerateRunes yields U+FFFD for lone surrogates
        return list.ToArray();
    }

    /// <summary>Appends code point <paramref name="cpt"/> to a StringBuilder as UTF-16.</summary>
    public static void Append(StringBuilder sb, int cpt)
    {
        if (cpt < 0x10000) sb.Append((char)cpt);
        else
        {
            cpt -= 0x10000;
            sb.Append((char)(0xD800 + (cpt >> 10))).Append((char)(0xDC00 + (cpt & 0x3FF)));
        }
    }

    /// <summary>ASCII-only lower-casing, enough for the contraction checks ('S, 'T, ...).</summary>
    public static int ToLowerAscii(int c) => c is >= 'A' and <= 'Z' ? c + 32 : c;
}

/// <summary>
/// GPT-2's byte-level alphabet (bytes_to_unicode in openai/gpt-2 encoder.py, unicode_byte_to_utf8_map in
/// llama.cpp): printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the other 68 bytes map in
/// order to U+0100, U+0101, ... so that every byte is a visible character.
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = new char[256];
    private static readonly Dictionary<char, byte> s_charToByte = new();

    static ByteLevel()
    {
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool self = b is (>= 0x21 and <= 0x7E) or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            ByteToChar[b] = self ? (char)b : (char)(256 + n++);
            s_charToByte[ByteToChar[b]] = (byte)b;
        }
    }

    /// <summary>The byte a byte-level character stands for.</summary>
    public static bool TryGetByte(char c, out byte b) => s_charToByte.TryGetValue(c, out b);

    /// <summary>UTF-8 bytes of <paramref name="s"/>, each replaced by its byte-level character.</summary>
    public static string Encode(string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }
}
