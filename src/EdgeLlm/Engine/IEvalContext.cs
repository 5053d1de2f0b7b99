namespace EdgeLlm.Engine;

/// <summary>
/// What generation needs of an inference context, whichever backend runs it: the CPU
/// <see cref="InferenceContext"/> or the Vulkan context (EdgeLlm.Vulkan).
/// </summary>
public interface IEvalContext : IDisposable
{
    /// <summary>Tokens evaluated so far: the position the next token takes.</summary>
    int Position { get; }

    /// <summary>Tokens the KV cache holds.</summary>
    int ContextLength { get; }

    /// <summary>Where it runs, e.g. "cpu (4 threads)" or "vulkan (NVIDIA ...)".</summary>
    string Description { get; }

    /// <summary>Evaluates tokens (the contract of <see cref="InferenceContext.Eval"/>).</summary>
    float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false);

    /// <summary>Forgets every evaluated token.</summary>
    void Reset();

    /// <summary>Keeps only the first <paramref name="position"/> evaluated tokens (the contract of <see cref="InferenceContext.Rewind"/>).</summary>
    void Rewind(int position);

    /// <summary>
    /// True when evaluation can go on from <paramref name="position"/> (≤ <see cref="Position"/>) with the cache as it is; false
    /// when a sliding-window layer's ring no longer holds that position's window, so a <see cref="Rewind"/> there would make
    /// the next <see cref="Eval"/> evaluate every token before it again (see <see cref="InferenceContext"/>'s remarks).
    /// </summary>
    bool CanResumeAt(int position) => true;
}
