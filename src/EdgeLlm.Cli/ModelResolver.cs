using System.CommandLine;
using EdgeLlm.Download;
using Spectre.Console;

namespace EdgeLlm.Cli;

/// <summary>
/// Finds the model a command runs: <c>-m PATH</c>, else <c>$EDGELLM_MODEL</c>, else the default
/// model (stories260K), downloaded once into the cache with a progress bar on stderr.
/// </summary>
public static class ModelResolver
{
    public static Option<string?> CreateOption() => new("--model", "-m")
    {
        Description = "GGUF model file (default: $EDGELLM_MODEL, else stories260K downloaded once into the cache)",
    };

    public static string Resolve(string? model)
    {
        if (!string.IsNullOrEmpty(model)) return model;
        var env = Environment.GetEnvironmentVariable("EDGELLM_MODEL");
        if (!string.IsNullOrEmpty(env)) return env;

        using var downloader = new ModelDownloader();
        if (downloader.TryGetCached(ModelDownloader.DefaultRepo, ModelDownloader.DefaultFile, ModelDownloader.DefaultFileSize) is { } cached)
            return cached;
        var console = StderrConsole();
        string path = "";
        Console.Error.WriteLine($"edgellm: no -m given and $EDGELLM_MODEL unset; fetching the default model {ModelDownloader.DefaultRepo}/{ModelDownloader.DefaultFile}");
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("stories260K.gguf", maxValue: ModelDownloader.DefaultFileSize);
                var progress = new SyncProgress<DownloadProgress>(p =>
                {
                    if (p.TotalBytes is long total && total > 0) task.MaxValue = total;
                    task.Value = p.BytesDone;
                });
                path = downloader.EnsureDefaultModelAsync(progress, CancellationToken.None).GetAwaiter().GetResult();
                task.Value = task.MaxValue;
            });
        return path;
    }

    /// <summary>A Spectre console that writes to stderr, so stdout carries only data.</summary>
    public static IAnsiConsole StderrConsole() =>
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
