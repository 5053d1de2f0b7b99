using System.CommandLine;
using System.Globalization;
using System.Text;
using EdgeLlm.Chat;
using EdgeLlm.Chat.Jinja;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Sampling;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm chat</c>: an interactive conversation in the terminal, one line per user message.
/// </summary>
/// <remarks>
/// <para>
/// Output contract: stdout gets only the assistant's answers, streamed as they are generated, each
/// followed by exactly one newline. Everything else goes to stderr: the banner, the prompt marker
/// <c>"&gt; "</c>, notices (<c>edgellm: …</c>) and one status line after each answer,
/// <c>[prompt: N tokens, M reused; answer: K tokens, X tok/s; stopped: REASON]</c>. M counts the
/// prompt tokens whose KV cache entries were kept from the previous turn (the conversation so far),
/// so only N - M tokens were evaluated; REASON is <c>end of turn</c>, <c>-n K reached</c>,
/// <c>context full</c> or <c>interrupted</c>.
/// </para>
/// <para>
/// Commands (a line starting with <c>/</c>): <c>/reset</c> forgets the conversation (the system
/// prompt stays, and so does its KV cache); <c>/system TEXT</c> sets the system prompt from the next
/// turn on (<c>/system</c> alone removes it; the conversation is kept); <c>/exit</c> (or
/// <c>/quit</c>) and end of input (Ctrl-D) exit with 0; <c>/help</c> lists them. <c>//text</c> sends
/// "/text" as a message. Empty lines are ignored.
/// </para>
/// <para>
/// Ctrl-C while an answer is generated stops that answer (it stays in the conversation, the status
/// line says <c>stopped: interrupted</c>) and the prompt comes back. Ctrl-C at the prompt exits with
/// 130, as does a second Ctrl-C before an interrupted answer has stopped (e.g. during a long prompt
/// evaluation, which is not interruptible), so a stuck program can always be left.
/// </para>
/// <para>
/// The answer ends at the template's end-of-turn token (the vocabulary's end-of-generation set),
/// after <c>-n</c> tokens, or when the context is full. When the conversation outgrows the context
/// the oldest turns are dropped (the system prompt stays) and a notice on stderr says how many; a
/// single message too long for the context is refused with a notice and the chat goes on. A model
/// without a chat template is prompted with <see cref="ChatTemplate.Fallback"/>, which stderr says.
/// </para>
/// </remarks>
public static class ChatCommand
{
    /// <summary>Exit code for leaving with Ctrl-C (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;

    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var system = new Option<string?>("--system") { Description = "System prompt (change it in the chat with /system TEXT)" };
        var n = new Option<int>("--n-predict", "-n") { Description = "Most tokens per answer (-1: until the end of the turn or a full context)", DefaultValueFactory = _ => -1 };
        var ctx = RunCommand.ContextOption();
        var threads = RunCommand.ThreadsOption();
        var sampler = new SamplerFlags("Random seed, the same for every answer (default: a random one per answer, shown in the status line)");
        var backend = BackendOption.Create();
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var kwargs = TemplateCommand.KwargsOption();
        var jsonSchema = new Option<string?>("--json-schema", "-j") { Description = "Every answer is one JSON object following this JSON schema ('{}' = any object)" };
        var grammar = new Option<string?>("--grammar") { Description = "Every answer is a sentence of this GBNF grammar (llama.cpp's syntax; from the rule 'root')" };
        var grammarFile = new Option<string?>("--grammar-file") { Description = "Read the GBNF grammar from a file (UTF-8)" };
        var draftModel = new Option<string?>("--model-draft", "-md") { Description = "Speculative decoding: a smaller model with the same vocabulary proposes tokens (see run)" };
        var draftMax = new Option<int>("--draft-max", "--draft") { Description = "Most tokens proposed at a time", DefaultValueFactory = _ => 16 };
        var draftPMin = new Option<float>("--draft-p-min") { Description = "The draft stops proposing when its top token's probability is below this", DefaultValueFactory = _ => 0.75f };
        var lookup = new Option<int?>("--lookup-ngram") { Description = "Speculative decoding by prompt lookup with N-token matches (1..8; see run)" };
        var cache = new KvCacheFlags(draft: true);

