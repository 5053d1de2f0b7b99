using System.Diagnostics;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// The official <c>openai</c> npm client against <c>edgellm serve</c>: tests/server/openai-client.mjs
/// (streamed and whole chat, a completion, the model list, a wrong key, an unknown model). Fails,
/// never skips, without node and npm (.ci/apt-packages and test.sh install them).
/// </summary>
public sealed class OpenAiClientTests(ITestOutputHelper output)
{
    [Fact]
    public void OfficialOpenAiClient_TalksToTheServer()
    {
        string dir = Path.Combine(ServerProcess.RepoRoot(), "tests", "server");
        // npm ci installs exactly package-lock.json's openai version (node_modules is not committed).
        // The registry is on the network: a failed install is tried again twice (a transient error is not the server's).
        var install = Run("npm", ["ci", "--no-audit", "--no-fund"], dir, TimeSpan.FromMinutes(5));
        for (int attempt = 2; attempt <= 3 && install.Code != 0; attempt++)
        {
            output.WriteLine($"npm ci failed ({install.Code}), attempt {attempt}:\n{install.Stderr}");
            Thread.Sleep(TimeSpan.FromSeconds(5 * attempt));
            install = Run("npm", ["ci", "--no-audit", "--no-fund"], dir, TimeSpan.FromMinutes(5));
        }
        Assert.True(install.Code == 0, $"npm ci failed ({install.Code}):\n{install.Stdout}\n{install.Stderr}");

        using var server = ServerProcess.Start("--api-key", ServerProcess.ApiKey, "-c", "256");
        var run = Run("node", ["openai-client.mjs", server.BaseUrl.ToString(), ServerProcess.ApiKey], dir, TimeSpan.FromMinutes(5));
        output.WriteLine(run.Stdout);
        Assert.True(run.Code == 0, $"openai-client.mjs failed ({run.Code}):\n{run.Stdout}\n{run.Stderr}\nserver log:\n{server.Log}");

        string line = run.Stdout.Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
        using var result = JsonDocument.Parse(line["RESULT ".Length..]);
        var r = result.RootElement;
        Assert.Equal("stories260K", r.GetProperty("model").GetString());
        string chat = r.GetProperty("chat").GetProperty("text").GetString()!;
        Assert.False(string.IsNullOrEmpty(chat));
        Assert.Equal(chat, r.GetProperty("stream").GetProperty("text").GetString());
        Assert.Equal(24, r.GetProperty("chat").GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", r.GetProperty("chat").GetProperty("finish").GetString());
        Assert.Equal("stop", r.GetProperty("completion").GetProperty("finish").GetString());
        Assert.Equal(401, r.GetProperty("authError").GetProperty("status").GetInt32());
        Assert.Equal("invalid_api_key", r.GetProperty("authError").GetProperty("code").GetString());
        string structured = r.GetProperty("structured").GetProperty("text").GetString()!;
        var schema = EdgeLlm.Sampling.JsonSchemaNode.Parse(JsonDocument.Parse(
            "{\"type\": \"object\", \"properties\": {\"animal\": {\"type\": \"string\", \"enum\": [\"cat\", \"dog\"]}, \"age\": {\"type\": \"integer\"}}, " +
            "\"required\": [\"animal\", \"age\"], \"additionalProperties\": false}").RootElement);
        Assert.True(EdgeLlm.Sampling.JsonConstraint.IsPrefix(System.Text.Encoding.UTF8.GetBytes(structured), schema), structured);
        string grammared = r.GetProperty("grammar").GetProperty("text").GetString()!;
        Assert.True(EdgeLlm.Sampling.GbnfGrammar.Parse("root ::= (\"yes\" | \"no\") \", \" [a-z]{1,8} \".\"").IsMatch(grammared), grammared);
        Assert.Equal(404, r.GetProperty("unknownModel").GetProperty("status").GetInt32());
        Assert.Equal("model_not_found", r.GetProperty("unknownModel").GetProperty("code").GetString());
        Assert.Equal(0, server.Stop());
    }

    private static (int Code, string Stdout, string Stderr) Run(string file, string[] args, string dir, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'{file}' could not be started ({e.Message}): the server tests need Node.js and npm (apt: nodejs npm; see .ci/apt-packages)", e);
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeout}");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
    }
}
