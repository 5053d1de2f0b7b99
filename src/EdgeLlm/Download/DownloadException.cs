namespace EdgeLlm.Download;

/// <summary>Why a download failed; see <see cref="DownloadException"/>.</summary>
public enum DownloadErrorKind
{
    /// <summary>The host could not be reached (DNS, refused or timed-out connection): the machine seems offline.</summary>
    Offline,
    /// <summary>The server answered 404: no such repository or file.</summary>
    NotFound,
    /// <summary>Another HTTP error status (401/403 for gated or missing repositories, 5xx after retries, ...).</summary>
    HttpError,
    /// <summary>The file's length differs from the expected one (the caller's, the hub's X-Linked-Size, or Content-Length). The partial file was deleted.</summary>
    SizeMismatch,
    /// <summary>The file's SHA-256 differs from the expected one (the caller's or the hub's X-Linked-Etag). The partial file was deleted.</summary>
    HashMismatch,
    /// <summary>The transfer broke off repeatedly; the partial file is kept and the next attempt resumes it.</summary>
    Interrupted,
    /// <summary>The cache could not be written (permissions, disk full, another process downloading the same file).</summary>
    Io,
}

/// <summary>
/// A model download failed. <see cref="Exception.Message"/> is written for the user (what happened, which URL, what to
/// do); <see cref="Kind"/> lets callers react (the CLI suggests <c>-m PATH</c> when offline).
/// </summary>
public sealed class DownloadException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DownloadException(DownloadErrorKind kind, string message, Uri? url = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        Url = url;
    }

    /// <summary>What went wrong.</summary>
    public DownloadErrorKind Kind { get; }

    /// <summary>The URL being downloaded, when known.</summary>
    public Uri? Url { get; }
}

/// <summary>A progress report: <paramref name="BytesDone"/> of <paramref name="TotalBytes"/> (null while unknown), resumed bytes included.</summary>
public readonly record struct DownloadProgress(long BytesDone, long? TotalBytes);
