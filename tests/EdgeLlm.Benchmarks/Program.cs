// EdgeLlm vs llama.cpp on one GGUF file, in one run, on this machine.
//
//   dotnet run -c Release --project tests/EdgeLlm.Benchmarks -- --model FILE [--threads 1,2] [-p 128] [-n 64] [-r 3]
//   dotnet run -c Release --project tests/EdgeLlm.Benchmarks -- --synth tinyllama-1.1b:Q4_0 [...]
//   ... --edgellm artifacts/devices/x64-avx512/edgellm   (measure that executable, e.g. a NativeAOT build)
//
// Prints a markdown table (pp = prompt tokens/s, tg = generated tokens/s, best of r), the memory
// read bandwidth measured here, and how much of it token generation uses.
using System.Diagnostics;
using System.Globalization;
using EdgeLlm.Benchmarks;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Synth;

var ci = CultureInfo.InvariantCulture;
Options opt;
try
{
    opt = Options.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    Console.Error.WriteLine(Options.Usage);
    return 1;
}
if (opt.Help)
{
    Console.WriteLine(Options.Usage);
    return 0;
}

string repoRoot = FindRepoRoot();
string edgellmCli = opt.EdgeLlm ?? EdgeLlmCliBench.CliPath(repoRoot);
string model = opt.Model ?? SynthesizeCached(opt.Synth!, opt.Seed);
if (!File.Exists(model))
{
    Console.Error.WriteLine($"error: model file {model} does not exist");
    return 1;
}

if (opt.Embed) return EdgeLlm.Benchmarks.EmbedBench.Run(model, opt.Threads, opt.Pp, opt.Reps, opt.Rounds, opt.Texts);
if (opt.Rerank) return EdgeLlm.Benchmarks.RerankBench.Run(model, opt.Threads, opt.Pp, opt.Reps, opt.Rounds, opt.Texts);

var (modelDesc, typeDesc, bytesPerToken) = DescribeModel(model);
Console.Error.WriteLine($"model {model}: {modelDesc}, {typeDesc}, {bytesPerToken / 1e6:F1} MB of weights read per generated token");

// Bandwidth first, while nothing else of ours is running.
var bandwidth = new SortedDictionary<int, double>();
foreach (int t in new[] { 1, 2 }.Union(opt.Threads).Where(t => t <= Environment.ProcessorCount).Order())
{
    bandwidth[t] = MemoryBandwidth.Measure(t);
    Console.Error.WriteLine($"memory read bandwidth, {t} thread(s): {bandwidth[t]:F1} GB/s");
}

// Rounds alternate the engines (llama.cpp then EdgeLlm, per thread count) and pool their
// repetitions, so a burst of noise from the shared host hits both rather than one engine's block.
var llama = new Dictionary<int, BenchFigures>();
var ours = new Dictionary<int, BenchFigures>();
string native = "not loaded";
LlamaCppBench? bench = null;
try
{
    bench = new LlamaCppBench(model);
    native = LlamaCppBench.NativeLibrary;
    Console.Error.WriteLine($"llama.cpp native library: {native}");
}
catch (Exception ex) when (ex is not OutOfMemoryException)
{
    native = $"failed: {ex.Message}";
    Console.Error.WriteLine($"llama.cpp could not run: {ex.Message}");
}
static BenchFigures Pool(BenchFigures? a, BenchFigures b) =>
    a is null ? b : b with { PpAll = [.. a.PpAll, .. b.PpAll], TgAll = [.. a.TgAll, .. b.TgAll], Note = b.Note };
for (int round = 1; round <= opt.Rounds; round++)
{
    foreach (int t in opt.Threads)
    {
        if (bench is not null)
        {
            try
            {
                var l = bench.Measure(t, opt.Pp, opt.Tg, opt.Reps, opt.Depth, opt.CacheK, opt.CacheV);
                llama[t] = Pool(llama.GetValueOrDefault(t), l);
                Console.Error.WriteLine($"round {round} llama.cpp  t={t}: pp {Fmt(l.PpAll)}  tg {Fmt(l.TgAll)}");
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                native = $"failed: {ex.Message}";
                Console.Error.WriteLine($"llama.cpp could not run: {ex.Message}");
                bench.Dispose();
                bench = null;
            }
        }
        var o = EdgeLlmCliBench.Measure(edgellmCli, model, t, opt.Pp, opt.Tg, opt.Reps, opt.Depth, opt.CacheK, opt.CacheV);
        ours[t] = Pool(ours.GetValueOrDefault(t), o);
        Console.Error.WriteLine(o.PpAll.Length + o.TgAll.Length > 0
            ? $"round {round} EdgeLlm    t={t}: pp {Fmt(o.PpAll)}  tg {Fmt(o.TgAll)}  {o.Note}"
            : $"round {round} EdgeLlm    t={t}: not measured: {o.Note}");
    }
}
bench?.Dispose();

