using System.Text;
using EdgeLlm.Sampling;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Cli;

/// <summary><c>edgellm run -j/--json-schema</c>: the generated text is one JSON object following the schema, as far as it goes.</summary>
public sealed class CliJsonSchemaTests(ITestOutputHelper output)
{
    private const string Schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\"}}, \"required\": [\"name\", \"age\"]}";

    [Theory]
    [InlineData(Schema)]
    [InlineData("{}")]
    public void Run_JsonSchema_ConstrainsTheText(string schema)
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "Once upon a time", "--temp", "0", "-n", "60", "-j", schema]);
        output.WriteLine(r.Stdout + r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("Once upon a time{", r.Stdout, StringComparison.Ordinal);
        string json = r.Stdout["Once upon a time".Length..^1]; // the prompt, then the text, then one newline
        var node = schema == "{}" ? null : JsonSchemaNode.Parse(System.Text.Json.JsonDocument.Parse(schema).RootElement);
        Assert.True(JsonConstraint.IsPrefix(Encoding.UTF8.GetBytes(json), node), json);
        if (r.Stderr.Contains("stopped: JSON object complete", StringComparison.Ordinal))
            Assert.True(JsonConstraint.IsCompleteObject(Encoding.UTF8.GetBytes(json), node), json);
        else Assert.Contains("stopped: reached -n 60", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"type\": \"object\", \"allOf\": []}", "--json-schema: schema.allOf must be an array of at least one schema")]
    [InlineData("{bad", "--json-schema is not valid JSON")]
    [InlineData("{\"type\": \"string\"}", "root must be an object schema")]
    public void Run_BadJsonSchema_IsAUsageError(string schema, string expected)
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "-j", schema]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }

    private const string ListGrammar = "# one to three items, then done\nroot ::= item{1,3} \"done\"\nitem ::= \"- \" [a-z]{1,8} (\" \" [a-z]{1,8})? \"\\n\"\n";

    /// <summary><c>run --grammar</c> and <c>--grammar-file</c>: the text is a sentence of the grammar, and completing it stops the run.</summary>
    [Theory]
    [InlineData(false, "0")]
    [InlineData(true, "0.8")]
    public void Run_Grammar_ConstrainsTheText(bool fromFile, string temp)
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgellm-grammar-{Environment.ProcessId}.gbnf");
        File.WriteAllText(path, ListGrammar);
        try
        {
            string[] grammarArgs = fromFile ? ["--grammar-file", path] : ["--grammar", ListGrammar];
            var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "Once upon a time", "--temp", temp, "--seed", "5", "-n", "80", .. grammarArgs]);
            output.WriteLine(r.Stdout + r.Stderr);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("stopped: grammar complete", r.Stderr, StringComparison.Ordinal);
            string text = r.Stdout["Once upon a time".Length..^1];
            Assert.True(GbnfGrammar.Parse(ListGrammar).IsMatch(text), text);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Token references from the CLI: <c>!&lt;[2]&gt;</c> takes five tokens other than &lt;/s&gt;, <c>&lt;[13]&gt;</c> the newline byte token, whatever the model prefers.</summary>
    [Fact]
    public void Run_GrammarTokenReferences_TakeWholeTokens()
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "Once upon", "--temp", "0", "-n", "20", "--grammar", "root ::= \" a\" (!<[2]>){5} <[13]>"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("Once upon a time, there was a\n\n", r.Stdout);
        Assert.Contains("stopped: grammar complete", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("generation: 7 tokens", r.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "--grammar", "root ::= item" }, "--grammar: grammar line 1, column 10: rule 'item' is used but never defined")]
    [InlineData(new[] { "--grammar", "root ::= x\nx ::= x \"a\" | \"b\"" }, "rule 'x' is left-recursive")]
    [InlineData(new[] { "--grammar", "root ::= \"a\"", "--grammar-file", "g.gbnf" }, "give either --grammar or --grammar-file")]
    [InlineData(new[] { "--grammar", "root ::= \"a\"", "-j", "{}" }, "give either --json-schema or a grammar")]
    [InlineData(new[] { "--grammar", "root ::= <|im_end|>" }, "the grammar's token reference <|im_end|> is not one token of this model's vocabulary")]
    public void Run_BadGrammar_IsAUsageError(string[] args, string expected)
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", .. args]);
        output.WriteLine(r.Stderr);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_MissingGrammarFile_IsAnInputError()
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "--grammar-file", "/nonexistent/g.gbnf"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--grammar-file /nonexistent/g.gbnf", r.Stderr, StringComparison.Ordinal);
    }
}
