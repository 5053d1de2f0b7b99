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
}
