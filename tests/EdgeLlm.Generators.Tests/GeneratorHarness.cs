using System.Collections.Immutable;
using EdgeLlm.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators.Tests;

/// <summary>Runs <see cref="TransformerGenerator"/> in-process over in-memory config files.</summary>
internal static class GeneratorHarness
{
    /// <summary>The repository root (the folder holding EdgeLlm.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new DirectoryNotFoundException("EdgeLlm.sln not found above the test binary");
        }
    }

    public static string ConfigPath(string name) => Path.Combine(RepoRoot, "src", "EdgeLlm", "Specialized", "Configs", name + ".json");

    public static CSharpCompilation Compilation(params string[] sources) =>
        CSharpCompilation.Create("GeneratorTest",
            sources.Select(s => CSharpSyntaxTree.ParseText(s)),
            [MetadataReference.CreateFromFile(typeof(object).Assembly.Location)],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));

    public static GeneratorDriver Driver(IEnumerable<AdditionalText> files, string? selection = null, bool track = true)
    {
        var globals = new Dictionary<string, string>();
        if (selection is not null) globals["build_property.EdgeLlmSpecializations"] = selection;
        globals["build_property.EdgeLlmIsa"] = "test ISA";
        return Driver(files, globals, track);
    }

    /// <summary>A driver whose build properties are exactly <paramref name="globals"/> (keys as <c>build_property.NAME</c>).</summary>
    public static GeneratorDriver Driver(IEnumerable<AdditionalText> files, Dictionary<string, string> globals, bool track = true)
    {
        return CSharpGeneratorDriver.Create(
            [new TransformerGenerator().AsSourceGenerator()],
            files,
            parseOptions: new CSharpParseOptions(LanguageVersion.Latest),
            optionsProvider: new Options(globals),
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: track));
    }

    /// <summary>Runs once over <paramref name="configs"/> (path → JSON text): generated sources and diagnostics.</summary>
    public static GeneratorRunResult Run(params (string Path, string Json)[] configs) => Run(null, configs);

    public static GeneratorRunResult Run(string? selection, params (string Path, string Json)[] configs)
    {
        var driver = Driver(configs.Select(c => (AdditionalText)new Config(c.Path, c.Json)), selection);
        driver = driver.RunGenerators(Compilation("class C { }"));
        return driver.GetRunResult().Results.Single();
    }

    /// <summary>An AdditionalFiles item marked EdgeLlmConfig="true".</summary>
    public sealed class Config(string path, string text) : AdditionalText
    {
        public override string Path { get; } = path;

        public override SourceText GetText(CancellationToken cancellationToken = default) => SourceText.From(text);
    }

    /// <summary>Global build properties, and EdgeLlmConfig="true" on every additional file.</summary>
    private sealed class Options(Dictionary<string, string> globals) : AnalyzerConfigOptionsProvider
    {
        private static readonly Opts s_file = new(new() { ["build_metadata.AdditionalFiles.EdgeLlmConfig"] = "true" });

        public override AnalyzerConfigOptions GlobalOptions { get; } = new Opts(globals);

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => new Opts([]);

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => s_file;
    }

    private sealed class Opts(Dictionary<string, string> values) : AnalyzerConfigOptions
    {
        public override bool TryGetValue(string key, out string value) => values.TryGetValue(key, out value!);
    }
}
