using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm bench</c>: prompt processing (pp: one batch of P tokens in a fresh context) and
/// generation (tg: N single-token steps from position 0) in tokens per second, in llama-bench's
/// table layout, or one JSON object with <c>--json</c>. A warm-up run comes first.
/// <para>
/// <c>-d D</c> (llama-bench's <c>--n-depth</c>) measures both after D tokens already in the
/// context: each repetition fills the context with the same D tokens (not timed), then times the
/// test, so the figures include attention over D cached positions (tests named <c>pp512 @ d2048</c>,
/// as llama-bench names them; JSON <c>"depth"</c>).
/// </para>
/// </summary>
public static class BenchCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var threads = RunCommand.ThreadsOption();
        var pp = new Option<int>("--n-prompt", "-p") { Description = "Prompt tokens for the pp test (0 = skip)", DefaultValueFactory = _ => 128 };
        var tg = new Option<int>("--n-gen", "-n") { Description = "Generated tokens for the tg test (0 = skip)", DefaultValueFactory = _ => 64 };
        var reps = new Option<int>("--repetitions", "-r") { Description = "Repetitions of each test", DefaultValueFactory = _ => 3 };
        var depth = new Option<int>("--n-depth", "-d") { Description = "Tokens already in the context before each test (llama-bench's -d): pp and tg at that depth", DefaultValueFactory = _ => 0 };
        var backend = BackendOption.Create();
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var vsGeneric = new Option<bool>("--vs-generic")
        {
            Description = "Measure the compile-time specialization against the generic forward pass in this one process, alternating them on the same weights, and print the ratio",
        };
        var cache = new KvCacheFlags();
        var cmd = new Command("bench", "Measure prompt-processing and generation speed (like llama-bench)") { model, threads, pp, tg, reps, depth, json, backend, generic, vsGeneric };
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            int t = pr.GetValue(threads), p = pr.GetValue(pp), n = pr.GetValue(tg), r = pr.GetValue(reps);
            RunCommand.CheckThreads(t);
            if (p < 0 || n < 0 || p + n == 0) throw new UsageException("-p and -n must be >= 0 and not both 0");
            if (r < 1) throw new UsageException($"-r must be >= 1, got {r}");
            int d = pr.GetValue(depth);
            if (d < 0) throw new UsageException($"-d must be >= 0, got {d}");
            bool vs = pr.GetValue(vsGeneric);
            if (vs && pr.GetValue(generic)) throw new UsageException("--generic and --vs-generic exclude each other: --vs-generic runs both paths");
            if (vs && !BackendOption.MayRunOnCpu(pr.GetValue(backend))) throw new UsageException("--vs-generic measures the CPU forward passes; it needs --backend cpu");
            string path = ModelResolver.Resolve(pr.GetValue(model));
            var result = Measure(path, t, p, n, r, pr.GetValue(backend), pr.GetValue(generic), vs, d, cacheTypes);
            Console.Out.Write(pr.GetValue(json) ? result.ToJson() : result.ToTable());
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>The generic path's figures next to a specialization's (<c>--vs-generic</c>), measured alternately with them.</summary>
    internal sealed record GenericComparison(string Specialization, double[] PpAll, double[] TgAll)
    {
        /// <summary>Best over best, as llama-bench's figures are compared; NaN when the test did not run.</summary>
        public static double Ratio(double[] specialized, double[] generic) => specialized.Length > 0 ? specialized.Max() / generic.Max() : double.NaN;

        /// <summary>Median of the per-repetition ratios: each pair ran back to back, so load from other processes hits both alike.</summary>
        public static double PairedMedian(double[] specialized, double[] generic)
        {
            if (specialized.Length == 0) return double.NaN;
            var r = specialized.Zip(generic, (a, b) => a / b).Order().ToArray();
            return r.Length % 2 == 1 ? r[r.Length / 2] : (r[r.Length / 2 - 1] + r[r.Length / 2]) / 2;
        }

        /// <summary>
        /// A distribution-free confidence interval for the median of the per-repetition ratios: the k-th
        /// smallest and k-th largest ratio, which enclose the true median with probability
        /// 1 − 2·P(Binomial(n, ½) &lt; k) whatever the noise's distribution (the sign-test interval). k is the
        /// largest that keeps that at 90% or more; with fewer than 5 pairs no k does, and the interval is the
        /// whole range with the lower confidence it has. An interval that holds 1 says the two paths are not
        /// told apart by this run. Null when the test did not run.
        /// </summary>
        public static (double Low, double High, double Confidence)? PairedInterval(double[] specialized, double[] generic)
        {
            int n = specialized.Length;
            if (n == 0) return null;
            var r = specialized.Zip(generic, (a, b) => a / b).Order().ToArray();
            // below[k] = P(Binomial(n, 1/2) < k)
            double Below(int k)
            {
                double p = 0, c = 1; // c = C(n, i)
                for (int i = 0; i < k; i++)
                {
                    p += c;
                    c = c * (n - i) / (i + 1);
                }
                return p / Math.Pow(2, n);
            }
            int best = 1;
            for (int k = 2; k <= (n + 1) / 2; k++)
                if (1 - 2 * Below(k) >= 0.90) best = k;
            return (r[best - 1], r[n - best], 1 - 2 * Below(best));
        }

        /// <summary>"median of pairs 0.97×, 93% interval 0.91–1.02×" for the table.</summary>
        public static string PairedText(double[] specialized, double[] generic)
        {
            var ci = CultureInfo.InvariantCulture;
            string text = string.Format(ci, "median of pairs {0:F2}×", PairedMedian(specialized, generic));
            if (specialized.Length > 1 && PairedInterval(specialized, generic) is { } iv)
                text += string.Format(ci, ", {0:F0}% interval {1:F2}–{2:F2}×", 100 * iv.Confidence, iv.Low, iv.High);
            return text;
        }
    }

    /// <summary>
    /// A text encoder (bert, nomic-bert, jina-bert-v2): pp is one text of -p random tokens encoded (what an embedding costs, pooling
    /// aside); an encoder generates nothing, so -n, -d, the KV cache types and the generic path do not apply.
    /// </summary>
    private static BenchResult MeasureEncoder(string path, int threads, int pp, int tg, int reps, string? backend, bool generic, int depth, KvCacheTypePair cache)
    {
        if (backend is "vulkan") throw new UsageException("--backend vulkan: text encoders (bert, nomic-bert, jina-bert-v2) run on the CPU");
        if (generic) throw new UsageException("--generic / --vs-generic: text encoders have no compile-time specializations");
        if (depth > 0 || cache.Quantized) throw new UsageException("-d and the KV cache types do not apply to a text encoder (no cache)");
        using var bert = BertModel.Load(path, threads);
        if (pp == 0) throw new UsageException("a text encoder generates nothing: give -p (the tokens of one text)");
        if (pp > bert.ContextLength) throw new UsageException($"-p {pp}: the encoder reads at most {bert.ContextLength} tokens ({bert.Architecture}.context_length)");
        if (tg > 0) Console.Error.WriteLine($"edgellm bench: {bert.Architecture} is a text encoder: tg is not measured (-n {tg} ignored)");
        var rng = new Random(1);
        int vocab = checked((int)bert.File.FindTensor("token_embd.weight")!.Dims[1]);
        double RunPp()
        {
            var tokens = Enumerable.Range(0, pp).Select(_ => rng.Next(vocab)).ToArray();
            var sw = Stopwatch.StartNew();
            bert.Encode(tokens);
            return pp / sw.Elapsed.TotalSeconds;
        }
        RunPp(); // warm-up
        var ppAll = Enumerable.Range(0, reps).Select(_ => RunPp()).ToArray();
        long parameters = bert.File.Tensors.Sum(t => t.ElementCount);
        return new BenchResult(path, $"{bert.Architecture} {ParamsLabel(parameters)} {TypeLabel(bert.File)}", bert.File.Tensors.Sum(t => t.ByteSize), parameters,
            threads, pp, 0, ppAll, [], CpuFeatures.KernelPath);
    }

    internal sealed record BenchResult(string ModelPath, string ModelDescription, long SizeBytes, long Params, int Threads, int Pp, int Tg, double[] PpAll, double[] TgAll, string Kernel, string WeightLayout = "file", GenericComparison? Generic = null, int Depth = 0,
        KvCacheTypePair Cache = default)
    {
        public string ToJson()
        {
            var ci = CultureInfo.InvariantCulture;
            static string Arr(double[] a) => "[" + string.Join(", ", a.Select(x => x.ToString("R", CultureInfo.InvariantCulture))) + "]";
            var sb = new StringBuilder();
            sb.Append("{\"model\": ").Append(JsonString(ModelPath));
            sb.Append(ci, $", \"threads\": {Threads}, \"pp\": {Pp}, \"tg\": {Tg}, \"depth\": {Depth}");
            // llama-bench's keys for -ctk/-ctv.
            sb.Append(ci, $", \"type_k\": \"{Cache.K.Name()}\", \"type_v\": \"{Cache.V.Name()}\"");
            sb.Append(", \"pp_tps\": ").Append(PpAll.Length > 0 ? PpAll.Max().ToString("R", ci) : "null");
            sb.Append(", \"tg_tps\": ").Append(TgAll.Length > 0 ? TgAll.Max().ToString("R", ci) : "null");
            sb.Append(", \"pp_all\": ").Append(Arr(PpAll)).Append(", \"tg_all\": ").Append(Arr(TgAll));
            sb.Append(", \"kernel\": ").Append(JsonString(Kernel));
            // An extension of the issue's object: how the CPU computes with the weights ("file": in place in the mapping).
            sb.Append(", \"weight_layout\": ").Append(JsonString(WeightLayout));
            if (Generic is { } g)
            {
                // --vs-generic: the figures above are the specialization's; the generic path's follow, with the ratios.
                static string Num(double x) => double.IsNaN(x) ? "null" : x.ToString("R", CultureInfo.InvariantCulture);
                sb.Append(", \"specialization\": ").Append(JsonString(g.Specialization));
                sb.Append(", \"generic\": {\"pp_tps\": ").Append(g.PpAll.Length > 0 ? Num(g.PpAll.Max()) : "null");
                sb.Append(", \"tg_tps\": ").Append(g.TgAll.Length > 0 ? Num(g.TgAll.Max()) : "null");
                sb.Append(", \"pp_all\": ").Append(Arr(g.PpAll)).Append(", \"tg_all\": ").Append(Arr(g.TgAll)).Append('}');
                sb.Append(", \"pp_ratio\": ").Append(Num(GenericComparison.Ratio(PpAll, g.PpAll)));
                sb.Append(", \"tg_ratio\": ").Append(Num(GenericComparison.Ratio(TgAll, g.TgAll)));
                sb.Append(", \"pp_ratio_paired_median\": ").Append(Num(GenericComparison.PairedMedian(PpAll, g.PpAll)));
                sb.Append(", \"tg_ratio_paired_median\": ").Append(Num(GenericComparison.PairedMedian(TgAll, g.TgAll)));
                // The sign-test interval of that median and its confidence (GenericComparison.PairedInterval).
                static string Interval((double Low, double High, double Confidence)? iv) =>
                    iv is { } v ? $"{{\"low\": {Num(v.Low)}, \"high\": {Num(v.High)}, \"confidence\": {Num(v.Confidence)}}}" : "null";
                sb.Append(", \"pp_ratio_paired_interval\": ").Append(Interval(GenericComparison.PairedInterval(PpAll, g.PpAll)));
                sb.Append(", \"tg_ratio_paired_interval\": ").Append(Interval(GenericComparison.PairedInterval(TgAll, g.TgAll)));
            }
            sb.Append("}\n");
            return sb.ToString();
        }

        public string ToTable()
        {
            var ci = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            sb.AppendLine("| model                          |       size |     params | backend    | threads |          test |                  t/s |");
            sb.AppendLine("| ------------------------------ | ---------: | ---------: | ---------- | ------: | ------------: | -------------------: |");
            void Row(string test, double[] all)
            {
                double mean = all.Average();
                double sd = all.Length > 1 ? Math.Sqrt(all.Sum(x => (x - mean) * (x - mean)) / (all.Length - 1)) : 0;
                sb.AppendLine(ci, $"| {ModelDescription,-30} | {SizeBytes / 1048576.0,6:F2} MiB | {Params / 1e9,8:F2} B | {(Kernel.StartsWith("vulkan", StringComparison.Ordinal) ? Kernel : "CPU " + Kernel),-10} | {Threads,7} | {test,13} | {mean,11:F2} ± {sd,6:F2} |");
            }
            string at = (Depth > 0 ? $" @ d{Depth}" : "") + (Cache.Quantized ? $" K {Cache.K.Name()} V {Cache.V.Name()}" : "");
            if (PpAll.Length > 0) Row($"pp{Pp}{at}", PpAll);
            if (Generic is { } g && g.PpAll.Length > 0) Row($"pp{Pp}{at} generic", g.PpAll);
            if (TgAll.Length > 0) Row($"tg{Tg}{at}", TgAll);
            if (Generic is { } h && h.TgAll.Length > 0) Row($"tg{Tg}{at} generic", h.TgAll);
            if (Generic is { } c)
            {
                sb.AppendLine();
                sb.Append(ci, $"specialized '{c.Specialization}' / generic, alternating in one process:");
                if (PpAll.Length > 0) sb.Append(ci, $" pp{Pp}{at} {GenericComparison.Ratio(PpAll, c.PpAll):F2}× (best of {PpAll.Length} each; {GenericComparison.PairedText(PpAll, c.PpAll)})");
                if (TgAll.Length > 0) sb.Append(ci, $"{(PpAll.Length > 0 ? "," : "")} tg{Tg}{at} {GenericComparison.Ratio(TgAll, c.TgAll):F2}× (best of {TgAll.Length} each; {GenericComparison.PairedText(TgAll, c.TgAll)})");
                sb.AppendLine();
            }
            return sb.ToString();
        }

        private static string JsonString(string s)
        {
            var sb = new StringBuilder("\"");
            foreach (char c in s)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c < 0x20) sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
                else sb.Append(c);
            }
            return sb.Append('"').ToString();
        }
    }

    internal static BenchResult Measure(string path, int threads, int pp, int tg, int reps, string? backend = "cpu", bool generic = false, bool vsGeneric = false, int depth = 0,
        KvCacheTypePair cache = default)
    {
        bool encoder;
        using (var peek = Gguf.GgufFile.Open(path)) encoder = BertModel.IsEncoder(peek);
        if (encoder) return MeasureEncoder(path, threads, pp, tg, reps, backend, generic || vsGeneric, depth, cache);
        using var model = Model.Load(path, new ModelLoadOptions { Generic = generic, RepackWeights = BackendOption.MayRunOnCpu(backend) });
        if (vsGeneric && model.Specialization is null)
            throw new UsageException($"--vs-generic: no compile-time specialization matches {path} ({Specialized.SpecializationRegistry.Describe(model)})");
        long needed = (long)depth + Math.Max(pp, tg) + 1;
        if (needed > int.MaxValue) throw new UsageException($"-d {depth} plus the longest test ({Math.Max(pp, tg)} tokens) is more positions than a context can hold");
        int ctxLen = (int)needed;
        if (InferenceContext.ExceedsTrainingContext(model, ctxLen))
            Console.Error.WriteLine($"warning: context {ctxLen} (-d {depth} + {Math.Max(pp, tg)}) exceeds the model's training context ({model.Config.TrainingContextLength}); the speed is still measured");
        using var context = BackendOption.CreateContext(backend, model, ctxLen, threads, cache);
        var rng = new Random(1);
        int[] RandomTokens(int count) => Enumerable.Range(0, count).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        var depthTokens = RandomTokens(depth);

        // A fresh context holding the depth tokens (neither timed nor in the EDGELLM_PROFILE totals).
        void Fill()
        {
            context.Reset();
            if (depth == 0) return;
            bool profiling = ForwardProfiler.Enabled;
            ForwardProfiler.Enabled = false;
            try { context.Eval(depthTokens); }
            finally { ForwardProfiler.Enabled = profiling; }
        }

        // Process CPU time and tokens of the timed parts only (not the fills), for the per-token CPU figure.
        var cpu = Process.GetCurrentProcess();
        TimeSpan cpuTimed = TimeSpan.Zero;
        long tokensTimed = 0;
        TimeSpan CpuNow()
        {
            cpu.Refresh();
            return cpu.TotalProcessorTime;
        }

        double RunPp()
        {
            var tokens = RandomTokens(pp);
            Fill();
            var c0 = CpuNow();
            var sw = Stopwatch.StartNew();
            context.Eval(tokens);
            double seconds = sw.Elapsed.TotalSeconds;
            cpuTimed += CpuNow() - c0;
            tokensTimed += pp;
            return pp / seconds;
        }

        double RunTg()
        {
            var tokens = RandomTokens(tg);
            Fill();
            var c0 = CpuNow();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < tg; i++) context.Eval(tokens.AsSpan(i, 1));
            double seconds = sw.Elapsed.TotalSeconds;
            cpuTimed += CpuNow() - c0;
            tokensTimed += tg;
            return tg / seconds;
        }

        // --vs-generic: each repetition runs both paths back to back, the first one alternating, and
        // both paths share the weights, the context and the page cache.
        double[] genPp = [], genTg = [];
        double[] Series(int count, Func<double> run, ref double[] generic)
        {
            if (!vsGeneric) return Enumerable.Range(0, count).Select(_ => run()).ToArray();
            var spec = new double[count];
            generic = new double[count];
            for (int i = 0; i < count; i++)
            {
                bool genericFirst = i % 2 == 1;
                model.RunGeneric = genericFirst;
                double first = run();
                model.RunGeneric = !genericFirst;
                double second = run();
                model.RunGeneric = false;
                (spec[i], generic[i]) = genericFirst ? (second, first) : (first, second);
            }
            return spec;
        }

        // Warm-up: page the weights in and let the JIT tier up (both paths with --vs-generic).
        foreach (bool g in vsGeneric ? new[] { true, false } : [false])
        {
            model.RunGeneric = g;
            if (pp > 0) RunPp();
            if (tg > 0) { Fill(); context.Eval(RandomTokens(Math.Min(tg, 4))); }
        }

        // Per-op times (EDGELLM_PROFILE=1) and resident memory go to stderr, so stdout stays the table/JSON.
        // A Vulkan context times its own steps on the device (IProfiledContext); the CPU's go to ForwardProfiler.
        var deviceProfile = context as IProfiledContext;
        string Profile() => deviceProfile?.ProfileReport() ?? ForwardProfiler.Report();
        ForwardProfiler.Reset();
        deviceProfile?.ResetProfile();
        (cpuTimed, tokensTimed) = (TimeSpan.Zero, 0);
        var ppAll = pp > 0 ? Series(reps, RunPp, ref genPp) : [];
        if (pp > 0 && ForwardProfiler.Enabled) Console.Error.Write($"profile pp{pp} ×{reps}:\n{Profile()}");
        if (pp > 0) Console.Error.WriteLine($"pp: {cpuTimed.TotalSeconds / tokensTimed * 1000:F1} ms CPU time per token (all threads; shows the cost when the cores are shared)");
        ForwardProfiler.Reset();
        deviceProfile?.ResetProfile();
        (cpuTimed, tokensTimed) = (TimeSpan.Zero, 0);
        var tgAll = tg > 0 ? Series(reps, RunTg, ref genTg) : [];
        if (tg > 0) Console.Error.WriteLine($"tg: {cpuTimed.TotalSeconds / tokensTimed * 1000:F1} ms CPU time per token (all threads)");
        if (tg > 0 && ForwardProfiler.Enabled) Console.Error.Write($"profile tg{tg} ×{reps}:\n{Profile()}");
        Console.Error.WriteLine(
            $"memory while generating: {ResidentMemory()}; weights {model.WeightBytes >> 20} MiB in the file ({(model.RepackedBytes == 0 ? "all mapped" : $"{model.RepackedBytes >> 20} MiB of them repacked at load as {string.Join(", ", model.RepackedLayouts)}, the rest mapped")}), KV cache {model.EstimateKvCacheBytes(ctxLen, cache.K, cache.V, cache.FullSwa) >> 20} MiB{(cache.Quantized ? $" (K {cache.K.Name()}, V {cache.V.Name()})" : "")}");
        long parameters = model.File.Tensors.Sum(t => t.ElementCount);
        long size = model.File.Tensors.Sum(t => t.ByteSize);
        string desc = $"{model.Config.Architecture} {ParamsLabel(parameters)} {TypeLabel(model.File)}";
        return new BenchResult(path, desc, size, parameters, threads, pp, tg, ppAll, tgAll, context.Description.StartsWith("vulkan", StringComparison.Ordinal) ? context.Description : CpuFeatures.KernelPath,
            model.RepackedBytes == 0 ? "file" : string.Join("+", model.RepackedLayouts),
            vsGeneric ? new GenericComparison(model.Specialization!.Name, genPp, genTg) : null, depth, cache);
    }

    /// <summary>
    /// The type in the model column: the file type a quantizer wrote (general.file_type, e.g. Q4_K_M,
    /// as llama-bench names the file by it), else the tensor type holding the most bytes. The largest
    /// type alone misnamed mixes: stories260K-q4_0 (ffn_down F32) read "F32", a Q4_K_M file of
    /// qwen2.5-0.5b (most rows fall back to Q5_0) "Q5_0".
    /// </summary>
    internal static string TypeLabel(GgufFile file)
    {
        if (file.GetInt("general.file_type") is long ft && ft is >= 0 and <= int.MaxValue && Enum.IsDefined((LlamaFileType)ft))
            return LlamaFileTypes.Name((LlamaFileType)ft);
        return GgmlTypes.Name(file.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).First().Key);
    }

    /// <summary>Parameters in the model column: 1.10B, 0.49B, and for test-sized models 2.5M or 292.8K (not 0.00B).</summary>
    internal static string ParamsLabel(long n) => n switch
    {
        >= 100_000_000 => (n / 1e9).ToString("F2", CultureInfo.InvariantCulture) + "B",
        >= 1_000_000 => (n / 1e6).ToString("0.#", CultureInfo.InvariantCulture) + "M",
        _ => (n / 1e3).ToString("0.#", CultureInfo.InvariantCulture) + "K",
    };

    /// <summary>VmRSS and VmHWM (peak) from /proc/self/status, or a note where that file is missing.</summary>
    private static string ResidentMemory()
    {
        const string Status = "/proc/self/status";
        if (!File.Exists(Status)) return "resident size unavailable (no /proc/self/status)";
        string? rss = null, hwm = null;
        foreach (var line in File.ReadLines(Status))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = line[6..].Trim();
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) hwm = line[6..].Trim();
        }
        return $"VmRSS {rss ?? "?"} (peak VmHWM {hwm ?? "?"})";
    }
}
