using System.Runtime.InteropServices;
using EdgeLlm.Engine;
using EdgeLlm.Sampling;

namespace EdgeLlm.Native;

/// <summary>
/// <c>edgellm_context_params</c> of edgellm.h, field for field (64 bytes; offsets 0,4,8,16,20,24,28,32,36,40,44,48,52,56, then padding).
/// Fields are only ever appended (C callers start from <c>edgellm_context_params_default()</c>), never reordered.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ContextParams
{
    /// <summary>EDGELLM_SEED_RANDOM.</summary>
    public const ulong RandomSeed = ulong.MaxValue;

    public int ContextLength;
    public int Threads;
    public ulong Seed;
    public float Temperature;
    public int TopK;
    public float TopP;
    public float MinP;
    public float RepeatPenalty;
    public int RepeatLastN;
    public int Backend;
    public int Device;
    public int TypeK;
    public int TypeV;
    public int SwaFull;

    /// <summary>The defaults: <see cref="SamplerOptions"/>'s (llama.cpp's) and a 4096-token context.</summary>
    public static ContextParams Default()
    {
        var s = new SamplerOptions();
        return new ContextParams
        {
            ContextLength = 4096,
            Threads = 0,
            Seed = RandomSeed,
            Temperature = s.Temperature,
            TopK = s.TopK,
            TopP = s.TopP,
            MinP = s.MinP,
            RepeatPenalty = s.RepeatPenalty,
            RepeatLastN = s.RepeatLastN,
            Backend = (int)NativeBackend.Cpu,
            Device = -1,
            TypeK = (int)KvCacheType.F16,
            TypeV = (int)KvCacheType.F16,
            SwaFull = 0,
        };
    }

    /// <summary>The backend and device fields, validated (ArgumentException names the bad field by its C name).</summary>
    public readonly (NativeBackend Backend, int? Device) ToBackend()
    {
        if (Backend is < (int)NativeBackend.Cpu or > (int)NativeBackend.Auto)
            throw new ArgumentException($"edgellm_context_params.backend must be EDGELLM_BACKEND_CPU (0), EDGELLM_BACKEND_VULKAN (1) or EDGELLM_BACKEND_AUTO (2), got {Backend}");
        if (Device < -1)
            throw new ArgumentException($"edgellm_context_params.device must be >= -1 (-1 = the best Vulkan device), got {Device}");
        return ((NativeBackend)Backend, Device == -1 ? null : Device);
    }

    /// <summary>The KV cache types (edgellm_cache_type values are <see cref="KvCacheType"/>'s), validated (ArgumentException names the bad field).</summary>
    public readonly (KvCacheType K, KvCacheType V) ToCacheTypes()
    {
        static KvCacheType Check(int value, string field) => Enum.IsDefined((KvCacheType)value)
            ? (KvCacheType)value
            : throw new ArgumentException($"edgellm_context_params.{field} must be EDGELLM_CACHE_F16 (0), EDGELLM_CACHE_Q8_0 (1) or EDGELLM_CACHE_Q4_0 (2), got {value}");
        return (Check(TypeK, "type_k"), Check(TypeV, "type_v"));
    }

    /// <summary>swa_full, validated: 0 or 1 (ArgumentException names the field).</summary>
    public readonly bool ToFullSlidingWindowCache() => SwaFull switch
    {
        0 => false,
        1 => true,
        _ => throw new ArgumentException($"edgellm_context_params.swa_full must be 0 (a ring of the window, the default) or 1 (every position), got {SwaFull}"),
    };

    /// <summary>The sampler settings, validated (ArgumentException names the bad field by its C name).</summary>
    public readonly SamplerOptions ToSamplerOptions()
    {
        var o = new SamplerOptions
        {
            Temperature = Temperature,
            TopK = TopK,
            TopP = TopP,
            MinP = MinP,
            RepeatPenalty = RepeatPenalty,
            RepeatLastN = RepeatLastN,
            Seed = Seed == RandomSeed ? null : Seed,
        };
        try
        {
            o.Validate();
        }
        catch (ArgumentException e)
        {
            // SamplerOptions spells options the CLI way (--top-p); C callers know the struct fields.
            string msg = e.Message.Replace("--temp ", "temperature ", StringComparison.Ordinal)
                .Replace("--top-k", "top_k", StringComparison.Ordinal).Replace("--top-p", "top_p", StringComparison.Ordinal)
                .Replace("--min-p", "min_p", StringComparison.Ordinal).Replace("--repeat-penalty", "repeat_penalty", StringComparison.Ordinal)
                .Replace("--repeat-last-n", "repeat_last_n", StringComparison.Ordinal);
            throw new ArgumentException($"edgellm_context_params.{msg}", e);
        }
        return o;
    }
}

/// <summary>The <c>edgellm_backend</c> values of edgellm.h (part of the ABI).</summary>
internal enum NativeBackend
{
    Cpu = 0,
    Vulkan = 1,
    Auto = 2,
}
