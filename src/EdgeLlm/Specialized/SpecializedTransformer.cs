using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;

namespace EdgeLlm.Specialized;

/// <summary>
/// A forward pass generated at compile time (generators/EdgeLlm.Generators) for one model
/// config: its dimensions are constants and its per-tensor weight types are fixed. It runs a
/// loaded model only when the model matches <see cref="Shape"/> exactly; anything else takes the
/// generic path. Instances register themselves with <see cref="SpecializationRegistry"/>.
/// </summary>
public abstract unsafe class SpecializedTransformer
{
    private static long s_totalRuns;
    private long _runs;

    /// <summary>The config's name (edgellm.name), e.g. <c>tinyllama-1.1b-q4_0</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Forward passes this specialization has run (tests assert that the specialized code ran).</summary>
    public long Runs => Interlocked.Read(ref _runs);

    /// <summary>Forward passes run by any specialization in this process.</summary>
    public static long SpecializedRuns => Interlocked.Read(ref s_totalRuns);

    /// <summary>What a model must be for this code to run it.</summary>
    internal abstract SpecializationShape Shape { get; }

    /// <summary>
    /// Runs <paramref name="b"/> through the whole model and writes the logits of the last
    /// <paramref name="outputRows"/> tokens, as <see cref="Model"/>'s generic forward pass does.
    /// </summary>
    internal abstract void Forward(Model model, ForwardBatch b, int outputRows, float* logits);

    /// <summary>Counts one forward pass (generated code calls it first).</summary>
    protected void CountRun()
    {
        Interlocked.Increment(ref _runs);
        Interlocked.Increment(ref s_totalRuns);
    }

    /// <summary>Null when <paramref name="model"/> matches <see cref="Shape"/>, else the first difference.</summary>
    internal string? Mismatch(Model model)
    {
        var s = Shape;
        var c = model.Config;
        if (c.Architecture != s.Architecture) return $"architecture {c.Architecture}, not {s.Architecture}";
        if (c.IsMixtureOfExperts) return $"a mixture of {c.ExpertCount} experts, not one feed-forward network per block";
        if (!c.PreNorms) return "no norm before the attention and the feed-forward network (post-norms only)";
        if (c.VocabSize != s.Vocab) return $"vocabulary {c.VocabSize}, not {s.Vocab}";
        if (c.EmbeddingLength != s.Dim) return $"embedding length {c.EmbeddingLength}, not {s.Dim}";
        if (c.BlockCount != s.LayerCount) return $"{c.BlockCount} layers, not {s.LayerCount}";
        if (c.FeedForwardLength != s.FeedForward) return $"feed-forward length {c.FeedForwardLength}, not {s.FeedForward}";
        if (c.HeadCount != s.Heads || c.HeadCountKv != s.KvHeads || c.HeadDim != s.HeadDim)
            return $"heads {c.HeadCount}/{c.HeadCountKv}×{c.HeadDim}, not {s.Heads}/{s.KvHeads}×{s.HeadDim}";
        if (c.RopeDimensionCount != s.HeadDim) return $"rope dimension count {c.RopeDimensionCount}, not the head dimension {s.HeadDim}";
        if (c.RmsEps != s.RmsEps) return $"rms epsilon {c.RmsEps}, not {s.RmsEps}";
        if (c.RopeFreqBase != s.RopeBase) return $"rope base {c.RopeFreqBase}, not {s.RopeBase}";
        if (c.RopeYarn.ExtFactor != 0f) return "YaRN rope scaling";
        if (c.RopeFreqScale != 1f) return "linear rope scaling";
        if (c.RopeAttnFactor != 1f) return $"rope attention factor {c.RopeAttnFactor}";
        if (c.SlidingWindow > 0 || c.GeluGate || c.EmbeddingScale != 1f || c.FinalLogitSoftcap != 0 || c.AttentionScale != 0 || c.AttnLogitSoftcap != 0)
            return "Gemma-style blocks (sliding window, GeGLU, scaled embeddings)";
        if (c.AttnTemperatureScale != 0f) return "attention temperature scaling";
        if (c.QkNormAfterRope) return "Q/K norms after the rope";
        if (c.NoRopeLayerStep != 0 || c.ResidualScale != 1f || c.LogitScale != 1f)
            return "layers without rope, or scaled residuals or logits";
        if (c.RopeNeox != s.RopeNeox) return "rope layout";
        if (c.HasQkNorm != s.QkNorm) return c.HasQkNorm ? "per-head Q/K norms" : "no per-head Q/K norms";
        if (c.TiedEmbeddings != s.Tied) return c.TiedEmbeddings ? "tied embeddings" : "untied embeddings";
        if (!FactorsMatch(model.RopeFactors, s.RopeFactors)) return "rope frequency factors";
        if (model.TokenEmbedding.Type != s.TokenEmbd) return $"token_embd.weight is {GgmlTypes.Name(model.TokenEmbedding.Type)}, not {GgmlTypes.Name(s.TokenEmbd)}";
        if (model.Output.Type != s.Output) return $"the output projection is {GgmlTypes.Name(model.Output.Type)}, not {GgmlTypes.Name(s.Output)}";
        if (LayoutMismatch(model.Output) is { } outputWhy) return outputWhy;
        var layers = model.Layers;
        for (int il = 0; il < layers.Count; il++)
        {
            var l = layers[il];
            WeightMatrix[] m = [l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down];
            for (int k = 0; k < m.Length; k++)
            {
                var want = s.LayerTypes[il * 7 + k];
                if (m[k].Type != want) return $"{m[k].Name} is {GgmlTypes.Name(m[k].Type)}, not {GgmlTypes.Name(want)}";
                if (LayoutMismatch(m[k]) is { } why) return why;
            }
            bool hasBias = l.Bq is not null || l.Bk is not null || l.Bv is not null;
            bool allBias = l.Bq is not null && l.Bk is not null && l.Bv is not null;
            if (s.QkvBias ? !allBias : hasBias) return s.QkvBias ? $"blk.{il} lacks Q/K/V biases" : $"blk.{il} has Q/K/V biases";
            if (s.QkNorm && (l.QNorm is null || l.KNorm is null)) return $"blk.{il} lacks the Q/K head norms";
        }
        return null;
    }

