using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeLlm.Benchmarks;

/// <summary>Speeds of one engine on one model with one thread count: tokens per second of every repetition.</summary>
internal sealed record BenchFigures(int Threads, int Pp, int Tg, double[] PpAll, double[] TgAll, string Note)
{
    public double? PpBest => PpAll.Length > 0 ? PpAll.Max() : null;
    public double? TgBest => TgAll.Length > 0 ? TgAll.Max() : null;
}

/// <summary>
/// llama.cpp through LLamaSharp 0.30.0's CPU backend, measured the way llama-bench measures:
/// pp = one batch of P random tokens decoded in a fresh context (batch and micro-batch ≥ P),
/// tg = N single-token decodes from position 0 in a fresh context; a warm-up run of each first.
/// With a depth D (llama-bench's -d), each context first decodes D random tokens, untimed, and the
/// test starts at position D.
/// </summary>
internal sealed class LlamaCppBench : IDisposable
{
    private static readonly Lazy<string> s_library = new(LoadNative);
    private readonly LLamaWeights _weights;
    private readonly string _path;

    /// <summary>Which native build LLamaSharp chose (its AVX level and path).</summary>
    public static string NativeLibrary => s_library.Value;

    private static string LoadNative()
    {
        string? path = null;
        // llama.cpp's own log is noisy; keep only the line that names the library file it loaded.
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            // LLamaSharp logs "Got relative library path '.../avx512/libllama.so' from local with (...), trying to load it"
            // for each candidate (vulkan first, then the CPU builds); it stops at the first that loads, so the last one is it.
            var m = System.Text.RegularExpressions.Regex.Match(message, @"'([^']*libllama[^']*)'");
            if (m.Success) path = m.Groups[1].Value;
        });
        NativeApi.llama_empty_call(); // forces the load; throws with the reason when it fails
        var lib = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama);
        string avx = lib?.Metadata is { } meta ? $"AVX level {meta.AvxLevel}" : "AVX level unknown";
        return path is null ? avx : $"{avx} ({path})";
    }

    public LlamaCppBench(string path)
    {
        _ = s_library.Value;
        _path = path;
        _weights = LLamaWeights.LoadFromFile(new ModelParams(path) { GpuLayerCount = 0 });
    }

    public int VocabSize => _weights.Vocab.Count;

    /// <summary>Tokens per batch while filling a context to its depth.</summary>
    private const int FillChunk = 512;

    /// <param name="cacheK">the K cache type (-ctk): f16, q8_0 or q4_0.</param>
    /// <param name="cacheV">the V cache type (-ctv); a quantized cache turns flash attention on, which llama.cpp needs for a quantized V.</param>
    public BenchFigures Measure(int threads, int pp, int tg, int reps, int depth = 0, string cacheK = "f16", string cacheV = "f16")
    {
        var rng = new Random(1);
        LLamaToken[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => (LLamaToken)rng.Next(VocabSize)).ToArray();
        var prm = new ModelParams(_path)
        {
            GpuLayerCount = 0,
            ContextSize = (uint)(depth + Math.Max(pp, tg) + 1),
            BatchSize = (uint)Math.Max(pp, Math.Max(Math.Min(depth, FillChunk), 1)),
            UBatchSize = (uint)Math.Max(pp, Math.Max(Math.Min(depth, FillChunk), 1)),
            Threads = threads,
            BatchThreads = threads,
        };
        if (cacheK != "f16" || cacheV != "f16")
        {
            prm.TypeK = CacheType(cacheK);
            prm.TypeV = CacheType(cacheV);
            prm.FlashAttention = true;
        }

        void Fill(LLamaContext ctx)
        {
            var batch = new LLamaBatch();
            for (int p0 = 0; p0 < depth; p0 += FillChunk)
            {
                batch.Clear();
                int n = Math.Min(FillChunk, depth - p0);
                var tokens = Tokens(n);
                for (int i = 0; i < n; i++) batch.Add(tokens[i], p0 + i, LLamaSeqId.Zero, false);
                Check(ctx.NativeHandle.Decode(batch));
            }
            ctx.NativeHandle.Synchronize();
        }

        double RunPp()
        {
            using var ctx = _weights.CreateContext(prm);
            Fill(ctx);
            var batch = new LLamaBatch();
            var tokens = Tokens(pp);
            for (int i = 0; i < pp; i++) batch.Add(tokens[i], depth + i, LLamaSeqId.Zero, i == pp - 1);
            var sw = Stopwatch.StartNew();
            Check(ctx.NativeHandle.Decode(batch));
            ctx.NativeHandle.Synchronize();
            return pp / sw.Elapsed.TotalSeconds;
        }

        double RunTg()
        {
            using var ctx = _weights.CreateContext(prm);
            Fill(ctx);
            var batch = new LLamaBatch();
            var tokens = Tokens(tg);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < tg; i++)
            {
                batch.Clear();
                batch.Add(tokens[i], depth + i, LLamaSeqId.Zero, true);
                Check(ctx.NativeHandle.Decode(batch));
            }
            ctx.NativeHandle.Synchronize();
            return tg / sw.Elapsed.TotalSeconds;
        }

        // Warm-up: pages the weights in, lets ggml's thread pool start.
        if (pp > 0) RunPp();
        if (tg > 0) RunTg();
        var ppAll = pp > 0 ? Enumerable.Range(0, reps).Select(_ => RunPp()).ToArray() : [];
        var tgAll = tg > 0 ? Enumerable.Range(0, reps).Select(_ => RunTg()).ToArray() : [];
        return new BenchFigures(threads, pp, tg, ppAll, tgAll, "");
    }

    private static void Check(DecodeResult r)
    {
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {r}");
    }

    public void Dispose() => _weights.Dispose();

    private static LLama.Native.GGMLType CacheType(string name) => name switch
    {
        "f16" => LLama.Native.GGMLType.GGML_TYPE_F16,
        "q8_0" => LLama.Native.GGMLType.GGML_TYPE_Q8_0,
        "q4_0" => LLama.Native.GGMLType.GGML_TYPE_Q4_0,
        _ => throw new ArgumentException($"cache type {name}: f16, q8_0 or q4_0"),
    };
}
