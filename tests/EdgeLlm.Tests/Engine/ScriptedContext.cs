using EdgeLlm.Engine;

namespace EdgeLlm.Tests.Engine;

/// <summary>
/// A context whose logits favour one scripted token per generated position (10 against 0): what a model that
/// "wants" to write the script would give. Counts evaluated tokens.
/// </summary>
internal sealed class ScriptedContext(int[] script, int vocab, int contextLength = 256) : IEvalContext
{
    private int _promptLength = -1;

    /// <summary>Tokens evaluated so far.</summary>
    public int Evaluated;

    public int Position { get; private set; }
    public int ContextLength => contextLength;
    public string Description => "scripted";

    public float[] Eval(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        if (_promptLength < 0) _promptLength = tokens.Length;
        Position += tokens.Length;
        Evaluated += tokens.Length;
        var logits = new float[vocab];
        int step = Position - _promptLength;
        if (step < script.Length) logits[script[step]] = 10f;
        return logits;
    }

    public void Reset() { Position = 0; _promptLength = -1; }
    public void Rewind(int position) => Position = position;
    public void Dispose() { }
}