        var cmd = new Command("chat", "Chat with a model in the terminal (answers on stdout; prompt, notices and statistics on stderr)")
        {
            model, system, n, ctx, threads, backend, generic, kwargs, jsonSchema, grammar, grammarFile, draftModel, draftMax, draftPMin, lookup,
        };
        foreach (var o in sampler.All) cmd.Options.Add(o);
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var sampling = sampler.Read(pr);
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            int nPredict = pr.GetValue(n);
            if (nPredict < -1 || nPredict == 0) throw new UsageException($"-n must be -1 (no limit) or >= 1, got {nPredict}");
            int ctxLen = pr.GetValue(ctx);
            int nThreads = pr.GetValue(threads);
            RunCommand.CheckContext(ctxLen);
            RunCommand.CheckThreads(nThreads);
            var json = RunCommand.ParseJsonSchema(pr.GetValue(jsonSchema));
            var gbnf = RunCommand.ParseGrammar(pr.GetValue(grammar), pr.GetValue(grammarFile));
            if (gbnf is not null && json.Json) throw new UsageException("give either --json-schema or a grammar (--grammar, --grammar-file), not both");
            var options = new GenerationOptions { Sampling = sampling, MaxTokens = nPredict, JsonObject = json.Json, JsonSchema = json.Schema, Grammar = gbnf };
            var variables = TemplateCommand.ParseKwargs(pr.GetValue(kwargs));
            var speculation = Speculation.Read(pr.GetValue(draftModel), pr.GetValue(lookup), pr.GetValue(draftMax), pr.GetValue(draftPMin)) is { } read
                ? read with { DraftCache = cache.ReadDraft(pr, pr.GetValue(backend)) } : null;
            return Chat(ModelResolver.Resolve(pr.GetValue(model)), pr.GetValue(system), options, ctxLen, nThreads, pr.GetValue(backend), pr.GetValue(generic), variables, speculation, cacheTypes);
        }));
        return cmd;
    }

    private static int Chat(string modelPath, string? systemPrompt, GenerationOptions options, int ctxLen, int threads, string? backend, bool generic,
        IDictionary<string, object?>? variables, Speculation? speculation = null, KvCacheTypePair cache = default)
    {
        var err = Console.Error;
        using var model = Model.Load(modelPath, new ModelLoadOptions { Generic = generic });
        var tokenizer = Tokenizer.FromGguf(model.File);
        var template = ChatPrompt.TemplateFor(model.File);
        if (template.IsFallback)
            err.WriteLine($"edgellm: {Path.GetFileName(modelPath)} has no chat template ({ChatTemplate.GgufKey}); using the plain fallback format (\"role: content\" lines, then \"assistant: \")");
        if (ctxLen > model.Config.TrainingContextLength && model.Config.TrainingContextLength > 0)
            err.WriteLine($"warning: context {ctxLen} exceeds the model's training context ({model.Config.TrainingContextLength}); output past it may degrade");
        using var context = BackendOption.CreateContext(backend, model, ctxLen, threads, cache);
        var generator = new TextGenerator(context, tokenizer);
        using var draft = speculation?.Attach(generator, backend, generic, ctxLen, threads);
        bool reasoned = false; // reasoning was written to stderr and not yet ended with a newline
        var session = new ChatSession(generator, template, systemPrompt)
        {
            Notice = message => err.WriteLine($"edgellm: {message}"),
            TemplateVariables = variables,
            // gpt-oss (harmony): the analysis channel goes to stderr, so stdout carries the replies alone.
            Reasoning = text =>
            {
                err.Write(text);
                reasoned = true;
            },
        };
        err.WriteLine($"edgellm chat: {Path.GetFileName(modelPath)} on {context.Description}, context {ctxLen} tokens. {Help}");

        var stdout = Console.OpenStandardOutput();
        void Out(string s)
        {
            stdout.Write(Encoding.UTF8.GetBytes(s));
            stdout.Flush();
        }

        // The Ctrl-C handler runs on another thread: `answer` is the token of the answer being
        // generated (null at the prompt), guarded by `gate` so a Ctrl-C that races the end of an
        // answer either stops it or exits, never neither.
        var gate = new object();
        CancellationTokenSource? answer = null;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            lock (gate)
            {
                if (answer is { IsCancellationRequested: false })
                {
                    answer.Cancel();
                    return;
                }
            }
            // At the prompt (blocked in a read no signal interrupts), or a second Ctrl-C: leave now.
            err.WriteLine();
            err.WriteLine("edgellm: interrupted");
            Environment.Exit(Interrupted);
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            // A StreamReader over the raw stream, not Console.ReadLine: the terminal's own line
            // discipline does the editing and echo, and input that is not UTF-8 cannot throw.
            using var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false, false), detectEncodingFromByteOrderMarks: false);
            while (true)
            {
                err.Write("> ");
                string? line = input.ReadLine();
                if (line is null)
                {
                    err.WriteLine();
                    return ExitCodes.Ok;
                }
                line = line.TrimEnd('\r');
                if (line.Trim().Length == 0) continue;
                string message = line;
                if (line.StartsWith('/'))
                {
                    if (line.StartsWith("//", StringComparison.Ordinal))
                        message = line[1..];
                    else if (RunSlashCommand(line, session) is { } exit)
                        return exit;
                    else
                        continue;
                }

                using var cts = new CancellationTokenSource();
                lock (gate) answer = cts;
                try
                {
                    foreach (var piece in session.Stream(message, options, cts.Token))
                    {
                        if (reasoned)
                        {
                            err.WriteLine();
                            reasoned = false;
                        }
                        Out(piece);
                    }
                    if (reasoned)
                    {
                        err.WriteLine();
                        reasoned = false;
                    }
                }
                catch (PromptTooLongException e)
                {
                    err.WriteLine($"edgellm: not sent: with this message the prompt is {e.PromptTokens} tokens and the context holds {e.ContextLength}; write a shorter one, or restart with a larger -c");
                    continue;
                }
                catch (TemplateException e)
                {
                    err.WriteLine($"edgellm: not sent: the chat template rejects the conversation: {e.Message}");
                    continue;
                }
                finally
                {
                    lock (gate) answer = null;
                }
                Out("\n");
                var r = session.LastResult!;
                err.WriteLine(StatusLine(r, options));
                if (r.Reason == FinishReason.ContextFull)
                    err.WriteLine($"edgellm: the context is full ({ctxLen} tokens): the answer was cut there; the next message drops the oldest turns to make room (or /reset to start over)");
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private const string Help = "Type a message and Enter. /reset clears the conversation, /system TEXT sets the system prompt, /exit or Ctrl-D quits; Ctrl-C stops an answer, at the prompt it quits.";

    /// <summary>Runs a /command; returns an exit code to leave with, or null to read the next line.</summary>
    private static int? RunSlashCommand(string line, ChatSession session)
    {
        var err = Console.Error;
        int space = line.IndexOf(' ', StringComparison.Ordinal);
        string name = space < 0 ? line : line[..space];
        string arg = space < 0 ? "" : line[(space + 1)..].Trim();
        switch (name)
        {
            case "/exit" or "/quit":
                return ExitCodes.Ok;
            case "/reset":
                session.Reset();
                err.WriteLine("[conversation cleared]");
                return null;
            case "/system":
                session.SystemPrompt = arg.Length == 0 ? null : arg;
                err.WriteLine(arg.Length == 0 ? "[system prompt removed]" : "[system prompt set; it applies from the next message]");
                return null;
            case "/help":
                err.WriteLine(Help + " //text sends \"/text\".");
                return null;
            default:
                err.WriteLine($"edgellm: unknown command {name} (/reset, /system TEXT, /exit, /help; //text sends \"/text\")");
                return null;
        }
    }

    private static string StatusLine(GenerationResult r, GenerationOptions options)
    {
        string reason = r.Reason switch
        {
            FinishReason.EndOfGeneration => "end of turn",
            FinishReason.Length => $"-n {options.MaxTokens} reached",
            FinishReason.ContextFull => "context full",
            FinishReason.Cancelled => "interrupted",
            FinishReason.StopString => "stop string",
            _ => r.Reason.ToString(),
        };
        double tps = r.CompletionTokens / Math.Max(r.GenerationTime.TotalSeconds, 1e-9);
        var ci = CultureInfo.InvariantCulture;
        string seed = options.Sampling.Temperature > 0 ? string.Format(ci, "; seed: {0}", r.Seed) : "";
        return string.Format(ci, "[prompt: {0} tokens, {1} reused; answer: {2} tokens, {3:F1} tok/s; stopped: {4}{5}]",
            r.PromptTokens, r.ReusedPromptTokens, r.CompletionTokens, tps, reason, seed);
    }
}
