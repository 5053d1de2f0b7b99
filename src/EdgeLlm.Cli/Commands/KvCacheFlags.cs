using System.CommandLine;
using EdgeLlm.Engine;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// llama.cpp's <c>--cache-type-k</c>/<c>-ctk</c> and <c>--cache-type-v</c>/<c>-ctv</c>: f16 (default), q8_0 or
/// q4_0 (<see cref="KvCacheType"/>). A quantized cache runs on the CPU backend; with <c>--backend vulkan</c> it is a
/// usage error, with <c>--backend auto</c> it picks the CPU. <c>--swa-full</c> (llama.cpp's): sliding-window layers keep
/// every position instead of a ring of their window (<see cref="InferenceContext"/>). Commands with a draft model
/// (<c>-md</c>) also take llama.cpp's <c>-ctkd</c>/<c>--cache-type-k-draft</c> and <c>-ctvd</c>/<c>--cache-type-v-draft</c>
/// for the draft's cache (f16 by default, whatever the target's is, as llama.cpp; ignored without <c>-md</c>).
/// </summary>
internal sealed class KvCacheFlags(bool draft = false)
{
    public Option<string> TypeK { get; } = new("--cache-type-k", "-ctk")
    {
        Description = "How the KV cache stores keys: f16, q8_0 (half the memory) or q4_0 (a quarter), as llama.cpp",
        DefaultValueFactory = _ => "f16",
    };

    public Option<string> TypeV { get; } = new("--cache-type-v", "-ctv")
    {
        Description = "How the KV cache stores values: f16, q8_0 or q4_0, as llama.cpp",
        DefaultValueFactory = _ => "f16",
    };

    public Option<bool> SwaFull { get; } = new("--swa-full")
    {
        Description = "Sliding-window layers (Gemma) keep every position, not only their window's (more memory; no re-evaluation after deep rewinds), as llama.cpp",
    };

    public Option<string> TypeKDraft { get; } = new("--cache-type-k-draft", "-ctkd")
    {
        Description = "How the draft model's KV cache stores keys: f16, q8_0 or q4_0",
        DefaultValueFactory = _ => "f16",
    };

    public Option<string> TypeVDraft { get; } = new("--cache-type-v-draft", "-ctvd")
    {
        Description = "How the draft model's KV cache stores values: f16, q8_0 or q4_0",
        DefaultValueFactory = _ => "f16",
    };

    public IEnumerable<Option> All => draft ? [TypeK, TypeV, SwaFull, TypeKDraft, TypeVDraft] : [TypeK, TypeV, SwaFull];

    /// <summary>The two types; a name outside f16, q8_0, q4_0, or a quantized cache with <c>--backend vulkan</c>, is a usage error naming the flag.</summary>
    public KvCacheTypePair Read(ParseResult pr, string? backend) =>
        Read(pr, backend, TypeK, TypeV, ("--cache-type-k", "-ctk"), ("--cache-type-v", "-ctv"));

    /// <summary>The draft model's cache (<c>-ctkd</c>/<c>-ctvd</c>, and <c>--swa-full</c> as the target's), checked as <see cref="Read(ParseResult, string?)"/> checks the target's.</summary>
    public KvCacheTypePair ReadDraft(ParseResult pr, string? backend) =>
        Read(pr, backend, TypeKDraft, TypeVDraft, ("--cache-type-k-draft", "-ctkd"), ("--cache-type-v-draft", "-ctvd"));

    private KvCacheTypePair Read(ParseResult pr, string? backend, Option<string> k, Option<string> v, (string Long, string Short) kName, (string Long, string Short) vName)
    {
        var types = new KvCacheTypePair(Parse(pr.GetValue(k), kName.Long), Parse(pr.GetValue(v), vName.Long), pr.GetValue(SwaFull));
        if (types.Quantized && backend == "vulkan")
            throw new UsageException($"{kName.Short} {types.K.Name()} {vName.Short} {types.V.Name()}: a quantized KV cache runs on the CPU backend only (the Vulkan backend keeps an f16 cache); use --backend cpu or {kName.Short} f16 {vName.Short} f16");
        return types;
    }

    private static KvCacheType Parse(string? value, string flag)
    {
        try
        {
            return KvCacheTypes.Parse(value ?? "f16", flag);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }
}

/// <summary>The KV cache's key and value types a command runs with, and whether sliding-window layers keep every position (<c>--swa-full</c>).</summary>
internal readonly record struct KvCacheTypePair(KvCacheType K, KvCacheType V, bool FullSwa = false)
{
    /// <summary>f16 for both (the default).</summary>
    public static KvCacheTypePair F16 => default;

    public bool Quantized => K != KvCacheType.F16 || V != KvCacheType.F16;
}
