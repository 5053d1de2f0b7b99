using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Native;

/// <summary>
/// The C ABI end to end: tests/native/run.sh publishes libedgellm.so with NativeAOT, checks its exports
/// against edgellm.h, compiles and runs the C test (the greedy story through the streaming callback and
/// every documented error path, the Vulkan backend against the CPU, and again with no Vulkan driver visible)
/// and the README's Python example. Takes a minute or two (the AOT compile).
/// Fails, never skips, when the C toolchain or ../shared is missing (run.sh says what to install).
/// </summary>
public sealed partial class NativeAbiTests(ITestOutputHelper output)
{
    [Fact]
    public void RunSh_PublishesLibrary_AndTheCTestPasses()
    {
        string root = RepositoryRoot();
        string outDir = Path.Combine(root, "artifacts", "native-test");
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = root,
        };
        psi.ArgumentList.Add(Path.Combine(root, "tests", "native", "run.sh"));
        psi.ArgumentList.Add(outDir);
        psi.Environment["EDGELLM_SHARED"] = SharedData.Root; // throws (fails the test) when ../shared is missing
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        // The C test's mixture of experts, written here: run.sh would otherwise `dotnet run` the CLI, a build of
        // src/EdgeLlm racing the other test assemblies that use it (CI once failed on "The build failed").
        Directory.CreateDirectory(outDir);
        string moe = Path.Combine(outDir, "granite-moe-q4_0.gguf");
        EdgeLlm.Synth.ModelSynthesizer.Synthesize(EdgeLlm.Synth.SynthShapes.Granite30_1B_A400M, "Q4_0", moe, seed: 1);
        psi.Environment["EDGELLM_TEST_MOE"] = moe;
        string bert = Path.Combine(outDir, "minilm-q8_0.gguf");
        EdgeLlm.Synth.BertSynthesizer.Write(EdgeLlm.Synth.BertSynthesizer.Find("all-minilm-l6-v2")!, "Q8_0", bert);
        psi.Environment["EDGELLM_TEST_BERT"] = bert;
        string reranker = Path.Combine(outDir, "ms-marco-f32.gguf"); // (F32: no int8 activations whose roundings flip with the kernel path)
        EdgeLlm.Synth.BertSynthesizer.Write(EdgeLlm.Synth.BertSynthesizer.Find("ms-marco-minilm-l6-v2")!, "F32", reranker);
        psi.Environment["EDGELLM_TEST_RERANKER"] = reranker;
        using (var encoder = EdgeLlm.Models.BertModel.Load(reranker, threads: 2))
        {
            float[] scores = new EdgeLlm.Engine.TextReranker(encoder, EdgeLlm.Tokenizers.Tokenizer.FromGguf(encoder.File))
                .Scores("where does the lazy dog sleep", ["the quick brown fox", "the lazy dog sleeps all day", "hello world"]);
            psi.Environment["EDGELLM_TEST_RERANK_SCORES"] = string.Join(' ', scores.Select(x => x.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        }
        // EmbeddingGemma (F32: no int8 activations whose roundings flip with the kernel path): the first values TextEmbedder gives
        string gemmaEmbedding = EdgeLlm.Tests.Engine.BertLlamaCppTests.WriteTinyEmbeddingGemma(outDir, "F32");
        psi.Environment["EDGELLM_TEST_EMBEDDING_GEMMA"] = gemmaEmbedding;
        using (var encoder = EdgeLlm.Models.BertModel.Load(gemmaEmbedding, threads: 2))
        {
            float[] v = new EdgeLlm.Engine.TextEmbedder(encoder, EdgeLlm.Tokenizers.Tokenizer.FromGguf(encoder.File)).Embed("task: search result | query: hello world");
            psi.Environment["EDGELLM_TEST_EMBEDDING_GEMMA_VALUES"] = string.Join(' ', v.Take(4).Select(x => x.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        }
        string decoderReranker = EdgeLlm.Tests.Engine.DecoderRerankerTests.WriteTinyQwen3Reranker(outDir);
        psi.Environment["EDGELLM_TEST_DECODER_RERANKER"] = decoderReranker;
        using (var model = EdgeLlm.Models.Model.Load(decoderReranker))
        using (var context = new EdgeLlm.Engine.InferenceContext(model, 256, threads: 2))
        {
            float[] scores = new EdgeLlm.Engine.TextReranker(context, EdgeLlm.Tokenizers.Tokenizer.FromGguf(model.File))
                .Scores("where does the dog sleep", ["the quick brown fox", "hello world", "a lazy dog sleeps"]);
            psi.Environment["EDGELLM_TEST_DECODER_RERANK_SCORES"] = string.Join(' ', scores.Select(x => x.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        }

        var text = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("tests/native/run.sh ran for more than 20 minutes:\n" + text);
        }
        p.WaitForExit(); // drain the asynchronous readers
        string log = text.ToString();
        output.WriteLine(log);

        Assert.True(p.ExitCode == 0, $"tests/native/run.sh exited with {p.ExitCode}:\n{log}");
        var summary = Summary().Match(log);
        Assert.True(summary.Success, "the C test printed no 'N passed, N failed' line");
        Assert.Equal("0", summary.Groups[2].Value);
        Assert.True(int.Parse(summary.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 50, "the C test ran fewer checks than expected");
        Assert.Contains("PASS greedy story equals llama.cpp's greedy_text", log, StringComparison.Ordinal);
        Assert.Contains("PASS VULKAN greedy generation (48 tokens) equals the CPU's", log, StringComparison.Ordinal);
        Assert.Contains("PASS no driver: AUTO runs on the CPU", log, StringComparison.Ordinal);
        Assert.Contains("PASS moe: the same logits on 1 and 2 threads", log, StringComparison.Ordinal);
        Assert.Contains("(written by the caller: ", log, StringComparison.Ordinal);
        Assert.Contains("PASS encoder_embed: WordPiece lower-cases and splits punctuation", log, StringComparison.Ordinal);
        Assert.Contains("PASS model_load refuses an encoder, naming edgellm_encoder_load", log, StringComparison.Ordinal);
        Assert.Contains("PASS gemma-embedding: encoder_embed gives TextEmbedder's vector", log, StringComparison.Ordinal);
        File.Delete(moe);
        File.Delete(bert);
        Assert.Contains("run.sh: all native checks passed", log, StringComparison.Ordinal);
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeLlm.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("EdgeLlm.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"^(\d+) passed, (\d+) failed$", RegexOptions.Multiline)]
    private static partial Regex Summary();
}
