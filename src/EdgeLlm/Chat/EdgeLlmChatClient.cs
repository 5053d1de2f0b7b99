using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;
using AI = Microsoft.Extensions.AI;

namespace EdgeLlm.Chat;

/// <summary>How an <see cref="EdgeLlmChatClient"/> sets up its context.</summary>
public sealed record EdgeLlmChatClientOptions
{
    /// <summary>Tokens the KV cache holds (prompt and answer together); ≥ 1. Default 4096, llama.cpp's default.</summary>
    public int ContextLength { get; init; } = 4096;

    /// <summary>How the KV cache stores keys (llama.cpp's <c>--cache-type-k</c>): f16 (default), q8_0 or q4_0 (see <see cref="KvCacheType"/>).</summary>
    public KvCacheType CacheTypeK { get; init; } = KvCacheType.F16;

    /// <summary>How the KV cache stores values (llama.cpp's <c>--cache-type-v</c>).</summary>
    public KvCacheType CacheTypeV { get; init; } = KvCacheType.F16;

    /// <summary>
    /// Sliding-window layers (Gemma) keep every position instead of a ring of their window (llama.cpp's <c>--swa-full</c>):
    /// more memory, and no re-evaluation when a new conversation departs from the cached one further back than the ring
    /// reaches (see <see cref="Engine.InferenceContext"/>). Default false, as llama.cpp.
    /// </summary>
    public bool FullSlidingWindowCache { get; init; }

    /// <summary>Worker threads of the forward pass; 0 = one per processor.</summary>
    public int Threads { get; init; }

    /// <summary>The model id reported in responses and checked against <see cref="AI.ChatOptions.ModelId"/>; default: the file name without its extension.</summary>
    public string? ModelId { get; init; }

    /// <summary>A chat template to use instead of the model's own (<c>tokenizer.chat_template</c>); default: the model's, or <see cref="ChatTemplate.Fallback"/> when it has none.</summary>
    public ChatTemplate? Template { get; init; }

    /// <summary>
    /// Whether a reasoning model's &lt;think&gt;…&lt;/think&gt; block comes back as <see cref="AI.TextReasoningContent"/>
    /// (apart from the reply's <see cref="AI.TextContent"/>, so <c>ChatResponse.Text</c> is the reply alone), as
    /// <c>edgellm serve</c> answers it in <c>reasoning_content</c>. Default <see cref="Chat.ReasoningFormat.Auto"/>:
    /// split when the template writes such blocks (Qwen3, DeepSeek-R1).
    /// </summary>
    public ReasoningFormat ReasoningFormat { get; init; } = ReasoningFormat.Auto;

    /// <summary>
    /// The sampler settings a request starts from before its <see cref="AI.ChatOptions"/> apply (default: llama.cpp's:
    /// temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).
    /// </summary>
    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>
    /// Speculative decoding (<see cref="TextGenerator.UseDraft"/>): a smaller model with the same vocabulary that
    /// proposes tokens for the model to confirm in batches; the answers are the model's own. The caller keeps
    /// owning it (it must outlive the client); the client gives it a context of <see cref="ContextLength"/> tokens.
    /// </summary>
    public Model? DraftModel { get; init; }

    /// <summary>Most tokens the draft proposes at a time (llama.cpp's --draft-max); 1..256, default 16.</summary>
    public int DraftMax { get; init; } = 16;

    /// <summary>The draft stops proposing when its top token's probability is below this (llama.cpp's --draft-p-min); default 0.75.</summary>
    public float DraftMinProbability { get; init; } = 0.75f;
}

