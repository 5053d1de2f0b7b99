using System.CommandLine;
using System.Globalization;
using EdgeLlm.Engine;
using EdgeLlm.Models;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm logits</c>: raw little-endian float32 logits after every position, shape
/// [n_ids, n_vocab], row-major (the format of ../shared/golden/*.logits.f32).
/// </summary>
public static class LogitsCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids, fed as given (position 0 first)", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Output file", Required = true };
        var ctx = RunCommand.ContextOption();
        var threads = RunCommand.ThreadsOption();
        var backend = BackendOption.Create();
        var generic = new Option<bool>("--generic") { Description = "Run the generic forward pass even when a compile-time specialization matches" };
        var cache = new KvCacheFlags();
        var cmd = new Command("logits", "Write the logits after every position of a token sequence to a file") { model, ids, output, ctx, threads, backend, generic };
        foreach (var o in cache.All) cmd.Options.Add(o);
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            var cacheTypes = cache.Read(pr, pr.GetValue(backend));
            var tokens = ParseIds(pr.GetValue(ids)!);
            int ctxLen = pr.GetValue(ctx);
            int nThreads = pr.GetValue(threads);
            RunCommand.CheckContext(ctxLen);
            RunCommand.CheckThreads(nThreads);
            using var m = Model.Load(ModelResolver.Resolve(pr.GetValue(model)), new ModelLoadOptions { Generic = pr.GetValue(generic), RepackWeights = BackendOption.MayRunOnCpu(pr.GetValue(backend)) });
            foreach (var t in tokens)
                if (t < 0 || t >= m.Config.VocabSize) throw new InputException($"--ids: token id {t} is outside the vocabulary (0..{m.Config.VocabSize - 1})");
            if (tokens.Length > ctxLen) throw new InputException($"--ids: {tokens.Length} ids do not fit in the context of {ctxLen} (-c)");
            using var context = BackendOption.CreateContext(pr.GetValue(backend), m, ctxLen, nThreads, cacheTypes);
            float[] logits = context.Eval(tokens, allLogits: true);
            using (var fs = new FileStream(pr.GetValue(output)!, FileMode.Create, FileAccess.Write))
            {
                var bytes = new byte[logits.Length * 4];
                Buffer.BlockCopy(logits, 0, bytes, 0, bytes.Length);
                if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
                fs.Write(bytes);
            }
            Console.Error.WriteLine($"wrote [{tokens.Length}, {m.Config.VocabSize}] float32 logits to {pr.GetValue(output)}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    internal static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException("--ids: no token ids given");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"--ids: '{parts[i]}' (item {i + 1}) is not an integer token id");
        return ids;
    }
}
