namespace EdgeLlm.Tests;

/// <summary>
/// Locates ../shared (reference data made outside the project). Golden tests fail, never skip,
/// when it is missing.
/// </summary>
public static class SharedData
{
    private static readonly Lazy<string> s_root = new(FindRoot);

    public static string Root => s_root.Value;

    public static string Models => Path.Combine(Root, "models");
    public static string Golden => Path.Combine(Root, "golden");
    public static string Tokenizer => Path.Combine(Root, "tokenizer");
    public static string ChatTemplates => Path.Combine(Root, "chat_templates");

    public static string Model(string name) => Path.Combine(Models, name.EndsWith(".gguf", StringComparison.Ordinal) ? name : name + ".gguf");

    private static string FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("EDGELLM_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        // Walk up from the test binary to the repository root (the folder holding EdgeLlm.sln), then ../shared.
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        if (dir?.Parent is { } parent)
        {
            var shared = Path.Combine(parent.FullName, "shared");
            if (Directory.Exists(Path.Combine(shared, "models"))) return shared;
        }
        throw new DirectoryNotFoundException("../shared (reference models, golden logits, tokenizer suite) was not found beside the repository; set EDGELLM_SHARED to its path");
    }
}
