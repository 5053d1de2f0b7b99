using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using EdgeLlm.Download;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Download;

/// <summary>
/// A stand-in for the Hugging Face hub on loopback, serving the shared stories260K.gguf the way the hub serves an
/// LFS file: the resolve URL answers 302 to a CDN URL with X-Linked-Size and X-Linked-Etag, and the CDN honours Range.
/// Switches make it misbehave.
/// </summary>
internal sealed class FakeHub : IAsyncDisposable
{
    public const string ResolvePath = "/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf";
    public const string CdnPath = "/cdn/blob";

    public byte[] Data { get; set; } = File.ReadAllBytes(SharedData.Model("stories260K"));
    public bool Redirect { get; set; } = true;
    public string? LinkedEtag { get; set; }
    public long? LinkedSize { get; set; }
    public int? CutFirstBodyAfter { get; set; }   // the first body breaks off after this many bytes
    public bool IgnoreRange { get; set; }
    public byte[] ExtraBytes { get; set; } = [];  // appended to the file, announced in Content-Length
    public bool OmitContentLength { get; set; }
    public int FailFirstBodiesWith503 { get; set; }
    public string? BodyETag { get; set; }          // an ETag on the file response itself
    public TaskCompletionSource? HoldBodyAfterFirstChunk { get; set; } // send 64 KiB, then wait for this
    private int _bodies;

    public LoopbackHttpServer Server { get; }

    public FakeHub()
    {
        LinkedEtag = $"\"{Convert.ToHexStringLower(SHA256.HashData(Data))}\"";
        LinkedSize = Data.Length;
        Server = new LoopbackHttpServer(HandleAsync);
    }

    public IEnumerable<LoopbackHttpServer.Request> BodyRequests =>
        Server.Requests.Where(r => r.Path == (Redirect ? CdnPath : ResolvePath));

    private async Task HandleAsync(LoopbackHttpServer.Request r, Stream s)
    {
        if (r.Path == ResolvePath && Redirect)
        {
            var headers = new List<(string, string)> { ("Location", CdnPath + "?sig=abc") };
            if (LinkedEtag is not null) headers.Add(("X-Linked-Etag", LinkedEtag));
            if (LinkedSize is not null) headers.Add(("X-Linked-Size", LinkedSize.Value.ToString()));
            await LoopbackHttpServer.WriteAsync(s, 302, "Found", headers, default, 0);
            return;
        }
        if (r.Path != (Redirect ? CdnPath : ResolvePath))
        {
            await LoopbackHttpServer.WriteAsync(s, 404, "Not Found", [], "Entry not found"u8.ToArray(), 15);
            return;
        }
        byte[] full = [.. Data, .. ExtraBytes];
        int first = Interlocked.Increment(ref _bodies);
        if (first <= FailFirstBodiesWith503)
        {
            await LoopbackHttpServer.WriteAsync(s, 503, "Service Unavailable", [], default, 0);
            return;
        }
        long start = 0;
        var range = r.Header("Range");
        if (range is not null && !IgnoreRange)
        {
            start = long.Parse(range["bytes=".Length..].TrimEnd('-'));
            if (start >= full.Length)
            {
                await LoopbackHttpServer.WriteAsync(s, 416, "Range Not Satisfiable", [("Content-Range", $"bytes */{full.Length}")], default, 0);
                return;
            }
        }
        var body = full.AsMemory((int)start);
        var head = new List<(string, string)>();
        if (start > 0) head.Add(("Content-Range", $"bytes {start}-{full.Length - 1}/{full.Length}"));
        if (BodyETag is not null) head.Add(("ETag", BodyETag));
        long? length = OmitContentLength ? null : body.Length;
        if (first == 1 && CutFirstBodyAfter is int cut) body = body[..cut]; // announce all, send part, close
        if (HoldBodyAfterFirstChunk is { } hold)
        {
            await LoopbackHttpServer.WriteAsync(s, 200, "OK", head, body[..65536], length);
            await s.FlushAsync();
            await hold.Task;
            return;
        }
        await LoopbackHttpServer.WriteAsync(s, start > 0 ? 206 : 200, start > 0 ? "Partial Content" : "OK", head, body, length);
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}

public sealed class ModelDownloaderTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "edgellm-dl-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private ModelDownloader Downloader(FakeHub hub, int maxAttempts = 4) =>
        new(_cache, hub.Server.BaseUri.AbsoluteUri, handler: null) { MaxAttempts = maxAttempts, RetryDelay = TimeSpan.FromMilliseconds(5), StallTimeout = TimeSpan.FromSeconds(10) };

