using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm perplexity</c>: llama-perplexity's measurement (<see cref="Perplexity"/>) and its
/// output, so a quantized file can be judged against its float original, or against llama.cpp on
/// the same file and text: <c>[1]p1,[2]p2,...</c> then <c>Final estimate: PPL = X +/- E</c> on
/// stdout, the setup on stderr; with <c>--json</c> one JSON object on stdout instead.
/// </summary>
public static class PerplexityCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var file = new Option<string?>("--file", "-f") { Description = "The text to measure (UTF-8), e.g. wiki.test.raw" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The text to measure, given inline" };
        // llama-perplexity sets n_ctx = 512 before parsing its arguments: the same default keeps the figures comparable.
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "Tokens per chunk (n_ctx); the second half of each chunk is scored", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Tokens per forward pass inside a chunk (n_batch)", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int>("--chunks") { Description = "Evaluate at most this many chunks (default: all that fit)", DefaultValueFactory = _ => -1 };
        var threads = RunCommand.ThreadsOption();
        var backend = BackendOption.Create();
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of llama-perplexity's lines" };
        var reference = new Option<string?>("--reference")
        {
            Description = "Also run this model (e.g. the F16 original of a quantized -m) over the same chunks: KL divergence and same-top-token rate",
        };
        var cache = new KvCacheFlags();
        var cmd = new Command("perplexity", "Measure a model's perplexity over a text, as llama-perplexity does")
        {
            model, file, prompt, ctx, batch, chunks, threads, backend, generic, json, reference,
        };
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            if (pr.GetValue(prompt) is null && pr.GetValue(file) is null) throw new UsageException("give the text with -f FILE or -p TEXT");
            int nCtx = pr.GetValue(ctx), nBatch = pr.GetValue(batch), maxChunks = pr.GetValue(chunks), nThreads = pr.GetValue(threads);
            if (nCtx < 4 || nCtx > 1 << 24) throw new UsageException($"-c must be in 4..16777216, got {nCtx}");
            if (nBatch < 1) throw new UsageException($"-b must be at least 1, got {nBatch}");
            if (maxChunks == 0 || maxChunks < -1) throw new UsageException($"--chunks must be positive (or -1 for all), got {maxChunks}");
            RunCommand.CheckThreads(nThreads);
            string text = RunCommand.ReadPrompt(pr.GetValue(prompt), pr.GetValue(file));
            return Run(ModelResolver.Resolve(pr.GetValue(model)), text, nCtx, nBatch, maxChunks, nThreads, pr.GetValue(backend), pr.GetValue(generic), pr.GetValue(json),
                pr.GetValue(reference), cacheTypes);
        }));
        return cmd;
    }

    private static int Run(string modelPath, string text, int nCtx, int nBatch, int maxChunks, int threads, string? backend, bool generic, bool json,
        string? referencePath, KvCacheTypePair cache = default)
    {
        var err = Console.Error;
        var inv = CultureInfo.InvariantCulture;
        using var model = Model.Load(modelPath, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
        var tokenizer = Tokenizer.FromGguf(model.File);
        err.WriteLine("perplexity: tokenizing the input ..");
        var tokenWatch = Stopwatch.StartNew();
        // As llama-perplexity: special tokens added as the vocabulary asks, special-token text left as text.
        int[] tokens = tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
        err.WriteLine($"perplexity: tokenization took {tokenWatch.Elapsed.TotalMilliseconds.ToString("F3", inv)} ms");
        if (tokens.Length < Perplexity.MinimumTokens(nCtx))
            throw new InputException($"the text is {tokens.Length} tokens; perplexity with a context of {nCtx} (-c) needs at least " +
                $"{Perplexity.MinimumTokens(nCtx)} (2 × n_ctx, as llama-perplexity): give a longer text or a smaller -c");
        if (model.Config.TrainingContextLength > 0 && nCtx > model.Config.TrainingContextLength)
            err.WriteLine($"warning: context {nCtx} exceeds the model's training context ({model.Config.TrainingContextLength})");

        using var context = BackendOption.CreateContext(backend, model, nCtx, threads, cache);
        // --reference: a second model over the same tokens; it must read the text the same way. Its cache is
        // f16 whatever -ctk/-ctv say, so `--reference` on the same file measures what a quantized cache costs.
        using var refModel = referencePath is null ? null : Model.Load(referencePath, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
        using var refContext = refModel is null ? null : BackendOption.CreateContext(backend, refModel, nCtx, threads);
        if (refModel is not null)
        {
            if (refModel.Config.VocabSize != model.Config.VocabSize)
                throw new InputException($"--reference has a vocabulary of {refModel.Config.VocabSize} tokens, -m one of {model.Config.VocabSize}: their distributions cannot be compared");
            if (!Tokenizer.FromGguf(refModel.File).Encode(text, addSpecial: true, parseSpecial: false).AsSpan().SequenceEqual(tokens))
                throw new InputException("--reference tokenizes the text differently from -m: their distributions cannot be compared position by position");
        }
        int available = tokens.Length / nCtx;
        int planned = maxChunks > 0 ? Math.Min(available, maxChunks) : available;
        err.WriteLine($"perplexity: calculating perplexity over {planned} chunks, n_ctx={nCtx}, batch_size={Math.Min(nBatch, nCtx)}, n_seq=1 " +
            $"({context.Description}, forward pass: {Specialized.SpecializationRegistry.Describe(model)})");

        var watch = Stopwatch.StartNew();
        var output = Console.Out;
        Action<int, double> progress = (i, ppl) =>
        {
            if (i == 1)
            {
                double perPass = watch.Elapsed.TotalSeconds;
                err.WriteLine($"perplexity: {perPass.ToString("F2", inv)} seconds per pass - ETA {(perPass * planned / 60).ToString("F2", inv)} minutes");
            }
            if (!json)
            {
                output.Write($"[{i}]{ppl.ToString("F4", inv)},");
                output.Flush();
            }
        };
        int? bos = tokenizer.AddBos ? tokenizer.Bos : null;
        KlDivergenceResult? kl = refContext is null ? null : Perplexity.Compare(context, refContext, tokens, nCtx, nBatch, bos, maxChunks, progress);
        var result = kl?.Model ?? Perplexity.Compute(context, tokens, nCtx, nBatch, bos, maxChunks, progress);
        double seconds = watch.Elapsed.TotalSeconds;

        if (json)
        {
            output.Write(ToJson(result, tokens.Length, Math.Min(nBatch, nCtx), seconds, context.Description, kl) + "\n");
            return ExitCodes.Ok;
        }
        output.WriteLine();
        output.WriteLine(double.IsNaN(result.StandardError)
            ? $"Final estimate: PPL = {result.Value.ToString("F4", inv)} (every scored token had the same log-probability: no standard error)"
            : $"Final estimate: PPL = {result.Value.ToString("F4", inv)} +/- {result.StandardError.ToString("F5", inv)}");
        if (kl is not null)
        {
            output.WriteLine($"Reference PPL = {kl.Reference.Value.ToString("F4", inv)} +/- {kl.Reference.StandardError.ToString("F5", inv)} ({referencePath})");
            output.WriteLine($"KL divergence: mean {kl.MeanKld.ToString("F6", inv)} +/- {kl.MeanKldStdErr.ToString("F6", inv)}, median {kl.MedianKld.ToString("F6", inv)}, " +
                $"99% {kl.P99Kld.ToString("F6", inv)}, max {kl.MaxKld.ToString("F6", inv)}");
            output.WriteLine($"Same top token: {(100 * kl.SameTop).ToString("F3", inv)} +/- {(100 * kl.SameTopStdErr).ToString("F3", inv)} %");
        }
        err.WriteLine($"perplexity: {result.Chunks} chunks, {result.TokensScored} tokens scored in {seconds.ToString("F2", inv)} s " +
            $"({(result.Chunks * (double)nCtx / seconds).ToString("F2", inv)} tokens/s evaluated)");
        return ExitCodes.Ok;
    }

    internal static string ToJson(PerplexityResult r, int tokens, int batch, double seconds, string backend, KlDivergenceResult? kl = null)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("ppl", r.Value);
            if (double.IsNaN(r.StandardError)) w.WriteNull("ppl_stderr");
            else w.WriteNumber("ppl_stderr", r.StandardError);
            w.WriteNumber("n_ctx", r.ContextLength);
            w.WriteNumber("n_batch", batch);
            w.WriteNumber("chunks", r.Chunks);
            w.WriteNumber("tokens", tokens);
            w.WriteNumber("tokens_scored", r.TokensScored);
            w.WriteStartArray("chunk_ppl");
            foreach (double p in r.RunningPerplexity) w.WriteNumberValue(p);
            w.WriteEndArray();
            w.WriteNumber("seconds", seconds);
            w.WriteString("backend", backend);
            if (kl is not null)
            {
                w.WriteStartObject("reference");
                w.WriteNumber("ppl", kl.Reference.Value);
                if (double.IsNaN(kl.Reference.StandardError)) w.WriteNull("ppl_stderr");
                else w.WriteNumber("ppl_stderr", kl.Reference.StandardError);
                w.WriteEndObject();
                w.WriteStartObject("kld");
                w.WriteNumber("mean", kl.MeanKld);
                w.WriteNumber("stderr", kl.MeanKldStdErr);
                w.WriteNumber("median", kl.MedianKld);
                w.WriteNumber("p99", kl.P99Kld);
                w.WriteNumber("max", kl.MaxKld);
                w.WriteEndObject();
                w.WriteStartObject("same_top");
                w.WriteNumber("value", kl.SameTop);
                w.WriteNumber("stderr", kl.SameTopStdErr);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