/// <summary>
/// An <see cref="AI.IChatClient"/> (Microsoft.Extensions.AI) over one model and one inference context.
/// </summary>
/// <remarks>
/// <para>
/// Each request renders the whole conversation with the model's chat template (<see cref="ChatPrompt"/>),
/// and generates with a <see cref="TextGenerator"/> whose prefix reuse keeps the KV cache of what the
/// previous request evaluated: a follow-up turn evaluates only the new messages (reported as
/// <see cref="AI.UsageDetails.CachedInputTokenCount"/>).
/// </para>
/// <para>
/// Options: <see cref="AI.ChatOptions.Temperature"/> (0 = greedy), <see cref="AI.ChatOptions.TopP"/>,
/// <see cref="AI.ChatOptions.TopK"/>, <see cref="AI.ChatOptions.MaxOutputTokens"/>, <see cref="AI.ChatOptions.StopSequences"/>,
/// <see cref="AI.ChatOptions.Seed"/>, <see cref="AI.ChatOptions.Instructions"/> (a system message put first) and
/// <see cref="AI.ChatOptions.ModelId"/> (must name this model when set). <see cref="AI.ChatOptions.AdditionalProperties"/>
/// may carry <c>min_p</c>, <c>repeat_penalty</c>, <c>repeat_last_n</c> and <c>chat_template_kwargs</c> (an
/// <c>IDictionary&lt;string, object?&gt;</c> of extra chat template variables, e.g. Qwen3's
/// <c>enable_thinking = false</c>; see <see cref="TemplateVariables"/>) and <c>grammar</c> (GBNF text or a
/// <see cref="GbnfGrammar"/>: the answer follows it, see <see cref="GenerationOptions.Grammar"/>).
/// <see cref="AI.ChatOptions.ResponseFormat"/> <c>Json</c> / <c>ForJsonSchema</c> constrain the answer to JSON
/// (see <see cref="JsonConstraint"/>). <see cref="AI.ChatOptions.Tools"/> (functions) go to the chat template,
/// and a reply in the template's call format (<see cref="ToolFormat"/>: Hermes, Llama 3, Mistral) comes back as <see cref="AI.FunctionCallContent"/> with
/// <see cref="AI.ChatFinishReason.ToolCalls"/>; <see cref="AI.ChatOptions.ToolMode"/> none, auto or required
/// (any, or one named: a grammar of one call); conversations carry on with <see cref="AI.FunctionCallContent"/>
/// and <see cref="AI.FunctionResultContent"/> (see <see cref="ToolCallFormat"/>; templates with no call format
/// refuse tools). Frequency/presence penalties are not supported and are ignored. Bad values throw an
/// <see cref="ArgumentException"/> naming the option.
/// </para>
/// <para>
/// One context means one generation at a time: concurrent requests wait their turn (in order of arrival
/// is not guaranteed). Generation runs on a worker thread; the streaming call hands its pieces over through
/// a channel, so the caller's thread is never held for the whole generation.
/// </para>
/// </remarks>
public sealed class EdgeLlmChatClient : AI.IChatClient
{
    /// <summary>The provider name in <see cref="AI.ChatClientMetadata"/>.</summary>
    public const string ProviderName = "edgellm";

    private readonly Model _model;
    private readonly bool _ownsModel;
    private readonly InferenceContext _context;
    private readonly InferenceContext? _draftContext;
    private readonly TextGenerator _generator;
    private readonly SamplerOptions _sampling;
    private readonly bool _splitReasoning;
    private readonly AI.ChatClientMetadata _metadata;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly CancellationTokenSource _disposing = new();
    private int _disposed;

    /// <summary>Loads the GGUF model at <paramref name="modelPath"/>; the client owns it and frees it on <see cref="Dispose"/>.</summary>
    /// <exception cref="ModelLoadException">the model cannot be loaded</exception>
    /// <exception cref="Gguf.GgufFormatException">the file is not valid GGUF</exception>
    /// <exception cref="Jinja.TemplateException">the file's chat template does not parse</exception>
    /// <exception cref="ArgumentException">bad <paramref name="options"/> (the message names the option)</exception>
    public EdgeLlmChatClient(string modelPath, EdgeLlmChatClientOptions? options = null)
        : this(LoadModel(modelPath, options), ownsModel: true, options)
    {
    }

    /// <summary>Uses a loaded <paramref name="model"/>, which the caller keeps owning: it must outlive the client.</summary>
    /// <exception cref="Jinja.TemplateException">the file's chat template does not parse</exception>
    /// <exception cref="ArgumentException">bad <paramref name="options"/> (the message names the option)</exception>
    public EdgeLlmChatClient(Model model, EdgeLlmChatClientOptions? options = null)
        : this(model ?? throw new ArgumentNullException(nameof(model)), ownsModel: false, options)
    {
    }