// The report.
string date = DateTime.Now.ToString("yyyy-MM-dd HH:mm", ci);
string machine = $"{CpuModel()}, {Environment.ProcessorCount} cores, {TotalMemoryGiB():F0} GiB RAM";
Console.WriteLine();
Console.WriteLine($"Date: {date}  ");
Console.WriteLine($"Machine: {machine}  ");
Console.WriteLine($"Model: {Path.GetFileName(model)} ({modelDesc}, {typeDesc}); {bytesPerToken / 1e6:F1} MB of weights per generated token  ");
Console.WriteLine($"EdgeLlm: {(opt.EdgeLlm is null ? "the Release build of src/EdgeLlm.Cli (JIT)" : edgellmCli)}  ");
Console.WriteLine($"llama.cpp: LLamaSharp 0.30.0 CPU backend, {native}  ");
Console.WriteLine($"Repetitions: {opt.Rounds} round(s) × {opt.Reps}, the engines alternating per round; best of all  ");
Console.WriteLine($"Memory read bandwidth: {string.Join(", ", bandwidth.Select(kv => $"{kv.Value:F1} GB/s with {kv.Key} thread{(kv.Key > 1 ? "s" : "")}"))}");
Console.WriteLine();
Console.WriteLine("| date | machine | threads | model | type | test | EdgeLlm t/s | llama.cpp t/s | EdgeLlm / llama.cpp |");
Console.WriteLine("| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: |");
foreach (int t in opt.Threads)
{
    llama.TryGetValue(t, out var l);
    ours.TryGetValue(t, out var o);
    void Row(string test, double? ourBest, double? theirBest) =>
        Console.WriteLine($"| {date} | {machine} | {t} | {modelDesc} | {typeDesc} | {test} | {Num(ourBest)} | {Num(theirBest)} | {Ratio(ourBest, theirBest)} |");
    string at = (opt.Depth > 0 ? $" @ d{opt.Depth}" : "") // llama-bench's name for a test after a filled context
        + (opt.CacheK != "f16" || opt.CacheV != "f16" ? $" K {opt.CacheK} V {opt.CacheV}" : "");
    if (opt.Pp > 0) Row($"pp{opt.Pp}{at}", o?.PpBest, l?.PpBest);
    if (opt.Tg > 0) Row($"tg{opt.Tg}{at}", o?.TgBest, l?.TgBest);
}
Console.WriteLine();
Console.WriteLine("All repetitions (t/s):");
foreach (int t in opt.Threads)
{
    if (llama.TryGetValue(t, out var l)) Console.WriteLine($"- llama.cpp, {t} thread(s): pp {Fmt(l.PpAll)}; tg {Fmt(l.TgAll)}");
    if (ours.TryGetValue(t, out var o))
        Console.WriteLine(o.PpAll.Length + o.TgAll.Length > 0
            ? $"- EdgeLlm, {t} thread(s): pp {Fmt(o.PpAll)}; tg {Fmt(o.TgAll)} ({o.Note})"
            : $"- EdgeLlm, {t} thread(s): not measured: {o.Note}");
}
if (opt.Tg > 0)
{
    Console.WriteLine();
    Console.WriteLine("Bandwidth use of generation (weight bytes per token × tg t/s ÷ measured read bandwidth at that thread count):");
    foreach (int t in opt.Threads)
    {
        double bw = bandwidth.TryGetValue(t, out var b) ? b : bandwidth.Values.Max();
        string Use(double? tps) => tps is double x ? $"{bytesPerToken * x / 1e9:F1} GB/s = {100 * bytesPerToken * x / 1e9 / bw:F0}%" : "n/a";
        Console.WriteLine($"- {t} thread(s), {bw:F1} GB/s: EdgeLlm {Use(ours.GetValueOrDefault(t)?.TgBest)}; llama.cpp {Use(llama.GetValueOrDefault(t)?.TgBest)}");
    }
}
return 0;

static string Num(double? x) => x is double v ? v.ToString("F2", CultureInfo.InvariantCulture) : "n/a";
static string Ratio(double? a, double? b) => a is double x && b is double y && y > 0 ? (x / y).ToString("F2", CultureInfo.InvariantCulture) : "n/a";
static string Fmt(double[] a) => a.Length == 0 ? "-" : string.Join(", ", a.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)));

static string FindRepoRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
    return dir?.FullName ?? Directory.GetCurrentDirectory();
}

