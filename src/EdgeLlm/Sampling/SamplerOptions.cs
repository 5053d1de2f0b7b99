namespace EdgeLlm.Sampling;

/// <summary>
/// Settings of the sampler chain, with llama.cpp's defaults (common/common.h, <c>common_params_sampling</c>).
/// The chain runs: repetition penalty → top-k → top-p → min-p → temperature → draw from the distribution
/// (<see cref="Sampler"/>). A temperature of 0 means greedy decoding (argmax).
/// </summary>
public sealed record SamplerOptions
{
    /// <summary>Softmax temperature (<c>--temp</c>); 0 = greedy (always the most likely token). Must be finite and ≥ 0.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the K most likely tokens (<c>--top-k</c>); 0 = off. Must be ≥ 0.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Nucleus sampling (<c>--top-p</c>): keep the smallest set of most likely tokens whose probabilities sum to ≥ P; 1 = off. In [0, 1].</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Keep tokens whose probability is ≥ MinP × the top token's probability (<c>--min-p</c>); 0 = off. In [0, 1].</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>
    /// Repetition penalty (<c>--repeat-penalty</c>): for every token among the last <see cref="RepeatLastN"/> accepted ones,
    /// a positive logit is divided by it and a non-positive logit multiplied by it; 1 = off. Must be finite and &gt; 0.
    /// </summary>
    public float RepeatPenalty { get; init; } = 1.0f;

    /// <summary>How many recent tokens the repetition penalty looks at (<c>--repeat-last-n</c>); 0 = off, -1 = all accepted since the last reset (llama.cpp: the whole context).</summary>
    public int RepeatLastN { get; init; } = 64;

    /// <summary>Seed of the random generator (<c>--seed</c>); null = a fresh random seed, reported by <see cref="Sampler.Seed"/>.</summary>
    public ulong? Seed { get; init; }

    /// <summary>True when the chain reduces to argmax (temperature 0).</summary>
    public bool IsGreedy => Temperature == 0f;

    /// <summary>
    /// Checks every option and throws an <see cref="ArgumentException"/> naming the first bad one the way the CLI spells it
    /// (for example "--top-p must be in [0, 1], got NaN").
    /// </summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0f)
            throw Bad("--temp must be a finite number >= 0 (0 = greedy)", Temperature);
        if (TopK < 0)
            throw Bad("--top-k must be >= 0 (0 = off)", TopK);
        if (!(TopP >= 0f && TopP <= 1f)) // also false for NaN
            throw Bad("--top-p must be in [0, 1]", TopP);
        if (!(MinP >= 0f && MinP <= 1f))
            throw Bad("--min-p must be in [0, 1]", MinP);
        if (!float.IsFinite(RepeatPenalty) || RepeatPenalty <= 0f)
            throw Bad("--repeat-penalty must be a finite number > 0 (1 = off)", RepeatPenalty);
        if (RepeatLastN < -1)
            throw Bad("--repeat-last-n must be >= -1 (0 = off, -1 = whole context)", RepeatLastN);
    }

    private static ArgumentException Bad(string rule, float got) =>
        new($"{rule}, got {got.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");

    private static ArgumentException Bad(string rule, int got) =>
        new($"{rule}, got {got.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
}
