using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models.Blocks;

namespace EdgeLlm.Models;

/// <summary>
/// The <c>llama</c> architecture (Llama 2 and 3, TinyLlama, Mistral, SmolLM2 and others that
/// llama.cpp converts to it): pre-norm blocks of RMSNorm → grouped-query attention with "normal"
/// rope (adjacent pairs; the converter permutes Q/K rows for it) → RMSNorm → SwiGLU, no biases.
/// Llama 3.1+ files carry <c>rope_freqs.weight</c>, which divides each rotary frequency.
/// Follows llama.cpp's llm_build_llama. The <c>ernie4_5</c> architecture (Baidu's dense ERNIE 4.5, 0.3B) is the
/// same block under its own keys (llama.cpp's llm_build_ernie4_5: normal rope, optional Q/K/V biases, 128-wide heads
/// from attention.key_length), and runs here; so is <c>mistral3</c> (Ministral 3's text model; see <see cref="ReadMistral3Config"/>).
/// </summary>
internal sealed class Llama : Model
{
    private readonly LayerWeights[] _layers;

    internal Llama(GgufFile file, ModelConfig config, TensorLoader tensors, bool ownsFile, ModelLoadOptions options)
        : base(file, config, tensors, ownsFile, options)
    {
        _layers = new LayerWeights[config.BlockCount];
        for (int il = 0; il < config.BlockCount; il++)
            _layers[il] = DecoderBlocks.LoadLayer(tensors, config, il, qkvBias: false);
    }

    /// <summary>
    /// Hyperparameters under the <c>llama.</c> keys; rope in normal (non-NEOX) mode. llama.expert_count &gt; 0 makes it a
    /// mixture of experts (<see cref="Mixtral"/>); 0 or no key, a dense model.
    /// </summary>
    internal static ModelConfig ReadConfig(GgufFile file, string arch = "llama")
    {
        var c = ModelConfig.Read(file, arch, ropeNeox: false, hasQkvBias: false);
        // (ERNIE 4.5's mixture of experts is another architecture, ernie4_5-moe, which EdgeLlm does not run)
        return arch == "llama" && file.TryGetValue("llama.expert_count", out var n) && n.AsInt64() is not 0
            ? ModelConfig.ReadExperts(file, "llama", c, expertWidthKey: false, sharedExpert: false)
            : c;
    }

    /// <summary>
    /// Hyperparameters of a <c>mistral3</c> file (the text model of Ministral 3: 3B, 8B, 14B), Llama's block under its own
    /// keys, as llama.cpp's llm_build_mistral3: YaRN rope scaling (with YaRN's magnitude correction 1 + 0.1 ln(factor), as
    /// the llama.cpp build of LLamaSharp 0.30.0 applies it: a file's rope.scaling.yarn_log_mul changes nothing there, and
    /// some upstream revisions of the graph cancel the correction instead, as Hugging Face's mscale ratio of 1 would; this
    /// follows the build the tests compare with), and Llama 4's attention temperature (attention.temperature_scale)
    /// stepping every original context length. A mistral3 file with experts is refused by name.
    /// </summary>
    internal static ModelConfig ReadMistral3Config(GgufFile file)
    {
        const string a = "mistral3";
        if (file.TryGetValue($"{a}.expert_count", out var experts) && experts.AsInt64() is not (0 or null))
            throw new ModelLoadException($"this {a} file has {a}.expert_count {experts}: mistral3 mixtures of experts are not supported; the dense Ministral 3 models are");
        var c = ModelConfig.Read(file, a, ropeNeox: false, hasQkvBias: false);
        double temperature = file.GetFloat($"{a}.attention.temperature_scale") ?? 0;
        if (!double.IsFinite(temperature))
            throw new ModelLoadException($"metadata key {a}.attention.temperature_scale must be a number, found {temperature}");
        if (temperature != 0 && c.RopeOriginalContextLength <= 0)
            throw new ModelLoadException($"{a}.attention.temperature_scale is set but neither {a}.rope.scaling.original_context_length nor {a}.context_length gives its position step");
        return c with
        {
            AttnTemperatureScale = (float)temperature,
            AttnTemperatureFloor = temperature != 0 ? c.RopeOriginalContextLength : 0,
        };
    }

    internal override IReadOnlyList<LayerWeights> Layers => _layers;

    internal override void ForwardLayer(int layer, ForwardBatch b, int keep)
    {
        var w = _layers[layer];
        DecoderBlocks.SelfAttention(Config, w, layer, b, neox: false, keep);
        DecoderBlocks.SwiGluFeedForward(Config, w, b, keep);
    }
}