// Creates (once) a synthetic model in the user's cache folder: NAME:TYPE, e.g. tinyllama-1.1b:Q4_0.
static string SynthesizeCached(string spec, int seed)
{
    int colon = spec.IndexOf(':', StringComparison.Ordinal);
    if (colon <= 0 || colon == spec.Length - 1) throw new ArgumentException($"--synth wants NAME:TYPE (e.g. tinyllama-1.1b:Q4_0), got '{spec}'");
    string name = spec[..colon], type = spec[(colon + 1)..];
    string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x
        ? x
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
    string dir = Path.Combine(cache, "edgellm", "synth");
    Directory.CreateDirectory(dir);
    string path = Path.Combine(dir, $"{name.ToLowerInvariant()}-{type.ToLowerInvariant()}-seed{seed}.gguf");
    if (File.Exists(path))
    {
        Console.Error.WriteLine($"using cached synthetic model {path}");
        return path;
    }
    string tmp = path + ".tmp";
    var sw = Stopwatch.StartNew();
    Console.Error.Write($"synthesizing {name} {type} -> {path} ");
    if (BertSynthesizer.Find(name) is { } bert) BertSynthesizer.Write(bert, type.ToUpperInvariant(), tmp, seed);
    else if (RerankerSynthesizer.Shapes.TryGetValue(name, out var decoderName))
    {
        ModelSynthesizer.Synthesize(decoderName, type, tmp + ".decoder", seed);
        RerankerSynthesizer.AddQwen3Head(tmp + ".decoder", tmp);
        File.Delete(tmp + ".decoder");
    }
    else
        ModelSynthesizer.Synthesize(name, type, tmp, seed, (done, total, _) =>
        {
            if (done % Math.Max(1, total / 20) == 0) Console.Error.Write('.');
        });
    File.Move(tmp, path, overwrite: true);
    Console.Error.WriteLine($" {new FileInfo(path).Length / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F1} s");
    return path;
}

// Architecture and parameter count, dominant weight type, and the bytes of weights one generated
// token reads: every tensor, except that only one row of an untied token_embd is read.
static (string Model, string Type, long BytesPerToken) DescribeModel(string path)
{
    using var f = GgufFile.Open(path);
    long parameters = f.Tensors.Sum(t => t.ElementCount);
    long bytes = f.Tensors.Sum(t => t.ByteSize);
    var embd = f.FindTensor("token_embd.weight");
    if (embd is not null && f.FindTensor("output.weight") is not null)
        bytes -= embd.ByteSize - embd.ByteSize / embd.RowCount;
    string arch = f.GetString("general.architecture") ?? "?";
    // A mixture of experts reads only the chosen experts' slices of the 3-D ffn_*_exps tensors per token.
    if (f.GetInt($"{arch}.expert_count") is long experts and > 0 && f.GetInt($"{arch}.expert_used_count") is long used)
        bytes -= f.Tensors.Where(t => t.Name.EndsWith("_exps.weight", StringComparison.Ordinal)).Sum(t => t.ByteSize / experts * (experts - used));
    string dominant = GgmlTypes.Name(f.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).First().Key);
    // The file type llama-quantize wrote (general.file_type) when it names one, with the type most of
    // the bytes are in where that differs (Qwen2.5-0.5B's Q3_K_M file is mostly IQ4_NL and Q8_0).
    string type = f.GetInt("general.file_type") is long ft && LlamaFileTypes.Name((LlamaFileType)ft) is var ftName
        && !ftName.StartsWith("ftype#", StringComparison.Ordinal)
        ? (ftName == dominant ? ftName : $"{ftName} (mostly {dominant})")
        : dominant;
    string name = f.GetString("general.name") is { Length: > 0 } n ? n + ", " : "";
    return ($"{name}{arch} {parameters / 1e9:F2}B", type, bytes);
}

static string CpuModel()
{
    try
    {
        var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
        if (line is not null) return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
    }
    catch (IOException) { }
    catch (UnauthorizedAccessException) { }
    return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
}

static double TotalMemoryGiB() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (double)(1L << 30);

