using System.CommandLine;
using System.Text;
using System.Text.Json;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm rerank</c>: scores documents against a query with a reranker (a cross-encoder: ms-marco-MiniLM,
/// jina-reranker, bge-reranker; <see cref="TextReranker"/>) and prints them as JSON on stdout, most relevant first, in
/// the shape of llama.cpp's <c>/v1/rerank</c> answer with each document's text added:
/// <c>{"object": "list", "results": [{"index": 2, "relevance_score": 7.93, "document": "..."}, ...], "usage": {...}}</c>.
/// The score is the model's logit, as llama.cpp gives it; <c>--sigmoid</c> maps it into (0, 1).
/// </summary>
public static class RerankCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var query = new Option<string>("--query", "-q") { Description = "The query the documents are ranked for", Required = true };
        var document = new Option<string[]>("--document", "-d") { Description = "A document to rank (repeat for each)", AllowMultipleArgumentsPerToken = false };
        var file = new Option<string?>("--file", "-f") { Description = "Read documents from a file (UTF-8), one per line (--separator)" };
        var separator = new Option<string>("--separator") { Description = "What separates the documents in --file", DefaultValueFactory = _ => "\n" };
        var topN = new Option<int?>("--top-n") { Description = "Print only the N most relevant documents (default: all)" };
        var sigmoid = new Option<bool>("--sigmoid") { Description = "Report 1 / (1 + e^-score), a probability of relevance, instead of the logit" };
        var threads = RunCommand.ThreadsOption();
        var ctx = RunCommand.ContextOption();
        ctx.Description = "Context size for a decoder reranker (Qwen3-Reranker); an encoder reads its own context_length";
        var cmd = new Command("rerank", "Rank documents by relevance to a query with a reranker (cross-encoder); JSON on stdout")
        {
            model, query, document, file, separator, topN, sigmoid, threads, ctx,
        };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            string q = pr.GetValue(query)!;
            var docs = new List<string>(pr.GetValue(document) ?? []);
            if (pr.GetValue(file) is { } path)
            {
                string text;
                try { text = new UTF8Encoding(false, true).GetString(File.ReadAllBytes(path)); }
                catch (DecoderFallbackException e) { throw new InputException($"{path} is not valid UTF-8 (byte offset {e.Index})"); }
                string sep = pr.GetValue(separator)!;
                if (sep.Length == 0) throw new UsageException("--separator is empty");
                docs.AddRange(text.Split(sep).Where(t => t.Length > 0));
            }
            if (docs.Count == 0) throw new UsageException("no documents to rank: give them with -d TEXT (repeated) or -f FILE");
            int n = pr.GetValue(topN) ?? docs.Count;
            if (n < 1) throw new UsageException($"--top-n must be at least 1, got {n}");
            int nThreads = pr.GetValue(threads);
            RunCommand.CheckThreads(nThreads);

            int ctxLen = pr.GetValue(ctx);
            RunCommand.CheckContext(ctxLen);
            string modelPath = ModelResolver.Resolve(pr.GetValue(model));
            bool isEncoder;
            using (var peek = EdgeLlm.Gguf.GgufFile.Open(modelPath))
            {
                string? arch = peek.GetString("general.architecture");
                isEncoder = BertModel.IsEncoder(peek);
                if (!isEncoder && (peek.GetInt($"{arch}.pooling_type") != 4 || peek.FindTensor("cls.output.weight") is null))
                    throw new InputException($"{Path.GetFileName(modelPath)} is a {arch ?? "model of no architecture"} model, not a reranker: edgellm rerank runs cross-encoders ({string.Join(", ", BertModel.SupportedArchitectures)} with a classification head) and decoder rerankers (rank pooling and cls.output, as Qwen3-Reranker)");
            }
            // An encoder reads each pair whole, up to its context_length; a decoder reranker (Qwen3-Reranker) runs in a
            // context of -c tokens, one pair at a time.
            using var encoder = isEncoder ? BertModel.Load(modelPath, nThreads) : null;
            using var decoder = isEncoder ? null : Model.Load(modelPath, new ModelLoadOptions { ContextLength = ctxLen });
            using var context = decoder is null ? null : new InferenceContext(decoder, ctxLen, nThreads);
            TextReranker reranker;
            try
            {
                reranker = encoder is not null
                    ? new TextReranker(encoder, Tokenizer.FromGguf(encoder.File))
                    : new TextReranker(context!, Tokenizer.FromGguf(decoder!.File));
            }
            catch (NotSupportedException e) { throw new InputException(e.Message); }
            string architecture = encoder?.Architecture ?? decoder!.Config.Architecture;

            var pairs = docs.Select(d => reranker.Tokenize(q, d)).ToList();
            for (int i = 0; i < pairs.Count; i++)
                if (pairs[i].Length > reranker.ContextLength)
                    throw new InputException($"document {i + 1}: the query and document are {pairs[i].Length} tokens; the model reads at most {reranker.ContextLength}{(encoder is null ? " (-c sets the context)" : "")}");
            Console.Error.WriteLine($"edgellm rerank: {docs.Count} document(s), {pairs.Sum(p => p.Length)} tokens, {architecture} with {reranker.Outputs} output(s)");
            var ranked = TextReranker.Rank(reranker.Scores(pairs), pairs.Select(p => p.Length).ToArray(), n);
            bool probability = pr.GetValue(sigmoid);

            // Utf8JsonWriter: no reflection, NativeAOT-safe; floats as the shortest text that round-trips. The documents are
            // echoed as the UTF-8 they came in (quotes, backslashes and control characters escaped, as JSON requires; not
            // non-ASCII letters or HTML's <, > and &, which the default encoder would turn into \u escapes: this is
            // terminal and pipe output, not HTML).
            using var stdout = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                w.WriteStartObject();
                w.WriteString("object", "list");
                w.WriteStartArray("results");
                foreach (var r in ranked)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", r.Index);
                    w.WriteNumber("relevance_score", probability ? TextReranker.Sigmoid(r.Score) : r.Score);
                    w.WriteString("document", docs[r.Index]);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartObject("usage");
                w.WriteNumber("prompt_tokens", pairs.Sum(p => p.Length));
                w.WriteNumber("total_tokens", pairs.Sum(p => p.Length));
                w.WriteEndObject();
                w.WriteEndObject();
            }
            stdout.Write("\n"u8);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
