using System.CommandLine;
using System.Net;
using EdgeLlm.Chat;
using EdgeLlm.Cli.Server;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Runtime;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm serve</c>: an OpenAI-compatible HTTP server (see <see cref="OpenAiServer"/>) over one
/// model with <c>--parallel</c> slots. The log (address, one line per request) goes to stderr.
/// Ctrl-C or SIGTERM cancels running generations and exits 0.
/// </summary>
public static class ServeCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var host = new Option<string>("--host") { Description = "Address to listen on: an IP address or localhost (0.0.0.0 exposes the server to the network)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port; the one bound is printed)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require Authorization: Bearer KEY on every endpoint but /health (default: $EDGELLM_API_KEY; unset: no key)" };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Requests generated at once (slots; each has its own KV cache of -c tokens, the weights are shared)", DefaultValueFactory = _ => 1 };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a busy slot; more get 503 with Retry-After", DefaultValueFactory = _ => 16 };
        var ctx = RunCommand.ContextOption();
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads per slot (default: physical cores / --parallel, at least 1)" };
        var maxBody = new Option<long>("--max-body-size") { Description = "Largest request body in bytes (larger: 413)", DefaultValueFactory = _ => 1 << 20 };
        var alias = new Option<string?>("--alias") { Description = "The model's id in the API (default: the file name without .gguf)" };
        var backend = BackendOption.Create();
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var kwargs = TemplateCommand.KwargsOption();
        var reasoningFormat = new Option<string>("--reasoning-format")
        {
            Description = "Chat answers' <think>...</think> (Mistral's [THINK]...[/THINK]) reasoning: deepseek = in message.reasoning_content, none = left in content, auto = deepseek when the chat template writes such blocks (Qwen3, DeepSeek-R1, Magistral)",
            DefaultValueFactory = _ => "auto",
        };
        reasoningFormat.AcceptOnlyFromAmong("auto", "none", "deepseek");
        var pooling = new Option<string?>("--pooling") { Description = "/v1/embeddings' pooling: mean, cls or last (default: the model's pooling_type)" };
        pooling.AcceptOnlyFromAmong("none", "mean", "cls", "last");
        var draftModel = new Option<string?>("--model-draft", "-md") { Description = "Speculative decoding in every slot: a smaller model with the same vocabulary proposes tokens (see run)" };
        var draftMax = new Option<int>("--draft-max", "--draft") { Description = "Most tokens the draft model proposes at a time", DefaultValueFactory = _ => 16 };
        var draftPMin = new Option<float>("--draft-p-min") { Description = "The draft stops proposing when its top token's probability is below this", DefaultValueFactory = _ => 0.75f };
        var lookup = new Option<int?>("--lookup-ngram") { Description = "Speculative decoding without a draft model in every slot: prompt lookup with N-token matches (1..8; see run)" };
        var cache = new KvCacheFlags(draft: true);

        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health)")
        {
            model, host, port, apiKey, parallel, queue, ctx, threads, maxBody, alias, backend, generic, kwargs, reasoningFormat, pooling, draftModel, draftMax, draftPMin, lookup,
        };
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            string hostValue = pr.GetValue(host)!;
            if (hostValue != "localhost" && !IPAddress.TryParse(hostValue, out _))
                throw new UsageException($"--host must be an IP address or localhost, got '{hostValue}'");
            int portValue = pr.GetValue(port);
            if (portValue is < 0 or > 65535) throw new UsageException($"--port must be in 0..65535, got {portValue}");
            if (hostValue == "localhost" && portValue == 0) throw new UsageException("--port 0 needs an IP address as --host (localhost binds two addresses)");
            int slots = pr.GetValue(parallel);
            if (slots is < 1 or > 256) throw new UsageException($"--parallel must be in 1..256, got {slots}");
            int queueLength = pr.GetValue(queue);
            if (queueLength < 0) throw new UsageException($"--queue must be >= 0, got {queueLength}");
            int threadCount = pr.GetValue(threads) ?? Math.Max(1, CpuFeatures.PhysicalCores / slots);
            RunCommand.CheckThreads(threadCount);
            int ctxLen = pr.GetValue(ctx);
            RunCommand.CheckContext(ctxLen);
            long maxBodyBytes = pr.GetValue(maxBody);
            if (maxBodyBytes < 1024) throw new UsageException($"--max-body-size must be >= 1024 bytes, got {maxBodyBytes}");
            var variables = TemplateCommand.ParseKwargs(pr.GetValue(kwargs));
            string? key = pr.GetValue(apiKey);
            if (string.IsNullOrEmpty(key)) key = Environment.GetEnvironmentVariable("EDGELLM_API_KEY");

            var speculation = Speculation.Read(pr.GetValue(draftModel), pr.GetValue(lookup), pr.GetValue(draftMax), pr.GetValue(draftPMin)) is { } read
                ? read with { DraftCache = cache.ReadDraft(pr, pr.GetValue(backend)) } : null;
            string modelPath = ModelResolver.Resolve(pr.GetValue(model));
            string id = pr.GetValue(alias) is { Length: > 0 } a ? a : ModelId(modelPath);
            return Serve(modelPath, new ServerOptions
            {
                Host = hostValue,
                Port = portValue,
                ApiKey = string.IsNullOrEmpty(key) ? null : key,
                MaxBodyBytes = maxBodyBytes,
                ModelId = id,
                TemplateVariables = variables,
                ReasoningFormat = pr.GetValue(reasoningFormat)!,
                Pooling = pr.GetValue(pooling),
                Speculative = speculation is not null,
            }, slots, queueLength, ctxLen, threadCount, pr.GetValue(backend), pr.GetValue(generic), speculation, cacheTypes);
        }));
        return cmd;
    }

    private sealed class Disposables(List<IEvalContext> items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var i in items) i.Dispose();
        }
    }

    /// <summary>
    /// An embedding server: a BERT encoder answers <c>/v1/embeddings</c>, or <c>/v1/rerank</c> when it is a reranker (one
    /// request at a time, on the CPU); completions
    /// are refused with 501. Slots, the context size and speculative decoding do not apply.
    /// </summary>
    private static int ServeEncoder(string modelPath, ServerOptions options, int threads, string? backend, bool speculation)
    {
        var err = Console.Error;
        if (backend is "vulkan") throw new UsageException("--backend vulkan: text encoders (bert, nomic-bert, jina-bert-v2) run on the CPU");
        if (speculation) throw new UsageException("speculative decoding (--model-draft, --lookup) needs a model that generates text; this one is a text encoder");
        using var bert = BertModel.Load(modelPath, threads);
        var tokenizer = Tokenizer.FromGguf(bert.File);
        err.WriteLine(bert.IsReranker
            ? $"edgellm: serving {options.ModelId}, a {bert.Architecture} reranker (a cross-encoder, up to {bert.ContextLength} tokens a query and document), for /v1/rerank{(options.ApiKey is null ? "" : ", API key required")}"
            : $"edgellm: serving {options.ModelId}, a {bert.Architecture} text encoder ({bert.EmbeddingLength} dimensions, up to {bert.ContextLength} tokens a text), for /v1/embeddings only{(options.ApiKey is null ? "" : ", API key required")}");
        Run(new OpenAiServer(options, bert, tokenizer, err), options, err);
        return ExitCodes.Ok;
    }

    /// <summary>Serves until stopped; a port that cannot be bound is an I/O error naming it.</summary>
    private static void Run(OpenAiServer server, ServerOptions options, TextWriter err)
    {
        try
        {
            server.RunAsync().GetAwaiter().GetResult();
        }
        catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException || e.Message.Contains("address", StringComparison.OrdinalIgnoreCase))
        {
            throw new IOException($"cannot listen on {options.Host}:{options.Port}: {e.Message}", e);
        }
        err.WriteLine("edgellm: server stopped");
    }

    /// <summary>The model's id in the API: the file name without <c>.gguf</c>.</summary>
    public static string ModelId(string path)
    {
        string name = Path.GetFileName(path);
        return name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }

    private static int Serve(string modelPath, ServerOptions options, int slots, int queue, int ctxLen, int threads, string? backend, bool generic,
        Speculation? speculation = null, KvCacheTypePair cache = default)
    {
        // One draft model for every slot (each slot gets its own context on it), as the model itself.
        var draftOptions = speculation is { DraftPath: { } dp } ? (Path: dp, Max: speculation.DraftMax, PMin: speculation.DraftPMin) : ((string Path, int Max, float PMin)?)null;
        var lookup = speculation is { DraftPath: null } ? (Ngram: speculation.LookupNgram, Max: speculation.DraftMax) : ((int Ngram, int Max)?)null;
        var err = Console.Error;
        bool encoder;
        using (var peek = GgufFile.Open(modelPath)) encoder = BertModel.IsEncoder(peek);
        if (encoder) return ServeEncoder(modelPath, options, threads, backend, speculation is not null);
        // As `run`: weights are repacked only when a slot may run on the CPU (a Vulkan-only server keeps the file's layout).
        using var model = Model.Load(modelPath, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
        var tokenizer = Tokenizer.FromGguf(model.File);
        var template = ChatPrompt.TemplateFor(model.File);
        if (template.IsFallback)
            err.WriteLine("edgellm: the model has no chat template (tokenizer.chat_template); /v1/chat/completions uses the fallback template");
        if (InferenceContext.ExceedsTrainingContext(model, ctxLen))
            err.WriteLine($"warning: context {ctxLen} exceeds the model's training context ({model.Config.TrainingContextLength}); output past it may degrade");
        if (slots > 1 && backend is "vulkan" or "auto")
            err.WriteLine("edgellm: note: with a Vulkan backend each slot uploads its own copy of the weights");

        Model? draft = null;
        Tokenizer? draftTokenizer = null;
        if (draftOptions is { } d)
        {
            try
            {
                draft = Model.Load(d.Path, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
            }
            catch (Exception e) when (e is ModelLoadException or GgufFormatException or IOException)
            {
                throw new InputException($"--model-draft {d.Path}: {e.Message}");
            }
            draftTokenizer = Tokenizer.FromGguf(draft.File);
        }
        using var draftOwner = draft;
        var list = new List<Slot>(slots);
        var draftContexts = new List<IEvalContext>();
        SlotPool pool;
        try
        {
            for (int i = 0; i < slots; i++)
            {
                var context = BackendOption.CreateContext(backend, model, ctxLen, threads, cache);
                var generator = new TextGenerator(context, tokenizer);
                list.Add(new Slot(i, context, generator));
                if (lookup is { } lk) generator.UseLookup(lk.Ngram, lk.Max);
                if (draftOptions is { } dd)
                {
                    try
                    {
                        var draftContext = BackendOption.CreateContext(backend, draft!, ctxLen, threads, speculation!.DraftCache);
                        draftContexts.Add(draftContext);
                        generator.UseDraft(draftContext, draftTokenizer!, dd.Max, dd.PMin);
                    }
                    catch (ArgumentException e)
                    {
                        throw new InputException($"--model-draft {dd.Path}: {e.Message}");
                    }
                }
            }
            pool = new SlotPool(list, queue);
        }
        catch
        {
            foreach (var s in list) s.Context.Dispose();
            foreach (var c in draftContexts) c.Dispose();
            throw;
        }
        using var draftCleanup = new Disposables(draftContexts);
        if (draftOptions is { } shown)
            err.WriteLine($"edgellm: speculative decoding with {ModelId(shown.Path)} (up to {shown.Max} tokens, p-min {shown.PMin.ToString(System.Globalization.CultureInfo.InvariantCulture)})");
        if (lookup is { } shownLookup)
            err.WriteLine($"edgellm: speculative decoding by prompt lookup ({shownLookup.Ngram}-token matches, up to {shownLookup.Max} tokens)");
        using (pool)
        {
            if (list[0].Context is InferenceContext)
                err.WriteLine($"edgellm: forward pass: {Specialized.SpecializationRegistry.Describe(model)}");
            err.WriteLine($"edgellm: serving {options.ModelId} with {slots} slot{(slots == 1 ? "" : "s")} of {ctxLen} tokens ({list[0].Context.Description}), queue {queue}{(options.ApiKey is null ? "" : ", API key required")}");
            var server = new OpenAiServer(options, pool, tokenizer, template, err, model.File);
            if (server.SplitsReasoning)
                err.WriteLine($"edgellm: chat answers' <think> reasoning goes to message.reasoning_content (--reasoning-format {options.ReasoningFormat}; none keeps it in content)");
            Run(server, options, err);
        }
        return ExitCodes.Ok;
    }
}
