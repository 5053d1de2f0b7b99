using System.Diagnostics;
using System.Globalization;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;
using LLama;
using LLama.Common;

namespace EdgeLlm.Benchmarks;

/// <summary>
/// <c>--embed</c>: text embeddings per second of a BERT encoder (all-MiniLM, bge, nomic-embed-text) in both engines in
/// this process: one text of about -p tokens embedded (tokenize, encode, pool, normalize) -r times per round, llama.cpp
/// (LLamaSharp's <c>LLamaEmbedder</c>, its default settings) and EdgeLlm (<see cref="TextEmbedder"/> on a
/// <see cref="BertModel"/>) alternating per round; tokens per second of each embedding, best of all.
/// </summary>
internal static class EmbedBench
{
    public static int Run(string model, int[] threads, int tokens, int reps, int rounds, int textCount = 1)
    {
        var ci = CultureInfo.InvariantCulture;
        if (tokens == 0) tokens = 128;
        // A text of the wanted length in the file's own vocabulary: common words, repeated.
        string text;
        int count;
        using (var probe = BertModel.Load(model, 1))
        {
            var tok = Tokenizer.FromGguf(probe.File);
            var words = new List<string>();
            string[] pool = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "search", "query", "document", "edge", "device", "model"];
            do { words.Add(pool[words.Count % pool.Length]); text = string.Join(' ', words); count = tok.Encode(text).Length; }
            while (count < tokens && count < probe.ContextLength);
        }
        _ = LlamaCppBench.NativeLibrary;
        var results = new Dictionary<(string Engine, int Threads), List<double>>();
        for (int round = 1; round <= rounds; round++)
            foreach (int t in threads)
            {
                var p = new ModelParams(model) { Embeddings = true, ContextSize = 2048, BatchSize = 2048, UBatchSize = 2048, GpuLayerCount = 0, Threads = t, BatchThreads = t };
                using (var weights = LLamaWeights.LoadFromFile(p))
                using (var embedder = new LLamaEmbedder(weights, p))
                {
                    embedder.GetEmbeddings(text).GetAwaiter().GetResult(); // warm-up
                    for (int r = 0; r < reps; r++)
                    {
                        var sw = Stopwatch.StartNew();
                        for (int i = 0; i < textCount; i++) embedder.GetEmbeddings(text).GetAwaiter().GetResult();
                        Add(("llama.cpp", t), (double)count * textCount / sw.Elapsed.TotalSeconds);
                    }
                }
                using (var encoder = BertModel.Load(model, t))
                {
                    var embedder = new TextEmbedder(encoder, Tokenizer.FromGguf(encoder.File), PoolingType.Mean);
                    embedder.Embed(text); // warm-up
                    var many = Enumerable.Repeat(text, textCount).ToList();
                    for (int r = 0; r < reps; r++)
                    {
                        var sw = Stopwatch.StartNew();
                        for (int i = 0; i < textCount; i++) embedder.Embed(text);
                        Add(("EdgeLlm", t), (double)count * textCount / sw.Elapsed.TotalSeconds);
                        if (textCount > 1)
                        {
                            sw.Restart();
                            embedder.EmbedBatch(many);
                            Add(("EdgeLlm batched", t), (double)count * textCount / sw.Elapsed.TotalSeconds);
                        }
                    }
                }
                Console.Error.WriteLine($"round {round} t={t}: llama.cpp {string.Join(", ", results[("llama.cpp", t)].Select(x => x.ToString("F0", ci)))}; EdgeLlm {string.Join(", ", results[("EdgeLlm", t)].Select(x => x.ToString("F0", ci)))}");
            }
        void Add((string, int) key, double v)
        {
            if (!results.TryGetValue(key, out var list)) results[key] = list = [];
            list.Add(v);
        }

        Console.WriteLine();
        Console.WriteLine($"Date: {DateTime.Now.ToString("yyyy-MM-dd HH:mm", ci)}  ");
        Console.WriteLine($"Model: {Path.GetFileName(model)}; {textCount} text(s) of {count} tokens per repetition  ");
        Console.WriteLine($"llama.cpp: LLamaSharp 0.30.0 CPU backend, {LlamaCppBench.NativeLibrary}; EdgeLlm: this process (JIT)  ");
        Console.WriteLine($"Repetitions: {rounds} round(s) × {reps}, the engines alternating; best of all");
        Console.WriteLine();
        Console.WriteLine("| threads | test | EdgeLlm tokens/s | llama.cpp tokens/s | EdgeLlm / llama.cpp |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: |");
        foreach (int t in threads)
        {
            double ours = results[("EdgeLlm", t)].Max(), theirs = results[("llama.cpp", t)].Max();
            string test = textCount > 1 ? $"{textCount} × embed {count} tokens" : $"embed {count} tokens";
            Console.WriteLine(string.Create(ci, $"| {t} | {test}, one by one | {ours:F1} | {theirs:F1} | {ours / theirs:F2} |"));
            if (results.TryGetValue(("EdgeLlm batched", t), out var b))
                Console.WriteLine(string.Create(ci, $"| {t} | {test}, EdgeLlm's EmbedBatch (llama.cpp one by one) | {b.Max():F1} | {theirs:F1} | {b.Max() / theirs:F2} |"));
        }
        return 0;
    }
}
