using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>The type one tensor gets in a quantized file.</summary>
/// <param name="Tensor">The input tensor.</param>
/// <param name="Target">Its type in the output file.</param>
/// <param name="Convert">False when the tensor is copied unchanged (not a quantizable weight, or already <paramref name="Target"/>).</param>
public sealed record TensorPlan(GgufTensorInfo Tensor, GgmlType Target, bool Convert);

/// <summary>
/// Chooses each tensor's type the way llama.cpp's <c>llama_model_quantize_impl</c> and
/// <c>llama_tensor_get_type</c> (src/llama-quant.cpp, Feb 2025) do for the file types EdgeLlm
/// writes: which tensors are quantized at all, the output/token-embedding rules, the
/// attn_v / ffn_down "use_more_bits" layer rules of the _S/_M/_L mixes, and the fallback when a
/// row does not divide into the chosen type's blocks.
/// </summary>
public static class TensorTypePlanner
{
    /// <summary>
    /// Plans every tensor of <paramref name="file"/>, in the order llama.cpp writes them: its
    /// model loader keeps tensors in a map ordered by layer number ("blk.N.", -1 for the rest)
    /// and then by name (weight_name_comparer), and llama-quantize walks that map.
    /// </summary>
    /// <param name="file">The input model.</param>
    /// <param name="ftype">The file type asked for.</param>
    /// <param name="pure">llama-quantize <c>--pure</c>: every quantizable weight gets the default type, no mixing or fallback.</param>
    public static IReadOnlyList<TensorPlan> Plan(GgufFile file, LlamaFileType ftype, bool pure)
    {
        ArgumentNullException.ThrowIfNull(file);
        var defaultType = LlamaFileTypes.DefaultType(ftype);
        var qs = new State(file, ftype);
        var plans = new List<TensorPlan>(file.Tensors.Count);
        foreach (var t in file.Tensors.OrderBy(LayerOf).ThenBy(t => t.Name, StringComparer.Ordinal))
        {
            if (!AllowsQuantization(t))
            {
                plans.Add(new TensorPlan(t, t.Type, false));
                continue;
            }
            var type = defaultType;
            if (pure)
            {
                int block = GgmlTypes.Info(type).BlockSize;
                if (t.RowLength % block != 0)
                    throw new InvalidOperationException(
                        $"tensor {t.Name}: row length {t.RowLength} is not a multiple of the {GgmlTypes.Name(type)} block size {block} (--pure allows no fallback type)");
            }
            else if (IsQuantized(defaultType))
            {
                type = qs.GetType(type, t);
            }
            plans.Add(new TensorPlan(t, type, t.Type != type));
        }
        return plans;
    }

    /// <summary>The N of a "blk.N." name (sscanf("blk.%d.")), or -1.</summary>
    private static int LayerOf(GgufTensorInfo t)
    {
        string name = t.Name;
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int end = 4;
        while (end < name.Length && char.IsAsciiDigit(name[end])) end++;
        return end > 4 && end < name.Length && name[end] == '.' && int.TryParse(name.AsSpan(4, end - 4), out int layer) ? layer : -1;
    }

