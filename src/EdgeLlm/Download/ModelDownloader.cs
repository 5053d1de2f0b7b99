using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace EdgeLlm.Download;

/// <summary>
/// Downloads GGUF files from a Hugging Face hub into a local cache, once: the default model (stories260K) and any
/// <c>repo</c>/<c>file</c>. Files arrive in <c>NAME.part</c>, resume with an HTTP Range request after an interruption,
/// are checked against the expected size and SHA-256, and only then are renamed into place, so a file in the cache is
/// always complete.
/// </summary>
/// <remarks>
/// Layout: <c>{cache}/hf/{owner}/{name}/{file}</c>. The cache is <c>$EDGELLM_CACHE</c>, else <c>edgellm/</c> in the
/// platform's cache folder (<see cref="ResolveCacheDirectory()"/>); the hub is <c>$EDGELLM_HF_ENDPOINT</c>, else
/// https://huggingface.co. URLs follow the hub's <c>{endpoint}/{repo}/resolve/main/{file}</c>.
/// <para>
/// Hugging Face answers a resolve request for an LFS file with a redirect to its CDN, and the redirect carries
/// <c>X-Linked-Size</c> and <c>X-Linked-Etag</c> (the file's SHA-256). HttpClient would follow the redirect and drop
/// those headers, so redirects are followed here by hand (as huggingface_hub does) and the hub's headers are kept.
/// </para>
/// </remarks>
public sealed class ModelDownloader : IDisposable
{
    /// <summary>Hugging Face repository of the default model.</summary>
    public const string DefaultRepo = "ggml-org/models";
    /// <summary>Path of the default model inside <see cref="DefaultRepo"/> (Karpathy's stories260K, GGUF F32).</summary>
    public const string DefaultFile = "tinyllamas/stories260K.gguf";
    /// <summary>Size in bytes of the default model, checked even when the hub sends no size.</summary>
    public const long DefaultFileSize = 1_185_376;
    /// <summary>The public hub.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";
    /// <summary>Environment variable that overrides the hub endpoint.</summary>
    public const string EndpointVariable = "EDGELLM_HF_ENDPOINT";
    /// <summary>Environment variable that overrides the cache directory.</summary>
    public const string CacheVariable = "EDGELLM_CACHE";

    private const int MaxRedirects = 10;
    private const int BufferSize = 1 << 16;

    private readonly HttpClient _http;
    private readonly HttpMessageHandler? _ownedHandler;

