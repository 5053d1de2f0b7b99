using EdgeLlm.Gguf;
using EdgeLlm.Models;

namespace EdgeLlm.Specialized;

/// <summary>
/// The specialized forward passes compiled into this build. Generated classes add themselves from
/// a module initializer (no reflection, so NativeAOT keeps them); <see cref="Model.Load(GgufFile, ModelLoadOptions?)"/>
/// picks the one that matches the file, if any.
/// </summary>
public static class SpecializationRegistry
{
    private static readonly List<SpecializedTransformer> s_all = [];

    /// <summary>Adds a specialization (called by generated module initializers).</summary>
    public static void Register(SpecializedTransformer specialization)
    {
        ArgumentNullException.ThrowIfNull(specialization);
        lock (s_all) s_all.Add(specialization);
    }

    /// <summary>Every specialization in this build.</summary>
    public static IReadOnlyList<SpecializedTransformer> All
    {
        get { lock (s_all) return s_all.ToArray(); }
    }

    /// <summary>The specialization with this name, or null.</summary>
    public static SpecializedTransformer? Get(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The specialization that matches <paramref name="model"/> exactly, or null (a mismatch is never an error).</summary>
    public static SpecializedTransformer? Find(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        foreach (var s in All)
            if (s.Mismatch(model) is null) return s;
        return null;
    }

    /// <summary>
    /// One line for <c>edgellm info</c>: <c>specialized: NAME</c>, or <c>generic</c> (with the
    /// nearest specialization of the same shape and what differs, when there is one).
    /// </summary>
    public static string Describe(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        Model model;
        try
        {
            model = Model.Load(file, new ModelLoadOptions { SkipMemoryCheck = true });
        }
        catch (ModelLoadException)
        {
            return "generic";
        }
        using (model) return Describe(model);
    }

    /// <summary>As <see cref="Describe(GgufFile)"/> for a loaded model (whether or not it was loaded with <see cref="ModelLoadOptions.Generic"/>).</summary>
    public static string Describe(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Find(model) is { } s) return model.Specialization is null || model.RunGeneric ? $"generic (forced; specialized: {s.Name} available)" : $"specialized: {s.Name}";
        // Nearest: same architecture and embedding width, to say why it did not match.
        foreach (var c in All)
        {
            if (c.Shape.Architecture == model.Config.Architecture && c.Shape.Dim == model.Config.EmbeddingLength && c.Shape.LayerCount == model.Config.BlockCount)
                return $"generic ({c.Name} differs: {c.Mismatch(model)})";
        }
        return "generic";
    }
}
