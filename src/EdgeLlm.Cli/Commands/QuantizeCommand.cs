using System.CommandLine;
using EdgeLlm.Quant;
using Spectre.Console;

namespace EdgeLlm.Cli.Commands;

/// <summary><c>edgellm quantize IN.gguf OUT.gguf TYPE [--pure] [-t THREADS] [--allow-requantize]</c>.</summary>
public static class QuantizeCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var input = new Argument<string>("IN") { Description = "Input GGUF (F32, F16 or BF16 weights)" };
        var output = new Argument<string>("OUT") { Description = "Output GGUF" };
        var type = new Argument<string>("TYPE") { Description = "File type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, MXFP4_MOE, F16, BF16 (case-insensitive)" };
        var pure = new Option<bool>("--pure") { Description = "Every weight matrix gets TYPE (no mixtures, no fallbacks)" };
        var threads = RunCommand.ThreadsOption();
        var requant = new Option<bool>("--allow-requantize") { Description = "Allow quantizing an already-quantized file (loses quality)" };
        var cmd = new Command("quantize", "Quantize a GGUF file the way llama-quantize does") { input, output, type, pure, threads, requant };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            int nThreads = pr.GetValue(threads);
            RunCommand.CheckThreads(nThreads);
            string inPath = pr.GetValue(input)!, outPath = pr.GetValue(output)!;
            if (Path.GetFullPath(inPath) == Path.GetFullPath(outPath)) throw new UsageException("OUT must differ from IN");
            var console = ModelResolver.StderrConsole();
            console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("quantizing", maxValue: 1);
                    var options = new QuantizeOptions
                    {
                        Pure = pr.GetValue(pure),
                        Threads = nThreads,
                        AllowRequantize = pr.GetValue(requant),
                        Progress = (done, total, name) => { task.MaxValue = total; task.Value = done; task.Description = name; },
                    };
                    ModelQuantizer.Quantize(inPath, outPath, pr.GetValue(type)!, options);
                });
            Console.Error.WriteLine($"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes)");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