    /// <summary>Creates a downloader.</summary>
    /// <param name="cacheDirectory">Cache root; null = <see cref="ResolveCacheDirectory()"/>.</param>
    /// <param name="endpoint">Hub base URL (http or https); null = <see cref="ResolveEndpoint()"/>.</param>
    /// <param name="handler">
    /// HTTP handler to send requests with (not disposed here); null = a SocketsHttpHandler. It must not follow
    /// redirects itself, or the hub's size and hash headers are lost.
    /// </param>
    public ModelDownloader(string? cacheDirectory = null, string? endpoint = null, HttpMessageHandler? handler = null)
    {
        CacheDirectory = Path.GetFullPath(cacheDirectory ?? ResolveCacheDirectory());
        Endpoint = ParseEndpoint(endpoint ?? ResolveEndpoint());
        if (handler is null)
        {
            handler = _ownedHandler = new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                ConnectTimeout = TimeSpan.FromSeconds(20),
                AutomaticDecompression = DecompressionMethods.None, // byte ranges address the stored bytes
            };
        }
        // The overall timeout is ours (StallTimeout per read); a big model legitimately takes hours.
        _http = new HttpClient(handler, disposeHandler: false) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("edgellm", "1.0"));
    }

    /// <summary>The cache root files are stored under.</summary>
    public string CacheDirectory { get; }

    /// <summary>The hub base URL, without a trailing slash.</summary>
    public Uri Endpoint { get; }

    /// <summary>How many requests one download may make before giving up on a transfer that keeps breaking off (≥ 1).</summary>
    public int MaxAttempts { get; init; } = 4;

    /// <summary>Give up on a request when no byte (or no response) arrives for this long; it then counts as an interruption.</summary>
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Delay before the second attempt; doubled for each further one.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The cache root from the environment: <c>$EDGELLM_CACHE</c>, else <c>edgellm</c> in the platform cache folder.</summary>
    public static string ResolveCacheDirectory() => ResolveCacheDirectory(Environment.GetEnvironmentVariable, CurrentPlatform(), HomeDirectory());

    /// <summary>The hub endpoint from the environment: <c>$EDGELLM_HF_ENDPOINT</c>, else https://huggingface.co.</summary>
    public static string ResolveEndpoint()
    {
        var env = Environment.GetEnvironmentVariable(EndpointVariable);
        return string.IsNullOrWhiteSpace(env) ? DefaultEndpoint : env;
    }

    internal enum Platform { Linux, MacOS, Windows }

    private static Platform CurrentPlatform() =>
        OperatingSystem.IsWindows() ? Platform.Windows : OperatingSystem.IsMacOS() ? Platform.MacOS : Platform.Linux;

    private static string HomeDirectory() => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    /// <summary>Cache resolution with the environment passed in, so tests need not change the process's environment.</summary>
    internal static string ResolveCacheDirectory(Func<string, string?> env, Platform platform, string home)
    {
        var own = env(CacheVariable);
        if (!string.IsNullOrWhiteSpace(own)) return own;
        string root = platform switch
        {
            Platform.Windows => env("LOCALAPPDATA") is { Length: > 0 } local ? local : Path.Combine(home, "AppData", "Local"),
            Platform.MacOS => Path.Combine(home, "Library", "Caches"),
            // XDG Base Directory spec: a relative $XDG_CACHE_HOME is invalid and must be ignored.
            _ => env("XDG_CACHE_HOME") is { Length: > 0 } xdg && Path.IsPathRooted(xdg) ? xdg : Path.Combine(home, ".cache"),
        };
        return Path.Combine(root, "edgellm");
    }

    private static Uri ParseEndpoint(string endpoint)
    {
        if (!Uri.TryCreate(endpoint.TrimEnd('/'), UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
            throw new ArgumentException($"hub endpoint ({EndpointVariable}) must be an absolute http(s) URL, got \"{endpoint}\"", nameof(endpoint));
        return uri;
    }

    /// <summary>The download URL of <paramref name="file"/> in <paramref name="repo"/> on the main branch.</summary>
    public Uri GetUrl(string repo, string file)
    {
        var (owner, name, segments) = CheckNames(repo, file);
        string path = string.Join('/', segments.Select(Uri.EscapeDataString));
        return new Uri($"{Endpoint.AbsoluteUri.TrimEnd('/')}/{Uri.EscapeDataString(owner)}/{Uri.EscapeDataString(name)}/resolve/main/{path}");
    }

    /// <summary>Where <paramref name="file"/> of <paramref name="repo"/> lives in the cache (whether or not it is there).</summary>
    public string GetCachePath(string repo, string file)
    {
        var (owner, name, segments) = CheckNames(repo, file);
        return Path.Combine([CacheDirectory, "hf", owner, name, .. segments]);
    }

    /// <summary>The default model's cache path.</summary>
    public string DefaultModelPath => GetCachePath(DefaultRepo, DefaultFile);

    /// <summary>The cached file when it is present (and of <paramref name="expectedSize"/> when given), else null. No network.</summary>
    public string? TryGetCached(string repo, string file, long? expectedSize = null)
    {
        var path = GetCachePath(repo, file);
        var info = new FileInfo(path);
        return info.Exists && (expectedSize is null || info.Length == expectedSize) ? path : null;
    }

    // Repository "owner/name" and a relative file path, both kept from escaping the cache folder.
    private static (string Owner, string Name, string[] Segments) CheckNames(string repo, string file)
    {
        ArgumentNullException.ThrowIfNull(repo);
        ArgumentNullException.ThrowIfNull(file);
        var parts = repo.Split('/');
        if (parts.Length != 2 || !parts.All(IsSafeName))
            throw new ArgumentException($"repository must look like \"owner/name\" (letters, digits, '-', '_', '.'), got \"{repo}\"", nameof(repo));
        var segments = file.Split('/');
        if (file.Contains('\\') || segments.Any(s => s.Length == 0 || s is "." or ".." || s.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || s.Contains(':')))
            throw new ArgumentException($"file must be a relative path inside the repository (no '..', no empty parts), got \"{file}\"", nameof(file));
        return (parts[0], parts[1], segments);
    }

    private static bool IsSafeName(string s) =>
        s.Length > 0 && s is not "." and not ".." && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    /// <summary>
    /// Returns the path of the default model (stories260K from ggml-org/models), downloading it on first use.
    /// </summary>
    /// <exception cref="DownloadException">The download failed; the message says why and what to do.</exception>
    public Task<string> EnsureDefaultModelAsync(IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default) =>
        DownloadAsync(DefaultRepo, DefaultFile, DefaultFileSize, null, progress, cancellationToken);

    /// <summary>
    /// Returns the cached path of <paramref name="file"/> from <paramref name="repo"/>, downloading it first when it is
    /// not cached. A partial download left by an earlier run is resumed.
    /// </summary>
    /// <param name="repo">Hub repository, "owner/name".</param>
    /// <param name="file">Path of the file in the repository.</param>
    /// <param name="expectedSize">Size the file must have; null = trust the hub (X-Linked-Size / Content-Length).</param>
    /// <param name="expectedSha256">SHA-256 (hex) the file must have; null = the hub's X-Linked-Etag/ETag when it holds one.</param>
    /// <param name="progress">Receives (bytes done, total) as bytes arrive.</param>
    /// <param name="cancellationToken">Stops the download; the partial file is kept for resuming.</param>
    /// <exception cref="DownloadException">The download failed; the message says why and what to do.</exception>
    public async Task<string> DownloadAsync(string repo, string file, long? expectedSize = null, string? expectedSha256 = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (expectedSize is < 0) throw new ArgumentOutOfRangeException(nameof(expectedSize), expectedSize, "expected size must be >= 0");
        if (expectedSha256 is not null && NormalizeSha256(expectedSha256) is null)
            throw new ArgumentException($"expected SHA-256 must be 64 hex digits, got \"{expectedSha256}\"", nameof(expectedSha256));
        if (MaxAttempts < 1) throw new InvalidOperationException($"{nameof(MaxAttempts)} must be >= 1, got {MaxAttempts}");

        var target = GetCachePath(repo, file);
        var url = GetUrl(repo, file);
        var cached = TryGetCached(repo, file, expectedSize);
        if (cached is not null) return cached;

        var part = target + ".part";
        FileStream stream;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            // FileShare.None also takes an advisory lock on Unix: a second process downloading the same file fails here.
            stream = new FileStream(part, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, BufferSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DownloadException(DownloadErrorKind.Io,
                $"cannot write {part} ({e.Message}); is another edgellm downloading the same file, or is the cache ({CacheDirectory}) read-only? Set {CacheVariable} to another folder.", url, e);
        }

        var job = new Job(url, stream, expectedSize, NormalizeSha256(expectedSha256), progress);
        bool keepPart = true;
        try
        {
            await RunAsync(job, cancellationToken).ConfigureAwait(false);
            Verify(job);
            progress?.Report(new DownloadProgress(stream.Length, stream.Length));
            stream.Dispose();
            File.Move(part, target, overwrite: true); // rename(2): atomic within one folder
            return target;
        }
        catch (DownloadException e) when (e.Kind is DownloadErrorKind.SizeMismatch or DownloadErrorKind.HashMismatch)
        {
            keepPart = false;
            throw;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DownloadException(DownloadErrorKind.Io, $"cannot write the download of {url} to {part}: {e.Message}", url, e);
        }
        finally
        {
            stream.Dispose();
            job.Hash.Dispose();
            if (!keepPart) TryDelete(part);
        }
    }

    /// <summary>State of one download across its requests.</summary>
    private sealed class Job(Uri url, FileStream stream, long? expectedSize, string? expectedSha256, IProgress<DownloadProgress>? progress)
    {
        public Uri Url { get; } = url;
        public FileStream Stream { get; } = stream;
        public long? ExpectedSize { get; } = expectedSize;
        public string? ExpectedSha256 { get; } = expectedSha256;
        public IProgress<DownloadProgress>? Progress { get; } = progress;
        public IncrementalHash Hash { get; set; } = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        public long HashedUpTo { get; set; }     // the hash covers bytes [0, HashedUpTo) of the part
        public long? HubSize { get; set; }       // X-Linked-Size
        public string? HubSha256 { get; set; }   // X-Linked-Etag, or an ETag that is a SHA-256
        public long? ServerTotal { get; set; }   // Content-Length / Content-Range total
        public bool Complete { get; set; }

        public long? KnownSize => ExpectedSize ?? HubSize ?? ServerTotal;

        public void Restart()
        {
            Stream.SetLength(0);
            Hash.Dispose();
            Hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            HashedUpTo = 0;
        }
    }

    private async Task RunAsync(Job job, CancellationToken ct)
    {
        string lastProblem = "";
        for (int attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            if (attempt > 1)
                await Task.Delay(RetryDelay * (1 << Math.Min(attempt - 2, 6)), ct).ConfigureAwait(false);
            try
            {
                if (await AttemptAsync(job, ct).ConfigureAwait(false)) return;
                lastProblem = "the server restarted the transfer";
            }
            catch (RetryableException e)
            {
                lastProblem = e.Message;
            }
        }
        long have = job.Stream.Length;
        if (have == 0 && lastProblem.StartsWith("HTTP ", StringComparison.Ordinal))
            throw new DownloadException(DownloadErrorKind.HttpError,
                $"{job.Url} answered {lastProblem} {MaxAttempts} time(s); the server may be busy or down: try again later.", job.Url);
        string of = job.KnownSize is long total ? $" of {total:N0}" : "";
        throw new DownloadException(DownloadErrorKind.Interrupted,
            $"download of {job.Url} did not complete in {MaxAttempts} attempt(s) (last: {lastProblem}); {have:N0}{of} bytes are kept in {job.Stream.Name}: run again to resume.", job.Url);
    }

    /// <summary>Signals a failure worth another request (a broken transfer, a 5xx).</summary>
    private sealed class RetryableException(string message) : Exception(message);

    /// <summary>One request from the current end of the part file. True when the file is complete.</summary>
    private async Task<bool> AttemptAsync(Job job, CancellationToken ct)
    {
        long offset = job.Stream.Length;
        if (job.KnownSize is long known && offset > known) { job.Restart(); offset = 0; }

        using var response = await SendAsync(job, offset, ct).ConfigureAwait(false);
        var status = response.StatusCode;
        var content = response.Content.Headers;

        if (status == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // 416 to "bytes=N-": nothing at or after N. Complete when N is the file's size, else our part is bad.
            long? total = content.ContentRange?.Length;
            if (total is long t && t == offset) { job.ServerTotal = t; await HashUpToAsync(job, offset, ct).ConfigureAwait(false); job.Complete = true; return true; }
            job.Restart();
            return false;
        }
        if (status == HttpStatusCode.NotFound)
            throw new DownloadException(DownloadErrorKind.NotFound, $"not found (HTTP 404): {job.Url}; check the repository and file name.", job.Url);
        if ((int)status >= 500 || status == HttpStatusCode.TooManyRequests)
            throw new RetryableException($"HTTP {(int)status} {response.ReasonPhrase}");
        if (status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            throw new DownloadException(DownloadErrorKind.HttpError,
                $"HTTP {(int)status} {response.ReasonPhrase} for {job.Url}: the repository may not exist, or may be gated and need an access token.", job.Url);
        if (status != HttpStatusCode.OK && status != HttpStatusCode.PartialContent)
            throw new DownloadException(DownloadErrorKind.HttpError, $"HTTP {(int)status} {response.ReasonPhrase} for {job.Url}.", job.Url);

        if (status == HttpStatusCode.OK)
        {
            // A full body: the server ignored Range (or none was sent), so start over.
            if (offset > 0) job.Restart();
            offset = 0;
            job.ServerTotal = content.ContentLength;
        }
        else
        {
            var range = content.ContentRange;
            if (range?.From != offset)
            {
                job.Restart(); // not the range we asked for: drop the part and ask for everything next time
                return false;
            }
            job.ServerTotal = range.Length;
        }
        CheckAnnouncedSize(job);
        await HashUpToAsync(job, offset, ct).ConfigureAwait(false);

        long? size = job.KnownSize;
        job.Progress?.Report(new DownloadProgress(offset, size));
        await CopyBodyAsync(job, response, size, ct).ConfigureAwait(false);

        long have = job.Stream.Length;
        if (size is long s && have < s)
            throw new RetryableException($"the connection closed at {have:N0} of {s:N0} bytes");
        job.Complete = true;
        return true;
    }

    // The hub and the caller must agree with the server before any byte is written.
    private static void CheckAnnouncedSize(Job job)
    {
        long? expected = job.ExpectedSize ?? job.HubSize;
        if (expected is long e && job.ServerTotal is long t && t != e)
        {
            string source = job.ExpectedSize is not null ? "expected" : "the hub's X-Linked-Size says";
            throw new DownloadException(DownloadErrorKind.SizeMismatch,
                $"size mismatch for {job.Url}: {source} {e:N0} bytes, the server sends {t:N0}; the partial download was deleted.", job.Url);
        }
    }

    private async Task CopyBodyAsync(Job job, HttpResponseMessage response, long? size, CancellationToken ct)
    {
        var buffer = new byte[BufferSize];
        job.Stream.Position = job.Stream.Length;
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await using var body = await ReadNetworkAsync(() => response.Content.ReadAsStreamAsync(ct), job, ct).ConfigureAwait(false);
        try
        {
            while (true)
            {
                stall.CancelAfter(StallTimeout);
                int n = await ReadNetworkAsync(() => body.ReadAsync(buffer, stall.Token).AsTask(), job, ct).ConfigureAwait(false);
                if (n == 0) break;
                long have = job.Stream.Length;
                if (size is long s && have + n > s)
                {
                    string source = job.ExpectedSize is not null ? "expected" : job.HubSize is not null ? "the hub's X-Linked-Size says" : "Content-Length says";
                    throw new DownloadException(DownloadErrorKind.SizeMismatch,
                        $"size mismatch for {job.Url}: {source} {s:N0} bytes, the server sent more ({have + n:N0} so far); the partial download was deleted.", job.Url);
                }
                // Disk errors here are not network errors: they propagate as IOException and end the download.
                await job.Stream.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                job.Hash.AppendData(buffer, 0, n);
                job.HashedUpTo += n;
                job.Progress?.Report(new DownloadProgress(have + n, size));
            }
        }
        finally
        {
            await job.Stream.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    // Runs one network read, turning a broken connection or a stall into a RetryableException.
    private async Task<T> ReadNetworkAsync<T>(Func<Task<T>> read, Job job, CancellationToken ct)
    {
        try
        {
            return await read().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new RetryableException($"no data for {StallTimeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            throw new RetryableException($"the transfer broke off at {job.Stream.Length:N0} bytes: {e.Message}");
        }
    }

    // Brings the running hash up to `offset` by reading back what an earlier run left in the part file.
    private static async Task HashUpToAsync(Job job, long offset, CancellationToken ct)
    {
        if (job.HashedUpTo >= offset) return;
        var buffer = new byte[BufferSize];
        job.Stream.Position = job.HashedUpTo;
        while (job.HashedUpTo < offset)
        {
            int n = await job.Stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, offset - job.HashedUpTo)), ct).ConfigureAwait(false);
            if (n == 0) throw new IOException($"{job.Stream.Name} shrank while being read");
            job.Hash.AppendData(buffer, 0, n);
            job.HashedUpTo += n;
        }
    }

    /// <summary>GET from <paramref name="offset"/>, following redirects by hand to keep the hub's X-Linked-* headers.</summary>
    private async Task<HttpResponseMessage> SendAsync(Job job, long offset, CancellationToken ct)
    {
        var url = job.Url;
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (offset > 0) request.Headers.Range = new RangeHeaderValue(offset, null);
            HttpResponseMessage response;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(StallTimeout);
                try
                {
                    response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
                {
                    if (hop == 0 && offset == 0) throw Offline(job.Url, $"no answer within {StallTimeout.TotalSeconds:0} s", e);
                    throw new RetryableException($"no answer from {url.Host} within {StallTimeout.TotalSeconds:0} s");
                }
                catch (HttpRequestException e) when (IsUnreachable(e))
                {
                    throw Offline(job.Url, e.InnerException?.Message ?? e.Message, e);
                }
                catch (HttpRequestException e)
                {
                    throw new RetryableException($"request to {url.Host} failed: {e.Message}");
                }
            }
            ReadHubHeaders(job, response);
            int code = (int)response.StatusCode;
            if (code is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location)
            {
                response.Dispose();
                if (hop == MaxRedirects)
                    throw new DownloadException(DownloadErrorKind.HttpError, $"more than {MaxRedirects} redirects for {job.Url}", job.Url);
                url = new Uri(url, location);
                continue;
            }
            return response;
        }
    }

    private static bool IsUnreachable(HttpRequestException e) =>
        e.HttpRequestError is HttpRequestError.NameResolutionError or HttpRequestError.ConnectionError
        || e.InnerException is SocketException;

    private static DownloadException Offline(Uri url, string reason, Exception inner) =>
        new(DownloadErrorKind.Offline,
            $"cannot reach {url.Host} to download {url} ({reason}): this machine seems to be offline. " +
            "Pass -m PATH to run a local GGUF model file instead.", url, inner);

    // X-Linked-Size / X-Linked-Etag come with the hub's redirect for LFS files; a plain ETag is the SHA-256 only when
    // it has 64 hex digits (for small non-LFS files it is a git blob SHA-1, 40 digits). The first answer wins.
    private static void ReadHubHeaders(Job job, HttpResponseMessage response)
    {
        if (job.HubSize is null && response.Headers.TryGetValues("X-Linked-Size", out var sizes)
            && long.TryParse(sizes.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out long size))
            job.HubSize = size;
        if (job.HubSha256 is null)
        {
            if (response.Headers.TryGetValues("X-Linked-Etag", out var linked))
                job.HubSha256 = NormalizeSha256(linked.FirstOrDefault());
            if (job.HubSha256 is null && response.Headers.ETag is { } etag)
                job.HubSha256 = NormalizeSha256(etag.Tag);
        }
    }

    private static string? NormalizeSha256(string? tag)
    {
        if (tag is null) return null;
        var s = tag.Trim();
        if (s.StartsWith("W/", StringComparison.Ordinal)) s = s[2..];
        s = s.Trim('"').ToLowerInvariant();
        return s.Length == 64 && s.All(char.IsAsciiHexDigit) ? s : null;
    }

    private static void Verify(Job job)
    {
        long have = job.Stream.Length;
        if (job.KnownSize is long size && have != size)
            throw new DownloadException(DownloadErrorKind.SizeMismatch,
                $"size mismatch for {job.Url}: expected {size:N0} bytes, got {have:N0}; the partial download was deleted.", job.Url);
        string? expected = job.ExpectedSha256 ?? job.HubSha256;
        if (expected is null) return;
        string got = Convert.ToHexStringLower(job.Hash.GetHashAndReset());
        if (got != expected)
        {
            string source = job.ExpectedSha256 is not null ? "expected" : "the hub says";
            throw new DownloadException(DownloadErrorKind.HashMismatch,
                $"SHA-256 mismatch for {job.Url}: {source} {expected}, got {got}; the partial download was deleted.", job.Url);
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _http.Dispose();
        _ownedHandler?.Dispose();
    }
}
