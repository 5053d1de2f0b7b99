using EdgeLlm.Engine;
using EdgeLlm.Gguf;
using EdgeLlm.Models;
using EdgeLlm.Quant;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Models;

/// <summary>
/// Load-time repacking (<see cref="ModelLoadOptions.RepackWeights"/>, <see cref="WeightPacking"/>):
/// both layouts meet llama.cpp's logits, they differ from each other only by float order, and a
/// model loaded without repacking still runs (generic path when a specialization expects the
/// repacked layout).
/// </summary>
public class RepackedWeightsTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("syn-llama-q4_0")]
    [InlineData("syn-qwen2-q4_0")]
    [InlineData("stories260K-q4_0")]
    public void BothLayouts_MatchLlamaCpp_AndEachOther(string model)
    {
        var golden = GoldenCase.Load(model, "p1");
        float[] Logits(bool repack, out Model m)
        {
            m = Model.Load(SharedData.Model(model), new ModelLoadOptions { RepackWeights = repack });
            using var ctx = new InferenceContext(m, contextLength: 256);
            return ctx.Eval(golden.PromptIds, allLogits: true);
        }
        float[] packed = Logits(true, out var mp);
        float[] plain = Logits(false, out var mf);
        using (mp)
        using (mf)
        {
            Assert.Equal(0, mf.RepackedBytes);
            Assert.Empty(mf.RepackedLayouts);
            if (WeightPacking.Enabled)
            {
                Assert.True(mp.RepackedBytes > 0);
                Assert.Contains("q4_0x8", mp.RepackedLayouts);
                // llama.cpp's Q4_0 files keep output.weight in Q6_K: q6_Kx8 when that layout is on.
                Assert.Subset(new HashSet<string>(["q4_0x8", "q6_Kx8"]), mp.RepackedLayouts.ToHashSet());
                Assert.Equal(WeightPacking.PackedFormat(GgmlType.Q6_K) is not null && mp.Output.Type == GgmlType.Q6_K, mp.RepackedLayouts.Contains("q6_Kx8"));
            }
            double fPacked = GoldenCase.Figure(packed, golden.Logits), fPlain = GoldenCase.Figure(plain, golden.Logits);
            double fEach = GoldenCase.Figure(packed, plain);
            output.WriteLine($"{model}: repacked {mp.RepackedBytes} bytes ({string.Join(",", mp.RepackedLayouts)}); figure vs llama.cpp: repacked {fPacked:G4}, plain {fPlain:G4}; repacked vs plain {fEach:G4}; forward {(mp.Specialization is null ? "generic" : "specialized")} / {(mf.Specialization is null ? "generic" : "specialized")}");
            Assert.True(fPacked <= 0.10, $"repacked figure {fPacked}");
            Assert.True(fPlain <= 0.10, $"plain figure {fPlain}");
            Assert.True(fEach <= 0.05, $"repacked vs plain figure {fEach}");
            // A specialization computes Q4_0 in the repacked layout: a plain-layout model must not run it.
            if (WeightPacking.Enabled) Assert.Null(mf.Specialization);
        }
    }

    [Fact]
    public void RepackLater_EqualsRepackAtLoad_AndSelectsTheSpecialization()
    {
        var golden = GoldenCase.Load("syn-llama-q4_0", "p1");
        using var atLoad = Model.Load(SharedData.Model("syn-llama-q4_0"));
        using var later = Model.Load(SharedData.Model("syn-llama-q4_0"), new ModelLoadOptions { RepackWeights = false });
        Assert.Equal(0, later.RepackedBytes);
        later.RepackWeights();
        later.RepackWeights(); // once only
        Assert.Equal(atLoad.RepackedBytes, later.RepackedBytes);
        Assert.Equal(atLoad.RepackedLayouts, later.RepackedLayouts);
        Assert.Equal(atLoad.Specialization?.Name, later.Specialization?.Name);
        float[] Logits(Model m)
        {
            using var ctx = new InferenceContext(m, contextLength: 256);
            return ctx.Eval(golden.PromptIds, allLogits: true);
        }
        Assert.Equal(Logits(atLoad), Logits(later));
        output.WriteLine($"repacked later: {later.RepackedBytes} bytes, forward {(later.Specialization is null ? "generic" : later.Specialization.Name)}, logits identical to repacking at load");
    }
}

/// <summary>
/// <see cref="WeightPacking.AllocWeights"/>: a repacked matrix of 2 MiB or more starts on a 2 MiB
/// boundary and its whole 2 MiB spans are advised as transparent huge pages, the tail not (so
/// resident memory does not grow); read back from /proc/self/smaps.
/// </summary>
public class HugePageWeightsTests(ITestOutputHelper output)
{
    [Fact]
    public unsafe void LargeBuffers_StartOnA2MiBBoundary_AndOnlyWholeSpansAreAdvised()
    {
        if (!OperatingSystem.IsLinux()) return;
        const long mib2 = 2 << 20;
        long bytes = 5 * (1L << 20) + 12345; // two whole 2 MiB spans and a tail
        byte* p = WeightPacking.AllocWeights(bytes);
        try
        {
            Assert.Equal(0, (long)p % mib2);
            new Span<byte>(p, (int)bytes).Fill(1);
            string mode = File.Exists("/sys/kernel/mm/transparent_hugepage/enabled") ? File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Trim() : "(no THP)";
            int? head = ThpEligible((nint)p), tail = ThpEligible((nint)(p + bytes - 1));
            output.WriteLine($"THP mode {mode}; THPeligible: head {head}, tail {tail}");
            if (mode.Contains("[madvise]", StringComparison.Ordinal))
            {
                Assert.Equal(1, head);
                Assert.Equal(0, tail);
            }
        }
        finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(p); }

        byte* small = WeightPacking.AllocWeights(100_000);
        Assert.Equal(0, (long)small % 64);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(small);
    }

    /// <summary>The THPeligible field of the mapping holding <paramref name="address"/>, or null.</summary>
    private static int? ThpEligible(nint address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && long.TryParse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber, null, out long start)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), System.Globalization.NumberStyles.HexNumber, null, out long end))
            {
                inside = address >= start && address < end;
                continue;
            }
            if (inside && line.StartsWith("THPeligible:", StringComparison.Ordinal))
                return int.Parse(line.AsSpan("THPeligible:".Length).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }
}
