using EdgeLlm.Download;
using EdgeLlm.Gguf;
using EdgeLlm.Models;

namespace EdgeLlm.Cli;

/// <summary>The exit codes of every <c>edgellm</c> command (a contract: scripts test them).</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Bad command line: unknown option, missing or invalid value (NaN, out of range).</summary>
    public const int Usage = 1;
    /// <summary>The model or the input is wrong: corrupt GGUF, unknown architecture, unsupported type, prompt too long, missing file.</summary>
    public const int ModelOrInput = 2;
    /// <summary>A download failed or a file could not be read or written.</summary>
    public const int DownloadOrIo = 3;

    /// <summary>
    /// Runs a command body, turning exceptions into one clear line on stderr and an exit code.
    /// No stack trace unless <paramref name="verbose"/>.
    /// </summary>
    public static int Guard(bool verbose, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception ex)
        {
            var (code, kind) = Classify(ex);
            Console.Error.WriteLine($"edgellm: {kind}: {MessageOf(ex)}");
            if (verbose) Console.Error.WriteLine(ex);
            return code;
        }
    }

    /// <summary>
    /// The message a user reads: an <see cref="ArgumentException"/>'s " (Parameter 'x')" names a .NET
    /// parameter, not a command-line option, so it is left out (the message itself names the value).
    /// </summary>
    internal static string MessageOf(Exception ex)
    {
        string message = ex.Message;
        if (ex is ArgumentException { ParamName: { } name })
        {
            string suffix = $" (Parameter '{name}')";
            if (message.EndsWith(suffix, StringComparison.Ordinal)) message = message[..^suffix.Length];
        }

        return message;
    }

    private static (int Code, string Kind) Classify(Exception ex) => ex switch
    {
        UsageException => (Usage, "usage error"),
        GgufFormatException => (ModelOrInput, "model error"),
        ModelLoadException => (ModelOrInput, "model error"),
        InputException => (ModelOrInput, "input error"),
        FileNotFoundException or DirectoryNotFoundException => (ModelOrInput, "input error"),
        DownloadException => (DownloadOrIo, "download error"),
        IOException or UnauthorizedAccessException => (DownloadOrIo, "I/O error"),
        EdgeLlm.Sampling.InvalidLogitsException => (ModelOrInput, "model error"),
        ArgumentException => (Usage, "usage error"),
        NotSupportedException => (ModelOrInput, "not supported"),
        InvalidOperationException => (ModelOrInput, "input error"),
        OutOfMemoryException or InsufficientMemoryException => (ModelOrInput, "model error"),
        _ => (ModelOrInput, "error"),
    };
}

/// <summary>A bad command-line value (exit code 1).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Bad input data, e.g. a prompt longer than the context (exit code 2).</summary>
public sealed class InputException(string message) : Exception(message);
