using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace EdgeLlm.Tests.Download;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 (a free port) for download tests: one request per connection, then the
/// connection closes, so a handler can also break a response off mid-body or lie about its length. Never leaves the machine.
/// </summary>
internal sealed class LoopbackHttpServer : IAsyncDisposable
{
    public sealed record Request(string Method, string Target, IReadOnlyDictionary<string, string> Headers)
    {
        public string Path => Target.Split('?')[0];
        public string? Header(string name) => Headers.TryGetValue(name.ToLowerInvariant(), out var v) ? v : null;
    }

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<Request, Stream, Task> _handler;
    private readonly Task _acceptLoop;

    public LoopbackHttpServer(Func<Request, Stream, Task> handler)
    {
        _handler = handler;
        _listener.Start();
        BaseUri = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");
        _acceptLoop = AcceptLoopAsync();
    }

    public Uri BaseUri { get; }

    /// <summary>Every request received, in order.</summary>
    public ConcurrentQueue<Request> Requests { get; } = new();

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var request = await ReadRequestAsync(stream);
                if (request is null) return;
                Requests.Enqueue(request);
                await _handler(request, stream);
                await stream.FlushAsync();
                client.Client.Shutdown(SocketShutdown.Both);
            }
            catch (IOException) { }       // the client went away
            catch (SocketException) { }
        }
    }

    private static async Task<Request?> ReadRequestAsync(Stream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (bytes.Count < 4 || !(bytes[^4] == '\r' && bytes[^3] == '\n' && bytes[^2] == '\r' && bytes[^1] == '\n'))
        {
            if (await stream.ReadAsync(one) == 0) return null;
            bytes.Add(one[0]);
        }
        var lines = Encoding.ASCII.GetString([.. bytes]).Split("\r\n");
        var first = lines[0].Split(' ');
        var headers = new Dictionary<string, string>();
        foreach (var line in lines.Skip(1).Where(l => l.Length > 0))
        {
            int colon = line.IndexOf(':');
            headers[line[..colon].Trim().ToLowerInvariant()] = line[(colon + 1)..].Trim();
        }
        return new Request(first[0], first[1], headers);
    }

    /// <summary>Writes a response; <paramref name="contentLength"/> null omits the header (body ends at close).</summary>
    public static async Task WriteAsync(Stream stream, int status, string reason, IEnumerable<(string Name, string Value)> headers,
        ReadOnlyMemory<byte> body, long? contentLength)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
        if (contentLength is long n) head.Append($"Content-Length: {n}\r\n");
        foreach (var (name, value) in headers) head.Append($"{name}: {value}\r\n");
        head.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
        await stream.WriteAsync(body);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _acceptLoop;
        _stop.Dispose();
    }
}
