namespace EdgeLlm.Models;

/// <summary>
/// A GGUF file cannot be loaded as a model: its architecture is unknown, a tensor is missing or
/// has the wrong shape, a tensor's type has no <see cref="Quant.WeightFormat"/>, a hyperparameter
/// is missing or contradicts the tensors, or the model would not fit in memory. The message names
/// the key or tensor and the values involved.
/// </summary>
public sealed class ModelLoadException : Exception
{
    /// <summary>Creates the exception with a message naming what was wrong.</summary>
    public ModelLoadException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public ModelLoadException(string message, Exception inner) : base(message, inner) { }
}
