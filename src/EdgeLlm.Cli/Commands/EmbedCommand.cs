using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm embed</c>: text embeddings (llama.cpp's <c>llama-embedding</c>) as JSON on stdout, in OpenAI's list
/// shape (llama-embedding's <c>--embd-output-format json</c>):
/// <c>{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [...]}, ...]}</c>. Each line of
/// the prompt (<c>--embd-separator</c>) is one text; with pooling none each token is one entry, numbered in order.
/// </summary>
public static class EmbedCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to embed; each line (--embd-separator) is one text" };
        var file = new Option<string?>("--file", "-f") { Description = "Read the texts from a file (UTF-8)" };
        var pooling = new Option<string?>("--pooling") { Description = "none, mean, cls or last (default: the model's pooling_type, else none)" };
        var normalize = new Option<int>("--embd-normalize") { Description = "-1 none, 0 max-abs (int16 range), 1 taxicab, 2 euclidean, p > 2 p-norm", DefaultValueFactory = _ => 2 };
        var separator = new Option<string>("--embd-separator") { Description = "What separates the texts", DefaultValueFactory = _ => "\n" };
        var ctx = RunCommand.ContextOption();
        var threads = RunCommand.ThreadsOption();
        var cmd = new Command("embed", "Print the embeddings of texts as JSON (OpenAI's list of embeddings)") { model, prompt, file, pooling, normalize, separator, ctx, threads };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            string? text = pr.GetValue(prompt), path = pr.GetValue(file);
            if ((text is null) == (path is null)) throw new UsageException("give the text with -p TEXT or -f FILE (one of them)");
            if (path is not null)
            {
                try { text = new UTF8Encoding(false, true).GetString(File.ReadAllBytes(path)); }
                catch (DecoderFallbackException e) { throw new InputException($"{path} is not valid UTF-8 (byte offset {e.Index})"); }
            }
            PoolingType? pool = pr.GetValue(pooling) switch
            {
                null => null,
                "none" => PoolingType.None,
                "mean" => PoolingType.Mean,
                "cls" => PoolingType.Cls,
                "last" => PoolingType.Last,
                var other => throw new UsageException($"--pooling must be none, mean, cls or last, got '{other}'"),
            };
            int norm = pr.GetValue(normalize);
            if (norm < -1) throw new UsageException($"--embd-normalize must be -1 (none), 0, 1, 2 or a larger p-norm, got {norm}");
            string sep = pr.GetValue(separator)!;
            if (sep.Length == 0) throw new UsageException("--embd-separator is empty");
            var texts = text!.Split(sep).Where(t => t.Length > 0).ToList();
            if (texts.Count == 0) throw new UsageException("no text to embed");
            int ctxLen = pr.GetValue(ctx);
            int nThreads = pr.GetValue(threads);
            RunCommand.CheckContext(ctxLen);
            RunCommand.CheckThreads(nThreads);

            string modelPath = ModelResolver.Resolve(pr.GetValue(model));
            bool encoder;
            using (var peek = EdgeLlm.Gguf.GgufFile.Open(modelPath)) encoder = BertModel.IsEncoder(peek);
            // A BERT encoder (all-MiniLM, bge, nomic-embed-text) reads the whole text at once, up to its own
            // context_length; a decoder runs in a context of -c tokens.
            using var bert = encoder ? BertModel.Load(modelPath, nThreads) : null;
            using var m = encoder ? null : Model.Load(modelPath, new ModelLoadOptions { ContextLength = ctxLen });
            using var context = m is null ? null : new InferenceContext(m, ctxLen, nThreads);
            TextEmbedder embedder;
            try
            {
                embedder = bert is not null
                    ? new TextEmbedder(bert, Tokenizer.FromGguf(bert.File), pool, norm)
                    : new TextEmbedder(context!, Tokenizer.FromGguf(m!.File), pool, norm);
            }
            catch (NotSupportedException e) { throw new InputException(e.Message); }
            Console.Error.WriteLine($"edgellm embed: {texts.Count} text(s), {embedder.Dimensions} dimensions, pooling {embedder.Pooling.ToString().ToLowerInvariant()}, normalization {norm}");

            // Utf8JsonWriter: no reflection, NativeAOT-safe; floats as the shortest text that round-trips.
            using var stdout = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stdout))
            {
                w.WriteStartObject();
                w.WriteString("object", "list");
                w.WriteStartArray("data");
                int index = 0;
                void Write(float[] v)
                {
                    w.WriteStartObject();
                    w.WriteString("object", "embedding");
                    w.WriteNumber("index", index++);
                    w.WriteStartArray("embedding");
                    foreach (float x in v) w.WriteNumberValue(x);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                // Every text's tokens first, so a text that does not fit fails before anything is printed; pooled
                // embeddings then go in batches (an encoder runs many short texts in one pass).
                var tokens = texts.Select(embedder.Tokenize).ToList();
                for (int i = 0; i < tokens.Count; i++)
                {
                    if (tokens[i].Length == 0) throw new InputException($"text {i + 1} has no tokens");
                    if (tokens[i].Length > embedder.ContextLength)
                        throw new InputException($"text {i + 1}: the text is {tokens[i].Length} tokens; the context holds {embedder.ContextLength}{(bert is null ? " (-c sets the context)" : "")}");
                }
                if (embedder.Pooling == PoolingType.None)
                    foreach (var t in texts)
                        foreach (var row in embedder.EmbedTokens(t)) Write(row);
                else
                    foreach (var v in embedder.EmbedBatch(tokens)) Write(v);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            stdout.Write("\n"u8);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
