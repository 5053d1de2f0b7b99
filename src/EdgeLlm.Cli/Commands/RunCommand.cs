using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Runtime;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm run</c>: stdout gets exactly the prompt as given, then the generated text streamed,
/// then one newline; everything else (warnings, --show-probs, statistics) goes to stderr.
/// </summary>
public static class RunCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Prompt text" };
        var file = new Option<string?>("--file", "-f") { Description = "Read the prompt from a file (UTF-8)" };
        var n = new Option<int>("--n-predict", "-n") { Description = "Tokens to generate (-1: until end of generation or a full context)", DefaultValueFactory = _ => -1 };
        var ctx = ContextOption();
        var threads = ThreadsOption();
        var stop = new Option<string[]>("--stop") { Description = "Stop when this text is generated (repeatable; not printed)", AllowMultipleArgumentsPerToken = false };
        var sampler = new SamplerFlags("Random seed (default: random, printed on stderr)");
        var backend = BackendOption.Create();
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var showProbs = new Option<int>("--show-probs") { Description = "After each token, print the K most likely candidates and their probabilities on stderr", DefaultValueFactory = _ => 0 };
        var jsonSchema = new Option<string?>("--json-schema", "-j")
        {
            Description = "Constrain the output to one JSON object following this JSON schema (llama-cli's flag; '{}' = any object)",
        };
        var grammar = new Option<string?>("--grammar")
        {
            Description = "Constrain the output to this GBNF grammar (llama-cli's flag and syntax; generation starts at the rule 'root')",
        };
        var grammarFile = new Option<string?>("--grammar-file") { Description = "Read the GBNF grammar from a file (UTF-8)" };
        var draftModel = new Option<string?>("--model-draft", "-md")
        {
            Description = "Speculative decoding: a smaller model with the same vocabulary proposes tokens, the model confirms them in batches (same output, sooner)",
        };
        var draftMax = new Option<int>("--draft-max", "--draft") { Description = "Most tokens the draft model proposes at a time", DefaultValueFactory = _ => 16 };
        var draftPMin = new Option<float>("--draft-p-min") { Description = "The draft stops proposing when its top token's probability is below this", DefaultValueFactory = _ => 0.75f };
        var lookup = new Option<int?>("--lookup-ngram")
        {
            Description = "Speculative decoding without a draft model: propose what followed the last earlier occurrence of the newest N tokens (1..8) in the prompt and text",
        };
        var cache = new KvCacheFlags(draft: true);

        var cmd = new Command("run", "Generate text from a prompt")
        {
            model, prompt, file, n, ctx, threads, stop, showProbs, backend, generic, jsonSchema, grammar, grammarFile, draftModel, draftMax, draftPMin, lookup,
        };
        foreach (var o in sampler.All) cmd.Options.Add(o);
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var options = sampler.Read(pr);
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            string text = ReadPrompt(pr.GetValue(prompt), pr.GetValue(file));
            int nPredict = pr.GetValue(n);
            if (nPredict < -1) throw new UsageException($"-n must be -1 (no limit) or >= 0, got {nPredict}");
            int k = pr.GetValue(showProbs);
            if (k < 0) throw new UsageException($"--show-probs must be >= 0, got {k}");
            var json = ParseJsonSchema(pr.GetValue(jsonSchema));
            var gbnf = ParseGrammar(pr.GetValue(grammar), pr.GetValue(grammarFile));
            if (gbnf is not null && json.Json) throw new UsageException("give either --json-schema or a grammar (--grammar, --grammar-file), not both");
            if (Speculation.Read(pr.GetValue(draftModel), pr.GetValue(lookup), pr.GetValue(draftMax), pr.GetValue(draftPMin)) is { } read
                && read with { DraftCache = cache.ReadDraft(pr, pr.GetValue(backend)) } is var speculation)
            {
                if (k > 0) throw new UsageException($"--show-probs cannot be combined with {(speculation.DraftPath is not null ? "--model-draft" : "--lookup-ngram")}");
                var generation = new GenerationOptions
                {
                    Sampling = options, MaxTokens = nPredict, Stop = pr.GetValue(stop) ?? [], JsonObject = json.Json, JsonSchema = json.Schema, Grammar = gbnf,
                };
                return RunWithDraft(ModelResolver.Resolve(pr.GetValue(model)), speculation, text, generation, pr.GetValue(ctx), pr.GetValue(threads), pr.GetValue(backend), pr.GetValue(generic), cacheTypes);
            }
            return Run(ModelResolver.Resolve(pr.GetValue(model)), text, nPredict, pr.GetValue(ctx), pr.GetValue(threads), options, pr.GetValue(stop) ?? [], k, pr.GetValue(backend), pr.GetValue(generic), json, gbnf, cacheTypes);
        }));
        return cmd;
    }

    public static Option<int> ContextOption() => new("--ctx-size", "-c")
    {
        Description = "Context length in tokens (KV cache size)",
        DefaultValueFactory = _ => 4096,
    };

    public static Option<int> ThreadsOption() => new("--threads", "-t")
    {
        Description = "Worker threads (default: physical cores)",
        DefaultValueFactory = _ => CpuFeatures.PhysicalCores,
    };

    internal static string ReadPrompt(string? prompt, string? file)
    {
        if (prompt is not null && file is not null) throw new UsageException("give either -p or -f, not both");
        if (file is not null)
        {
            var bytes = File.ReadAllBytes(file);
            try { return new UTF8Encoding(false, true).GetString(bytes); }
            catch (DecoderFallbackException e) { throw new InputException($"{file} is not valid UTF-8 (byte offset {e.Index})"); }
        }
        return prompt ?? "";
    }

    /// <summary>--grammar / --grammar-file: null when neither is given; a grammar that does not parse is a usage error naming the flag, line and column.</summary>
    internal static GbnfGrammar? ParseGrammar(string? text, string? file)
    {
        if (text is not null && file is not null) throw new UsageException("give either --grammar or --grammar-file, not both");
        if (file is not null)
        {
            byte[] bytes;
            try { bytes = File.ReadAllBytes(file); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InputException($"--grammar-file {file}: {e.Message}"); }
            try { text = new UTF8Encoding(false, true).GetString(bytes); }
            catch (DecoderFallbackException e) { throw new InputException($"--grammar-file {file} is not valid UTF-8 (byte offset {e.Index})"); }
        }
        if (text is null) return null;
        try
        {
            return GbnfGrammar.Parse(text);
        }
        catch (GbnfParseException e)
        {
            throw new UsageException($"{(file is null ? "--grammar" : $"--grammar-file {file}")}: {e.Message}");
        }
    }

    /// <summary>
    /// --json-schema: null when absent; (true, null) for '{}' (any JSON object, as llama-cli's empty schema
    /// allows any JSON); else the compiled schema. A bad schema is a usage error naming the flag.
    /// </summary>
    internal static (bool Json, JsonSchemaNode? Schema) ParseJsonSchema(string? text)
    {
        if (text is null) return (false, null);
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && !doc.RootElement.EnumerateObject().Any()) return (true, null);
            return (true, JsonSchemaNode.Parse(doc.RootElement));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new UsageException($"--json-schema is not valid JSON: {e.Message}");
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--json-schema: {e.Message}");
        }
    }

    internal static void CheckThreads(int threads)
    {
        if (threads < 1 || threads > 1024) throw new UsageException($"-t must be in 1..1024, got {threads}");
    }

    internal static void CheckContext(int ctx)
    {
        if (ctx < 1 || ctx > 1 << 24) throw new UsageException($"-c must be in 1..16777216, got {ctx}");
    }

    private static int Run(string modelPath, string prompt, int nPredict, int ctxLen, int threads, SamplerOptions options, string[] stops, int showProbs, string? backend = "cpu", bool generic = false,
        (bool Json, JsonSchemaNode? Schema) json = default, GbnfGrammar? grammar = null, KvCacheTypePair cache = default)
    {
        var err = Console.Error;
        var loadWatch = Stopwatch.StartNew();
        using var session = Session.Open(modelPath, ctxLen, threads, backend, generic, err, cache);
        var (tokenizer, context) = (session.Tokenizer, session.Context);
        loadWatch.Stop();
        int[] tokens = session.Tokenize(prompt);

        var sampler = new Sampler(options, tokenizer.VocabSize);
        if (options.Temperature > 0) err.WriteLine($"seed: {sampler.Seed}");
        foreach (var t in tokens) sampler.Accept(t);
        var constraint = TokenConstraint.For(tokenizer, grammar, json.Json, json.Schema);

        var stdout = Console.OpenStandardOutput();
        void Out(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            stdout.Write(b);
            stdout.Flush();
        }
        bool cancelled = false;
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancelled = true; };
        Console.CancelKeyPress += onCancel;
        Out(prompt);
        var decoder = new StreamingDecoder(tokenizer);
        var stopper = new StopStringMatcher(stops);
        var promptWatch = Stopwatch.StartNew();
        float[] logits = context.Eval(tokens);
        promptWatch.Stop();
        var genWatch = new Stopwatch();
        int generated = 0;
        string reason = "";
        try
        {
            while (true)
            {
                if (cancelled) { reason = "interrupted"; break; }
                if (nPredict >= 0 && generated >= nPredict) { reason = $"reached -n {nPredict}"; break; }
                genWatch.Start();
                int next = sampler.Sample(logits);
                if (constraint is not null) next = constraint.Choose(sampler, logits, next);
                genWatch.Stop();
                if (showProbs > 0) PrintProbs(err, tokenizer, logits, showProbs, next);
                if (tokenizer.IsEndOfGeneration(next)) { reason = "end of generation"; break; }
                sampler.Accept(next);
                generated++;
                var piece = decoder.Append(next);
                var match = stopper.Append(piece);
                Out(match.Text);
                if (match.Stopped) { reason = "stop string"; break; }
                if (constraint is { IsComplete: true }) { reason = grammar is null ? "JSON object complete" : "grammar complete"; break; }
                if (context.Position >= ctxLen) { reason = $"context full ({ctxLen} tokens)"; err.WriteLine(); err.WriteLine($"edgellm: context is full ({ctxLen} tokens); stopping. Use -c to enlarge it."); break; }
                genWatch.Start();
                logits = context.Eval([next]);
                genWatch.Stop();
            }
            if (reason != "stop string")
            {
                var tail = stopper.Append(decoder.Flush());
                Out(tail.Text);
                if (!tail.Stopped) Out(stopper.Flush());
            }
            Out("\n");
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        Report(err, reason, loadWatch.Elapsed, tokens.Length, promptWatch.Elapsed, generated, genWatch.Elapsed);
        return cancelled ? 130 : ExitCodes.Ok;
    }

    /// <summary>
    /// <c>run --model-draft</c>: the same contract as <see cref="Run"/> (stdout: the prompt, the text, one
    /// newline; stderr: the stop reason and timings), through <see cref="TextGenerator.UseDraft"/>, plus a
    /// line saying how many proposals the model kept.
    /// </summary>
    private static int RunWithDraft(string modelPath, Speculation speculation, string prompt, GenerationOptions options, int ctxLen, int threads, string? backend, bool generic,
        KvCacheTypePair cache = default)
    {
        var err = Console.Error;
        var loadWatch = Stopwatch.StartNew();
        using var session = Session.Open(modelPath, ctxLen, threads, backend, generic, err, cache);
        var tokenizer = session.Tokenizer;
        var generator = new TextGenerator(session.Context, tokenizer);
        using var draft = speculation.Attach(generator, backend, generic, ctxLen, threads);
        loadWatch.Stop();
        int[] tokens = session.Tokenize(prompt);
        var sampling = options.Sampling with { Seed = options.Sampling.Seed ?? new Sampler(options.Sampling, tokenizer.VocabSize).Seed };
        if (sampling.Temperature > 0) err.WriteLine($"seed: {sampling.Seed}");

        var stdout = Console.OpenStandardOutput();
        void Out(string text)
        {
            stdout.Write(Encoding.UTF8.GetBytes(text));
            stdout.Flush();
        }
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        GenerationResult r;
        try
        {
            Out(prompt);
            r = generator.Generate(tokens, options with { Sampling = sampling }, Out, cancel.Token);
            Out("\n");
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        string reason = r.Reason switch
        {
            FinishReason.EndOfGeneration => options.Grammar is not null ? "end of generation or grammar complete"
                : options.JsonObject || options.JsonSchema is not null ? "end of generation or JSON object complete" : "end of generation",
            FinishReason.StopString => "stop string",
            FinishReason.Length => $"reached -n {options.MaxTokens}",
            FinishReason.ContextFull => $"context full ({ctxLen} tokens)",
            _ => "interrupted",
        };
        if (r.Reason == FinishReason.ContextFull) err.WriteLine($"edgellm: context is full ({ctxLen} tokens); stopping. Use -c to enlarge it.");
        Report(err, reason, loadWatch.Elapsed, tokens.Length, r.PromptTime, r.CompletionTokens, r.GenerationTime);
        err.WriteLine(string.Format(CultureInfo.InvariantCulture, "draft: {0} tokens proposed, {1} accepted ({2:F1}%)", r.DraftedTokens, r.AcceptedDraftTokens,
            100.0 * r.AcceptedDraftTokens / Math.Max(r.DraftedTokens, 1)));
        return r.Reason == FinishReason.Cancelled ? 130 : ExitCodes.Ok;
    }

    /// <summary>The model, its tokenizer and a context, as both run paths open them (disposing frees the context, then the model).</summary>
    private sealed class Session(Model model, Tokenizer tokenizer, IEvalContext context, int contextLength) : IDisposable
    {
        public Tokenizer Tokenizer { get; } = tokenizer;

        public IEvalContext Context { get; } = context;

        /// <summary>Checks the arguments, loads the model (warning on stderr when -c passes its training context) and creates the context on the backend.</summary>
        public static Session Open(string modelPath, int ctxLen, int threads, string? backend, bool generic, TextWriter err, KvCacheTypePair cache = default)
        {
            CheckThreads(threads);
            CheckContext(ctxLen);
            var model = Model.Load(modelPath, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
            try
            {
                var tokenizer = Tokenizer.FromGguf(model.File);
                if (ctxLen > model.Config.TrainingContextLength && model.Config.TrainingContextLength > 0)
                    err.WriteLine($"warning: context {ctxLen} exceeds the model's training context ({model.Config.TrainingContextLength}); output past it may degrade");
                return new Session(model, tokenizer, BackendOption.CreateContext(backend, model, ctxLen, threads, cache), ctxLen);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }

        /// <summary>The prompt's tokens as llama-cli takes them (BOS as the vocabulary says, special-token text parsed); refused when empty or too long for the context.</summary>
        public int[] Tokenize(string prompt)
        {
            int[] tokens = Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
            if (tokens.Length == 0) throw new InputException("the prompt is empty and the model adds no BOS token: nothing to condition on");
            if (tokens.Length >= contextLength)
                throw new InputException($"the prompt is {tokens.Length} tokens; the context (-c) holds {contextLength}, which leaves no room to generate");
            return tokens;
        }

        public void Dispose()
        {
            Context.Dispose();
            model.Dispose();
        }
    }

    /// <summary>stderr's closing lines: the stop reason, load time, prompt and generation speeds.</summary>
    private static void Report(TextWriter err, string reason, TimeSpan load, int promptTokens, TimeSpan promptTime, int generated, TimeSpan generationTime)
    {
        var ci = CultureInfo.InvariantCulture;
        err.WriteLine($"stopped: {reason}");
        err.WriteLine(string.Format(ci, "load time: {0:F1} ms", load.TotalMilliseconds));
        err.WriteLine(string.Format(ci, "prompt: {0} tokens in {1:F1} ms, {2:F2} tok/s", promptTokens, promptTime.TotalMilliseconds, promptTokens / Math.Max(promptTime.TotalSeconds, 1e-9)));
        err.WriteLine(string.Format(ci, "generation: {0} tokens in {1:F1} ms, {2:F2} tok/s", generated, generationTime.TotalMilliseconds, generated / Math.Max(generationTime.TotalSeconds, 1e-9)));
    }

    private static void PrintProbs(TextWriter err, Tokenizer tokenizer, float[] logits, int k, int chosen)
    {
        var top = Sampler.TopCandidates(logits, k);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"[{Escape(tokenizer, chosen)}]");
        foreach (var (id, p) in top)
            sb.Append(CultureInfo.InvariantCulture, $" {Escape(tokenizer, id)}={p:F4}");
        err.WriteLine(sb.ToString());
    }

    private static string Escape(Tokenizer tokenizer, int id)
    {
        var s = Encoding.UTF8.GetString(tokenizer.TokenToBytes(id));
        return "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";
    }
}
