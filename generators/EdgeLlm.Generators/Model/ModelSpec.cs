using EdgeLlm.Generators.Helpers;

namespace EdgeLlm.Generators.Model;

/// <summary>
/// Everything the emitter needs for one specialization, as values only (no symbols, nodes or
/// locations), so an unchanged config compares equal and its output stays cached.
/// </summary>
/// <param name="Name">edgellm.name, e.g. <c>tinyllama-1.1b-q4_0</c>.</param>
/// <param name="ClassName">C# identifier derived from <paramref name="Name"/>.</param>
/// <param name="ConfigFile">The config's file name (for the header comment).</param>
/// <param name="Architecture">GGUF general.architecture: <c>llama</c>, <c>qwen2</c> or <c>qwen3</c>.</param>
/// <param name="FileType">edgellm.weight_type as written (Q4_0, Q4_K_M, ...).</param>
/// <param name="Dim">hidden_size (n_embd).</param>
/// <param name="LayerCount">num_hidden_layers.</param>
/// <param name="Heads">num_attention_heads.</param>
/// <param name="KvHeads">num_key_value_heads.</param>
/// <param name="HeadDim">head_dim (default hidden_size / heads).</param>
/// <param name="FeedForward">intermediate_size.</param>
/// <param name="Vocab">vocab_size.</param>
/// <param name="RmsEps">rms_norm_eps, as the float32 GGUF stores.</param>
/// <param name="RopeTheta">rope_theta, as the float32 GGUF stores.</param>
/// <param name="Tied">tie_word_embeddings: no output.weight.</param>
/// <param name="QkvBias">Q, K and V carry biases (qwen2, or llama with attention_bias).</param>
/// <param name="RopeNeox">NEOX rotary layout (qwen2, qwen3).</param>
/// <param name="QkNorm">Per-head RMSNorm of every query and key head before rope (qwen3: attn_q_norm, attn_k_norm).</param>
/// <param name="RopeFactors">Llama 3 rotary frequency factors (rope_freqs.weight), empty when none.</param>
/// <param name="TokenEmbdType">token_embd.weight type.</param>
/// <param name="OutputType">output.weight type (token_embd's when tied).</param>
/// <param name="Layers">Per-layer matrix types.</param>
/// <param name="Isa">Instruction-set note for the header (from the build, informational).</param>
internal sealed record ModelSpec(
    string Name,
    string ClassName,
    string ConfigFile,
    string Architecture,
    string FileType,
    int Dim,
    int LayerCount,
    int Heads,
    int KvHeads,
    int HeadDim,
    int FeedForward,
    int Vocab,
    float RmsEps,
    float RopeTheta,
    bool Tied,
    bool QkvBias,
    bool RopeNeox,
    bool QkNorm,
    EquatableArray<float> RopeFactors,
    string TokenEmbdType,
    string OutputType,
    EquatableArray<LayerSpec> Layers,
    string Isa)
{
    public int QueryLength => Heads * HeadDim;

    public int KvLength => KvHeads * HeadDim;
}
