using System.Security.Cryptography;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Synth;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Synth;

public sealed unsafe class ModelSynthesizerTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "edgellm-synth-tests-" + Guid.NewGuid().ToString("N"));

    /// <summary>A small Llama 2-style shape (SentencePiece vocabulary, untied output) whose rows divide into 256-value K-quant blocks.</summary>
    private static readonly SynthShape s_tinyLlama = new(
        "tiny-llama", "tiny llama", "llama", EmbeddingLength: 256, BlockCount: 2, HeadCount: 4, HeadCountKv: 2,
        FeedForwardLength: 512, VocabSize: 300, ContextLength: 128, RopeFreqBase: 10000f, RmsEps: 1e-5f,
        TiedEmbeddings: false, QkvBias: false, SynthVocabKind.SentencePiece);

    /// <summary>A small Qwen2-style shape: biases, tied embeddings.</summary>
    private static readonly SynthShape s_tinyQwen2 = new(
        "tiny-qwen2", "tiny qwen2", "qwen2", EmbeddingLength: 128, BlockCount: 2, HeadCount: 4, HeadCountKv: 2,
        FeedForwardLength: 384, VocabSize: 400, ContextLength: 256, RopeFreqBase: 1e6f, RmsEps: 1e-6f,
        TiedEmbeddings: true, QkvBias: true, SynthVocabKind.Qwen2Bpe);

    /// <summary>A small Llama 3-style shape: rope_freqs.weight, tied embeddings, BPE with 256 control tokens.</summary>
    private static readonly SynthShape s_tinyLlama3 = new(
        "tiny-llama3", "tiny llama3", "llama", EmbeddingLength: 128, BlockCount: 2, HeadCount: 2, HeadCountKv: 1,
        FeedForwardLength: 256, VocabSize: 700, ContextLength: 1024, RopeFreqBase: 500000f, RmsEps: 1e-5f,
        TiedEmbeddings: true, QkvBias: false, SynthVocabKind.Llama3Bpe,
        RopeScaling: new Llama3RopeScaling(32f, 1f, 4f, 8192), WriteHeadLengths: true);

    public ModelSynthesizerTests(ITestOutputHelper output)
    {
        _out = output;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Synth(SynthShape shape, string type, int seed = 7, int threads = 0, string? name = null)
    {
        string path = Path.Combine(_dir, name ?? $"{shape.Name}-{type}-{seed}-{threads}.gguf");
        ModelSynthesizer.Synthesize(shape, type, path, seed, threads: threads);
        return path;
    }

    // Published parameter counts (Hugging Face model cards / safetensors metadata): a check that
    // every tensor has its real shape.
    [Theory]
    [InlineData("tinyllama-1.1b", 1_100_048_384L)]
    [InlineData("llama-3.2-1b", 1_235_814_400L)]
    [InlineData("qwen2.5-0.5b", 494_032_768L)]
    [InlineData("smollm2-360m", 361_821_120L)]
    // Qwen3's safetensors count lm_head apart (751,632,384 and 2,031,739,904); tied, as here, these
    // are the cards' totals, whose non-embedding parts are the published 0.44B and 1.4B.
    [InlineData("qwen3-0.6b", 596_049_920L)]
    [InlineData("qwen3-1.7b", 1_720_574_976L)]
    [InlineData("phi-3.5-mini", 3_821_079_552L)]
    [InlineData("gemma-3-1b", 999_885_952L)]
    [InlineData("gemma-2-2b", 2_614_341_888L)]
    // EmbeddingGemma's card total: the Gemma 3 text model (302,863,104) and the two dense layers (2 × 768 × 3072)
    [InlineData("embeddinggemma-300m", 307_581_696L)]
    public void RealShapes_HaveThePublishedParameterCount(string name, long parameters)
    {
        var shape = SynthShapes.Find(name);
        shape.Validate();
        // rope_freqs.weight and Phi-3's rope_factors_long/short are llama.cpp's, not model parameters.
        long count = ModelSynthesizer.TensorLayout(shape).Where(t => !t.Name.StartsWith("rope_", StringComparison.Ordinal))
            .Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d));
        _out.WriteLine($"{name}: {count:N0} parameters");
        Assert.Equal(parameters, count);
    }

    [Theory]
    [InlineData("tinyllama-1.1b", "llama", 32000, "default")]
    [InlineData("llama-3.2-1b", "gpt2", 128256, "llama-bpe")]
    [InlineData("qwen2.5-0.5b", "gpt2", 151936, "qwen2")]
    [InlineData("smollm2-360m", "gpt2", 49152, "smollm")]
    [InlineData("qwen3-0.6b", "gpt2", 151936, "qwen2")]
    [InlineData("phi-3.5-mini", "llama", 32064, "default")]
    [InlineData("gemma-3-1b", "llama", 262144, "default")]
    [InlineData("gemma-2-2b", "llama", 256000, "default")]
    [InlineData("embeddinggemma-300m", "llama", 262144, "default")]
    public void RealVocabularies_HaveTheExactSize_AndUniqueTokens(string name, string model, int size, string pre)
    {
        var vocab = SynthVocab.Create(SynthShapes.Find(name));
        Assert.Equal(model, vocab.Model);
        Assert.Equal(pre, vocab.Pre);
        Assert.Equal(size, vocab.Tokens.Length);
        Assert.Equal(size, vocab.TokenTypes.Length);
        Assert.Equal(size, vocab.Tokens.Distinct(StringComparer.Ordinal).Count());
        Assert.All(vocab.TokenTypes, t => Assert.InRange(t, 1, 6));
        Assert.InRange(vocab.Bos, 0u, (uint)size - 1);
        Assert.InRange(vocab.Eos, 0u, (uint)size - 1);
        if (model == "llama")
        {
            Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], vocab.Tokens[..4]);
            Assert.Equal("<0xFF>", vocab.Tokens[258]);
            Assert.Equal(size, vocab.Scores!.Length);
        }
        else
        {
            // Every merge joins two existing tokens into a third.
            var ids = vocab.Tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i, StringComparer.Ordinal);
            Assert.NotEmpty(vocab.Merges!);
            foreach (var m in vocab.Merges!)
            {
                var parts = m.Split(' ');
                Assert.Equal(2, parts.Length);
                Assert.True(ids.ContainsKey(parts[0]) && ids.ContainsKey(parts[1]) && ids.ContainsKey(parts[0] + parts[1]), m);
            }
            // The newline byte (GPT-2 'Ċ') must exist: llama.cpp looks it up when loading.
            Assert.Contains("\u010A", ids.Keys);
        }
        _out.WriteLine($"{name}: {size} tokens, {vocab.Merges?.Length ?? 0} merges, bos {vocab.Bos}, eos {vocab.Eos}");
    }

    [Fact]
    public void File_HasExactShapesMetadataAndVocabulary()
    {
        string path = Synth(s_tinyLlama, "F32");
        using var f = GgufFile.Open(path);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(256, f.GetInt("llama.embedding_length"));
        Assert.Equal(2, f.GetInt("llama.block_count"));
        Assert.Equal(512, f.GetInt("llama.feed_forward_length"));
        Assert.Equal(4, f.GetInt("llama.attention.head_count"));
        Assert.Equal(2, f.GetInt("llama.attention.head_count_kv"));
        Assert.Equal(128, f.GetInt("llama.context_length"));
        Assert.Equal(64, f.GetInt("llama.rope.dimension_count"));
        Assert.Equal(300, f.GetInt("llama.vocab_size"));
        Assert.Equal(10000.0, f.GetFloat("llama.rope.freq_base")!.Value, 3);
        Assert.Equal(1e-5, f.GetFloat("llama.attention.layer_norm_rms_epsilon")!.Value, 9);
        Assert.Equal(0, f.GetInt("general.file_type"));
        Assert.Equal(2, f.GetInt("general.quantization_version"));
        Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));
        Assert.Equal(300, f.Metadata["tokenizer.ggml.tokens"].AsStringArray()!.Length);
        Assert.Equal(300, f.Metadata["tokenizer.ggml.scores"].AsFloatArray()!.Length);
        Assert.Equal(300, f.Metadata["tokenizer.ggml.token_type"].AsInt32Array()!.Length);

        Assert.Equal(new long[] { 256, 300 }, f.FindTensor("token_embd.weight")!.Dims);
        Assert.Equal(new long[] { 256, 300 }, f.FindTensor("output.weight")!.Dims);
        Assert.Equal(new long[] { 256 }, f.FindTensor("output_norm.weight")!.Dims);
        Assert.Equal(new long[] { 256, 256 }, f.FindTensor("blk.1.attn_q.weight")!.Dims);
        Assert.Equal(new long[] { 256, 128 }, f.FindTensor("blk.1.attn_k.weight")!.Dims);
        Assert.Equal(new long[] { 256, 128 }, f.FindTensor("blk.1.attn_v.weight")!.Dims);
        Assert.Equal(new long[] { 256, 256 }, f.FindTensor("blk.1.attn_output.weight")!.Dims);
        Assert.Equal(new long[] { 256, 512 }, f.FindTensor("blk.1.ffn_gate.weight")!.Dims);
        Assert.Equal(new long[] { 256, 512 }, f.FindTensor("blk.1.ffn_up.weight")!.Dims);
        Assert.Equal(new long[] { 512, 256 }, f.FindTensor("blk.1.ffn_down.weight")!.Dims);
        Assert.Null(f.FindTensor("blk.2.attn_q.weight"));
        Assert.Null(f.FindTensor("rope_freqs.weight"));
        Assert.Equal(3 + 2 * 9, f.Tensors.Count);
        Assert.All(f.Tensors, t => Assert.Equal(GgmlType.F32, t.Type));
    }

    [Fact]
    public void Qwen2AndLlama3Shapes_HaveBiasesTiedEmbeddingsAndRopeFactors()
    {
        using (var f = GgufFile.Open(Synth(s_tinyQwen2, "F16")))
        {
            Assert.Equal("qwen2", f.GetString("general.architecture"));
            Assert.Null(f.FindTensor("output.weight"));
            Assert.Equal(new long[] { 128 }, f.FindTensor("blk.0.attn_q.bias")!.Dims);
            Assert.Equal(new long[] { 64 }, f.FindTensor("blk.0.attn_k.bias")!.Dims);
            Assert.Equal(new long[] { 64 }, f.FindTensor("blk.0.attn_v.bias")!.Dims);
            Assert.Equal(GgmlType.F32, f.FindTensor("blk.0.attn_q.bias")!.Type);
            Assert.Equal(GgmlType.F32, f.FindTensor("blk.0.attn_norm.weight")!.Type);
            Assert.Equal(GgmlType.F16, f.FindTensor("blk.0.attn_q.weight")!.Type);
            Assert.Equal(GgmlType.F16, f.FindTensor("token_embd.weight")!.Type);
            Assert.Equal(1, f.GetInt("general.file_type"));
            Assert.Equal(1e-6, f.GetFloat("qwen2.attention.layer_norm_rms_epsilon")!.Value, 10);
            Assert.Equal("qwen2", f.GetString("tokenizer.ggml.pre"));
            Assert.Equal(400, f.Metadata["tokenizer.ggml.tokens"].AsStringArray()!.Length);
            Assert.NotNull(f.Metadata["tokenizer.ggml.merges"].AsStringArray());
        }
        using (var f = GgufFile.Open(Synth(s_tinyLlama3, "F32")))
        {
            Assert.Null(f.FindTensor("output.weight"));
            Assert.Equal(64, f.GetInt("llama.attention.key_length"));
            var rope = f.FindTensor("rope_freqs.weight")!;
            Assert.Equal(new long[] { 32 }, rope.Dims);
            var factors = MemoryMarshalFloats(f, rope);
            Assert.Equal(ModelSynthesizer.Llama3RopeFactors(500000f, 64, new Llama3RopeScaling(32f, 1f, 4f, 8192)), factors);
            Assert.Equal(700, f.Metadata["tokenizer.ggml.tokens"].AsStringArray()!.Length);
            Assert.Equal("<|begin_of_text|>", f.Metadata["tokenizer.ggml.tokens"].AsStringArray()![444]);
            Assert.Equal(444, f.GetInt("tokenizer.ggml.bos_token_id"));
        }
    }

    [Fact]
    public void Llama3RopeFactors_FollowTheFormula()
    {
        // Llama 3.2's head (64) and base (5e5): the highest frequencies are kept (factor 1), the
        // lowest divided by 32, and those between are interpolated, decreasing monotonically.
        var f = ModelSynthesizer.Llama3RopeFactors(500000f, 64, new Llama3RopeScaling(32f, 1f, 4f, 8192));
        _out.WriteLine(string.Join(", ", f.Select(x => x.ToString("G6", System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(32, f.Length);
        Assert.Equal(1f, f[0]);
        Assert.Equal(32f, f[^1]);
        for (int i = 1; i < f.Length; i++) Assert.True(f[i] >= f[i - 1], $"factor {i} decreases");
        Assert.Contains(f, x => x is > 1f and < 32f);
        // wavelength 2π·base^(2i/d) < 8192/4 = 2048  ⇔  factor 1.
        for (int i = 0; i < f.Length; i++)
        {
            double wavelen = 2 * Math.PI * Math.Pow(500000, 2.0 * i / 64);
            if (wavelen < 2000) Assert.Equal(1f, f[i]);
            if (wavelen > 8300) Assert.Equal(32f, f[i]);
        }
    }

    [Fact]
    public void SameSeed_SameBytes_WhateverTheThreadCount_OtherSeed_OtherBytes()
    {
        string a = Synth(s_tinyLlama, "Q4_K", seed: 3, threads: 1);
        string b = Synth(s_tinyLlama, "Q4_K", seed: 3, threads: 2);
        string c = Synth(s_tinyLlama, "Q4_K", seed: 4, threads: 2);
        Assert.Equal(Hash(a), Hash(b));
        Assert.NotEqual(Hash(a), Hash(c));
        Assert.Equal(new FileInfo(a).Length, new FileInfo(c).Length);
    }

    [Theory]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("Q4_0")]
    [InlineData("Q4_K")]
    [InlineData("Q6_K")]
    public void Weights_AreFinite_NoRowIsZero_AndScaledAsDocumented(string type)
    {
        using var f = GgufFile.Open(Synth(s_tinyLlama, type));
        foreach (var t in f.Tensors)
        {
            Assert.True(WeightFormat.TryGet(t.Type, out var fmt), $"{t.Name}: no reader for {t.Type}");
            long n = t.RowLength;
            var row = new float[n];
            double sumSq = 0;
            byte* p = f.GetTensorPointer(t);
            long rowBytes = GgmlTypes.Info(t.Type).RowBytes(n);
            for (long r = 0; r < t.RowCount; r++)
            {
                fixed (float* dst = row) fmt.DequantizeRow(p + r * rowBytes, dst, n);
                Assert.All(row, x => Assert.True(float.IsFinite(x), $"{t.Name} row {r}: {x}"));
                Assert.True(row.Any(x => x != 0), $"{t.Name} row {r} is all zero");
                sumSq += row.Sum(x => (double)x * x);
            }
            double rms = Math.Sqrt(sumSq / t.ElementCount);
            double expected = t.Name switch
            {
                _ when t.Name.EndsWith("norm.weight", StringComparison.Ordinal) => 1,
                "token_embd.weight" => 1,
                _ when t.Name.EndsWith("attn_output.weight", StringComparison.Ordinal) || t.Name.EndsWith("ffn_down.weight", StringComparison.Ordinal)
                    => 1 / Math.Sqrt(n) / Math.Sqrt(2 * s_tinyLlama.BlockCount),
                _ => 1 / Math.Sqrt(n),
            };
            // Quantization changes the RMS by a few percent; sampling (≥ 65k values) by < 1%.
            Assert.InRange(rms, expected * 0.9, expected * 1.1);
        }
    }

    [Theory]
    [InlineData("Q4_K", 15)]
    [InlineData("q5_k", 17)]
    [InlineData("Q3_K", 12)]
    public void PureGgmlType_GoesToEveryMatrix(string typeName, int fileType)
    {
        Assert.True(GgmlTypes.TryParse(typeName, out var type));
        using var f = GgufFile.Open(Synth(s_tinyLlama, typeName));
        Assert.Equal(fileType, f.GetInt("general.file_type"));
        foreach (var t in f.Tensors)
            Assert.Equal(t.Dims.Length == 1 ? GgmlType.F32 : type, t.Type);
        long expectedBytes = f.Tensors.Where(t => t.Dims.Length > 1).Sum(t => GgmlTypes.Info(type).RowBytes(t.ElementCount));
        Assert.Equal(expectedBytes, f.Tensors.Where(t => t.Dims.Length > 1).Sum(t => t.ByteSize));
    }

    // A file type gets exactly the tensor types llama-quantize would choose for the same model:
    // ModelQuantizer's own plan for the F32 synth of the same shape is the reference.
    [Theory]
    [InlineData("tiny-llama", "Q4_0", 2)]
    [InlineData("tiny-llama", "Q4_K_M", 15)]
    [InlineData("tiny-llama", "Q2_K", 10)]
    [InlineData("tiny-qwen2", "Q4_K_M", 15)]
    [InlineData("tiny-qwen2", "Q8_0", 7)]
    [InlineData("tiny-llama3", "Q5_K_M", 17)]
    [InlineData("tiny-llama3", "BF16", 32)]
    public void FileType_GetsLlamaQuantizesTensorTypes(string shapeName, string fileType, int fileTypeId)
    {
        var shape = new[] { s_tinyLlama, s_tinyQwen2, s_tinyLlama3 }.Single(s => s.Name == shapeName);
        string f32 = Synth(shape, "F32");
        var expected = ModelQuantizer.PlanTypes(f32, fileType).ToDictionary(p => p.Name, p => p.To);
        using var f = GgufFile.Open(Synth(shape, fileType));
        Assert.Equal(fileTypeId, f.GetInt("general.file_type"));
        Assert.Equal(expected.Count, f.Tensors.Count);
        foreach (var t in f.Tensors) Assert.True(expected[t.Name] == t.Type, $"{t.Name}: {t.Type}, llama-quantize's rules say {expected[t.Name]}");
        _out.WriteLine($"{shapeName} {fileType}: " + string.Join(", ", f.Tensors.GroupBy(t => t.Type).Select(g => $"{g.Count()} {g.Key}")));
    }

    [Fact]
    public void RowsThatDoNotDivideIntoBlocks_FallBackAsLlamaQuantizeDoes()
    {
        // 128- and 384-wide rows cannot hold 256-value K-quant blocks: a pure Q4_K falls back to Q5_0.
        using var f = GgufFile.Open(Synth(s_tinyQwen2, "Q4_K"));
        Assert.Equal(GgmlType.Q5_0, f.FindTensor("blk.0.attn_q.weight")!.Type);
        Assert.Equal(GgmlType.Q5_0, f.FindTensor("blk.0.ffn_down.weight")!.Type);
        Assert.Equal(GgmlType.Q5_0, f.FindTensor("token_embd.weight")!.Type);
        Assert.Equal(GgmlType.F32, f.FindTensor("blk.0.attn_q.bias")!.Type);
    }

    // The weights are scaled so that a forward pass stays finite and the logits have a sane
    // spread (no blow-up through the layers, no collapse to a constant).
    [Theory]
    [InlineData("tiny-llama", "F32")]
    [InlineData("tiny-llama", "Q4_0")]
    [InlineData("tiny-qwen2", "F16")]
    [InlineData("tiny-llama3", "Q8_0")]
    public void ForwardPass_GivesFiniteLogitsWithARealisticSpread(string shapeName, string type)
    {
        var shape = new[] { s_tinyLlama, s_tinyQwen2, s_tinyLlama3 }.Single(s => s.Name == shapeName);
        using var model = EdgeLlm.Models.Model.Load(Synth(shape, type));
        using var ctx = new EdgeLlm.Engine.InferenceContext(model, 64, threads: 2);
        var rng = new Random(5);
        var tokens = Enumerable.Range(0, 24).Select(_ => rng.Next(shape.VocabSize)).ToArray();
        var logits = ctx.Eval(tokens, allLogits: true);
        Assert.Equal(tokens.Length * shape.VocabSize, logits.Length);
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
        for (int p = 0; p < tokens.Length; p++)
        {
            var row = logits.AsSpan(p * shape.VocabSize, shape.VocabSize).ToArray();
            double mean = row.Average(), std = Math.Sqrt(row.Average(x => (x - mean) * (x - mean)));
            // Untied output N(0, 1/√embd) on a unit-RMS normed state: std ≈ 1. Tied N(0, 1) embeddings: std ≈ √embd.
            double expected = shape.TiedEmbeddings ? Math.Sqrt(shape.EmbeddingLength) : 1;
            Assert.InRange(std, expected / 3, expected * 3);
            if (p == tokens.Length - 1) _out.WriteLine($"{shapeName} {type}: logits std {std:F3} at the last position (expected ~{expected:F1})");
        }
    }

    [Fact]
    public void BadInput_IsRejectedWithAClearMessage()
    {
        var ex = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize("gpt-5", "Q4_K", Path.Combine(_dir, "x.gguf"), 1));
        Assert.Contains("tinyllama-1.1b", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(s_tinyLlama, "Q9_9", Path.Combine(_dir, "x.gguf"), 1));
        Assert.Contains("Q9_9", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(s_tinyLlama, "Q4_K_X", Path.Combine(_dir, "x.gguf"), 1));
        Assert.Contains("Q4_K_M", ex.Message); // lists the file types
        Assert.Throws<NotSupportedException>(() => ModelSynthesizer.Synthesize(s_tinyLlama, "IQ2_XXS", Path.Combine(_dir, "x.gguf"), 1));
        ex = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(s_tinyLlama with { HeadCount = 3 }, "F32", Path.Combine(_dir, "x.gguf"), 1));
        Assert.Contains("head count", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(s_tinyLlama with { VocabSize = 100 }, "F32", Path.Combine(_dir, "x.gguf"), 1));
        Assert.Contains("vocabulary size 100", ex.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "x.gguf")));
    }

    [Fact]
    public void Progress_ReportsEveryTensorInOrder()
    {
        var seen = new List<(int Done, int Total, string Name)>();
        ModelSynthesizer.Synthesize(s_tinyLlama, "F16", Path.Combine(_dir, "p.gguf"), 1, (d, t, n) => seen.Add((d, t, n)));
        using var f = GgufFile.Open(Path.Combine(_dir, "p.gguf"));
        Assert.Equal(f.Tensors.Select(t => t.Name), seen.Select(s => s.Name));
        Assert.Equal(Enumerable.Range(1, f.Tensors.Count), seen.Select(s => s.Done));
        Assert.All(seen, s => Assert.Equal(f.Tensors.Count, s.Total));
    }

    private static float[] MemoryMarshalFloats(GgufFile f, GgufTensorInfo t) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensorData(t)).ToArray();

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));
}
