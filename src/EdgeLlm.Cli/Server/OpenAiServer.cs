using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using EdgeLlm.Models;
using EdgeLlm.Engine;
using EdgeLlm.Tokenizers;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace EdgeLlm.Cli.Server;

/// <summary>How <c>edgellm serve</c> listens and what it accepts.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to bind: an IP address (127.0.0.1, ::1, 0.0.0.0, ::) or "localhost".</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 = any free port (the one bound is printed).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every endpoint but <c>/health</c> needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Largest request body in bytes (larger: 413).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>The model's id in the API (<c>/v1/models</c>, the <c>model</c> field).</summary>
    public required string ModelId { get; init; }

    /// <summary>
    /// llama-server's <c>--reasoning-format</c>: <c>deepseek</c> answers a chat request's reasoning (the
    /// model's &lt;think&gt;…&lt;/think&gt; block) in <c>message.reasoning_content</c> and the rest in
    /// <c>content</c>; <c>none</c> leaves it all in <c>content</c>; <c>auto</c> (the default) is
    /// <c>deepseek</c> when the chat template writes such blocks (Qwen3, DeepSeek-R1), else <c>none</c>.
    /// </summary>
    public string ReasoningFormat { get; init; } = "auto";

    /// <summary><c>/v1/embeddings</c>' pooling (<c>--pooling</c>: none, mean, cls, last); null: the model file's <c>pooling_type</c>.</summary>
    public string? Pooling { get; init; }

    /// <summary>Chat template variables for every chat request (<c>--chat-template-kwargs</c>); a request's <c>chat_template_kwargs</c> override them by name.</summary>
    public IDictionary<string, object?>? TemplateVariables { get; init; }

    /// <summary>The slots decode speculatively (<c>-md</c>, <c>--lookup-ngram</c>): <c>timings</c> then carry <c>draft_n</c> and <c>draft_n_accepted</c>.</summary>
    public bool Speculative { get; init; }
}

/// <summary>
/// The OpenAI-compatible HTTP server of <c>edgellm serve</c>, on ASP.NET Core Kestrel (slim builder,
/// source-generated JSON, no reflection: it publishes with NativeAOT). Endpoints:
/// <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c> (both streamed as server-sent events
/// or not), <c>GET /v1/models</c>, <c>GET /v1/models/{id}</c>, <c>GET /health</c>. Each completion
/// takes a <see cref="Slot"/> from the <see cref="SlotPool"/> and runs its generation on a dedicated
/// thread; the request's abort token (the client went away) and the server's shutdown cancel it.
/// Every error is an OpenAI error object; nothing a client sends ends the process.
/// </summary>
public sealed class OpenAiServer
{
    // How many generated pieces may wait for a slow streaming client before generation pauses.
    private const int StreamBuffer = 256;

    private readonly ServerOptions _options;
    private readonly SlotPool _pool;
    private readonly Tokenizer _tokenizer;
    private readonly ChatTemplate _template;

    /// <summary>An embedding server's encoder (a BERT model; <see cref="_pool"/> then has no slots and completions are refused), else null.</summary>
    private readonly BertModel? _encoder;
    private readonly EdgeLlm.Gguf.GgufFile? _modelFile;
    private readonly SemaphoreSlim _encoderGate = new(1, 1);

    /// <summary>How the template's model writes function calls; null: it writes none EdgeLlm reads, and tools are refused.</summary>
    private readonly ToolCallFormat? _toolFormat;
    private readonly bool _harmony;
    /// <summary>The template writes Mistral's [THINK] … [/THINK] reasoning blocks (control tokens, rendered for the splitter).</summary>
    private readonly bool _mistralThink;
    private readonly TextWriter _log;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly byte[]? _apiKey;
    private readonly object _templateLock = new();
    private readonly bool _splitReasoning;
    private CancellationToken _stopping;

    /// <summary>Creates the server; <see cref="RunAsync"/> starts it.</summary>
    /// <param name="modelFile">the decoder's file (a decoder reranker's rank pooling, head and template are read from it), or null</param>
    public OpenAiServer(ServerOptions options, SlotPool pool, Tokenizer tokenizer, ChatTemplate template, TextWriter log, EdgeLlm.Gguf.GgufFile? modelFile = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(log);
        _options = options;
        _pool = pool;
        _modelFile = modelFile;
        _tokenizer = tokenizer;
        _template = template;
        _toolFormat = ToolCallFormat.Of(template);
        _harmony = Harmony.Writes(template);
        _mistralThink = ReasoningSplitter.WritesMistralTags(template);
        _log = log;
        _apiKey = string.IsNullOrEmpty(options.ApiKey) ? null : Encoding.UTF8.GetBytes(options.ApiKey);
        _splitReasoning = options.ReasoningFormat switch
        {
            "none" => false,
            "deepseek" => true,
            "auto" => ReasoningSplitter.TemplateReasons(template) || Harmony.Writes(template),
            _ => throw new ArgumentException($"ReasoningFormat must be auto, none or deepseek, got '{options.ReasoningFormat}'", nameof(options)),
        };
    }

    /// <summary>
    /// Creates an embedding server over a BERT encoder (<c>edgellm serve -m all-MiniLM.gguf</c>): <c>/v1/embeddings</c>,
    /// <c>/tokenize</c>, <c>/detokenize</c>, <c>/v1/models</c>, <c>/health</c> and <c>/props</c> answer; completions
    /// are refused with 501 <c>not_supported_error</c> (llama-server's answer for an embedding-only server). One
    /// request embeds at a time.
    /// </summary>
    public OpenAiServer(ServerOptions options, BertModel encoder, Tokenizer tokenizer, TextWriter log)
        : this(options, SlotPool.Empty(), tokenizer, ChatTemplate.Fallback, log)
    {
        _encoder = encoder ?? throw new ArgumentNullException(nameof(encoder));
    }

    /// <summary>A completion or template request to an embedding server.</summary>
    private void CheckGenerative()
    {
        if (_encoder is not null)
            throw new ApiException(501, _encoder.IsReranker
                ? $"this server runs a reranker ({_encoder.Architecture}, a cross-encoder): it answers /v1/rerank, /tokenize and /detokenize, not completions"
                : $"this server runs an embedding model ({_encoder.Architecture}, a text encoder): it answers /v1/embeddings, /tokenize and /detokenize, not completions",
                "not_supported_error", code: "model_not_generative");
    }

