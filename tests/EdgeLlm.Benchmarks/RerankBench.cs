using System.Diagnostics;
using System.Globalization;
using EdgeLlm.Engine;
using EdgeLlm.Models;
using EdgeLlm.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeLlm.Benchmarks;

/// <summary>
/// <c>--rerank</c>: query/document pairs scored per second by a reranker (ms-marco-MiniLM, bge-reranker) in both engines
/// in this process, on the same tokens (<see cref="TextReranker.Tokenize"/>): --texts N documents of about -p tokens
/// each against one query, -r times per round. llama.cpp with rank pooling as llama-server runs it (the N pairs as N
/// sequences of one batch, scores from <c>llama_get_embeddings_seq</c>) and one pair a decode; EdgeLlm's
/// <see cref="TextReranker.Scores(IReadOnlyList{int[]})"/> (pairs batched) and one pair a call. Best of all.
/// </summary>
internal static class RerankBench
{
    public static int Run(string model, int[] threads, int tokens, int reps, int rounds, int documents)
    {
        var ci = CultureInfo.InvariantCulture;
        if (tokens == 0) tokens = 64;
        documents = Math.Max(documents, 1);
        List<int[]> pairs;
        bool encoder;
        using (var peek = EdgeLlm.Gguf.GgufFile.Open(model)) encoder = BertModel.IsEncoder(peek);
        // a decoder reranker (Qwen3-Reranker) runs each pair in a context; EdgeLlm scores them one by one
        using (var probeDecoder = encoder ? null : Model.Load(model))
        using (var probeContext = probeDecoder is null ? null : new InferenceContext(probeDecoder, 4096, 1))
        using (var probe = encoder ? BertModel.Load(model, 1) : null)
        {
            var reranker = probe is not null ? new TextReranker(probe, Tokenizer.FromGguf(probe.File)) : new TextReranker(probeContext!, Tokenizer.FromGguf(probeDecoder!.File));
            int limit = reranker.ContextLength;
            string[] pool = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "search", "query", "document", "edge", "device", "model"];
            pairs = [];
            for (int d = 0; d < documents; d++)
            {
                var words = new List<string>();
                int[] pair;
                do
                {
                    words.Add(pool[(words.Count * 7 + d) % pool.Length]);
                    pair = reranker.Tokenize("where does the lazy dog sleep", string.Join(' ', words));
                }
                while (pair.Length < tokens && pair.Length < limit);
                pairs.Add(pair);
            }
        }
        int total = pairs.Sum(p => p.Length);
        _ = LlamaCppBench.NativeLibrary;
        var results = new Dictionary<(string Test, int Threads), List<double>>();
        void Add((string, int) key, double v)
        {
            if (!results.TryGetValue(key, out var list)) results[key] = list = [];
            list.Add(v);
        }
        for (int round = 1; round <= rounds; round++)
            foreach (int t in threads)
            {
                var p = new ModelParams(model)
                {
                    Embeddings = true, PoolingType = LLamaPoolingType.Rank, ContextSize = (uint)Math.Max(total, 512), BatchSize = (uint)Math.Max(total, 512),
                    UBatchSize = (uint)Math.Max(total, 512), SeqMax = (uint)documents, GpuLayerCount = 0, Threads = t, BatchThreads = t, FlashAttention = false,
                };
                using (var weights = LLamaWeights.LoadFromFile(p))
                using (var context = weights.CreateContext(p))
                {
                    void Decode(IEnumerable<int> which)
                    {
                        var batch = new LLamaBatch();
                        int seq = 0;
                        foreach (int i in which)
                        {
                            for (int k = 0; k < pairs[i].Length; k++) batch.Add((LLamaToken)pairs[i][k], k, (LLamaSeqId)seq, true);
                            seq++;
                        }
                        context.NativeHandle.MemoryClear();
                        if (context.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp's decode failed");
                        _ = context.NativeHandle.GetEmbeddingsSeq(LLamaSeqId.Zero)[0];
                    }
                    Decode(Enumerable.Range(0, pairs.Count)); // warm-up
                    for (int r = 0; r < reps; r++)
                    {
                        var sw = Stopwatch.StartNew();
                        Decode(Enumerable.Range(0, pairs.Count));
                        Add(("llama.cpp batched", t), pairs.Count / sw.Elapsed.TotalSeconds);
                        sw.Restart();
                        for (int i = 0; i < pairs.Count; i++) Decode([i]);
                        Add(("llama.cpp one by one", t), pairs.Count / sw.Elapsed.TotalSeconds);
                    }
                }
                int longest = pairs.Max(x => x.Length);
                using (var bert = encoder ? BertModel.Load(model, t) : null)
                using (var decoder = encoder ? null : Model.Load(model))
                using (var context = decoder is null ? null : new InferenceContext(decoder, Math.Max(longest, 64), t))
                {
                    var reranker = bert is not null ? new TextReranker(bert, Tokenizer.FromGguf(bert.File)) : new TextReranker(context!, Tokenizer.FromGguf(decoder!.File));
                    reranker.Scores(pairs); // warm-up
                    for (int r = 0; r < reps; r++)
                    {
                        var sw = Stopwatch.StartNew();
                        reranker.Scores(pairs);
                        Add(("EdgeLlm batched", t), pairs.Count / sw.Elapsed.TotalSeconds);
                        sw.Restart();
                        foreach (var pair in pairs) reranker.Scores([pair]);
                        Add(("EdgeLlm one by one", t), pairs.Count / sw.Elapsed.TotalSeconds);
                    }
                }
                Console.Error.WriteLine($"round {round} t={t}: " + string.Join("; ", results.Where(kv => kv.Key.Threads == t).Select(kv => kv.Key.Test + " " + kv.Value[^1].ToString("F1", ci))));
            }

        Console.WriteLine();
        Console.WriteLine($"Date: {DateTime.Now.ToString("yyyy-MM-dd HH:mm", ci)}  ");
        Console.WriteLine($"Model: {Path.GetFileName(model)}; {pairs.Count} query/document pairs of {total / pairs.Count} tokens on average per repetition  ");
        Console.WriteLine($"llama.cpp: LLamaSharp 0.30.0 CPU backend, {LlamaCppBench.NativeLibrary}, rank pooling; EdgeLlm: this process (JIT)  ");
        Console.WriteLine($"Repetitions: {rounds} round(s) × {reps}, the engines alternating; best of all");
        Console.WriteLine();
        Console.WriteLine("| threads | pairs | EdgeLlm pairs/s | llama.cpp pairs/s | EdgeLlm / llama.cpp |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: |");
        foreach (int t in threads)
            foreach (string how in new[] { "batched", "one by one" })
            {
                double ours = results[($"EdgeLlm {how}", t)].Max(), theirs = results[($"llama.cpp {how}", t)].Max();
                Console.WriteLine(string.Create(ci, $"| {t} | {how} | {ours:F1} | {theirs:F1} | {ours / theirs:F2} |"));
            }
        return 0;
    }
}