    /// <summary>True for block-quantized types (ggml_is_quantized).</summary>
    public static bool IsQuantized(GgmlType t) =>
        t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64 or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64);

    /// <summary>
    /// Which tensors llama.cpp quantizes at all: names ending in "weight" with at least two
    /// dimensions, except norms, MoE router weights, positional/token-type embeddings and a few
    /// small architecture-specific matrices.
    /// </summary>
    public static bool AllowsQuantization(GgufTensorInfo t)
    {
        string name = t.Name;
        if (NDims(t.Dims) < 2) return false;
        if (!name.EndsWith("weight", StringComparison.Ordinal)) return false;
        string[] excluded =
        [
            "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "shortconv.conv.weight", "attn_rel_b.weight",
            "time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
            "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        ];
        foreach (var e in excluded) if (name.Contains(e, StringComparison.Ordinal)) return false;
        return name is not ("position_embd.weight" or "token_types.weight");
    }

    /// <summary>ggml_n_dims: trailing dimensions of size 1 do not count.</summary>
    private static int NDims(long[] dims)
    {
        int n = dims.Length;
        while (n > 1 && dims[n - 1] == 1) n--;
        return n;
    }

    /// <summary>The counters and hyper-parameters llama.cpp's quantize_state_impl carries from tensor to tensor.</summary>
    private sealed class State
    {
        private readonly LlamaFileType _ftype;
        private readonly string _arch;
        private readonly int _nGqa;
        private readonly int _nExpert;
        private readonly bool _is70B;
        private readonly bool _hasOutput;
        private readonly int _nAttentionWv;
        private readonly int _nLayer;
        private int _iAttentionWv, _iFfnDown, _iFfnGate, _iFfnUp;

        public State(GgufFile file, LlamaFileType ftype)
        {
            _ftype = ftype;
            _arch = file.GetString("general.architecture") ?? "";
            int nHead = ReadInt(file, $"{_arch}.attention.head_count", 0);
            int nHeadKv = ReadInt(file, $"{_arch}.attention.head_count_kv", nHead);
            _nGqa = nHeadKv > 0 ? nHead / nHeadKv : 0;
            _nExpert = ReadInt(file, $"{_arch}.expert_count", 0);
            _nLayer = ReadInt(file, $"{_arch}.block_count", 0);
            // llm_load_hparams: an 80-layer Llama with grouped KV heads is LLM_TYPE_70B.
            _is70B = _arch == "llama" && _nLayer == 80 && nHead != nHeadKv;
            foreach (var t in file.Tensors)
            {
                if (t.Name.Contains("attn_v.weight", StringComparison.Ordinal) || t.Name.Contains("attn_qkv.weight", StringComparison.Ordinal)
                    || t.Name.Contains("attn_kv_b.weight", StringComparison.Ordinal)) _nAttentionWv++;
                else if (t.Name == "output.weight") _hasOutput = true;
            }
        }

        private static int ReadInt(GgufFile file, string key, int fallback)
        {
            if (!file.TryGetValue(key, out var v)) return fallback;
            if (v.IsArray) { var a = v.AsInt32Array(); return a is { Length: > 0 } ? a.Max() : fallback; }
            return (int)(v.AsInt64() ?? fallback);
        }

        private static bool UseMoreBits(int iLayer, int nLayers) =>
            iLayer < nLayers / 8 || iLayer >= 7 * nLayers / 8 || (iLayer - nLayers / 8) % 3 == 2;

        private (int Layer, int Count) LayerInfo(int iLayer, string name)
        {
            if (_nExpert > 1)
            {
                // Experts are not stored consecutively; llama.cpp reads the layer from "blk.N.".
                if (!name.StartsWith("blk.", StringComparison.Ordinal)
                    || !int.TryParse(name.AsSpan(4, name.IndexOf('.', 4) - 4), out iLayer))
                    throw new InvalidOperationException($"Failed to determine layer for tensor {name}");
                if (iLayer < 0 || iLayer >= _nLayer)
                    throw new InvalidOperationException($"Bad layer {iLayer} for tensor {name}. Must be in [0, {_nLayer})");
            }
            return (iLayer, _nLayer);
        }

        /// <summary>llama_tensor_get_type for one tensor (advances the per-kind layer counters).</summary>
        public GgmlType GetType(GgmlType newType, GgufTensorInfo tensor)
        {
            string name = tensor.Name;
            var ftype = _ftype;
            bool falcon = _arch == "falcon";

            if (name == "output.weight" || (!_hasOutput && name == "token_embd.weight"))
            {
                // Tied embeddings: token_embd doubles as the output projection and gets its type.
                long nx = tensor.RowLength;
                if (ftype == LlamaFileType.MOSTLY_MXFP4_MOE) newType = GgmlType.Q8_0;
                else if (falcon || nx % GgmlTypes.Info(newType).BlockSize != 0) newType = GgmlType.Q8_0;
                else if (newType != GgmlType.Q8_0) newType = GgmlType.Q6_K;
            }
            else if (ftype == LlamaFileType.MOSTLY_MXFP4_MOE)
            {
                // llama.cpp: "MoE tensors -> MXFP4, other tensors -> Q8_0" (a tensor with ne[2] > 1 holds the experts).
                newType = tensor.Dims.Length > 2 && tensor.Dims[2] > 1 ? GgmlType.MXFP4 : GgmlType.Q8_0;
            }
            else if (name is "token_embd.weight" or "per_layer_token_embd.weight")
            {
                // No rule for the file types EdgeLlm writes (only the IQ1/IQ2/IQ3/TQ mixes change it).
            }
            else if (name.Contains("attn_v.weight", StringComparison.Ordinal))
            {
                if (ftype == LlamaFileType.MOSTLY_Q2_K) newType = _nGqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
                else if (ftype == LlamaFileType.MOSTLY_Q3_K_M) newType = _iAttentionWv < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (ftype == LlamaFileType.MOSTLY_Q3_K_L) newType = GgmlType.Q5_K;
                else if (ftype == LlamaFileType.MOSTLY_IQ4_NL && _nGqa >= 4) newType = GgmlType.Q5_K;
                else if ((ftype == LlamaFileType.MOSTLY_Q4_K_M || ftype == LlamaFileType.MOSTLY_Q5_K_M)
                         && UseMoreBits(_iAttentionWv, _nAttentionWv)) newType = GgmlType.Q6_K;
                else if (ftype == LlamaFileType.MOSTLY_Q4_K_S && _iAttentionWv < 4) newType = GgmlType.Q5_K;
                // 70B: 8 heads share each attn_v, so it is 8x smaller than attn_q; more bits cost little.
                if (_is70B && newType is GgmlType.Q3_K or GgmlType.Q4_K) newType = GgmlType.Q5_K;
                if (_nExpert == 8) newType = GgmlType.Q8_0;
                _iAttentionWv++;
            }
            else if (name.Contains("attn_k.weight", StringComparison.Ordinal))
            {
                if (_nExpert == 8) newType = GgmlType.Q8_0;
            }
            else if (name.Contains("attn_q.weight", StringComparison.Ordinal))
            {
                // Only the IQ3_XS / IQ3_XXS mixes change attn_q.
            }
            else if (name.Contains("ffn_down", StringComparison.Ordinal))
            {
                var (iLayer, nLayer) = LayerInfo(_iFfnDown, name);
                if (ftype == LlamaFileType.MOSTLY_Q2_K) newType = GgmlType.Q3_K;
                else if (ftype == LlamaFileType.MOSTLY_Q3_K_M)
                    newType = iLayer < nLayer / 16 ? GgmlType.Q5_K
                            : !falcon || UseMoreBits(iLayer, nLayer) ? GgmlType.Q4_K
                            : GgmlType.Q3_K;
                else if (ftype == LlamaFileType.MOSTLY_Q3_K_L) newType = falcon ? GgmlType.Q4_K : GgmlType.Q5_K;
                else if (ftype == LlamaFileType.MOSTLY_Q4_K_M)
                {
                    if (falcon)
                        newType = iLayer < nLayer / 16 ? GgmlType.Q6_K : UseMoreBits(iLayer, nLayer) ? GgmlType.Q5_K : GgmlType.Q4_K;
                    else if (UseMoreBits(iLayer, nLayer)) newType = GgmlType.Q6_K;
                }
                else if (iLayer < nLayer / 8 && ftype == LlamaFileType.MOSTLY_IQ4_NL) newType = GgmlType.Q5_K; // no imatrix
                else if (ftype == LlamaFileType.MOSTLY_Q5_K_M && UseMoreBits(iLayer, nLayer)) newType = GgmlType.Q6_K;
                else if (ftype == LlamaFileType.MOSTLY_Q4_K_S && !falcon && iLayer < nLayer / 8) newType = GgmlType.Q5_K;
                _iFfnDown++;
            }
            else if (name.Contains("attn_output.weight", StringComparison.Ordinal))
            {
                if (!falcon)
                {
                    if (_nExpert == 8)
                    {
                        if (ftype is LlamaFileType.MOSTLY_Q2_K or LlamaFileType.MOSTLY_Q3_K_S or LlamaFileType.MOSTLY_Q3_K_M
                            or LlamaFileType.MOSTLY_IQ4_NL or LlamaFileType.MOSTLY_Q4_K_S or LlamaFileType.MOSTLY_Q4_K_M)
                            newType = GgmlType.Q5_K;
                    }
                    else
                    {
                        if (ftype == LlamaFileType.MOSTLY_Q2_K) newType = GgmlType.Q3_K;
                        else if (ftype == LlamaFileType.MOSTLY_Q3_K_M) newType = GgmlType.Q4_K;
                        else if (ftype == LlamaFileType.MOSTLY_Q3_K_L) newType = GgmlType.Q5_K;
                    }
                }
                else if (ftype == LlamaFileType.MOSTLY_Q3_K_L) newType = GgmlType.Q4_K;
            }
            else if (name.Contains("attn_qkv.weight", StringComparison.Ordinal))
            {
                if (ftype is LlamaFileType.MOSTLY_Q3_K_M or LlamaFileType.MOSTLY_Q3_K_L) newType = GgmlType.Q4_K;
                else if (ftype == LlamaFileType.MOSTLY_Q4_K_M) newType = GgmlType.Q5_K;
                else if (ftype == LlamaFileType.MOSTLY_Q5_K_M) newType = GgmlType.Q6_K;
            }
            else if (name.Contains("ffn_gate", StringComparison.Ordinal))
            {
                LayerInfo(_iFfnGate, name); // only the IQ3_XS mix uses the layer here
                _iFfnGate++;
            }
            else if (name.Contains("ffn_up", StringComparison.Ordinal))
            {
                LayerInfo(_iFfnUp, name);
                _iFfnUp++;
            }

            return Fallback(newType, tensor);
        }

        /// <summary>
        /// A row that does not divide into the chosen type's blocks falls back as llama.cpp does:
        /// Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when even that
        /// does not divide. For the 32-value types (Q4_0..Q8_0, IQ4_NL) llama.cpp (Feb 2025) stops
        /// with "Unsupported tensor size encountered"; EdgeLlm keeps such a tensor in F16 instead.
        /// </summary>
        private static GgmlType Fallback(GgmlType type, GgufTensorInfo tensor)
        {
            long nx = tensor.RowLength;
            if (nx % GgmlTypes.Info(type).BlockSize == 0) return type;
            var fallback = type switch
            {
                GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.IQ4_NL,
                GgmlType.Q4_K => GgmlType.Q5_0,
                GgmlType.Q5_K => GgmlType.Q5_1,
                GgmlType.Q6_K => GgmlType.Q8_0,
                _ => GgmlType.F16,
            };
            return nx % GgmlTypes.Info(fallback).BlockSize == 0 ? fallback : GgmlType.F16;
        }
    }
}
