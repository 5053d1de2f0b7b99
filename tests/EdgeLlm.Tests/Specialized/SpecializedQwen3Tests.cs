using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Specialized;
using EdgeLlm.Synth;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Specialized;

/// <summary>
/// The qwen3 specializations (per-head Q/K norms inside the fused Q/K/V pass, 128-wide heads on a
/// narrower stream) against the generic path. No shared model is a Qwen3, so the files come from
/// <see cref="ModelSynthesizer"/> in the shape of Specialized/Configs/syn-qwen3-*.json; and every
/// real-model config must agree with the <c>edgellm synth --like</c> shape of the same name, so
/// the synthetic benchmark files really take the specialized path.
/// </summary>
public sealed class SpecializedQwen3Tests : IDisposable
{
    /// <summary>syn-qwen3-*.json: 128 wide, 3 layers, 4 heads / 2 KV heads of 128 (query width 512), FFN 256, 400 tokens.</summary>
    private static readonly SynthShape SynQwen3 = new(
        "syn-qwen3", "syn qwen3", "qwen3", EmbeddingLength: 128, BlockCount: 3, HeadCount: 4, HeadCountKv: 2,
        FeedForwardLength: 256, VocabSize: 400, ContextLength: 256, RopeFreqBase: 1000000f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Qwen2Bpe, WriteHeadLengths: true, HeadLength: 128);

    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-spec-qwen3-" + Guid.NewGuid().ToString("N"));

    public SpecializedQwen3Tests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// Specialized vs generic logits over a 9-token batch and three decode steps: identical on both
    /// files (the fused pass runs the generic RmsNorm.Forward on each head, between the same bias and
    /// rope), and the specialization's run counter shows it ran.
    /// </summary>
    [Theory]
    [InlineData("F32", "syn-qwen3-f32")]
    [InlineData("Q4_0", "syn-qwen3-q4_0")]
    public void Qwen3_Specialized_MatchesGeneric(string type, string config)
    {
        string path = Path.Combine(_dir, config + ".gguf");
        ModelSynthesizer.Synthesize(SynQwen3, type, path, seed: 7);
        using var file = GgufFile.Open(path);
        using var spec = Model.Load(file);
        using var generic = Model.Load(file, new ModelLoadOptions { Generic = true });
        Assert.Equal("qwen3", spec.Config.Architecture);
        Assert.NotNull(spec.Specialization);
        Assert.Equal(config, spec.Specialization!.Name);
        Assert.Equal($"specialized: {config}", SpecializationRegistry.Describe(file));

        int[] prompt = [17, 250, 3, 99, 310, 42, 5, 128, 77];
        long before = spec.Specialization.Runs;
        float[] a = SpecializedEquivalenceTests.RunBatchThenSteps(spec, prompt);
        Assert.True(spec.Specialization.Runs >= before + 4, "the specialized forward pass did not run");
        float[] b = SpecializedEquivalenceTests.RunBatchThenSteps(generic, prompt);
        int differing = a.Zip(b).Count(p => p.First != p.Second);
        _out.WriteLine($"{config}: {differing}/{a.Length} logits differ, figure {GoldenCase.Figure(a, b):G4}");
        Assert.Equal(b, a);
    }

    /// <summary>A qwen3 file of another shape (here: an FFN of 384) runs generic and names the difference.</summary>
    [Fact]
    public void Qwen3_OtherShape_RunsGeneric()
    {
        string path = Path.Combine(_dir, "other.gguf");
        ModelSynthesizer.Synthesize(SynQwen3 with { FeedForwardLength = 384 }, "F32", path, seed: 7);
        using var file = GgufFile.Open(path);
        using var m = Model.Load(file);
        Assert.Null(m.Specialization);
        string d = SpecializationRegistry.Describe(file);
        _out.WriteLine(d);
        Assert.StartsWith("generic", d, StringComparison.Ordinal);
        Assert.Contains("feed-forward length 384, not 256", d, StringComparison.Ordinal);
    }

    /// <summary>
    /// Every real-model config (name = a synth shape's name + "-" + type) describes exactly the shape
    /// <c>edgellm synth --like</c> writes: the benchmark files of the README match their specializations.
    /// </summary>
    [Fact]
    public void RealConfigs_AgreeWithTheSynthShapes()
    {
        int checkedConfigs = 0;
        foreach (var s in SynthShapes.All)
        {
            foreach (var spec in SpecializationRegistry.All.Where(x => x.Name.StartsWith(s.Name + "-", StringComparison.Ordinal)))
            {
                var sh = spec.Shape;
                string where = $"{spec.Name} vs synth --like {s.Name}";
                Assert.True(s.Architecture == sh.Architecture, $"{where}: architecture");
                Assert.True(s.VocabSize == sh.Vocab && s.EmbeddingLength == sh.Dim && s.BlockCount == sh.LayerCount && s.FeedForwardLength == sh.FeedForward,
                    $"{where}: vocab/dim/layers/ffn");
                Assert.True(s.HeadCount == sh.Heads && s.HeadCountKv == sh.KvHeads && s.HeadDim == sh.HeadDim, $"{where}: heads");
                Assert.True(s.RmsEps == sh.RmsEps && s.RopeFreqBase == sh.RopeBase, $"{where}: eps / rope base");
                Assert.True(s.TiedEmbeddings == sh.Tied && s.QkvBias == sh.QkvBias && s.QkNorm == sh.QkNorm, $"{where}: tied / biases / head norms");
                Assert.True((s.RopeScaling is not null) == (sh.RopeFactors is not null), $"{where}: rope factors");
                checkedConfigs++;
            }
        }
        _out.WriteLine($"{checkedConfigs} real-model configs checked");
        Assert.True(checkedConfigs >= 15, $"only {checkedConfigs} real-model configs found");
    }
}