    private sealed class ListProgress : IProgress<DownloadProgress>
    {
        public List<DownloadProgress> Reports { get; } = [];
        public void Report(DownloadProgress value) { lock (Reports) Reports.Add(value); }
    }

    [Fact]
    public async Task DefaultModel_DownloadsIntact_ThenComesFromTheCache()
    {
        await using var hub = new FakeHub();
        using var dl = Downloader(hub);
        var progress = new ListProgress();
        var path = await dl.EnsureDefaultModelAsync(progress);

        Assert.Equal(Path.Combine(_cache, "hf", "ggml-org", "models", "tinyllamas", "stories260K.gguf"), path);
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));
        Assert.False(File.Exists(path + ".part"));
        Assert.Equal(new DownloadProgress(ModelDownloader.DefaultFileSize, ModelDownloader.DefaultFileSize), progress.Reports[^1]);
        Assert.All(progress.Reports, p => Assert.Equal(ModelDownloader.DefaultFileSize, p.TotalBytes));
        output.WriteLine($"{progress.Reports.Count} progress reports; requests: {string.Join(", ", hub.Server.Requests.Select(r => r.Path))}");

        int requests = hub.Server.Requests.Count;
        Assert.Equal(path, await dl.EnsureDefaultModelAsync());
        Assert.Equal(requests, hub.Server.Requests.Count); // cached: no network
    }

    [Fact]
    public async Task InterruptedTransfer_IsResumedWithRange()
    {
        await using var hub = new FakeHub { CutFirstBodyAfter = 300_000 };
        using var dl = Downloader(hub);
        var path = await dl.EnsureDefaultModelAsync();

        var bodies = hub.BodyRequests.ToList();
        Assert.Equal(2, bodies.Count);
        Assert.Null(bodies[0].Header("Range"));
        Assert.Equal("bytes=300000-", bodies[1].Header("Range"));
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task InterruptedRun_KeepsThePart_AndTheNextRunResumes()
    {
        await using var hub = new FakeHub { CutFirstBodyAfter = 500_000 };
        using (var once = Downloader(hub, maxAttempts: 1))
        {
            var e = await Assert.ThrowsAsync<DownloadException>(() => once.EnsureDefaultModelAsync());
            output.WriteLine(e.Message);
            Assert.Equal(DownloadErrorKind.Interrupted, e.Kind);
            Assert.Contains("run again to resume", e.Message);
            Assert.Equal(500_000, new FileInfo(once.DefaultModelPath + ".part").Length);
        }
        using var again = Downloader(hub);
        var path = await again.EnsureDefaultModelAsync();
        Assert.Equal("bytes=500000-", hub.BodyRequests.Last().Header("Range"));
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path)); // the SHA-256 check covered the resumed bytes too
    }

    [Fact]
    public async Task ServerIgnoringRange_RestartsFromZero()
    {
        await using var hub = new FakeHub { IgnoreRange = true };
        using var dl = Downloader(hub);
        Directory.CreateDirectory(Path.GetDirectoryName(dl.DefaultModelPath)!);
        await File.WriteAllBytesAsync(dl.DefaultModelPath + ".part", new byte[1000]); // stale junk
        var path = await dl.EnsureDefaultModelAsync();
        Assert.Equal("bytes=1000-", hub.BodyRequests.Single().Header("Range"));
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task CompletePart_Answered416_IsVerifiedAndKept()
    {
        await using var hub = new FakeHub();
        using var dl = Downloader(hub);
        Directory.CreateDirectory(Path.GetDirectoryName(dl.DefaultModelPath)!);
        await File.WriteAllBytesAsync(dl.DefaultModelPath + ".part", hub.Data);
        var path = await dl.EnsureDefaultModelAsync();
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));
        Assert.Equal($"bytes={hub.Data.Length}-", hub.BodyRequests.Single().Header("Range"));
    }

    [Fact]
    public async Task CorruptCompletePart_FailsTheHashCheck_AndIsDeleted()
    {
        await using var hub = new FakeHub();
        using var dl = Downloader(hub);
        Directory.CreateDirectory(Path.GetDirectoryName(dl.DefaultModelPath)!);
        var bad = (byte[])hub.Data.Clone();
        bad[12345] ^= 1;
        await File.WriteAllBytesAsync(dl.DefaultModelPath + ".part", bad);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        Assert.Equal(DownloadErrorKind.HashMismatch, e.Kind);
        Assert.False(File.Exists(dl.DefaultModelPath + ".part"));
        Assert.False(File.Exists(dl.DefaultModelPath));
    }

    [Fact]
    public async Task MissingFile_Is404_NamingTheUrl()
    {
        await using var hub = new FakeHub();
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.DownloadAsync("ggml-org/models", "nope.gguf"));
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.NotFound, e.Kind);
        Assert.Contains($"{hub.Server.BaseUri.AbsoluteUri}ggml-org/models/resolve/main/nope.gguf", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dl.GetCachePath("ggml-org/models", "nope.gguf")));
    }

    [Fact]
    public async Task ServerAnnouncingAnotherSize_IsASizeMismatch()
    {
        await using var hub = new FakeHub { ExtraBytes = new byte[100], LinkedSize = null, LinkedEtag = null };
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.SizeMismatch, e.Kind);
        Assert.Contains("1,185,376", e.Message);
        Assert.Contains("1,185,476", e.Message);
        Assert.False(File.Exists(dl.DefaultModelPath + ".part"));
        Assert.False(File.Exists(dl.DefaultModelPath));
    }

    [Fact]
    public async Task ExtraBytesWithoutContentLength_AreASizeMismatch()
    {
        await using var hub = new FakeHub { ExtraBytes = new byte[5000], OmitContentLength = true };
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.SizeMismatch, e.Kind);
        Assert.Contains("sent more", e.Message);
        Assert.False(File.Exists(dl.DefaultModelPath + ".part"));
    }

    [Fact]
    public async Task HubSizeDisagreeingWithTheServer_IsASizeMismatch()
    {
        await using var hub = new FakeHub { LinkedSize = 1_185_000 };
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.DownloadAsync(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile));
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.SizeMismatch, e.Kind);
        Assert.Contains("X-Linked-Size says 1,185,000", e.Message);
    }

    [Fact]
    public async Task WrongSha256Header_IsAHashMismatch_AndThePartIsDeleted()
    {
        string wrong = Convert.ToHexStringLower(SHA256.HashData("not the model"u8));
        await using var hub = new FakeHub { LinkedEtag = $"\"{wrong}\"" };
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.HashMismatch, e.Kind);
        Assert.Contains(wrong, e.Message);
        Assert.Contains(Convert.ToHexStringLower(SHA256.HashData(hub.Data)), e.Message);
        Assert.False(File.Exists(dl.DefaultModelPath + ".part"));
        Assert.False(File.Exists(dl.DefaultModelPath));
    }

    [Fact]
    public async Task CallerSha256_IsChecked_WithoutHubHeaders()
    {
        await using var hub = new FakeHub { Redirect = false, LinkedEtag = null, LinkedSize = null };
        using var dl = Downloader(hub);
        string right = Convert.ToHexStringLower(SHA256.HashData(hub.Data));
        var path = await dl.DownloadAsync(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile, null, right.ToUpperInvariant());
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));

        File.Delete(path);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.DownloadAsync(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile, null, new string('0', 64)));
        Assert.Equal(DownloadErrorKind.HashMismatch, e.Kind);
    }

    [Fact]
    public async Task ClosedPort_SaysOffline_AndSuggestsALocalModel()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var dl = new ModelDownloader(_cache, $"http://127.0.0.1:{port}");
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.Offline, e.Kind);
        Assert.Contains("offline", e.Message);
        Assert.Contains("-m PATH", e.Message);
    }

    [Fact]
    public async Task ServerError_IsRetried()
    {
        await using var hub = new FakeHub { FailFirstBodiesWith503 = 2 };
        using var dl = Downloader(hub);
        var path = await dl.EnsureDefaultModelAsync();
        Assert.Equal(3, hub.BodyRequests.Count());
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task PersistentServerError_GivesUpWithTheStatus()
    {
        await using var hub = new FakeHub { FailFirstBodiesWith503 = 100 };
        using var dl = Downloader(hub, maxAttempts: 2);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        output.WriteLine(e.Message);
        Assert.Equal(DownloadErrorKind.HttpError, e.Kind);
        Assert.Contains("HTTP 503", e.Message);
    }

    [Fact]
    public async Task GitSha1ETag_IsNotTakenForASha256()
    {
        // Small non-LFS files carry a 40-digit git blob id as ETag: not a SHA-256, so it must not fail the check.
        await using var hub = new FakeHub { Redirect = false, LinkedEtag = null, LinkedSize = null, BodyETag = "\"" + new string('a', 40) + "\"" };
        using var dl = Downloader(hub);
        Assert.Equal(hub.Data, await File.ReadAllBytesAsync(await dl.EnsureDefaultModelAsync()));
    }

    [Fact]
    public async Task Sha256ETag_OnTheFileResponse_IsChecked()
    {
        await using var hub = new FakeHub { Redirect = false, LinkedEtag = null, LinkedSize = null, BodyETag = "\"" + new string('b', 64) + "\"" };
        using var dl = Downloader(hub);
        var e = await Assert.ThrowsAsync<DownloadException>(() => dl.EnsureDefaultModelAsync());
        Assert.Equal(DownloadErrorKind.HashMismatch, e.Kind);
    }

    [Fact]
    public async Task Cancellation_KeepsThePartForResuming()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var hub = new FakeHub { HoldBodyAfterFirstChunk = release };
        using var dl = Downloader(hub);
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.BytesDone >= 65536) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => dl.EnsureDefaultModelAsync(progress, cts.Token));
        release.SetResult();
        Assert.Equal(65536, new FileInfo(dl.DefaultModelPath + ".part").Length);
        Assert.False(File.Exists(dl.DefaultModelPath));
    }

    private sealed class SyncProgress(Action<DownloadProgress> onReport) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) => onReport(value);
    }

    [Fact]
    public void Url_And_CachePath_FollowTheHubLayout()
    {
        using var dl = new ModelDownloader(_cache, "https://hub.example/");
        Assert.Equal("https://hub.example/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf", dl.GetUrl(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile).AbsoluteUri);
        Assert.Null(dl.TryGetCached(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile));
    }

    [Theory]
    [InlineData("ggml-org", "a.gguf")]
    [InlineData("../x/y", "a.gguf")]
    [InlineData("a/b/c", "a.gguf")]
    [InlineData("ggml-org/models", "../../etc/passwd")]
    [InlineData("ggml-org/models", "/abs.gguf")]
    [InlineData("ggml-org/models", "dir\\a.gguf")]
    public void UnsafeNames_AreRejected(string repo, string file)
    {
        using var dl = new ModelDownloader(_cache, "https://hub.example");
        Assert.Throws<ArgumentException>(() => dl.GetCachePath(repo, file));
    }

    [Fact]
    public void BadEndpoint_IsRejected_NamingTheVariable()
    {
        var e = Assert.Throws<ArgumentException>(() => new ModelDownloader(_cache, "ftp://x"));
        Assert.Contains(ModelDownloader.EndpointVariable, e.Message);
    }

    [Fact]
    public void CacheDirectory_FollowsThePlatformConventions()
    {
        string? Env(Dictionary<string, string> d, string k) => d.TryGetValue(k, out var v) ? v : null;
        var none = new Dictionary<string, string>();
        Assert.Equal("/c", ModelDownloader.ResolveCacheDirectory(k => Env(new() { ["EDGELLM_CACHE"] = "/c", ["XDG_CACHE_HOME"] = "/x" }, k), ModelDownloader.Platform.Linux, "/home/u"));
        Assert.Equal(Path.Combine("/x", "edgellm"), ModelDownloader.ResolveCacheDirectory(k => Env(new() { ["XDG_CACHE_HOME"] = "/x" }, k), ModelDownloader.Platform.Linux, "/home/u"));
        Assert.Equal(Path.Combine("/home/u", ".cache", "edgellm"), ModelDownloader.ResolveCacheDirectory(k => Env(new() { ["XDG_CACHE_HOME"] = "rel" }, k), ModelDownloader.Platform.Linux, "/home/u"));
        Assert.Equal(Path.Combine("/home/u", ".cache", "edgellm"), ModelDownloader.ResolveCacheDirectory(k => Env(none, k), ModelDownloader.Platform.Linux, "/home/u"));
        Assert.Equal(Path.Combine("/Users/u", "Library", "Caches", "edgellm"), ModelDownloader.ResolveCacheDirectory(k => Env(none, k), ModelDownloader.Platform.MacOS, "/Users/u"));
        Assert.Equal(Path.Combine("L", "edgellm"), ModelDownloader.ResolveCacheDirectory(k => Env(new() { ["LOCALAPPDATA"] = "L" }, k), ModelDownloader.Platform.Windows, "H"));
    }
}
