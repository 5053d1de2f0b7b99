namespace EdgeLlm.Models;

/// <summary>Options for <see cref="Model.Load(Gguf.GgufFile, ModelLoadOptions?)"/>.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>
    /// Context length used to estimate the KV cache when checking that the model fits in memory
    /// (the cache itself is allocated per <see cref="Engine.InferenceContext"/>). Default 4096.
    /// </summary>
    public int ContextLength { get; init; } = 4096;

    /// <summary>Skips the check of model size plus KV cache against available memory.</summary>
    public bool SkipMemoryCheck { get; init; }

    /// <summary>
    /// Runs the generic forward pass even when a compile-time specialization matches the file
    /// (<c>--generic</c>); see <see cref="Model.Specialization"/>.
    /// </summary>
    public bool Generic { get; init; }

    /// <summary>
    /// Repacks weights whose type has a faster interleaved layout on this CPU (Q4_0 on x64 with
    /// AVX2: eight rows per group, see <c>Quant/Q4_0/Q4_0x8.cs</c>) into memory owned by the model.
    /// Default true. The copy replaces the file's pages for the products, so resident memory stays
    /// about the file size; turn it off when the model only feeds another backend (Vulkan reads
    /// the file itself). <see cref="Model.RepackedBytes"/> says how much was repacked.
    /// </summary>
    public bool RepackWeights { get; init; } = true;

    /// <summary>
    /// Diagnostics only: loads a Llama 3 model without its <c>rope_freqs.weight</c> frequency
    /// factors (tests use it to show that the factors matter).
    /// </summary>
    internal bool IgnoreRopeFrequencyFactors { get; init; }
}
