namespace EdgeLlm.Generators.Model;

/// <summary>
/// The tensor types of one transformer block's seven weight matrices (ggml type names). Layers
/// with equal specs share one generated method; K-quant mixes (Q4_K_M) give some layers Q6_K
/// attn_v / ffn_down, so a model has one or a few distinct specs.
/// </summary>
internal sealed record LayerSpec(string Wq, string Wk, string Wv, string Wo, string Gate, string Up, string Down);