    /// <summary>The most tokens one request's text may have: a slot's context, or the encoder's.</summary>
    private int ContextLength => _encoder?.ContextLength ?? _pool.Slots[0].Context.ContextLength;

    /// <summary>Whether chat answers go out with their reasoning split off into <c>reasoning_content</c>.</summary>
    public bool SplitsReasoning => _splitReasoning;

    /// <summary>
    /// Serves until SIGINT/SIGTERM (or <paramref name="cancellationToken"/>): running generations are
    /// cancelled, their requests end, then it returns. Prints <c>listening on URL</c> on the log once bound.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        // Kestrel itself (KestrelServer + the socket transport) under a minimal IHttpApplication and a
        // hand-written dispatch of the five fixed paths, without WebApplication's host, DI container,
        // configuration and routing: the same HTTP server, about 2.5 MB less in the NativeAOT binary,
        // which keeps `edgellm` within its 15 MB budget (tests/deployment/run.sh).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _stopping = stop.Token;
        void OnSignal(PosixSignalContext c) { c.Cancel = true; stop.Cancel(); }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

        var kestrel = new KestrelServerOptions { AddServerHeader = false };
        // Kestrel's limit is the backstop past what ReadBodyAsync drains; ReadBodyAsync enforces MaxBodyBytes.
        kestrel.Limits.MaxRequestBodySize = _options.MaxBodyBytes + DrainBytes;
        if (_options.Host == "localhost") kestrel.ListenLocalhost(_options.Port);
        else kestrel.Listen(IPAddress.Parse(_options.Host), _options.Port);
        var transport = new SocketTransportFactory(Options.Create(new SocketTransportOptions()), NullLoggerFactory.Instance);
        using var server = new KestrelServer(Options.Create(kestrel), transport, NullLoggerFactory.Instance);
        await server.StartAsync(new Application(this), cancellationToken);
        foreach (var a in server.Features.GetRequiredFeature<IServerAddressesFeature>().Addresses)
            _log.WriteLine($"edgellm: listening on {a}");
        try
        {
            await Task.Delay(Timeout.Infinite, _stopping);
        }
        catch (OperationCanceledException)
        {
        }
        // Running generations see _stopping and end their requests; give them a moment to do so.
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await server.StopAsync(grace.Token);
    }

    /// <summary>Kestrel's view of the server: one HttpContext per request, then <see cref="Guard"/> and <see cref="Dispatch"/>.</summary>
    private sealed class Application(OpenAiServer server) : IHttpApplication<HttpContext>
    {
        public HttpContext CreateContext(IFeatureCollection contextFeatures) => new DefaultHttpContext(contextFeatures);

        public Task ProcessRequestAsync(HttpContext context) => server.Guard(context, server.Dispatch);

        public void DisposeContext(HttpContext context, Exception? exception)
        {
        }
    }

    /// <summary>The endpoints: method and path to handler; another method on a known path is 405.</summary>
    private Task Dispatch(HttpContext ctx)
    {
        string path = ctx.Request.Path.Value ?? "/";
        if (path.Length > 1 && path.EndsWith('/')) path = path[..^1];
        bool get = HttpMethods.IsGet(ctx.Request.Method), post = HttpMethods.IsPost(ctx.Request.Method);
        switch (path)
        {
            case "/health": return get ? Health(ctx) : NotAllowed(ctx, "GET");
            case "/v1/models": return get ? Models(ctx) : NotAllowed(ctx, "GET");
            case "/v1/chat/completions": return post ? ChatCompletions(ctx) : NotAllowed(ctx, "POST");
            case "/v1/completions": return post ? Completions(ctx) : NotAllowed(ctx, "POST");
            case "/props": return get ? Props(ctx) : NotAllowed(ctx, "GET");
            case "/tokenize": return post ? Tokenize(ctx) : NotAllowed(ctx, "POST");
            case "/detokenize": return post ? Detokenize(ctx) : NotAllowed(ctx, "POST");
            case "/apply-template": return post ? ApplyTemplate(ctx) : NotAllowed(ctx, "POST");
            case "/v1/embeddings": return post ? Embeddings(ctx) : NotAllowed(ctx, "POST");
            case "/v1/rerank" or "/rerank" or "/v1/reranking" or "/reranking": return post ? Rerank(ctx) : NotAllowed(ctx, "POST");
        }
        if (path.StartsWith("/v1/models/", StringComparison.Ordinal) && path.Length > "/v1/models/".Length && path.IndexOf('/', "/v1/models/".Length) < 0)
            return get ? ModelById(ctx, Uri.UnescapeDataString(path["/v1/models/".Length..])) : NotAllowed(ctx, "GET");
        throw new ApiException(404, $"no endpoint {ctx.Request.Method} {ctx.Request.Path}", code: "unknown_url");
    }

    private static Task NotAllowed(HttpContext ctx, string allowed)
    {
        ctx.Response.Headers.Allow = allowed;
        throw new ApiException(405, $"{ctx.Request.Path} accepts {allowed}, not {ctx.Request.Method}", code: "method_not_allowed");
    }

    /// <summary>Where the API must accept a valid key, checked in constant time.</summary>
    private bool Authorized(HttpRequest request)
    {
        if (_apiKey is null) return true;
        string? header = request.Headers.Authorization;
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        var given = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        return CryptographicOperations.FixedTimeEquals(given, _apiKey);
    }

    /// <summary>Authentication, then the endpoint, with every exception turned into an error response.</summary>
    private async Task Guard(HttpContext ctx, RequestDelegate next)
    {
        try
        {
            if (ctx.Request.Path != "/health" && !Authorized(ctx.Request))
            {
                ctx.Response.Headers.WWWAuthenticate = "Bearer";
                throw new ApiException(401, ctx.Request.Headers.Authorization.Count == 0
                    ? "no API key given: send the header Authorization: Bearer KEY"
                    : "incorrect API key", code: "invalid_api_key");
            }
            await next(ctx);
        }
        catch (Exception e) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nobody reads an answer.
            _ = e;
        }
        catch (Exception e)
        {
            var error = e switch
            {
                ApiException api => api,
                Microsoft.AspNetCore.Http.BadHttpRequestException bad => new ApiException(bad.StatusCode, bad.StatusCode == 413
                    ? $"the request body exceeds {_options.MaxBodyBytes} bytes" : $"bad request: {bad.Message}",
                    code: bad.StatusCode == 413 ? "request_too_large" : null),
                ServerBusyException busy => new ApiException(503, busy.Message, "server_error", code: "server_busy"),
                OperationCanceledException when _stopping.IsCancellationRequested =>
                    new ApiException(503, "the server is shutting down", "server_error", code: "shutting_down"),
                _ => null,
            };
            if (error is null)
            {
                _log.WriteLine($"edgellm: internal error on {ctx.Request.Method} {ctx.Request.Path}: {e}");
                error = new ApiException(500, $"internal error: {e.Message}", "server_error");
            }
            if (error.Status == 503) ctx.Response.Headers.RetryAfter = "1";
            if (!ctx.Response.HasStarted)
            {
                ctx.Response.StatusCode = error.Status;
                ctx.Response.ContentType = "application/json";
                await ctx.Response.Body.WriteAsync(ToUtf8(error.ToResponse(), ServerJsonContext.Default.ErrorResponse));
            }
            else if (ctx.Response.ContentType == "text/event-stream")
            {
                // Headers are gone: an error event ends the stream (OpenAI's clients raise it).
                await WriteEventAsync(ctx.Response, error.ToResponse(), ServerJsonContext.Default.ErrorResponse, CancellationToken.None);
            }
        }
    }

    private Task Health(HttpContext ctx)
    {
        var (idle, busy, queued) = _encoder is null ? _pool.State() : (_encoderGate.CurrentCount, 1 - _encoderGate.CurrentCount, 0);
        return WriteJsonAsync(ctx, new HealthStatus { SlotsIdle = idle, SlotsProcessing = busy, Queued = queued }, ServerJsonContext.Default.HealthStatus);
    }

    private ModelCard Card => new() { Id = _options.ModelId, Created = _created };

    private Task Models(HttpContext ctx) =>
        WriteJsonAsync(ctx, new ModelList { Data = [Card] }, ServerJsonContext.Default.ModelList);

    private Task ModelById(HttpContext ctx, string id)
    {
        CheckModel(id);
        return WriteJsonAsync(ctx, Card, ServerJsonContext.Default.ModelCard);
    }

    /// <summary>A request naming another model gets 404 <c>model_not_found</c>, as OpenAI answers; no name means this one.</summary>
    private void CheckModel(string? model)
    {
        if (!string.IsNullOrEmpty(model) && model != _options.ModelId)
            throw new ApiException(404, $"the model '{model}' does not exist; this server serves '{_options.ModelId}'", param: "model", code: "model_not_found");
    }

    private async Task ChatCompletions(HttpContext ctx)
    {
        CheckGenerative();
        var request = RequestParser.ParseChat(await ReadBodyAsync(ctx));
        CheckModel(request.Model);
        string text = RenderChat(ref request, out var toolNames);
        // As ChatPrompt.Tokenize: BOS as the vocabulary says, special-token text parsed.
        int[] prompt = _tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
        AnswerSplitter? splitter;
        if (_harmony)
        {
            // gpt-oss: the channels are control tokens; rendered, the splitter reads them (and keeps the analysis
            // in the content, markers and all, under --reasoning-format none).
            request = request with { Options = request.Options with { RenderSpecialTokens = true } };
            splitter = new HarmonySplitter(Harmony.OpenHeader(text), _splitReasoning);
        }
        else
        {
            // Magistral / Ministral 3 Reasoning: [THINK] and [/THINK] are control tokens; rendered, the splitter reads them.
            if (_splitReasoning && _mistralThink) request = request with { Options = request.Options with { RenderSpecialTokens = true } };
            splitter = _splitReasoning ? new ReasoningSplitter(ReasoningSplitter.PromptOpensReasoning(text, _mistralThink), _mistralThink) : null;
        }
        await CompleteAsync(ctx, request, prompt, chat: true, splitter, toolNames);
    }

    /// <summary>
    /// The prompt text of a chat request through the template (with its tools and template variables);
    /// a required tool call sets the request's grammar. <paramref name="toolNames"/>: the callable
    /// functions, null without tools.
    /// </summary>
    private string RenderChat(ref CompletionRequest request, out List<string>? toolNames)
    {
        toolNames = null;
        try
        {
            var variables = TemplateVariables.Merge(_options.TemplateVariables, request.TemplateVariables);
            if (request.Tools is { } tools)
            {
                if (_toolFormat is null)
                    throw ApiException.BadField("tools", "the model's chat template has no tool-call format EdgeLlm reads: it reads Hermes-style <tool_call> blocks (Qwen2.5, Qwen3, Hermes), Llama 3.x's JSON calls, Mistral's [TOOL_CALLS] and gpt-oss's harmony calls");
                variables = new Dictionary<string, object?>(variables ?? new Dictionary<string, object?>(), StringComparer.Ordinal)
                {
                    ["tools"] = tools.Select(t => t.TemplateValue).ToList(),
                };
                toolNames = tools.Select(t => t.Name).ToList();
                if (request.ToolChoice != "auto" && !_toolFormat.CanRequireCall)
                    throw ApiException.BadField("tool_choice", $"tool_choice \"{request.ToolChoice}\" cannot be enforced in the model's tool-call format ({_toolFormat.Name}: its calls are control tokens, which a grammar cannot force); use \"auto\"");
                if (request.ToolChoice != "auto")
                {
                    string choice = request.ToolChoice;
                    var callable = tools.Where(t => choice == "required" || t.Name == choice).Select(t => new ToolFunction(t.Name, t.Parameters)).ToList();
                    request = request with { Options = request.Options with { Grammar = _toolFormat.RequiredCallGrammar(callable) } };
                }
            }
            // The template interpreter is not documented as thread-safe; renders are short.
            lock (_templateLock) return ChatPrompt.Render(_template, _tokenizer, request.Messages!, addGenerationPrompt: true, variables: variables);
        }
        catch (TemplateException e)
        {
            throw ApiException.BadField("messages", $"the model's chat template rejects the messages: {e.Message}");
        }
    }

    /// <summary>llama-server's <c>GET /props</c>: the slots, their context, the sampling defaults, the chat template, the build.</summary>
    private Task Props(HttpContext ctx)
    {
        var d = new EdgeLlm.Sampling.SamplerOptions();
        string version = typeof(TextGenerator).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";
        return WriteJsonAsync(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("default_generation_settings");
            w.WriteNumber("n_ctx", ContextLength);
            w.WriteStartObject("params");
            w.WriteNumber("temperature", d.Temperature);
            w.WriteNumber("top_k", d.TopK);
            w.WriteNumber("top_p", d.TopP);
            w.WriteNumber("min_p", d.MinP);
            w.WriteNumber("repeat_penalty", d.RepeatPenalty);
            w.WriteNumber("repeat_last_n", d.RepeatLastN);
            w.WriteNumber("n_predict", -1);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteNumber("total_slots", _encoder is null ? _pool.Slots.Count : 1);
            w.WriteString("model_alias", _options.ModelId);
            w.WriteString("chat_template", _template.Source);
            w.WriteString("build_info", "edgellm " + version);
            w.WriteStartObject("modalities");
            w.WriteBoolean("vision", false);
            w.WriteBoolean("audio", false);
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    /// <summary>llama-server's <c>POST /apply-template</c>: a chat request's prompt text, <c>{"prompt": ...}</c>, nothing generated.</summary>
    private async Task ApplyTemplate(HttpContext ctx)
    {
        CheckGenerative();
        var request = RequestParser.ParseChat(await ReadBodyAsync(ctx));
        string text = RenderChat(ref request, out _);
        await WriteJsonAsync(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("prompt", text);
            w.WriteEndObject();
        });
    }

    /// <summary>
    /// llama-server's <c>POST /tokenize</c>: <c>{"content", "add_special" (false), "parse_special" (true),
    /// "with_pieces" (false)}</c> → <c>{"tokens": [ids]}</c>, or with pieces <c>[{"id", "piece"}]</c>, a piece
    /// being its text where the token's bytes are whole UTF-8 and the list of its bytes where not (as llama-server).
    /// </summary>
    private async Task Tokenize(HttpContext ctx)
    {
        var (content, addSpecial, parseSpecial, withPieces) = RequestParser.ParseTokenize(await ReadBodyAsync(ctx));
        int[] ids = _tokenizer.Encode(content, addSpecial, parseSpecial);
        await WriteJsonAsync(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (int id in ids)
            {
                if (!withPieces)
                {
                    w.WriteNumberValue(id);
                    continue;
                }
                w.WriteStartObject();
                w.WriteNumber("id", id);
                byte[] piece = _tokenizer.TokenToBytes(id, special: true);
                if (System.Text.Unicode.Utf8.IsValid(piece)) w.WriteString("piece", Encoding.UTF8.GetString(piece));
                else
                {
                    w.WriteStartArray("piece");
                    foreach (byte b in piece) w.WriteNumberValue(b);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    /// <summary>
    /// OpenAI's <c>POST /v1/embeddings</c> (and llama-server's): each input's pooled, L2-normalized embedding
    /// (<see cref="TextEmbedder"/>) in one slot, whose KV cache it then forgets. The pooling is <c>--pooling</c>,
    /// else the file's; none is refused (OpenAI's shape has one vector per input, as llama-server says).
    /// </summary>
    private async Task Embeddings(HttpContext ctx)
    {
        var (model, inputs, base64) = RequestParser.ParseEmbeddings(await ReadBodyAsync(ctx));
        CheckModel(model);
        var tokenized = new List<int[]>(inputs.Count);
        for (int i = 0; i < inputs.Count; i++)
        {
            int[] ids = inputs[i].Tokens ?? _tokenizer.Encode(inputs[i].Text!, addSpecial: true, parseSpecial: true);
            if (ids.Length == 0) throw ApiException.BadField("input", $"input {i} has no tokens");
            foreach (int id in ids)
                if (id >= _tokenizer.VocabSize) throw ApiException.BadField("input", $"input {i}: token id {id} is outside the vocabulary (0..{_tokenizer.VocabSize - 1})");
            if (ids.Length > ContextLength)
                throw ApiException.BadField("input", $"input {i} is {ids.Length} tokens; the context holds {ContextLength}", "context_length_exceeded");
            tokenized.Add(ids);
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stopping);
        if (_encoder is not null)
        {
            await WriteEmbeddingsAsync(ctx, await EncodeAsync(tokenized, cts.Token), tokenized.Sum(t => t.Length), base64);
            return;
        }
        var slot = await _pool.AcquireAsync(tokenized[0], cts.Token);
        List<float[]> vectors;
        try
        {
            vectors = await Task.Factory.StartNew(() =>
            {
                if (slot.Context is not InferenceContext cpu)
                    throw new ApiException(400, "embeddings run on the CPU backend: start the server with --backend cpu", param: "input", code: "embeddings_not_supported");
                var embedder = new TextEmbedder(cpu, _tokenizer, Pooling(cpu.Model.File, cpu.Model.Config.Architecture));
                try
                {
                    return tokenized.Select(t => embedder.Embed(t)).ToList();
                }
                finally
                {
                    slot.Generator.Reset(); // the cache now holds the last input: the next prompt starts afresh
                }
            }, cts.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        finally
        {
            _pool.Release(slot);
        }
        await WriteEmbeddingsAsync(ctx, vectors, tokenized.Sum(t => t.Length), base64);
    }

    /// <summary>
    /// llama-server's <c>POST /v1/rerank</c> (also <c>/rerank</c>, <c>/v1/reranking</c>, <c>/reranking</c>): each document
    /// scored against the query by a reranker (<see cref="TextReranker"/>, the pairs batched), most relevant first, at most
    /// <c>top_n</c>: <c>{"model", "object": "list", "usage", "results": [{"index", "relevance_score"}]}</c>; with TEI's
    /// <c>texts</c> its bare array of <c>{"index", "score"}</c>. The score is the model's logit, as llama-server reports it.
    /// </summary>
    private async Task Rerank(HttpContext ctx)
    {
        var request = RequestParser.ParseRerank(await ReadBodyAsync(ctx));
        CheckModel(request.Model);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stopping);
        float[] scores;
        List<int[]> pairs;
        if (_encoder is not null)
        {
            if (!_encoder.IsReranker)
                throw new ApiException(501, $"this server runs an embedding model ({_encoder.Architecture} without rank pooling): reranking needs a reranker (a cross-encoder with a classification head)",
                    "not_supported_error", code: "model_not_reranker");
            var reranker = new TextReranker(_encoder, _tokenizer);
            pairs = RerankPairs(reranker, request);
            await _encoderGate.WaitAsync(cts.Token);
            try
            {
                scores = await Task.Factory.StartNew(() =>
                {
                    cts.Token.ThrowIfCancellationRequested();
                    return reranker.Scores(pairs);
                }, cts.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            finally
            {
                _encoderGate.Release();
            }
        }
        else
        {
            // a decoder reranker (Qwen3-Reranker: rank pooling and cls.output) scores the pairs in one slot, one by one
            string? arch = _modelFile?.GetString("general.architecture");
            if (_modelFile is null || _modelFile.GetInt($"{arch}.pooling_type") != 4 || _modelFile.FindTensor("cls.output.weight") is null)
                throw new ApiException(501, "this server runs a generative model: reranking needs a reranker (a cross-encoder such as ms-marco-MiniLM or bge-reranker, or a decoder reranker such as Qwen3-Reranker)",
                    "not_supported_error", code: "model_not_reranker");
            var probe = RerankPairs(null, request);
            pairs = probe;
            var slot = await _pool.AcquireAsync(pairs[0], cts.Token);
            try
            {
                scores = await Task.Factory.StartNew(() =>
                {
                    if (slot.Context is not InferenceContext cpu)
                        throw new ApiException(400, "reranking runs on the CPU backend: start the server with --backend cpu", param: "documents", code: "rerank_not_supported");
                    try
                    {
                        return new TextReranker(cpu, _tokenizer).Scores(pairs);
                    }
                    finally
                    {
                        slot.Generator.Reset(); // the cache now holds the last pair: the next prompt starts afresh
                    }
                }, cts.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            finally
            {
                _pool.Release(slot);
            }
        }
        var ranked = TextReranker.Rank(scores, pairs.Select(p => p.Length).ToArray(), request.TopN);
        int tokens = pairs.Sum(p => p.Length);
        await WriteJsonAsync(ctx, w =>
        {
            if (request.Tei)
            {
                w.WriteStartArray();
                foreach (var r in ranked)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", r.Index);
                    w.WriteNumber("score", r.Score);
                    if (request.ReturnText) w.WriteString("text", request.Documents[r.Index]);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                return;
            }
            w.WriteStartObject();
            w.WriteString("model", _options.ModelId);
            w.WriteString("object", "list");
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", tokens);
            w.WriteNumber("total_tokens", tokens);
            w.WriteEndObject();
            w.WriteStartArray("results");
            foreach (var r in ranked)
            {
                w.WriteStartObject();
                w.WriteNumber("index", r.Index);
                w.WriteNumber("relevance_score", r.Score);
                if (request.ReturnDocuments)
                {
                    w.WriteStartObject("document");
                    w.WriteString("text", request.Documents[r.Index]);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    /// <summary>The request's query/document pairs as the reranker reads them, each within the context (else 400 naming the document).</summary>
    private List<int[]> RerankPairs(TextReranker? encoderReranker, RequestParser.RerankRequest request)
    {
        var pairs = new List<int[]>(request.Documents.Count);
        string field = request.Tei ? "texts" : "documents";
        for (int i = 0; i < request.Documents.Count; i++)
        {
            int[] ids = encoderReranker?.Tokenize(request.Query, request.Documents[i])
                ?? TextReranker.PairTokens(_tokenizer, _modelFile?.GetString(TextReranker.TemplateKey), request.Query, request.Documents[i]);
            if (ids.Length > ContextLength)
                throw ApiException.BadField(field, $"{field}[{i}]: the query and document are {ids.Length} tokens; the model reads at most {ContextLength}", "context_length_exceeded");
            pairs.Add(ids);
        }
        return pairs;
    }

    /// <summary>The server's pooling: <c>--pooling</c>, else the file's; none (a vector per token) is refused, as llama-server refuses it.</summary>
    private PoolingType Pooling(EdgeLlm.Gguf.GgufFile file, string architecture)
    {
        PoolingType pooling;
        try
        {
            pooling = _options.Pooling switch
            {
                "mean" => PoolingType.Mean,
                "cls" => PoolingType.Cls,
                "last" => PoolingType.Last,
                "none" => PoolingType.None,
                _ => TextEmbedder.FilePooling(file, architecture) ?? PoolingType.None,
            };
        }
        catch (NotSupportedException e)
        {
            throw new ApiException(400, e.Message, param: "input", code: "embeddings_not_supported");
        }
        if (pooling == PoolingType.None)
            throw new ApiException(400, "the model names no pooling (pooling_type) and the server has none (--pooling): pooling 'none' gives a vector per token, which is not OpenAI's shape; restart with --pooling mean, cls or last", param: "input", code: "embeddings_not_supported");
        return pooling;
    }

    /// <summary>The inputs' embeddings from the encoder, one request at a time (the pooling as for a decoder: --pooling, else the file's).</summary>
    private async Task<List<float[]>> EncodeAsync(List<int[]> tokenized, CancellationToken cancellationToken)
    {
        var encoder = _encoder!;
        var embedder = new TextEmbedder(encoder, _tokenizer, Pooling(encoder.File, encoder.Architecture));
        await _encoderGate.WaitAsync(cancellationToken);
        try
        {
            return await Task.Factory.StartNew(() =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                return embedder.EmbedBatch(tokenized); // many short inputs run together
            }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        finally
        {
            _encoderGate.Release();
        }
    }

    /// <summary>OpenAI's embeddings list: each vector as numbers or base64 (float32 little-endian), the model, the tokens used.</summary>
    private Task WriteEmbeddingsAsync(HttpContext ctx, List<float[]> vectors, int promptTokens, bool base64)
    {
        return WriteJsonAsync(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (int i = 0; i < vectors.Count; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                if (base64)
                {
                    // OpenAI's base64: the float32 values little-endian.
                    var bytes = new byte[vectors[i].Length * 4];
                    Buffer.BlockCopy(vectors[i], 0, bytes, 0, bytes.Length);
                    w.WriteString("embedding", Convert.ToBase64String(bytes));
                }
                else
                {
                    w.WriteStartArray("embedding");
                    foreach (float x in vectors[i]) w.WriteNumberValue(x);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("model", _options.ModelId);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", promptTokens);
            w.WriteNumber("total_tokens", promptTokens);
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    /// <summary>llama-server's <c>POST /detokenize</c>: <c>{"tokens": [ids]}</c> → <c>{"content": text}</c> (control tokens as their text, as llama-server).</summary>
    private async Task Detokenize(HttpContext ctx)
    {
        int[] ids = RequestParser.ParseDetokenize(await ReadBodyAsync(ctx));
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] >= _tokenizer.VocabSize)
                throw ApiException.BadField("tokens", $"tokens[{i}] = {ids[i]} is outside the vocabulary (0..{_tokenizer.VocabSize - 1})");
        }
        string text = _tokenizer.Detokenize(ids, removeSpecial: false, unparseSpecial: true);
        await WriteJsonAsync(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("content", text);
            w.WriteEndObject();
        });
    }

    private async Task Completions(HttpContext ctx)
    {
        CheckGenerative();
        var request = RequestParser.ParseCompletion(await ReadBodyAsync(ctx));
        CheckModel(request.Model);
        // As `edgellm run` and llama-server: BOS as the vocabulary says, special-token text parsed.
        int[] prompt = request.PromptTokens ?? _tokenizer.Encode(request.Prompt!, addSpecial: true, parseSpecial: true);
        await CompleteAsync(ctx, request, prompt, chat: false, null);
    }

    /// <summary>
    /// How much of an over-limit body is read and dropped before the 413 goes out. HTTP/1.1 clients
    /// write the whole body before they read the answer; a server that answers and closes while a
    /// body is still arriving makes the client fail with a reset ("response ended prematurely")
    /// instead of showing the 413 (seen in CI, for a 2 MiB body against the 1 MiB limit). Bodies
    /// past MaxBodyBytes + DrainBytes still get a 413 and a closed connection (Kestrel's limit).
    /// </summary>
    private const long DrainBytes = 16L << 20;

    private async Task<byte[]> ReadBodyAsync(HttpContext ctx)
    {
        long max = _options.MaxBodyBytes;
        long? declared = ctx.Request.ContentLength;
        if (declared > max + DrainBytes)
            throw new ApiException(413, $"the request body ({declared} bytes) exceeds {max} bytes", code: "request_too_large");
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        long total = 0;
        int n;
        // Read up to the limit, then drain the rest (dropped) so that the client reads the 413.
        // Past MaxBodyBytes + DrainBytes Kestrel stops the read (BadHttpRequestException 413, handled by Guard).
        while ((n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted)) > 0)
        {
            if (total + n <= max) buffer.Write(chunk, 0, n);
            total += n;
        }
        if (total > max)
            throw new ApiException(413, declared is { } d ? $"the request body ({d} bytes) exceeds {max} bytes" : $"the request body exceeds {max} bytes", code: "request_too_large");
        return buffer.ToArray();
    }

    /// <summary>Runs one generation in a slot and answers with it, streamed or whole.</summary>
    private async Task CompleteAsync(HttpContext ctx, CompletionRequest request, int[] prompt, bool chat, AnswerSplitter? splitter,
        IReadOnlyList<string>? toolNames = null)
    {
        int contextLength = _pool.Slots[0].Context.ContextLength;
        if (prompt.Length == 0)
            throw ApiException.BadField(chat ? "messages" : "prompt", "the prompt is empty and the model adds no BOS token: nothing to condition on");
        if (prompt.Length >= contextLength)
            throw ApiException.BadField(chat ? "messages" : "prompt",
                $"the prompt is {prompt.Length} tokens; the context holds {contextLength}, which leaves no room to generate", "context_length_exceeded");
        for (int i = 0; i < prompt.Length; i++)
        {
            if (prompt[i] >= _tokenizer.VocabSize)
                throw ApiException.BadField("prompt", $"token id {prompt[i]} at index {i} is outside the vocabulary (0..{_tokenizer.VocabSize - 1})");
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stopping);
        var slot = await _pool.AcquireAsync(prompt, cts.Token);
        var pieces = Channel.CreateBounded<string>(new BoundedChannelOptions(StreamBuffer) { SingleReader = true, SingleWriter = true });
        var watch = Stopwatch.StartNew();
        // The generation is synchronous CPU work: a dedicated thread, which alone gives the slot back.
        var generation = Task.Factory.StartNew(() => Generate(slot, prompt, request.Options, pieces.Writer, cts.Token),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        bool done = false;
        try
        {
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            GenerationResult result;
            if (request.Stream)
                result = await StreamAsync(ctx.Response, id, created, chat, request.IncludeUsage, pieces.Reader, generation, splitter, cts.Token, toolNames);
            else
            {
                var text = new StringBuilder();
                await foreach (var piece in pieces.Reader.ReadAllAsync(cts.Token)) text.Append(piece);
                result = await generation;
                ThrowIfCancelled(result, cts.Token);
                var usage = UsageOf(result);
                if (chat)
                {
                    var message = new AssistantMessage { Content = result.Text };
                    if (splitter is not null)
                    {
                        var (r1, c1) = splitter.Push(result.Text);
                        var (r2, c2) = splitter.Flush();
                        string reasoning = r1 + r2;
                        message = new AssistantMessage { Content = c1 + c2, ReasoningContent = reasoning.Length > 0 ? reasoning : null };
                    }
                    string finish = FinishReasonOf(result);
                    if (toolNames is not null && _toolFormat!.Parse(message.Content ?? "", toolNames) is { Calls.Count: > 0 } parsed)
                    {
                        message = new AssistantMessage { Content = parsed.Content, ReasoningContent = message.ReasoningContent, ToolCalls = CallsOut(parsed.Calls, streamed: false) };
                        finish = "tool_calls";
                    }
                    await WriteJsonAsync(ctx, new ChatCompletion
                    {
                        Id = id, Created = created, Model = _options.ModelId, Usage = usage, Timings = TimingsOf(result),
                        Choices = [new ChatChoice { Message = message, FinishReason = finish, Logprobs = ChatLogprobsOf(result) }],
                    }, ServerJsonContext.Default.ChatCompletion);
                }
                else
                {
                    await WriteJsonAsync(ctx, new TextCompletion
                    {
                        Id = id, Created = created, Model = _options.ModelId, Usage = usage, Timings = TimingsOf(result),
                        Choices = [new TextChoice { Text = result.Text, FinishReason = FinishReasonOf(result), Logprobs = TextLogprobsOf(result) }],
                    }, ServerJsonContext.Default.TextCompletion);
                }
            }
            done = true;
            _log.WriteLine(string.Format(CultureInfo.InvariantCulture,
                "edgellm: slot {0}: {1} {2} prompt tokens ({3} reused) + {4} generated in {5:F0} ms, finish {6}",
                slot.Id, chat ? "chat" : "completion", result.PromptTokens, result.ReusedPromptTokens, result.CompletionTokens,
                watch.Elapsed.TotalMilliseconds, FinishReasonOf(result)));
        }
        finally
        {
            if (!done)
            {
                // The client went away, a write failed or the server stops: end the generation, and
                // wait for it so the request ends after its slot is free again.
                await cts.CancelAsync();
                try { await generation; }
                catch (Exception e) when (e is OperationCanceledException or ChannelClosedException) { }
                catch (Exception e) { _log.WriteLine($"edgellm: slot {slot.Id}: generation failed: {e.Message}"); }
                _log.WriteLine($"edgellm: slot {slot.Id}: request ended early ({(ctx.RequestAborted.IsCancellationRequested ? "client disconnected" : "error or shutdown")}); the slot is free");
            }
        }
    }

    /// <summary>The generation thread: pieces go into the channel (waiting while it is full); the slot is released at the end.</summary>
    private GenerationResult Generate(Slot slot, int[] prompt, GenerationOptions options, ChannelWriter<string> writer, CancellationToken ct)
    {
        try
        {
            foreach (var piece in slot.Generator.Stream(prompt, options, ct))
            {
                while (!writer.TryWrite(piece))
                {
                    if (!writer.WaitToWriteAsync(ct).AsTask().GetAwaiter().GetResult()) break;
                }
            }
            writer.TryComplete();
            return slot.Generator.LastResult!;
        }
        catch (Exception e)
        {
            writer.TryComplete(e);
            throw;
        }
        finally
        {
            _pool.Release(slot);
        }
    }

    private async Task<GenerationResult> StreamAsync(HttpResponse response, string id, long created, bool chat, bool includeUsage,
        ChannelReader<string> pieces, Task<GenerationResult> generation, AnswerSplitter? splitter, CancellationToken ct,
        IReadOnlyList<string>? toolNames = null)
    {
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(ct);
        if (chat)
            await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { Role = "assistant", Content = "" }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
        // With tools, text that may be (the start of) a call is held until the reply ends; the rest streams.
        var calls = toolNames is null ? null : new ToolCallStreamer(_toolFormat!, toolNames);
        await foreach (var piece in pieces.ReadAllAsync(ct))
        {
            if (calls is not null)
            {
                var (reasoning, content) = splitter is null ? ("", piece) : splitter.Push(piece);
                await WriteSplitAsync(response, id, created, (reasoning, calls.Push(content)), ct);
            }
            else if (splitter is not null) await WriteSplitAsync(response, id, created, splitter.Push(piece), ct);
            else if (chat) await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { Content = piece }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
            else await WriteEventAsync(response, TextChunk(id, created, piece, null), ServerJsonContext.Default.TextCompletion, ct);
        }
        var result = await generation;
        ThrowIfCancelled(result, ct);
        string finish = FinishReasonOf(result);
        if (calls is not null)
        {
            if (splitter is not null)
            {
                var (reasoning, content) = splitter.Flush();
                await WriteSplitAsync(response, id, created, (reasoning, calls.Push(content)), ct);
            }
            var (rest, made) = calls.Finish();
            if (rest is not null)
                await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { Content = rest }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
            if (made.Count > 0)
            {
                await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { ToolCalls = CallsOut(made, streamed: true) }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
                finish = "tool_calls";
            }
        }
        else if (splitter is not null) await WriteSplitAsync(response, id, created, splitter.Flush(), ct);
        // Log-probabilities, when asked for, come in one chunk after the text (the text was streamed in pieces that do not follow token boundaries).
        if (chat && ChatLogprobsOf(result) is { } chatLogprobs)
            await WriteEventAsync(response, new ChatCompletionChunk
            {
                Id = id, Created = created, Model = _options.ModelId,
                Choices = [new ChunkChoice { Delta = new ChunkDelta(), Logprobs = chatLogprobs }],
            }, ServerJsonContext.Default.ChatCompletionChunk, ct);
        if (!chat && TextLogprobsOf(result) is { } textLogprobs)
            await WriteEventAsync(response, new TextCompletion
            {
                Id = id, Created = created, Model = _options.ModelId,
                Choices = [new TextChoice { Text = "", Logprobs = textLogprobs }],
            }, ServerJsonContext.Default.TextCompletion, ct);
        var timings = TimingsOf(result);
        if (chat) await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta(), finish, timings), ServerJsonContext.Default.ChatCompletionChunk, ct);
        else await WriteEventAsync(response, TextChunk(id, created, "", finish, timings), ServerJsonContext.Default.TextCompletion, ct);
        if (includeUsage)
        {
            // OpenAI's usage chunk: no choices, the token counts.
            if (chat)
                await WriteEventAsync(response, new ChatCompletionChunk { Id = id, Created = created, Model = _options.ModelId, Choices = [], Usage = UsageOf(result) }, ServerJsonContext.Default.ChatCompletionChunk, ct);
            else
                await WriteEventAsync(response, new TextCompletion { Id = id, Created = created, Model = _options.ModelId, Choices = [], Usage = UsageOf(result) }, ServerJsonContext.Default.TextCompletion, ct);
        }
        await response.Body.WriteAsync("data: [DONE]\n\n"u8.ToArray(), ct);
        await response.Body.FlushAsync(ct);
        return result;
    }

    /// <summary>A piece split by the <see cref="AnswerSplitter"/>: a reasoning_content delta and/or a content delta (nothing for empty parts).</summary>
    private async Task WriteSplitAsync(HttpResponse response, string id, long created, (string Reasoning, string Content) part, CancellationToken ct)
    {
        if (part.Reasoning.Length > 0)
            await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { ReasoningContent = part.Reasoning }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
        if (part.Content.Length > 0)
            await WriteEventAsync(response, ChatChunk(id, created, new ChunkDelta { Content = part.Content }, null), ServerJsonContext.Default.ChatCompletionChunk, ct);
    }

    private ChatCompletionChunk ChatChunk(string id, long created, ChunkDelta delta, string? finish, Timings? timings = null) => new()
    {
        Id = id, Created = created, Model = _options.ModelId,
        Choices = [new ChunkChoice { Delta = delta, FinishReason = finish }], Timings = timings,
    };

    private TextCompletion TextChunk(string id, long created, string text, string? finish, Timings? timings = null) => new()
    {
        Id = id, Created = created, Model = _options.ModelId,
        Choices = [new TextChoice { Text = text, FinishReason = finish }], Timings = timings,
    };

    // The response shapes below are written with Utf8JsonWriter rather than as source-generated types: each
    // serialized type adds its metadata to the NativeAOT binary, and `edgellm` has a 15 MB budget
    // (tests/deployment/run.sh); these are built once per response and never read back.

    /// <summary>OpenAI's chat <c>logprobs</c> (<c>{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}</c>) of a generation that asked for them, else null.</summary>
    private JsonElement? ChatLogprobsOf(GenerationResult result)
    {
        if (result.LogProbs is not { } lps) return null;
        return WriteJson(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("content");
            foreach (var lp in lps)
            {
                w.WriteStartObject();
                WriteTokenLogprob(w, lp.Token, lp.LogProb);
                w.WriteStartArray("top_logprobs");
                foreach (var (token, value) in lp.Top)
                {
                    w.WriteStartObject();
                    WriteTokenLogprob(w, token, value);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private void WriteTokenLogprob(Utf8JsonWriter w, int token, float logprob)
    {
        byte[] bytes = _tokenizer.TokenToBytes(token);
        w.WriteString("token", Encoding.UTF8.GetString(bytes));
        w.WriteNumber("logprob", logprob);
        w.WriteStartArray("bytes");
        foreach (byte b in bytes) w.WriteNumberValue(b);
        w.WriteEndArray();
    }

    /// <summary>The legacy completions' <c>logprobs</c> (tokens, token_logprobs, top_logprobs, text_offset) of a generation that asked for them, else null.</summary>
    private JsonElement? TextLogprobsOf(GenerationResult result)
    {
        if (result.LogProbs is not { } lps) return null;
        string Text(int token) => Encoding.UTF8.GetString(_tokenizer.TokenToBytes(token));
        return WriteJson(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (var lp in lps) w.WriteStringValue(Text(lp.Token));
            w.WriteEndArray();
            w.WriteStartArray("token_logprobs");
            foreach (var lp in lps) w.WriteNumberValue(lp.LogProb);
            w.WriteEndArray();
            w.WriteStartArray("top_logprobs");
            foreach (var lp in lps)
            {
                w.WriteStartObject();
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (token, value) in lp.Top)
                    if (seen.Add(Text(token))) w.WriteNumber(Text(token), value);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("text_offset");
            int offset = 0;
            foreach (var lp in lps)
            {
                w.WriteNumberValue(offset);
                offset += Text(lp.Token).Length;
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    /// <summary>JSON written by <paramref name="write"/>, as an element.</summary>
    private static JsonElement WriteJson(Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Utf8Text)) write(w);
        using var doc = JsonDocument.Parse(buffer.WrittenMemory);
        return doc.RootElement.Clone();
    }

    /// <summary>Writes <paramref name="write"/>'s JSON as the response.</summary>
    private static async Task WriteJsonAsync(HttpContext ctx, Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Utf8Text)) write(w);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
    }

    /// <summary>A generation cut short by cancellation has no answer to give.</summary>
    private static void ThrowIfCancelled(GenerationResult result, CancellationToken ct)
    {
        if (result.Reason == FinishReason.Cancelled) throw new OperationCanceledException("the generation was cancelled", ct);
    }

    /// <summary>Calls as OpenAI writes them; a stream's deltas also number them (<c>index</c>).</summary>
    private static List<ToolCallOut> CallsOut(List<ChatToolCall> calls, bool streamed) =>
        calls.Select((c, i) => new ToolCallOut { Index = streamed ? i : null, Id = c.Id, Function = new FunctionCallOut { Name = c.Name, Arguments = c.Arguments } }).ToList();

    /// <summary>llama-server's timings; the draft counts only when the slot decodes speculatively.</summary>
    private Timings TimingsOf(GenerationResult r)
    {
        double promptMs = r.PromptTime.TotalMilliseconds, predictedMs = r.GenerationTime.TotalMilliseconds;
        int promptN = r.PromptTokens - r.ReusedPromptTokens;
        return new Timings
        {
            PromptN = promptN, PromptMs = promptMs,
            PromptPerTokenMs = promptN > 0 ? promptMs / promptN : 0, PromptPerSecond = promptMs > 0 ? promptN * 1000.0 / promptMs : 0,
            PredictedN = r.CompletionTokens, PredictedMs = predictedMs,
            PredictedPerTokenMs = r.CompletionTokens > 0 ? predictedMs / r.CompletionTokens : 0,
            PredictedPerSecond = predictedMs > 0 ? r.CompletionTokens * 1000.0 / predictedMs : 0,
            DraftN = _options.Speculative ? r.DraftedTokens : null,
            DraftNAccepted = _options.Speculative ? r.AcceptedDraftTokens : null,
        };
    }

    private static Usage UsageOf(GenerationResult r) =>
        new() { PromptTokens = r.PromptTokens, CompletionTokens = r.CompletionTokens, TotalTokens = r.PromptTokens + r.CompletionTokens,
            PromptTokensDetails = new PromptTokensDetails { CachedTokens = r.ReusedPromptTokens } };

    /// <summary>OpenAI's finish_reason: "stop" (end of generation or a stop string) or "length" (max_tokens or a full context).</summary>
    private static string FinishReasonOf(GenerationResult r) => r.Reason switch
    {
        FinishReason.Length or FinishReason.ContextFull => "length",
        _ => "stop",
    };

    /// <summary>
    /// How the server writes JSON: text as UTF-8, as llama-server writes it ("é", "中", "&lt;" as they are, not as \u
    /// escapes), with JSON's own escapes only (quotes, backslashes, control characters), so a streamed token takes as
    /// many bytes on the wire as in the text.
    /// </summary>
    private static readonly JsonWriterOptions Utf8Text = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// <paramref name="value"/> as UTF-8 JSON. Through a writer with <see cref="Utf8Text"/> rather than a context
    /// with that encoder: options that differ from the generated ones would lose the serialization-only fast path.
    /// </summary>
    private static byte[] ToUtf8<T>(T value, JsonTypeInfo<T> info)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Utf8Text)) JsonSerializer.Serialize(w, value, info);
        return buffer.WrittenSpan.ToArray();
    }

    private static async Task WriteJsonAsync<T>(HttpContext ctx, T value, JsonTypeInfo<T> info)
    {
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(ToUtf8(value, info), ctx.RequestAborted);
    }

    /// <summary>One server-sent event: <c>data: JSON</c> and a blank line, flushed at once.</summary>
    private static async Task WriteEventAsync<T>(HttpResponse response, T value, JsonTypeInfo<T> info, CancellationToken ct)
    {
        var json = ToUtf8(value, info);
        var frame = new byte[json.Length + 8];
        "data: "u8.CopyTo(frame);
        json.CopyTo(frame, 6);
        frame[^2] = (byte)'\n';
        frame[^1] = (byte)'\n';
        await response.Body.WriteAsync(frame, ct);
        await response.Body.FlushAsync(ct);
    }
}