/// <summary>Command-line options of the benchmark.</summary>
internal sealed record Options(string? Model, string? Synth, string? EdgeLlm, int[] Threads, int Pp, int Tg, int Reps, int Rounds, int Seed, bool Help, int Depth = 0,
    string CacheK = "f16", string CacheV = "f16", bool Embed = false, int Texts = 1, bool Rerank = false)
{
    public const string Usage =
        "usage: dotnet run -c Release --project tests/EdgeLlm.Benchmarks -- (--model FILE | --synth NAME:TYPE) [--threads 1,2] [-p 128] [-n 64] [-r 3] [--rounds 1] [--seed 1] [-d 0] [-ctk f16] [-ctv f16] [--edgellm PATH] [--embed | --rerank]\n" +
        "  --synth creates a random-weight model shaped like NAME (tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, smollm2-360m)\n" +
        "          in TYPE (F16, Q8_0, Q4_0, Q4_K, ...) under ~/.cache/edgellm/synth first (reused afterwards).\n" +
        "  --rounds K alternates llama.cpp and EdgeLlm K times (each -r repetitions) and pools the figures: on a shared,\n" +
        "          noisy machine a burst of load then hits both engines, not one engine's whole block.\n" +
        "  -d N (--n-depth) fills each context with N tokens, untimed, before the test (llama-bench's -d; tests are named\n" +
        "          pp128 @ dN, tg64 @ dN): generation deep in a context, where attention over the cache costs most.\n" +
        "  -ctk/-ctv TYPE (--cache-type-k/-v): the KV cache in f16, q8_0 or q4_0 in both engines (llama.cpp with flash\n" +
        "          attention, which it needs for a quantized V cache).\n" +
        "  --embed: the model is a BERT encoder (--synth all-minilm-l6-v2:F16, nomic-embed-text-v1.5:Q8_0, ...): embeddings\n" +
        "          of one text of -p tokens per second in both engines, in this process; --texts N: N such texts per\n" +
        "          repetition, EdgeLlm also through TextEmbedder.EmbedBatch (LLamaSharp's embedder takes one text a call).\n" +
        "  --rerank: the model is a reranker (--synth ms-marco-minilm-l6-v2:Q8_0, bge-reranker-base:Q8_0, qwen3-reranker-0.6b:Q8_0): --texts N query/document\n" +
        "          pairs of -p tokens scored per second, batched and one by one, in both engines, in this process.\n" +
        "  --edgellm PATH measures that edgellm executable (e.g. a NativeAOT build from devices/build.sh) instead of\n" +
        "          the Release build of src/EdgeLlm.Cli run through `dotnet`.";

    public static Options Parse(string[] args)
    {
        string? model = null, synth = null, edgellm = null;
        int[] threads = [1, 2];
        int pp = 128, tg = 64, reps = 3, rounds = 1, seed = 1, depth = 0;
        string cacheK = "f16", cacheV = "f16";
        string Cache(string v) => v is "f16" or "q8_0" or "q4_0" ? v : throw new ArgumentException($"a cache type is f16, q8_0 or q4_0, got '{v}'");
        bool help = false, embed = false, rerank = false;
        int texts = 1;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int(string what)
            {
                string v = Next();
                return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) && x >= 0
                    ? x : throw new ArgumentException($"{what} must be a non-negative integer, got '{v}'");
            }
            switch (args[i])
            {
                case "--model" or "-m": model = Next(); break;
                case "--synth": synth = Next(); break;
                case "--edgellm": edgellm = Path.GetFullPath(Next()); break;
                case "--threads" or "-t":
                    string list = Next();
                    threads = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int t) && t > 0
                            ? t : throw new ArgumentException($"--threads wants a list of positive integers, got '{list}'"))
                        .Distinct().ToArray();
                    if (threads.Length == 0) throw new ArgumentException("--threads is empty");
                    break;
                case "-p" or "--n-prompt": pp = Int("-p"); break;
                case "-n" or "--n-gen": tg = Int("-n"); break;
                case "-r" or "--repetitions": reps = Int("-r"); break;
                case "--rounds": rounds = Int("--rounds"); break;
                case "--seed": seed = Int("--seed"); break;
                case "-d" or "--n-depth": depth = Int("-d"); break;
                case "-ctk" or "--cache-type-k": cacheK = Cache(Next()); break;
                case "-ctv" or "--cache-type-v": cacheV = Cache(Next()); break;
                case "--embed": embed = true; break;
                case "--rerank": rerank = true; break;
                case "--texts": texts = Math.Max(1, Int("--texts")); break;
                case "-h" or "--help": help = true; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (!help)
        {
            if ((model is null) == (synth is null)) throw new ArgumentException("give exactly one of --model FILE and --synth NAME:TYPE");
            if (pp + tg == 0) throw new ArgumentException("-p and -n cannot both be 0");
            if (reps < 1) throw new ArgumentException("-r must be at least 1");
            if (rounds < 1) throw new ArgumentException("--rounds must be at least 1");
            if (edgellm is not null && !File.Exists(edgellm)) throw new ArgumentException($"--edgellm: no file {edgellm}");
        }
        return new Options(model, synth, edgellm, threads, pp, tg, reps, rounds, seed, help, depth, cacheK, cacheV, embed, texts, rerank);
    }
}
