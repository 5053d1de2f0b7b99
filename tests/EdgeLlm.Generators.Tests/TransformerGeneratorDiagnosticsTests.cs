using System.Text.Json.Nodes;
using Microsoft.CodeAnalysis;
using Xunit;

namespace EdgeLlm.Generators.Tests;

/// <summary>Every ELLM1xxx diagnostic, at its place in the config file; bad configs never crash the generator.</summary>
public class TransformerGeneratorDiagnosticsTests
{
    private const string Path = "/configs/test.json";

    /// <summary>A valid config (the syn-llama shape, Q4_0).</summary>
    private static JsonObject Valid() => JsonNode.Parse("""
        {
          "architectures": ["LlamaForCausalLM"],
          "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
          "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 512,
          "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
          "edgellm": { "name": "test", "weight_type": "Q4_0" }
        }
        """)!.AsObject();

    private static (GeneratorRunResult Result, string Text) Run(JsonObject config)
    {
        string text = config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        return (GeneratorHarness.Run((Path, text)), text);
    }

    /// <summary>Asserts exactly one diagnostic <paramref name="id"/>, located at <paramref name="spanText"/> in the file, and no output.</summary>
    private static Diagnostic Single(GeneratorRunResult r, string text, string id, string? spanText)
    {
        Assert.Null(r.Exception);
        var d = Assert.Single(r.Diagnostics, x => x.Id == id);
        Assert.Equal(DiagnosticSeverity.Error, d.Severity);
        if (spanText is not null)
        {
            Assert.Equal(Path, d.Location.GetLineSpan().Path);
            Assert.Equal(spanText, text.Substring(d.Location.SourceSpan.Start, d.Location.SourceSpan.Length));
        }
        Assert.Empty(r.GeneratedSources);
        return d;
    }

    [Fact]
    public void ValidConfig_GeneratesOneSource_NoDiagnostics()
    {
        var (r, _) = Run(Valid());
        Assert.Null(r.Exception);
        Assert.Empty(r.Diagnostics);
        Assert.Equal("Test.Transformer.g.cs", Assert.Single(r.GeneratedSources).HintName);
    }

