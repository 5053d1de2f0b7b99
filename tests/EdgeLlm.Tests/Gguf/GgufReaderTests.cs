using EdgeLlm.Gguf;
using Xunit;

namespace EdgeLlm.Tests.Gguf;

public class GgufReaderTests
{
    [Fact]
    public void Stories260K_ReadsHeaderMetadataAndTensors()
    {
        using var f = GgufFile.Open(SharedData.Model("stories260K"));
        Assert.Equal(3u, f.Version);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(64, f.GetInt("llama.embedding_length"));
        Assert.Equal(512, f.Metadata["tokenizer.ggml.tokens"].ArrayLength);
        var emb = f.FindTensor("token_embd.weight");
        Assert.NotNull(emb);
        Assert.Equal(new long[] { 64, 512 }, emb!.Dims);
        Assert.Equal(GgmlType.F32, emb.Type);
        Assert.Equal(64 * 512 * 4, f.GetTensorData(emb).Length);
    }
}
