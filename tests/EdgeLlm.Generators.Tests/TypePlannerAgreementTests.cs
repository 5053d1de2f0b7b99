using EdgeLlm.Generators.Model;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;
using Planner = EdgeLlm.Generators.TransformerGenerator.TypePlanner;

namespace EdgeLlm.Generators.Tests;

/// <summary>
/// The generator's re-expression of the quantize rules against the library's TensorTypePlanner
/// (what <c>edgellm quantize</c> does), tensor by tensor, on small GGUF files with shapes chosen to
/// hit the rules: K-quant fallbacks (rows not a multiple of 256), use_more_bits layers, GQA ≥ 4,
/// tied and untied output.
/// </summary>
public sealed class TypePlannerAgreementTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgellm-planner-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<int, int, int, int, int, bool> Shapes() => new()
    {
        // dim, ffn, layers, heads, kv heads, tied
        { 256, 768, 8, 8, 2, false },   // everything divides
        { 320, 288, 8, 4, 1, false },   // rows of 320 and 288: K-quants fall back; GQA 4
        { 320, 512, 9, 5, 5, true },    // tied; odd layer count
        { 96, 160, 3, 2, 1, true },     // rows of 96/160: no 256 blocks anywhere
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GeneratorPlan_EqualsLibraryPlan_ForEveryFileType(int dim, int ffn, int layers, int heads, int kvHeads, bool tied)
    {
        string path = WriteModel(dim, ffn, layers, heads, kvHeads, tied);
        using var file = GgufFile.Open(path);
        var shape = new Planner.Shape("llama", dim, ffn, layers, heads, kvHeads, dim / heads, tied);
        foreach (string ftypeName in Planner.FileTypeNames)
        {
            var ftype = LlamaFileTypes.Parse(ftypeName);
            var library = TensorTypePlanner.Plan(file, ftype, pure: false).ToDictionary(p => p.Tensor.Name, p => GgmlTypes.Name(p.Target));
            var ours = Planner.Plan(shape, ftypeName, pure: false, new Dictionary<string, string>());
            Assert.Equal(library["token_embd.weight"], ours.TokenEmbd);
            if (!tied) Assert.Equal(library["output.weight"], ours.Output);
            for (int il = 0; il < layers; il++)
            {
                var l = ours.Layers[il];
                string p = $"blk.{il}.";
                var expected = new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" }.Select(k => library[p + k + ".weight"]);
                Assert.Equal(expected, new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down });
            }
        }
    }

    /// <summary>The generator's copy of the type table agrees with GgmlTypes and the registered WeightFormats.</summary>
    [Fact]
    public void QuantSpecTable_AgreesWithLibrary()
    {
        foreach (string name in QuantSpec.WeightTypeNames)
        {
            var spec = QuantSpec.Get(name);
            var type = Enum.Parse<GgmlType>(name);
            Assert.Equal(GgmlTypes.Info(type).BlockSize, spec.BlockSize);
            Assert.Equal(GgmlTypes.Info(type).TypeSize, spec.TypeSize);
            Assert.True(WeightFormat.TryGet(type, out var fmt), name);
            Assert.Equal(GgmlTypes.Name(fmt.VecDotType), spec.VecDotType);
        }
    }

    private string WriteModel(int dim, int ffn, int layers, int heads, int kvHeads, bool tied)
    {
        const int vocab = 32;
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.Set("llama.embedding_length", dim);
        w.Set("llama.feed_forward_length", ffn);
        w.Set("llama.block_count", layers);
        w.Set("llama.attention.head_count", heads);
        w.Set("llama.attention.head_count_kv", kvHeads);
        w.Set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        void M(string name, int cols, int rows) => w.AddTensor(name, [cols, rows], new float[(long)cols * rows]);
        int hd = dim / heads;
        M("token_embd.weight", dim, vocab);
        if (!tied) M("output.weight", dim, vocab);
        w.AddTensor("output_norm.weight", [dim], new float[dim]);
        for (int il = 0; il < layers; il++)
        {
            string p = $"blk.{il}.";
            w.AddTensor(p + "attn_norm.weight", [dim], new float[dim]);
            M(p + "attn_q.weight", dim, heads * hd);
            M(p + "attn_k.weight", dim, kvHeads * hd);
            M(p + "attn_v.weight", dim, kvHeads * hd);
            M(p + "attn_output.weight", heads * hd, dim);
            w.AddTensor(p + "ffn_norm.weight", [dim], new float[dim]);
            M(p + "ffn_gate.weight", dim, ffn);
            M(p + "ffn_up.weight", dim, ffn);
            M(p + "ffn_down.weight", ffn, dim);
        }
        string path = Path.Combine(_dir, $"m-{dim}-{ffn}-{layers}-{heads}-{kvHeads}-{tied}.gguf");
        w.Write(path);
        return path;
    }
}