    [Fact]
    public void ELLM1001_InvalidJson_PointsAtTheBadCharacter()
    {
        const string text = "{ \"hidden_size\": 256, }";
        var r = GeneratorHarness.Run((Path, text));
        var d = Single(r, text, "ELLM1001", "}");
        Assert.Contains("expected a member name", d.GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1002_MissingField()
    {
        var c = Valid();
        c.Remove("vocab_size");
        var (r, text) = Run(c);
        var d = Single(r, text, "ELLM1002", "{");
        Assert.Contains("'vocab_size'", d.GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1002_MissingEdgeLlmSection()
    {
        var c = Valid();
        c.Remove("edgellm");
        var (r, text) = Run(c);
        Assert.Contains("'edgellm'", Single(r, text, "ELLM1002", "{").GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1003_WrongFieldType()
    {
        var c = Valid();
        c["hidden_size"] = "256";
        var (r, text) = Run(c);
        var d = Single(r, text, "ELLM1003", "\"256\"");
        Assert.Equal("Field 'hidden_size' must be a number, but is a string", d.GetMessage());
    }

    [Fact]
    public void ELLM1003_FractionalInteger()
    {
        var c = Valid();
        c["num_hidden_layers"] = 4.5;
        var (r, text) = Run(c);
        Single(r, text, "ELLM1003", "4.5");
    }

    [Fact]
    public void ELLM1004_UnknownArchitecture()
    {
        var c = Valid();
        c["architectures"] = new JsonArray("MistralForCausalLM");
        var (r, text) = Run(c);
        Single(r, text, "ELLM1004", "\"MistralForCausalLM\"");
    }

    [Fact]
    public void ELLM1005_UnknownWeightType()
    {
        var c = Valid();
        c["edgellm"]!["weight_type"] = "Q4_X";
        var (r, text) = Run(c);
        Single(r, text, "ELLM1005", "\"Q4_X\"");
    }

    [Fact]
    public void ELLM1005_UnknownOverrideType()
    {
        var c = Valid();
        c["edgellm"]!["overrides"] = new JsonObject { ["ffn_down"] = "Q9_9" };
        var (r, text) = Run(c);
        Single(r, text, "ELLM1005", "\"Q9_9\"");
    }

    [Fact]
    public void ELLM1006_HeadsDoNotDivideHiddenSize()
    {
        var c = Valid();
        c["num_attention_heads"] = 6;
        c["num_key_value_heads"] = 2;
        var (r, text) = Run(c);
        var d = Single(r, text, "ELLM1006", "6");
        Assert.Contains("hidden_size (256) is not a multiple of num_attention_heads (6)", d.GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1006_KvHeadsDoNotDivideHeads()
    {
        var c = Valid();
        c["num_key_value_heads"] = 3;
        var (r, text) = Run(c);
        Single(r, text, "ELLM1006", "3");
    }

    [Fact]
    public void ELLM1007_OverrideRowNotMultipleOfBlock()
    {
        var c = Valid();
        c["intermediate_size"] = 172;
        c["edgellm"]!["overrides"] = new JsonObject { ["ffn_down"] = "Q8_0" };
        var (r, text) = Run(c);
        var d = Single(r, text, "ELLM1007", "\"Q8_0\"");
        Assert.Contains("rows of 172 values", d.GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1007_PureTypeRowNotMultipleOfBlock()
    {
        var c = Valid();
        c["intermediate_size"] = 172;
        c["edgellm"]!["pure"] = true;
        var (r, text) = Run(c);
        Single(r, text, "ELLM1007", "\"Q4_0\"");
    }

    [Fact]
    public void ELLM1008_UnknownTensorKind()
    {
        var c = Valid();
        c["edgellm"]!["overrides"] = new JsonObject { ["ffn_sideways"] = "F32" };
        var (r, text) = Run(c);
        Single(r, text, "ELLM1008", "\"ffn_sideways\"");
    }

    [Fact]
    public void ELLM1009_UnsupportedRopeScaling()
    {
        var c = Valid();
        c["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 };
        var (r, text) = Run(c);
        Single(r, text, "ELLM1009", "\"yarn\"");
    }

    [Fact]
    public void ELLM1010_SelectionNamesNoConfig()
    {
        var r = GeneratorHarness.Run("test;nonexistent-model", (Path, Valid().ToJsonString()));
        Assert.Null(r.Exception);
        var d = Assert.Single(r.Diagnostics);
        Assert.Equal("ELLM1010", d.Id);
        Assert.Contains("'nonexistent-model'", d.GetMessage(), StringComparison.Ordinal);
        Assert.Single(r.GeneratedSources); // "test" is still generated
    }

    [Fact]
    public void Selection_GeneratesOnlyTheNamedConfigs()
    {
        var a = Valid();
        var b = Valid();
        b["edgellm"]!["name"] = "other";
        var r = GeneratorHarness.Run("other", ("/c/a.json", a.ToJsonString()), ("/c/b.json", b.ToJsonString()));
        Assert.Empty(r.Diagnostics);
        Assert.Equal("Other.Transformer.g.cs", Assert.Single(r.GeneratedSources).HintName);
    }

    [Fact]
    public void ELLM1011_DuplicateName()
    {
        var r = GeneratorHarness.Run(("/c/a.json", Valid().ToJsonString()), ("/c/b.json", Valid().ToJsonString()));
        Assert.Null(r.Exception);
        Assert.Equal("ELLM1011", Assert.Single(r.Diagnostics).Id);
        Assert.Empty(r.GeneratedSources);
    }

    [Fact]
    public void ELLM1012_ValueOutOfRange()
    {
        var c = Valid();
        c["num_hidden_layers"] = 0;
        var (r, text) = Run(c);
        Single(r, text, "ELLM1012", "0");
    }

    [Fact]
    public void ELLM1012_Qwen3WithAttentionBias()
    {
        var c = Valid();
        c["architectures"] = new JsonArray("Qwen3ForCausalLM");
        c["attention_bias"] = true;
        var (r, text) = Run(c);
        var d = Single(r, text, "ELLM1012", "true");
        Assert.Contains("qwen3", d.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void Qwen3_IsAnArchitecture_WithHeadNormsAndNoBiases()
    {
        var c = Valid();
        c["architectures"] = new JsonArray("Qwen3ForCausalLM");
        c["head_dim"] = 64; // 8 × 64 = 512 query rows on a 256-wide stream, as Qwen3's 128-wide heads
        c["attention_bias"] = false;
        var (r, _) = Run(c);
        Assert.Null(r.Exception);
        Assert.Empty(r.Diagnostics);
        string src = Assert.Single(r.GeneratedSources).SourceText.ToString();
        Assert.Contains("architecture qwen3:", src, StringComparison.Ordinal);
        Assert.Contains("8 heads / 2 KV heads of 64", src, StringComparison.Ordinal);
        Assert.Contains("QkNorm = true,", src, StringComparison.Ordinal);
        Assert.Contains("QkvBias = false, RopeNeox = true", src, StringComparison.Ordinal);
        Assert.Contains("Norm: w.QNorm", src, StringComparison.Ordinal);
        Assert.Contains("Norm: w.KNorm", src, StringComparison.Ordinal);
        Assert.Contains("headNormEps: RmsEps", src, StringComparison.Ordinal);
        Assert.Contains("private const int QLen = 512;", src, StringComparison.Ordinal);
    }

    [Fact]
    public void ELLM1012_NegativeEpsilon()
    {
        var c = Valid();
        c["rms_norm_eps"] = -1e-5;
        var (r, text) = Run(c);
        Single(r, text, "ELLM1012", "-1E-05");
    }

    [Fact]
    public void SeveralProblems_AllReported()
    {
        var c = Valid();
        c["hidden_size"] = "x";
        c.Remove("vocab_size");
        c["edgellm"]!["weight_type"] = "nope";
        var (r, _) = Run(c);
        Assert.Null(r.Exception);
        Assert.Equal(["ELLM1002", "ELLM1003", "ELLM1005"], r.Diagnostics.Select(d => d.Id).Order().ToArray());
    }

    [Theory]
    [InlineData("")]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("{\"architectures\": []}")]
    [InlineData("{\"edgellm\": 5}")]
    [InlineData("\"\\u12\"")]
    [InlineData("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")]
    [InlineData("{\"hidden_size\": 1e999}")]
    public void Garbage_NeverCrashes(string text)
    {
        var r = GeneratorHarness.Run((Path, text));
        Assert.Null(r.Exception);
        Assert.NotEmpty(r.Diagnostics);
        Assert.All(r.Diagnostics, d => Assert.StartsWith("ELLM1", d.Id, StringComparison.Ordinal));
        Assert.Empty(r.GeneratedSources);
    }
}
