using System.CommandLine;
using System.Text.RegularExpressions;

namespace EdgeLlm.Cli;

/// <summary>
/// Command-line parse errors (unknown options, missing values, values of the wrong type) in the
/// CLI's own form: one <c>edgellm: usage error: ...</c> line each on stderr, a pointer to the
/// command's help, exit code <see cref="ExitCodes.Usage"/>. System.CommandLine's own report names
/// .NET types (<c>System.Nullable`1[System.UInt64]</c>) and prints the whole help after them; a user
/// typing <c>--seed -5</c> wants to read which values the flag takes.
/// </summary>
public static partial class ParseErrors
{
    /// <summary>Writes the errors of <paramref name="parse"/> to <paramref name="stderr"/> and returns the exit code.</summary>
    public static int Report(ParseResult parse, TextWriter stderr)
    {
        foreach (var error in parse.Errors)
            stderr.WriteLine($"edgellm: usage error: {Describe(error.Message)}");
        var names = new List<string>();
        for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, c.Command.Name);
        names[0] = "edgellm"; // the root command's name is the executable's file name
        stderr.WriteLine($"Run '{string.Join(' ', names)} --help' for the options.");
        return ExitCodes.Usage;
    }

    /// <summary>
    /// The message of one parse error, with a value-type complaint rewritten as what the flag takes,
    /// e.g. "--seed takes a whole number >= 0, got '-5'". Other messages are kept as they are.
    /// </summary>
    public static string Describe(string message)
    {
        var m = TypeMismatch().Match(message);
        if (!m.Success) return message;
        string value = m.Groups["value"].Value, name = m.Groups["name"].Value, type = m.Groups["type"].Value;
        return $"{name} takes {Kind(type)}, got '{value}'";
    }

    private static string Kind(string type)
    {
        var inner = NullableOf().Match(type);
        if (inner.Success) type = inner.Groups[1].Value;
        return type switch
        {
            "System.Byte" or "System.UInt16" or "System.UInt32" or "System.UInt64" => "a whole number >= 0",
            "System.SByte" or "System.Int16" or "System.Int32" or "System.Int64" => "a whole number",
            "System.Single" or "System.Double" or "System.Decimal" => "a number",
            "System.Boolean" => "true or false",
            _ => $"a value of type {type}",
        };
    }

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|command|argument) '(?<name>[^']*)' as expected type '(?<type>[^']*)'\.?$", RegexOptions.Singleline)]
    private static partial Regex TypeMismatch();

    [GeneratedRegex(@"^System\.Nullable`1\[(.*)\]$")]
    private static partial Regex NullableOf();
}
