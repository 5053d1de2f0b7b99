using EdgeLlm.Gguf;
using EdgeLlm.Models;
using Xunit;

namespace EdgeLlm.Tests.Models;

public class ModelLoadTests
{
    private static ModelLoadException LoadFails(TinyModelFile spec, ModelLoadOptions? options = null)
    {
        using var f = spec.Write();
        return Assert.Throws<ModelLoadException>(() => Model.Load(f.Path, options).Dispose());
    }

    [Fact]
    public void Stories260K_ConfigReadFromMetadata()
    {
        using var m = Model.Load(SharedData.Model("stories260K"));
        var c = m.Config;
        Assert.Equal("llama", c.Architecture);
        Assert.Equal((512, 64, 5, 172, 8, 4, 8, 8), (c.VocabSize, c.EmbeddingLength, c.BlockCount, c.FeedForwardLength, c.HeadCount, c.HeadCountKv, c.HeadDim, c.RopeDimensionCount));
        Assert.Equal(10000f, c.RopeFreqBase);
        Assert.Equal(1e-5f, c.RmsEps);
        Assert.Equal(128, c.TrainingContextLength);
        Assert.False(c.TiedEmbeddings);
        Assert.False(c.RopeNeox);
        Assert.False(c.HasQkvBias);
        Assert.False(c.HasRopeFrequencyFactors);
    }

    [Fact]
    public void Qwen2_ConfigHasNeoxRopeBiasesAndTiedEmbeddings()
    {
        using var m = Model.Load(SharedData.Model("syn-qwen2-f32"));
        var c = m.Config;
        Assert.Equal("qwen2", c.Architecture);
        Assert.Equal((4, 2, 64), (c.HeadCount, c.HeadCountKv, c.HeadDim));
        Assert.Equal(1e6f, c.RopeFreqBase);
        Assert.True(c.TiedEmbeddings);
        Assert.True(c.RopeNeox);
        Assert.True(c.HasQkvBias);
    }

    [Fact]
    public void CraftedModel_LoadsAndEvaluates()
    {
        foreach (var arch in new[] { "llama", "qwen2" })
        {
            using var f = new TinyModelFile { Architecture = arch }.Write();
            using var m = Model.Load(f.Path);
            using var ctx = new EdgeLlm.Engine.InferenceContext(m, 16, threads: 2);
            float[] logits = ctx.Eval([1, 2, 3]);
            Assert.Equal(TinyModelFile.Vocab, logits.Length);
            Assert.All(logits, x => Assert.True(float.IsFinite(x)));
        }
    }

    [Fact]
    public void UnknownArchitecture_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Architecture = "mamba9" });
        Assert.Contains("architecture 'mamba9' is not supported", e.Message);
    }

    [Fact]
    public void MissingTensor_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Omit = "blk.1.ffn_up.weight" });
        Assert.Equal("tensor blk.1.ffn_up.weight is missing from the model file", e.Message);
    }

    [Fact]
    public void Qwen2_MissingBias_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Architecture = "qwen2", Omit = "blk.0.attn_k.bias" });
        Assert.Contains("blk.0.attn_k.bias", e.Message);
    }

    [Fact]
    public void Qwen3_LoadsWithItsHeadNorms_AndNamesAMissingOrWrongOne()
    {
        using (var f = new TinyModelFile { Architecture = "qwen3" }.Write())
        using (var m = Model.Load(f.Path))
        {
            Assert.Equal("qwen3", m.Config.Architecture);
            Assert.True(m.Config.HasQkNorm && m.Config.RopeNeox && !m.Config.HasQkvBias);
        }
        var e = LoadFails(new TinyModelFile { Architecture = "qwen3", Omit = "blk.1.attn_k_norm.weight" });
        Assert.Equal("tensor blk.1.attn_k_norm.weight is missing from the model file", e.Message);
        e = LoadFails(new TinyModelFile { Architecture = "qwen3", Reshape = ("blk.0.attn_q_norm.weight", [32]) });
        Assert.Contains("blk.0.attn_q_norm.weight", e.Message);
        Assert.Contains("key_length", e.Message);
    }

    [Fact]
    public void WrongShape_NamesTensorAndBothShapes()
    {
        var e = LoadFails(new TinyModelFile { Reshape = ("blk.0.attn_k.weight", [256, 64]) });
        Assert.Contains("tensor blk.0.attn_k.weight has shape [256, 64], but the metadata implies [256, 128]", e.Message);
        Assert.Contains("head_count_kv", e.Message);
    }

    [Fact]
    public void UnsupportedType_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { Retype = ("blk.0.attn_q.weight", GgmlType.IQ2_XXS) });
        Assert.Equal("tensor blk.0.attn_q.weight has type IQ2_XXS, which EdgeLlm does not support", e.Message);
    }

    [Fact]
    public void MissingMetadataKey_IsNamed()
    {
        var e = LoadFails(new TinyModelFile { OmitKey = "llama.block_count" });
        Assert.Equal("metadata key llama.block_count is missing", e.Message);
    }

    [Fact]
    public void ModelThatCannotFit_IsRefusedBeforeLoading()
    {
        // A KV cache for 2^30 tokens (2 layers × 128 values × f16 × K and V = 1 TiB) fits nowhere.
        var e = LoadFails(new TinyModelFile(), new ModelLoadOptions { ContextLength = 1 << 30 });
        Assert.Contains("does not fit in memory", e.Message);
    }

    [Fact]
    public void LoadFromGgufFile_LeavesFileOpen()
    {
        using var f = new TinyModelFile().Write();
        using var file = GgufFile.Open(f.Path);
        Model.Load(file).Dispose();
        Assert.NotNull(file.FindTensor("token_embd.weight"));
        Assert.Equal(TinyModelFile.Embd * 4, file.GetTensorData(file.FindTensor("output_norm.weight")!).Length);
    }

    [Fact]
    public void VocabularyMismatch_NamesTheKey()
    {
        var e = LoadFails(new TinyModelFile { Reshape = ("token_embd.weight", [256, 40]) });
        Assert.Contains("tensor token_embd.weight has shape [256, 40], but the metadata implies [256, 32]", e.Message);
        Assert.Contains("llama.vocab_size", e.Message);
    }
}
