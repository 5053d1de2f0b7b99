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
    [InlineData("{\"type\": \"object\", \"allOf\": []}", "--json-schema: schema.allOf is not supported")]
    [InlineData("{bad", "--json-schema is not valid JSON")]
    [InlineData("{\"type\": \"string\"}", "root must be an object schema")]
    public void Run_BadJsonSchema_IsAUsageError(string schema, string expected)
    {
        var r = CliRunner.Run(["run", "-m", SharedData.Model("stories260K"), "-p", "x", "-j", schema]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }
}
