using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Models;

/// <summary>
/// Crafts small random-weight GGUF models with <see cref="GgufWriter"/> for load-error and engine
/// tests: 1–2 layers, embd 256 (a multiple of every block size), 4 heads, 2 KV heads.
/// </summary>
internal sealed class TinyModelFile
{
    public const int Embd = 256, Heads = 4, HeadsKv = 2, HeadDim = 64, Ff = 256, Vocab = 32, Layers = 2;

    public string Architecture { get; init; } = "llama";
    public int ContextLength { get; init; } = 64;

    /// <summary>Tensor to leave out.</summary>
    public string? Omit { get; init; }

    /// <summary>Tensor to write with another type (zero bytes of that type's size).</summary>
    public (string Name, GgmlType Type)? Retype { get; init; }

    /// <summary>Tensor to write with other dimensions.</summary>
    public (string Name, long[] Dims)? Reshape { get; init; }

    /// <summary>Metadata key to leave out.</summary>
    public string? OmitKey { get; init; }

    /// <summary>Metadata to set after the standard keys (replacing one of them keeps its position).</summary>
    public Action<GgufWriter>? EditMetadata { get; init; }

    /// <summary>A tensor to add after the others (f32, values 0.5).</summary>
    public (string Name, long[] Dims)? Extra { get; init; }

    public byte[] Build()
    {
        string a = Architecture;
        var w = new GgufWriter();
        w.Set("general.architecture", a);
        void SetInt(string key, int value)
        {
            if (key != OmitKey) w.Set(key, (uint)value);
        }
        SetInt($"{a}.context_length", ContextLength);
        SetInt($"{a}.embedding_length", Embd);
        SetInt($"{a}.block_count", Layers);
        SetInt($"{a}.feed_forward_length", Ff);
        SetInt($"{a}.attention.head_count", Heads);
        SetInt($"{a}.attention.head_count_kv", HeadsKv);
        SetInt($"{a}.vocab_size", Vocab);
        if (OmitKey != $"{a}.attention.layer_norm_rms_epsilon") w.Set($"{a}.attention.layer_norm_rms_epsilon", 1e-5f);
        if (a == "gemma3") SetInt($"{a}.attention.sliding_window", 4);
        if (a == "granite")
        {
            // The 2B models' multipliers.
            foreach (var (key, value) in new[] { ("logit_scale", 8f), ("residual_scale", 0.22f), ("embedding_scale", 12f), ("attention.scale", 0.015625f) })
                if (OmitKey != $"{a}.{key}") w.Set($"{a}.{key}", value);
        }
        EditMetadata?.Invoke(w);

        var rng = new Random(1234);
        void Add(string name, params long[] dims)
        {
            if (name == Omit) return;
            if (Reshape is { } r && r.Name == name) dims = r.Dims;
            long n = dims.Aggregate(1L, (x, y) => x * y);
            if (Retype is { } t && t.Name == name)
            {
                w.AddTensor(name, t.Type, dims, new byte[GgmlTypes.Info(t.Type).RowBytes(n)]);
                return;
            }
            bool norm = dims.Length == 1;
            var values = new float[n];
            float scale = 1f / MathF.Sqrt(dims[0]);
            for (long i = 0; i < n; i++) values[i] = norm ? 1f : (float)(rng.NextDouble() * 2 - 1) * scale;
            w.AddTensor(name, dims, values);
        }

        Add("token_embd.weight", Embd, Vocab);
        Add("output_norm.weight", Embd);
        for (int il = 0; il < Layers; il++)
        {
            string p = $"blk.{il}.";
            Add(p + "attn_norm.weight", Embd);
            if (a == "phi3")
            {
                // Phi-3: Q, K and V fused into attn_qkv; gate and up fused into ffn_up (2 × ff rows).
                Add(p + "attn_qkv.weight", Embd, (Heads + 2 * HeadsKv) * HeadDim);
                Add(p + "attn_output.weight", Heads * HeadDim, Embd);
                Add(p + "ffn_norm.weight", Embd);
                Add(p + "ffn_up.weight", Embd, 2 * Ff);
                Add(p + "ffn_down.weight", Ff, Embd);
                continue;
            }
            Add(p + "attn_q.weight", Embd, Heads * HeadDim);
            Add(p + "attn_k.weight", Embd, HeadsKv * HeadDim);
            Add(p + "attn_v.weight", Embd, HeadsKv * HeadDim);
            if (a == "qwen2")
            {
                Add(p + "attn_q.bias", Heads * HeadDim);
                Add(p + "attn_k.bias", HeadsKv * HeadDim);
                Add(p + "attn_v.bias", HeadsKv * HeadDim);
            }
            if (a is "qwen3" or "gemma3")
            {
                Add(p + "attn_q_norm.weight", HeadDim);
                Add(p + "attn_k_norm.weight", HeadDim);
            }
            Add(p + "attn_output.weight", Heads * HeadDim, Embd);
            if (a is "gemma2" or "gemma3") Add(p + "post_attention_norm.weight", Embd);
            Add(p + "ffn_norm.weight", Embd);
            Add(p + "ffn_gate.weight", Embd, Ff);
            Add(p + "ffn_up.weight", Embd, Ff);
            Add(p + "ffn_down.weight", Ff, Embd);
            if (a is "gemma2" or "gemma3") Add(p + "post_ffw_norm.weight", Embd);
        }
        if (Extra is { } extra)
        {
            long n = extra.Dims.Aggregate(1L, (x, y) => x * y);
            w.AddTensor(extra.Name, extra.Dims, Enumerable.Repeat(0.5f, (int)n).ToArray());
        }
        return w.ToArray();
    }

    /// <summary>Writes the file to a temporary path (deleted by the returned handle).</summary>
    public TempFile Write()
    {
        var path = Path.Combine(Path.GetTempPath(), $"edgellm-tiny-{Guid.NewGuid():N}.gguf");
        File.WriteAllBytes(path, Build());
        return new TempFile(path);
    }
}

internal sealed class TempFile(string path) : IDisposable
{
    public string Path { get; } = path;

    public void Dispose()
    {
        try { File.Delete(Path); } catch (IOException) { }
    }
}
