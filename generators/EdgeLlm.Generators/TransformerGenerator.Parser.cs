using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using EdgeLlm.Generators.Helpers;
using EdgeLlm.Generators.Model;
using Microsoft.CodeAnalysis.Text;

namespace EdgeLlm.Generators;

public sealed partial class TransformerGenerator
{
    /// <summary>
    /// Config file → <see cref="ModelSpec"/> or diagnostics. Reads the Hugging Face config.json
    /// vocabulary plus an <c>"edgellm"</c> section; every problem is reported at the offending
    /// field, and parsing goes on so that one build shows all of a file's problems.
    /// </summary>
    internal sealed class Parser
    {
        /// <summary>Tensor kinds an <c>edgellm.overrides</c> entry may name (llama.cpp LLM_TENSOR names).</summary>
        public static readonly string[] TensorKinds = { "token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

        private readonly string _path;
        private readonly SourceText _text;
        private readonly List<DiagnosticInfo> _diagnostics = new();

        private Parser(string path, SourceText text)
        {
            _path = path;
            _text = text;
        }

        /// <summary>Parses one config. Never throws for bad input: everything becomes a diagnostic.</summary>
        public static ParseResult Parse(string path, SourceText text, CancellationToken token)
        {
            var p = new Parser(path, text);
            string fallbackName = Path.GetFileNameWithoutExtension(path);
            ModelSpec? spec = null;
            try
            {
                spec = p.Read(fallbackName, token);
            }
            catch (JsonParseException e)
            {
                int pos = Math.Min(e.Position, text.Length);
                p.Report(DiagnosticDescriptors.InvalidJson.Id, new TextSpan(pos, pos < text.Length ? 1 : 0), Path.GetFileName(path), e.Message);
            }
            bool hasErrors = p._diagnostics.Count > 0;
            return new ParseResult(spec?.Name ?? fallbackName, hasErrors ? null : spec, p._diagnostics.ToEquatableArray());
        }

        private void Report(string id, TextSpan span, params string[] args) =>
            _diagnostics.Add(new DiagnosticInfo(id, _path, span, _text.Lines.GetLinePositionSpan(span), args.ToEquatableArray()));

        private ModelSpec? Read(string fallbackName, CancellationToken token)
        {
            var root = JsonReader.Parse(_text.ToString());
            token.ThrowIfCancellationRequested();
            if (root.Kind != JsonKind.Object)
            {
                Report(DiagnosticDescriptors.WrongFieldType.Id, root.Span, "(root)", "an object", JsonNode.KindName(root.Kind));
                return null;
            }

            string? arch = Architecture(root, out bool archQkvBias, out bool neox, out bool qkNorm);
            int dim = PositiveInt(root, "hidden_size", required: true);
            int ff = PositiveInt(root, "intermediate_size", required: true);
            int layers = PositiveInt(root, "num_hidden_layers", required: true);
            int heads = PositiveInt(root, "num_attention_heads", required: true);
            int kvHeads = PositiveInt(root, "num_key_value_heads", required: false);
            int headDim = PositiveInt(root, "head_dim", required: false);
            int vocab = PositiveInt(root, "vocab_size", required: true);
            float eps = PositiveFloat(root, "rms_norm_eps", required: true, fallback: 0);
            float theta = PositiveFloat(root, "rope_theta", required: false, fallback: 10000f);
            bool tied = Bool(root, "tie_word_embeddings", false);
            bool attentionBias = Bool(root, "attention_bias", false);
            token.ThrowIfCancellationRequested();

            if (arch == "qwen3" && attentionBias)
                Report(DiagnosticDescriptors.ValueOutOfRange.Id, root["attention_bias"]!.Span, "attention_bias", "true",
                    "false for qwen3 (llama.cpp's qwen3 graph has no Q/K/V biases)");
            if (kvHeads == 0 && heads > 0) kvHeads = heads;
            if (heads > 0 && kvHeads > 0 && heads % kvHeads != 0)
                Report(DiagnosticDescriptors.HeadsDoNotDivide.Id, root["num_key_value_heads"]!.Span,
                    $"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kvHeads})");
            if (headDim == 0 && heads > 0 && dim > 0)
            {
                if (dim % heads != 0)
                    Report(DiagnosticDescriptors.HeadsDoNotDivide.Id, root["num_attention_heads"]!.Span,
                        $"hidden_size ({dim}) is not a multiple of num_attention_heads ({heads}) and head_dim is not given");
                else headDim = dim / heads;
            }
            if (headDim % 2 != 0)
                Report(DiagnosticDescriptors.ValueOutOfRange.Id, (root["head_dim"] ?? root["num_attention_heads"])!.Span,
                    "head_dim", headDim.ToString(CultureInfo.InvariantCulture), "even (rotary embeddings rotate pairs)");

            float[] ropeFactors = RopeScaling(root, headDim, theta);

            var edgellm = Field(root, "edgellm", JsonKind.Object, required: true, root.Span);
            string name = fallbackName;
            string? fileType = null;
            bool pure = false;
            JsonNode? weightTypeNode = null;
            var overrides = new List<(string Kind, QuantSpec Type, JsonNode Node)>();
            if (edgellm is not null)
            {
                var nameNode = Field(edgellm, "name", JsonKind.String, required: false, edgellm.Span);
                if (nameNode?.String is { Length: > 0 } n) name = n;
                weightTypeNode = Field(edgellm, "weight_type", JsonKind.String, required: true, edgellm.Span);
                if (weightTypeNode is not null)
                {
                    fileType = TypePlanner.NormalizeFileType(weightTypeNode.String!);
                    if (fileType is null)
                        Report(DiagnosticDescriptors.UnknownWeightType.Id, weightTypeNode.Span, weightTypeNode.String!, "weight_type (file type)",
                            string.Join(", ", TypePlanner.FileTypeNames));
                }
                pure = Bool(edgellm, "pure", false);
                var ov = Field(edgellm, "overrides", JsonKind.Object, required: false, edgellm.Span);
                if (ov is not null)
                {
                    foreach (var (kind, kindSpan, value) in ov.Members)
                    {
                        if (Array.IndexOf(TensorKinds, kind) < 0)
                        {
                            Report(DiagnosticDescriptors.UnknownTensor.Id, kindSpan, kind, string.Join(", ", TensorKinds));
                            continue;
                        }
                        if (value.Kind != JsonKind.String)
                        {
                            Report(DiagnosticDescriptors.WrongFieldType.Id, value.Span, "overrides." + kind, "a string", JsonNode.KindName(value.Kind));
                            continue;
                        }
                        var q = QuantSpec.Find(value.String!);
                        if (q is null)
                        {
                            Report(DiagnosticDescriptors.UnknownWeightType.Id, value.Span, value.String!, "tensor type", string.Join(", ", QuantSpec.WeightTypeNames));
                            continue;
                        }
                        overrides.Add((kind, q, value));
                    }
                }
            }
            token.ThrowIfCancellationRequested();
            if (arch is null || fileType is null || _diagnostics.Count > 0) return null;

            var shape = new TypePlanner.Shape(arch, dim, ff, layers, heads, kvHeads, headDim, tied);
            // Overrides first, checked against their rows; then the planner (which falls back on its own).
            foreach (var (kind, type, node) in overrides)
            {
                long row = TypePlanner.RowLength(shape, kind);
                if (row % type.BlockSize != 0)
                    Report(DiagnosticDescriptors.RowNotMultipleOfBlock.Id, node.Span, kind, row.ToString(CultureInfo.InvariantCulture),
                        type.Name, type.BlockSize.ToString(CultureInfo.InvariantCulture));
            }
            var overrideMap = new Dictionary<string, string>();
            foreach (var o in overrides) overrideMap[o.Kind] = o.Type.Name;
            if (pure)
            {
                var def = QuantSpec.Get(TypePlanner.DefaultType(fileType));
                foreach (string kind in TensorKinds)
                {
                    if (overrideMap.ContainsKey(kind) || (kind == "output" && tied)) continue;
                    long row = TypePlanner.RowLength(shape, kind);
                    if (row % def.BlockSize != 0)
                        Report(DiagnosticDescriptors.RowNotMultipleOfBlock.Id, weightTypeNode!.Span, kind, row.ToString(CultureInfo.InvariantCulture),
                            def.Name, def.BlockSize.ToString(CultureInfo.InvariantCulture));
                }
            }
            if (_diagnostics.Count > 0) return null;

            var plan = TypePlanner.Plan(shape, fileType, pure, overrideMap);
            return new ModelSpec(name, ClassNameOf(name), Path.GetFileName(_path), arch, fileType, dim, layers, heads, kvHeads, headDim, ff, vocab,
                eps, theta, tied, archQkvBias || attentionBias, neox, qkNorm, ropeFactors.ToEquatableArray(), plan.TokenEmbd, plan.Output, plan.Layers, Isa: "");
        }

        /// <summary>architectures[0] (HF class name) or model_type → GGUF architecture.</summary>
        private string? Architecture(JsonNode root, out bool qkvBias, out bool neox, out bool qkNorm)
        {
            qkvBias = neox = qkNorm = false;
            JsonNode? node = null;
            string? value = null;
            var archs = root["architectures"];
            if (archs is not null)
            {
                if (archs.Kind != JsonKind.Array || archs.Items.Count == 0 || archs.Items[0].Kind != JsonKind.String)
                {
                    Report(DiagnosticDescriptors.WrongFieldType.Id, archs.Span, "architectures", "an array of strings", JsonNode.KindName(archs.Kind));
                    return null;
                }
                node = archs.Items[0];
                value = node.String;
            }
            else
            {
                node = Field(root, "model_type", JsonKind.String, required: true, root.Span);
                value = node?.String;
            }
            if (node is null || value is null) return null;
            switch (value)
            {
                case "LlamaForCausalLM":
                case "llama":
                    return "llama";
                case "Qwen2ForCausalLM":
                case "qwen2":
                    qkvBias = neox = true;
                    return "qwen2";
                case "Qwen3ForCausalLM":
                case "qwen3":
                    // Qwen2's block without the Q/K/V biases (attention_bias may still ask for them), plus per-head Q/K norms.
                    neox = qkNorm = true;
                    return "qwen3";
                default:
                    Report(DiagnosticDescriptors.UnknownArchitecture.Id, node.Span, value,
                        "LlamaForCausalLM (llama), Qwen2ForCausalLM (qwen2), Qwen3ForCausalLM (qwen3)");
                    return null;
            }
        }

        /// <summary>Llama 3 rope_scaling → per-pair frequency factors (as convert_hf_to_gguf.py writes rope_freqs.weight).</summary>
        private float[] RopeScaling(JsonNode root, int headDim, float theta)
        {
            var rs = root["rope_scaling"];
            if (rs is null || rs.Kind == JsonKind.Null) return Array.Empty<float>();
            if (rs.Kind != JsonKind.Object)
            {
                Report(DiagnosticDescriptors.WrongFieldType.Id, rs.Span, "rope_scaling", "an object or null", JsonNode.KindName(rs.Kind));
                return Array.Empty<float>();
            }
            var typeNode = rs["rope_type"] ?? rs["type"];
            if (typeNode is null)
            {
                Report(DiagnosticDescriptors.MissingField.Id, rs.Span, Path.GetFileName(_path), "rope_scaling.rope_type");
                return Array.Empty<float>();
            }
            if (typeNode.Kind != JsonKind.String)
            {
                Report(DiagnosticDescriptors.WrongFieldType.Id, typeNode.Span, "rope_scaling.rope_type", "a string", JsonNode.KindName(typeNode.Kind));
                return Array.Empty<float>();
            }
            if (typeNode.String != "llama3")
            {
                Report(DiagnosticDescriptors.UnsupportedRopeScaling.Id, typeNode.Span, typeNode.String!);
                return Array.Empty<float>();
            }
            double factor = PositiveFloat(rs, "factor", true, 0);
            double low = PositiveFloat(rs, "low_freq_factor", true, 0);
            double high = PositiveFloat(rs, "high_freq_factor", true, 0);
            double original = PositiveFloat(rs, "original_max_position_embeddings", true, 0);
            if (factor <= 0 || low <= 0 || high <= 0 || original <= 0 || headDim <= 0) return Array.Empty<float>();
            if (high <= low)
            {
                Report(DiagnosticDescriptors.ValueOutOfRange.Id, rs["high_freq_factor"]!.Span, "rope_scaling.high_freq_factor",
                    high.ToString(CultureInfo.InvariantCulture), "greater than low_freq_factor");
                return Array.Empty<float>();
            }
            double lowWavelen = original / low, highWavelen = original / high;
            var factors = new float[headDim / 2];
            for (int i = 0; i < factors.Length; i++)
            {
                // freqs are float32 in the converter (torch.arange(..., dtype=float32)).
                float freq = (float)(1.0 / Math.Pow(theta, 2.0 * i / headDim));
                double wavelen = 2 * Math.PI / freq;
                if (wavelen < highWavelen) factors[i] = 1f;
                else if (wavelen > lowWavelen) factors[i] = (float)factor;
                else
                {
                    double smooth = (original / wavelen - low) / (high - low);
                    factors[i] = (float)(1 / ((1 - smooth) / factor + smooth));
                }
            }
            return factors;
        }

        private JsonNode? Field(JsonNode obj, string name, JsonKind kind, bool required, TextSpan parentSpan)
        {
            var v = obj[name];
            if (v is null)
            {
                if (required) Report(DiagnosticDescriptors.MissingField.Id, new TextSpan(parentSpan.Start, 1), Path.GetFileName(_path), name);
                return null;
            }
            if (v.Kind != kind)
            {
                Report(DiagnosticDescriptors.WrongFieldType.Id, v.Span, name, JsonNode.KindName(kind), JsonNode.KindName(v.Kind));
                return null;
            }
            return v;
        }

        private int PositiveInt(JsonNode obj, string name, bool required)
        {
            var v = Field(obj, name, JsonKind.Number, required, obj.Span);
            if (v is null) return 0;
            if (v.Number != Math.Floor(v.Number) || v.RawNumber!.IndexOfAny(new[] { '.', 'e', 'E' }) >= 0)
            {
                Report(DiagnosticDescriptors.WrongFieldType.Id, v.Span, name, "an integer", "a fractional number");
                return 0;
            }
            if (v.Number <= 0 || v.Number > int.MaxValue)
            {
                Report(DiagnosticDescriptors.ValueOutOfRange.Id, v.Span, name, v.RawNumber!, "a positive 32-bit integer");
                return 0;
            }
            return (int)v.Number;
        }

        private float PositiveFloat(JsonNode obj, string name, bool required, float fallback)
        {
            var v = Field(obj, name, JsonKind.Number, required, obj.Span);
            if (v is null) return fallback;
            if (!(v.Number > 0) || (float)v.Number is float.PositiveInfinity)
            {
                Report(DiagnosticDescriptors.ValueOutOfRange.Id, v.Span, name, v.RawNumber!, "a positive finite float");
                return fallback;
            }
            return (float)v.Number;
        }

        private bool Bool(JsonNode obj, string name, bool fallback)
        {
            var v = obj[name];
            if (v is null || v.Kind == JsonKind.Null) return fallback;
            if (v.Kind is JsonKind.True or JsonKind.False) return v.Kind == JsonKind.True;
            Report(DiagnosticDescriptors.WrongFieldType.Id, v.Span, name, "a boolean", JsonNode.KindName(v.Kind));
            return fallback;
        }

        /// <summary>"tinyllama-1.1b-q4_0" → "Tinyllama_1_1b_q4_0": a valid identifier, stable for the name.</summary>
        internal static string ClassNameOf(string name)
        {
            var sb = new StringBuilder();
            bool upper = true;
            foreach (char c in name)
            {
                if (char.IsLetterOrDigit(c) && c < 128)
                {
                    sb.Append(upper ? char.ToUpperInvariant(c) : c);
                    upper = false;
                }
                else if (sb.Length > 0 && sb[sb.Length - 1] != '_')
                {
                    sb.Append('_');
                }
            }
            if (sb.Length == 0 || char.IsDigit(sb[0])) sb.Insert(0, "M_");
            return sb.ToString().TrimEnd('_');
        }
    }
}