    /// <summary>The generated code computes each type with <see cref="SpecializedKernels.Format"/>: a matrix must be in that format's layout (repacked or not).</summary>
    private static string? LayoutMismatch(WeightMatrix m)
    {
        string? want = SpecializedKernels.Format(m.Type).Layout;
        return m.Format.Layout == want ? null : $"{m.Name} is in the {m.Format.Layout ?? "GGUF"} layout, not {want ?? "GGUF"} (see ModelLoadOptions.RepackWeights)";
    }

    /// <summary>
    /// The factors are computed from rope_scaling at compile time and by the converter in its own
    /// float arithmetic; they agree to a few ulps, which is all a match needs.
    /// </summary>
    private static bool FactorsMatch(float[]? file, float[]? expected)
    {
        if (file is null || expected is null) return file is null && expected is null;
        if (file.Length != expected.Length) return false;
        for (int i = 0; i < file.Length; i++)
            if (MathF.Abs(file[i] - expected[i]) > 1e-5f * MathF.Abs(expected[i])) return false;
        return true;
    }
}

/// <summary>The hyper-parameters and tensor types a <see cref="SpecializedTransformer"/> was generated for.</summary>
internal sealed record SpecializationShape
{
    public required string Architecture { get; init; }
    public required int Vocab { get; init; }
    public required int Dim { get; init; }
    public required int LayerCount { get; init; }
    public required int FeedForward { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required float RmsEps { get; init; }
    public required float RopeBase { get; init; }
    public required bool Tied { get; init; }
    public required bool QkvBias { get; init; }
    public required bool RopeNeox { get; init; }

    /// <summary>Per-head RMSNorm of queries and keys before rope (qwen3); generated code sets it only when true.</summary>
    public bool QkNorm { get; init; }

    public required float[]? RopeFactors { get; init; }
    public required GgmlType TokenEmbd { get; init; }
    public required GgmlType Output { get; init; }

    /// <summary>Per layer, in order: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.</summary>
    public required GgmlType[] LayerTypes { get; init; }
}
