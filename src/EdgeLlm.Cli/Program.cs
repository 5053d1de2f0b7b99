using System.CommandLine;
using EdgeLlm.Cli;
using EdgeLlm.Cli.Commands;

// `edgellm`: logs and statistics go to stderr, data to stdout. Exit codes: 0 ok, 1 usage error,
// 2 model or input error, 3 download or I/O error (see ExitCodes).
var verbose = new Option<bool>("--verbose") { Description = "Show stack traces and debug output", Recursive = true };
var root = new RootCommand("EdgeLlm: run GGUF language models on edge devices")
{
    RunCommand.Create(verbose),
    TokenizeCommand.Create(verbose),
    LogitsCommand.Create(verbose),
    EmbedCommand.Create(verbose),
    RerankCommand.Create(verbose),
    PerplexityCommand.Create(verbose),
    InfoCommand.Create(verbose),
    QuantizeCommand.Create(verbose),
    BenchCommand.Create(verbose),
    SynthCommand.Create(verbose),
    SelfTestCommand.Create(verbose),
    DevicesCommand.Create(verbose),
    TemplateCommand.Create(verbose),
    ChatCommand.Create(verbose),
    ServeCommand.Create(verbose),
};
root.Options.Add(verbose);

var parse = root.Parse(args);
if (args.Length == 0)
{
    // No command: the overview of the commands, as a usage error.
    root.Parse(["--help"]).Invoke();
    return ExitCodes.Usage;
}
if (parse.Errors.Count > 0) return ParseErrors.Report(parse, Console.Error);
// Ctrl-C is handled by the commands themselves (generation stops cleanly and prints statistics),
// so System.CommandLine's own termination handling is turned off.
return parse.Invoke(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false });
