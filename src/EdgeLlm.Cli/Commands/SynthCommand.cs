using System.CommandLine;
using System.Globalization;
using EdgeLlm.Synth;
using Spectre.Console;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm synth --like NAME --type TYPE -o FILE [--seed S]</c>: writes a random-weight GGUF with
/// the exact shape, metadata and vocabulary size of a real model, for measuring speed at realistic
/// sizes without downloading anything.
/// </summary>
public static class SynthCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var like = new Option<string>("--like") { Description = $"Model whose shape to copy: {string.Join(", ", SynthShapes.Names.Concat(RerankerSynthesizer.Shapes.Keys).Concat(BertSynthesizer.Shapes.Select(b => b.Name)))}", Required = true };
        var type = new Option<string>("--type") { Description = "A llama.cpp file type (F32, F16, BF16, Q4_0, Q8_0, Q4_K_M, Q6_K, ...: tensor types as llama-quantize picks them) or a ggml type for every matrix (Q4_K, Q5_K, ...)", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Output GGUF file", Required = true };
        var seed = new Option<int>("--seed") { Description = "Random seed (the same seed writes the same file)", DefaultValueFactory = _ => 1 };
        var cmd = new Command("synth", "Write a random-weight model shaped like a real one (for benchmarks)") { like, type, output, seed };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            string name = pr.GetValue(like)!, typeName = pr.GetValue(type)!, outPath = pr.GetValue(output)!;
            if (BertSynthesizer.Find(name) is { } bert)
            {
                // an encoder (embedding model): its matrices in one ggml type, the rest as llama.cpp's converter keeps them
                var t0 = DateTime.UtcNow;
                try { BertSynthesizer.Write(bert, typeName.ToUpperInvariant(), outPath, pr.GetValue(seed)); }
                catch (ArgumentException ex) { throw new UsageException(ex.Message); }
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes, {bert.Name} {typeName.ToUpperInvariant()}, random weights) in {(DateTime.UtcNow - t0).TotalSeconds:F1} s"));
                return ExitCodes.Ok;
            }
            // a decoder reranker (Qwen3-Reranker): its decoder written first, then the head and the rank metadata added
            string? rerankerOf = RerankerSynthesizer.Shapes.GetValueOrDefault(name);
            string finalPath = outPath;
            if (rerankerOf is not null)
            {
                outPath = finalPath + ".decoder.tmp";
                name = rerankerOf;
            }
            var shape = SynthShapes.All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
                ?? throw new UsageException($"unknown model '{name}' for --like; expected one of {string.Join(", ", SynthShapes.Names.Concat(RerankerSynthesizer.Shapes.Keys).Concat(BertSynthesizer.Shapes.Select(b => b.Name)))}");
            try
            {
                _ = ModelSynthesizer.CreatePlanner(shape, typeName);
            }
            catch (ArgumentException ex)
            {
                throw new UsageException(ex.Message);
            }

            var console = ModelResolver.StderrConsole();
            var started = DateTime.UtcNow;
            console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("synthesizing", maxValue: 1);
                    ModelSynthesizer.Synthesize(shape, typeName, outPath, pr.GetValue(seed),
                        (done, total, tensor) => { task.MaxValue = total; task.Value = done; task.Description = tensor; });
                });
            if (rerankerOf is not null)
            {
                try { RerankerSynthesizer.AddQwen3Head(outPath, finalPath); }
                finally { File.Delete(outPath); }
                outPath = finalPath;
                name = pr.GetValue(like)!;
            }
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes, {(rerankerOf is null ? shape.Name : name.ToLowerInvariant())} {typeName.ToUpperInvariant()}, random weights) in {(DateTime.UtcNow - started).TotalSeconds:F1} s"));
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