    private EdgeLlmChatClient(Model model, bool ownsModel, EdgeLlmChatClientOptions? options)
    {
        options ??= new();
        _model = model;
        _ownsModel = ownsModel;
        try
        {
            CheckClientOptions(options);
            Tokenizer = Tokenizer.FromGguf(model.File);
            Template = options.Template ?? ChatPrompt.TemplateFor(model.File);
            _splitReasoning = options.ReasoningFormat switch
            {
                ReasoningFormat.None => false,
                ReasoningFormat.DeepSeek => true,
                _ => ReasoningSplitter.TemplateReasons(Template) || Harmony.Writes(Template),
            };
            _harmony = Harmony.Writes(Template);
            _mistralThink = ReasoningSplitter.WritesMistralTags(Template);
            ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(model.File.FilePath);
            _sampling = options.Sampling;
            _context = new InferenceContext(model, options.ContextLength, options.Threads, options.CacheTypeK, options.CacheTypeV, options.FullSlidingWindowCache);
            _generator = new TextGenerator(_context, Tokenizer);
            if (options.DraftModel is { } draft)
            {
                if (options.DraftMax is < 1 or > 256)
                    throw new ArgumentException($"EdgeLlmChatClientOptions.DraftMax must be in 1..256, got {options.DraftMax}", nameof(options));
                _draftContext = new InferenceContext(draft, options.ContextLength, options.Threads);
                try
                {
                    _generator.UseDraft(_draftContext, Tokenizer.FromGguf(draft.File), options.DraftMax, options.DraftMinProbability);
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"EdgeLlmChatClientOptions.DraftModel: {e.Message}", nameof(options), e);
                }
            }
            Uri? uri = Path.IsPathRooted(model.File.FilePath) ? new Uri(model.File.FilePath) : null;
            _metadata = new AI.ChatClientMetadata(ProviderName, uri, ModelId);
        }
        catch
        {
            _draftContext?.Dispose();
            _context?.Dispose();
            if (ownsModel) model.Dispose();
            throw;
        }
    }

    private static Model LoadModel(string modelPath, EdgeLlmChatClientOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        if (options is not null) CheckClientOptions(options);
        // The memory check sizes the KV cache this client will allocate.
        return Model.Load(modelPath, new ModelLoadOptions { ContextLength = options?.ContextLength ?? 4096 });
    }

    private static void CheckClientOptions(EdgeLlmChatClientOptions options)
    {
        if (options.ContextLength < 1)
            throw new ArgumentException($"EdgeLlmChatClientOptions.ContextLength must be >= 1, got {options.ContextLength}", nameof(options));
        if (options.Threads < 0)
            throw new ArgumentException($"EdgeLlmChatClientOptions.Threads must be >= 0 (0 = one per processor), got {options.Threads}", nameof(options));
        ArgumentNullException.ThrowIfNull(options.Sampling);
        try
        {
            options.Sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"EdgeLlmChatClientOptions.Sampling: {e.Message}", nameof(options), e);
        }
    }

    /// <summary>The model id reported in responses.</summary>
    public string ModelId { get; }

    /// <summary>The model.</summary>
    public Model Model => _model;

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The chat template conversations are rendered with.</summary>
    public ChatTemplate Template { get; }

    /// <summary>How <see cref="Template"/>'s model writes function calls (<see cref="ToolCallFormat.Of"/>); null: ChatOptions.Tools are refused.</summary>
    public ToolCallFormat? ToolFormat => _toolFormat ??= ToolCallFormat.Of(Template);

    private ToolCallFormat? _toolFormat;
    private readonly bool _harmony;
    /// <summary>The template writes Mistral's [THINK] … [/THINK] reasoning blocks (control tokens, rendered for the splitter).</summary>
    private readonly bool _mistralThink;

    /// <summary>Tokens the context holds.</summary>
    public int ContextLength => _context.ContextLength;

    /// <summary>The generator (for tests: its context's position shows a generation's progress from another thread).</summary>
    internal TextGenerator Generator => _generator;

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">a bad option (the message names it), an empty conversation, or a prompt that does not fit (<see cref="PromptTooLongException"/>)</exception>
    /// <exception cref="NotSupportedException">a message carries content other than text, function calls and results (images, …), or tools the template cannot call</exception>
    /// <exception cref="Jinja.TemplateException">the chat template rejects the conversation</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired</exception>
    public async Task<AI.ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
            var token = linked.Token;
            // A long-running task: the forward pass keeps a core busy for the whole generation and should not hold a pool thread.
            var result = await Task.Factory.StartNew(() => _generator.Generate(request.Prompt, request.Generation, null, token),
                token, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
            if (result.Reason == FinishReason.Cancelled) throw Cancelled(cancellationToken);
            var message = request.Reasoning is null
                ? new AI.ChatMessage(AI.ChatRole.Assistant, result.Text) { MessageId = request.Id }
                : new AI.ChatMessage(AI.ChatRole.Assistant, Contents(request.Reasoning.Push(result.Text), request.Reasoning.Flush())) { MessageId = request.Id };
            bool called = false;
            if (request.ToolNames is { } names)
            {
                var reasoning = message.Contents.OfType<AI.TextReasoningContent>().ToList<AI.AIContent>();
                var reply = ReplyContents(string.Concat(message.Contents.OfType<AI.TextContent>().Select(t => t.Text)), names, out called);
                message = new AI.ChatMessage(AI.ChatRole.Assistant, [.. reasoning, .. reply]) { MessageId = request.Id };
            }
            return new AI.ChatResponse(message)
            {
                ResponseId = request.Id,
                ModelId = ModelId,
                CreatedAt = request.Created,
                FinishReason = called ? AI.ChatFinishReason.ToolCalls : MapFinish(result.Reason),
                Usage = Usage(result),
                RawRepresentation = result,
            };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The request is checked (options, messages, template, prompt length) when this method is called; the
    /// generation starts when enumeration starts. Each update carries one piece of text (whole UTF-8
    /// characters, never part of a stop sequence); the last one carries the <see cref="AI.ChatResponseUpdate.FinishReason"/>
    /// and a <see cref="AI.UsageContent"/>. Stopping the enumeration early stops the generation.
    /// </remarks>
    /// <exception cref="ArgumentException">a bad option (the message names it), an empty conversation, or a prompt that does not fit (<see cref="PromptTooLongException"/>)</exception>
    /// <exception cref="NotSupportedException">a message carries content other than text, function calls and results, or tools the template cannot call</exception>
    /// <exception cref="Jinja.TemplateException">the chat template rejects the conversation</exception>
    public IAsyncEnumerable<AI.ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        return StreamCore(request, cancellationToken);
    }

    private async IAsyncEnumerable<AI.ChatResponseUpdate> StreamCore(Request request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        Task<GenerationResult>? worker = null;
        CancellationTokenSource? linked = null;
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
            // The generation loop runs on its own thread and writes each piece into the channel; this
            // iterator only awaits the channel, so the consumer's thread is free between pieces.
            var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            var token = linked.Token;
            worker = Task.Factory.StartNew(() =>
            {
                try
                {
                    foreach (var piece in _generator.Stream(request.Prompt, request.Generation, token))
                        channel.Writer.TryWrite(piece);
                    channel.Writer.TryComplete();
                    return _generator.LastResult!;
                }
                catch (Exception e)
                {
                    channel.Writer.TryComplete(e);
                    throw;
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            // With tools, text that may be (the start of) a call is held until the reply ends; the rest streams.
            var held = request.ToolNames is null ? null : new ToolCallStreamer(ToolFormat!, request.ToolNames);
            bool called = false;
            await foreach (var piece in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // ReadAllAsync hands out buffered pieces without looking at the token: a cancelled stream stops here.
                cancellationToken.ThrowIfCancellationRequested();
                if (held is not null)
                {
                    if (HeldContents(held, request.Reasoning?.Push(piece) ?? ("", piece)) is { Count: > 0 } released)
                        yield return Update(request, released);
                }
                else if (request.Reasoning is null)
                    yield return Update(request, [new AI.TextContent(piece)]);
                else if (Contents(request.Reasoning.Push(piece)) is { Count: > 0 } parts)
                    yield return Update(request, parts);
            }
            var result = await worker.ConfigureAwait(false);
            if (result.Reason == FinishReason.Cancelled) throw Cancelled(cancellationToken);
            if (held is not null)
            {
                var parts = request.Reasoning is null ? [] : HeldContents(held, request.Reasoning.Flush());
                var (rest, calls) = held.Finish();
                if (rest is not null) parts.Add(new AI.TextContent(rest));
                parts.AddRange(CallContents(calls));
                called = calls.Count > 0;
                if (parts.Count > 0) yield return Update(request, parts);
            }
            else if (request.Reasoning is not null && Contents(request.Reasoning.Flush()) is { Count: > 0 } rest)
                yield return Update(request, rest);
            yield return new AI.ChatResponseUpdate(AI.ChatRole.Assistant, [new AI.UsageContent(Usage(result))])
            {
                ResponseId = request.Id,
                MessageId = request.Id,
                ModelId = ModelId,
                CreatedAt = request.Created,
                FinishReason = called ? AI.ChatFinishReason.ToolCalls : MapFinish(result.Reason),
                RawRepresentation = result,
            };
        }
        finally
        {
            // Also reached when the consumer stops enumerating early: stop the worker and wait for it,
            // since the context must not be handed to the next request while it still runs.
            if (linked is not null) await linked.CancelAsync().ConfigureAwait(false);
            if (worker is not null)
            {
                try
                {
                    await worker.ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // Its exception already reached the consumer through the channel (or nobody is listening).
                }
            }
            linked?.Dispose();
            _gate.Release();
        }
    }

    /// <summary>An <see cref="OperationCanceledException"/> for a generation that ended as cancelled: the caller's, or the client's disposal.</summary>
    private Exception Cancelled(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested
            ? new OperationCanceledException(cancellationToken)
            : new ObjectDisposedException(nameof(EdgeLlmChatClient), "the client was disposed during the generation");

    /// <inheritdoc/>
    /// <remarks>
    /// <see cref="AI.ChatClientMetadata"/> (provider "edgellm", the model id, the file's URI), the client itself,
    /// its <see cref="Models.Model"/>, <see cref="Tokenizers.Tokenizer"/> or <see cref="ChatTemplate"/>; null for anything else or any key.
    /// </remarks>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(AI.ChatClientMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_model)) return _model;
        if (serviceType.IsInstanceOfType(Tokenizer)) return Tokenizer;
        if (serviceType == typeof(ChatTemplate)) return Template;
        return null;
    }

    /// <summary>
    /// Frees the context (and the model when the client loaded it). A generation in progress is cancelled
    /// first and waited for; a streaming enumeration must not be left suspended (enumerate it to the end or
    /// dispose its enumerator), since the context is freed only once it lets go.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _disposing.Cancel();
        _gate.Wait();
        try
        {
            _context.Dispose();
            _draftContext?.Dispose();
            if (_ownsModel) _model.Dispose();
        }
        finally
        {
            // _disposing stays undisposed: a request racing with Dispose may still link to its (cancelled) token.
            _gate.Release();
        }
    }

    // ------------------------------------------------------------------ request preparation

    /// <param name="Reasoning">a splitter for the answer's reasoning block, or null (not split)</param>
    /// <summary>One streamed piece of the answer.</summary>
    private AI.ChatResponseUpdate Update(Request request, IList<AI.AIContent> contents) => new(AI.ChatRole.Assistant, contents)
    {
        ResponseId = request.Id,
        MessageId = request.Id,
        ModelId = ModelId,
        CreatedAt = request.Created,
    };

    /// <summary>The non-empty reasoning and reply parts as contents (reasoning first), of one or more splits concatenated.</summary>
    private static List<AI.AIContent> Contents(params (string Reasoning, string Content)[] parts)
    {
        string reasoning = string.Concat(parts.Select(p => p.Reasoning));
        string content = string.Concat(parts.Select(p => p.Content));
        var list = new List<AI.AIContent>(2);
        if (reasoning.Length > 0) list.Add(new AI.TextReasoningContent(reasoning));
        if (content.Length > 0) list.Add(new AI.TextContent(content));
        return list;
    }

    private sealed record Request(int[] Prompt, GenerationOptions Generation, string Id, DateTimeOffset Created, AnswerSplitter? Reasoning)
    {
        /// <summary>The functions the model may call (ChatOptions.Tools), or null: replies are then plain text.</summary>
        public IReadOnlyList<string>? ToolNames { get; init; }
    }

    /// <summary>Checks the options and messages and renders the prompt (on the caller's thread: errors surface at the call).</summary>
    private Request Prepare(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var generation = MapOptions(options);
        var conversation = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(options?.Instructions)) conversation.Add(new ChatTurn("system", options.Instructions));
        int index = 0;
        foreach (var m in messages)
        {
            if (m is null) throw new ArgumentException($"message {index} is null", nameof(messages));
            foreach (var c in m.Contents)
            {
                if (c is not AI.TextContent and not AI.TextReasoningContent and not AI.UsageContent and not AI.FunctionCallContent and not AI.FunctionResultContent)
                    throw new NotSupportedException($"message {index} ({m.Role}) carries {c.GetType().Name}: EdgeLlmChatClient handles text, function calls and function results");
            }
            string role = m.Role.Value;
            var results = m.Contents.OfType<AI.FunctionResultContent>().ToList();
            var calls = m.Contents.OfType<AI.FunctionCallContent>().ToList();
            // Instructions and a leading system message become one system message: many templates accept only one, first.
            if (role == "system" && conversation.Count == 1 && index == 0 && conversation[0].Role == "system")
                conversation[0] = new ChatTurn("system", conversation[0].Content + "\n\n" + m.Text);
            else if (results.Count > 0)
            {
                // Each function result is a "tool" turn, as OpenAI's tool messages are.
                foreach (var r in results) conversation.Add(new ChatTurn("tool", ResultText(r.Result)) { ToolCallId = r.CallId });
            }
            else
            {
                // m.Text joins the TextContents only; a reply's TextReasoningContent goes back as its reasoning.
                string reasoning = string.Concat(m.Contents.OfType<AI.TextReasoningContent>().Select(r => r.Text));
                conversation.Add(new ChatTurn(role, m.Text)
                {
                    ToolCalls = calls.Count == 0 ? null : calls.Select(c => new ChatToolCall(c.CallId, c.Name, ArgumentsJson(c.Arguments))).ToList(),
                    Reasoning = role == "assistant" && reasoning.Length > 0 ? reasoning : null,
                });
            }
            index++;
        }
        if (conversation.Count == 0) throw new ArgumentException("the conversation has no messages", nameof(messages));
        IDictionary<string, object?>? variables = null;
        if (options?.AdditionalProperties is { } ap && ap.TryGetValue("chat_template_kwargs", out object? kw) && kw is not null)
        {
            variables = kw as IDictionary<string, object?>
                ?? throw new ArgumentException($"ChatOptions.AdditionalProperties[\"chat_template_kwargs\"] must be an IDictionary<string, object?> of template variables, got {kw.GetType().Name}", nameof(options));
        }
        List<string>? toolNames = null;
        if (options?.Tools is { Count: > 0 } tools && options.ToolMode is not AI.NoneChatToolMode)
        {
            var format = ToolFormat
                ?? throw new NotSupportedException("ChatOptions.Tools: the chat template has no tool-call format EdgeLlmChatClient reads (Hermes-style <tool_call> blocks as Qwen2.5 and Qwen3 write, Llama 3.x's JSON calls, Mistral's [TOOL_CALLS], gpt-oss's harmony calls)");
            var functions = new List<ToolFunction>();
            var values = new List<object?>();
            foreach (var tool in tools)
            {
                if (tool is not AI.AIFunctionDeclaration f)
                    throw new NotSupportedException($"ChatOptions.Tools: {tool.GetType().Name} '{tool.Name}' is not a function; EdgeLlmChatClient calls functions only");
                functions.Add(new ToolFunction(f.Name, f.JsonSchema.ValueKind == System.Text.Json.JsonValueKind.Object ? f.JsonSchema.Clone() : null));
                var value = ToolValue(f);
                values.Add(value);
            }
            variables = new Dictionary<string, object?>(variables ?? new Dictionary<string, object?>(), StringComparer.Ordinal) { ["tools"] = values };
            toolNames = functions.Select(f => f.Name).ToList();
            if (options.ToolMode is AI.RequiredChatToolMode required)
            {
                var callable = required.RequiredFunctionName is { } only ? functions.Where(f => f.Name == only).ToList() : functions;
                if (callable.Count == 0) throw new ArgumentException($"ChatOptions.ToolMode requires '{required.RequiredFunctionName}', which is not in ChatOptions.Tools", nameof(options));
                if (!format.CanRequireCall)
                    throw new NotSupportedException($"ChatOptions.ToolMode: a required call cannot be enforced in the template's tool-call format ({format.Name}: its calls are control tokens, which a grammar cannot force); use ChatToolMode.Auto");
                if (generation.Grammar is not null || generation.JsonObject || generation.JsonSchema is not null)
                    throw new ArgumentException("ChatOptions: a required function call cannot be combined with a JSON response format or a grammar", nameof(options));
                generation = generation with { Grammar = format.RequiredCallGrammar(callable) };
            }
        }
        string text = ChatPrompt.Render(Template, Tokenizer, conversation, addGenerationPrompt: true, variables: variables);
        int[] prompt = Tokenizer.Encode(text, addSpecial: true, parseSpecial: true); // as ChatPrompt.Tokenize
        if (prompt.Length == 0) throw new ArgumentException("the rendered conversation has no tokens", nameof(messages));
        if (prompt.Length >= ContextLength) throw new PromptTooLongException(prompt.Length, ContextLength);
        AnswerSplitter? splitter;
        if (_harmony)
        {
            // gpt-oss: the channels are control tokens; rendered, the splitter reads them.
            generation = generation with { RenderSpecialTokens = true };
            splitter = new HarmonySplitter(Harmony.OpenHeader(text), _splitReasoning);
        }
        else
        {
            // Magistral / Ministral 3 Reasoning: [THINK] and [/THINK] are control tokens; rendered, the splitter reads them.
            if (_splitReasoning && _mistralThink) generation = generation with { RenderSpecialTokens = true };
            splitter = _splitReasoning ? new ReasoningSplitter(ReasoningSplitter.PromptOpensReasoning(text, _mistralThink), _mistralThink) : null;
        }
        return new Request(prompt, generation, "edgellm-" + Guid.NewGuid().ToString("N"), DateTimeOffset.UtcNow, splitter) { ToolNames = toolNames };
    }

    /// <summary>A function as OpenAI's tool object (what templates see).</summary>
    private static object? ToolValue(AI.AIFunctionDeclaration f)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", "function");
            w.WriteStartObject("function");
            w.WriteString("name", f.Name);
            if (!string.IsNullOrEmpty(f.Description)) w.WriteString("description", f.Description);
            w.WritePropertyName("parameters");
            f.JsonSchema.WriteTo(w);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        using var doc = System.Text.Json.JsonDocument.Parse(buffer.WrittenMemory);
        return TemplateVariables.FromJson(doc.RootElement);
    }

    /// <summary>A call's arguments as JSON text (an object).</summary>
    private static string ArgumentsJson(IDictionary<string, object?>? arguments)
    {
        if (arguments is null || arguments.Count == 0) return "{}";
        var info = AI.AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>));
        return System.Text.Json.JsonSerializer.Serialize(arguments, info);
    }

    /// <summary>A function's result as the text of a tool turn: a string as it is, anything else as JSON.</summary>
    private static string ResultText(object? result) => result switch
    {
        null => "",
        string text => text,
        System.Text.Json.JsonElement e => e.ValueKind == System.Text.Json.JsonValueKind.String ? e.GetString()! : e.GetRawText(),
        _ => System.Text.Json.JsonSerializer.Serialize(result, AI.AIJsonUtilities.DefaultOptions.GetTypeInfo(result.GetType())),
    };

    /// <summary>The reply's contents when it may hold calls: its text (if any) and a <see cref="AI.FunctionCallContent"/> per call.</summary>
    private List<AI.AIContent> ReplyContents(string reply, IReadOnlyList<string> toolNames, out bool called)
    {
        var (content, calls) = ToolFormat!.Parse(reply, toolNames); // ToolNames are set only when the template has a format
        called = calls.Count > 0;
        var list = new List<AI.AIContent>();
        string? text = called ? content : reply;
        if (!string.IsNullOrEmpty(text)) list.Add(new AI.TextContent(text));
        list.AddRange(CallContents(calls));
        return list;
    }

    /// <summary>A <see cref="AI.FunctionCallContent"/> per call, its arguments parsed (arguments that are not a JSON object: none).</summary>
    private static IEnumerable<AI.AIContent> CallContents(List<ChatToolCall> calls)
    {
        foreach (var c in calls)
        {
            var args = new Dictionary<string, object?>(StringComparer.Ordinal);
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(c.Arguments);
                if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object)
                    foreach (var p in doc.RootElement.EnumerateObject()) args[p.Name] = p.Value.Clone();
            }
            catch (System.Text.Json.JsonException)
            {
            }
            yield return new AI.FunctionCallContent(c.Id, c.Name, args);
        }
    }

    /// <summary>A piece split off reasoning: the reasoning as it is, the content through <paramref name="held"/> (what it releases).</summary>
    private static List<AI.AIContent> HeldContents(ToolCallStreamer held, (string Reasoning, string Content) part) =>
        Contents((part.Reasoning, held.Push(part.Content)));

    /// <summary>Maps <see cref="AI.ChatOptions"/> onto the sampler and the generation limits, naming a bad option.</summary>
    private GenerationOptions MapOptions(AI.ChatOptions? options)
    {
        var s = _sampling;
        if (options is null) return new GenerationOptions { Sampling = s };
        if (options.ModelId is { Length: > 0 } id && !string.Equals(id, ModelId, StringComparison.Ordinal))
            throw new ArgumentException($"ChatOptions.ModelId is '{id}', but this client runs '{ModelId}'", nameof(options));
        if (options.Temperature is { } t)
        {
            if (!float.IsFinite(t) || t < 0f) throw Bad("Temperature", "a finite number >= 0 (0 = greedy)", t);
            s = s with { Temperature = t };
        }
        if (options.TopP is { } p)
        {
            if (!(p >= 0f && p <= 1f)) throw Bad("TopP", "in [0, 1]", p);
            s = s with { TopP = p };
        }
        if (options.TopK is { } k)
        {
            if (k < 0) throw Bad("TopK", ">= 0 (0 = off)", k);
            s = s with { TopK = k };
        }
        if (options.Seed is { } seed) s = s with { Seed = unchecked((ulong)seed) };
        if (options.AdditionalProperties is { } extra)
        {
            if (extra.TryGetValue("min_p", out float minP))
            {
                if (!(minP >= 0f && minP <= 1f)) throw Bad("AdditionalProperties[\"min_p\"]", "in [0, 1]", minP);
                s = s with { MinP = minP };
            }
            if (extra.TryGetValue("repeat_penalty", out float penalty))
            {
                if (!float.IsFinite(penalty) || penalty <= 0f) throw Bad("AdditionalProperties[\"repeat_penalty\"]", "a finite number > 0 (1 = off)", penalty);
                s = s with { RepeatPenalty = penalty };
            }
            if (extra.TryGetValue("repeat_last_n", out int lastN))
            {
                if (lastN < -1) throw Bad("AdditionalProperties[\"repeat_last_n\"]", ">= -1", lastN);
                s = s with { RepeatLastN = lastN };
            }
        }
        int max = -1;
        if (options.MaxOutputTokens is { } m)
        {
            if (m < 0) throw Bad("MaxOutputTokens", ">= 0", m);
            max = m;
        }
        var stop = new List<string>();
        if (options.StopSequences is { } stops)
        {
            for (int i = 0; i < stops.Count; i++)
            {
                if (string.IsNullOrEmpty(stops[i])) throw new ArgumentException($"ChatOptions.StopSequences[{i}] is empty", nameof(options));
                stop.Add(stops[i]);
            }
        }
        // ChatResponseFormat.Json: any JSON object; ForJsonSchema: an object following the schema (the part
        // JsonSchemaNode enforces; a keyword it cannot enforce is refused, naming it). Both token by token.
        bool json = false;
        JsonSchemaNode? schema = null;
        if (options.ResponseFormat is AI.ChatResponseFormatJson jsonFormat)
        {
            json = true;
            if (jsonFormat.Schema is { } schemaElement)
            {
                try
                {
                    schema = JsonSchemaNode.Parse(schemaElement);
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException("ChatOptions.ResponseFormat: " + e.Message, nameof(options), e);
                }
            }
        }
        GbnfGrammar? grammar = null;
        if (options.AdditionalProperties is { } props && props.TryGetValue("grammar", out object? g) && g is not null)
        {
            try
            {
                grammar = g switch
                {
                    GbnfGrammar parsed => parsed,
                    string text => GbnfGrammar.Parse(text),
                    _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"grammar\"] must be GBNF text or a GbnfGrammar, got {g.GetType().Name}", nameof(options)),
                };
            }
            catch (GbnfParseException e)
            {
                throw new ArgumentException("ChatOptions.AdditionalProperties[\"grammar\"]: " + e.Message, nameof(options), e);
            }
            if (json) throw new ArgumentException("ChatOptions: give either a ResponseFormat of JSON or AdditionalProperties[\"grammar\"], not both", nameof(options));
        }
        return new GenerationOptions { Sampling = s, MaxTokens = max, Stop = stop, JsonObject = json, JsonSchema = schema, Grammar = grammar };
    }

    private static ArgumentException Bad(string option, string rule, float got) =>
        new($"ChatOptions.{option} must be {rule}, got {got.ToString("R", CultureInfo.InvariantCulture)}", "options");

    private static ArgumentException Bad(string option, string rule, int got) =>
        new($"ChatOptions.{option} must be {rule}, got {got.ToString(CultureInfo.InvariantCulture)}", "options");

    private static AI.ChatFinishReason MapFinish(FinishReason reason) => reason switch
    {
        FinishReason.Length or FinishReason.ContextFull => AI.ChatFinishReason.Length,
        _ => AI.ChatFinishReason.Stop,
    };

    private static AI.UsageDetails Usage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.CompletionTokens,
        TotalTokenCount = r.PromptTokens + r.CompletionTokens,
        CachedInputTokenCount = r.ReusedPromptTokens,
    };
}
