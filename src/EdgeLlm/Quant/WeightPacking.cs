using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Models;

namespace EdgeLlm.Quant;

/// <summary>
/// Load-time repacking of weight matrices into layouts that compute several rows at once
/// (llama.cpp does the same with its CPU_REPACK buffers). Today: Q4_0 into <see cref="Q4_0x8"/>, Q5_0 into <see cref="Q5_0x8"/>, Q4_1 into <see cref="Q4_1x8"/>, Q5_1 into <see cref="Q5_1x8"/>, IQ4_NL into <see cref="IQ4_NLx8"/>, MXFP4 into <see cref="MXFP4x8"/>,
/// Q8_0 into <see cref="Q8_0x8"/>, Q2_K into <see cref="Q2_Kx8"/>, Q3_K into <see cref="Q3_Kx8"/>, Q4_K into <see cref="Q4_Kx8"/>, Q5_K into <see cref="Q5_Kx8"/> and Q6_K into <see cref="Q6_Kx8"/> on x64 with AVX2 and FMA (see <see cref="DefaultLayouts"/>). The repacked copy has the matrix's exact size and row geometry and
/// replaces the mapped pages for the products, so resident memory stays about the file size: the
/// copy is read from the file with positioned reads, which do not fault the mapping in, and only
/// what get_rows reads (a few token_embd rows) is ever mapped.
/// <para>
/// Decided once per process (<see cref="Enabled"/>) because generated forward passes hold their
/// formats in static fields; a model loaded with <see cref="ModelLoadOptions.RepackWeights"/> off
/// runs the generic path. <c>EDGELLM_REPACK=0</c> turns repacking off for the process (to measure
/// it, or to compare with the plain kernels); <c>EDGELLM_REPACK=q4_0x8</c> keeps only the listed layouts.
/// </para>
/// </summary>
internal static unsafe class WeightPacking
{
    private static readonly Q4_0x8Format s_q4_0x8 = new();
    private static readonly Q8_0x8Format s_q8_0x8 = new();
    private static readonly Q2_Kx8Format s_q2_Kx8 = new();
    private static readonly Q3_Kx8Format s_q3_Kx8 = new();
    private static readonly Q4_Kx8Format s_q4_Kx8 = new();
    private static readonly Q6_Kx8Format s_q6_Kx8 = new();
    private static readonly Q5_Kx8Format s_q5_Kx8 = new();
    private static readonly Q5_0x8Format s_q5_0x8 = new();
    private static readonly Q4_1x8Format s_q4_1x8 = new();
    private static readonly Q5_1x8Format s_q5_1x8 = new();
    private static readonly IQ4_NLx8Format s_iq4_nlx8 = new();
    private static readonly MXFP4x8Format s_mxfp4x8 = new();

    /// <summary>
    /// EDGELLM_REPACK: unset or "1" repacks every layout this CPU has kernels for, "0" none, else a
    /// comma-separated list of layouts (e.g. "q4_0x8") to repack only those (for measuring one layout).
    /// </summary>
    private static readonly string? s_setting = Environment.GetEnvironmentVariable("EDGELLM_REPACK");

    /// <summary>
    /// Layouts used unless EDGELLM_REPACK lists others.
    /// q8_0x8 is on since 2026-11-29: its prompt tile folds two activations per instruction (53 against
    /// 40 GMAC/s for the plain AVX-512 Q8_0 tile, one thread; with AVX2 only (DOTNET_EnableAVX512=0)
    /// 22–23 against 12) and its decode prefetches like the plain
    /// kernel; over the matrices of a TinyLlama-shape Q8_0 file, one thread, decode reads 8.5–11 GB/s
    /// against 5.5–6.7 for the plain kernel reading the mapping. End to end (2 threads, alternating runs):
    /// pp64 65–70 → 97–105 t/s, tg32 14.6–15.2 → 17.9–19.8 t/s. Before, it was opt-in: its scales went
    /// through a float multiply that took a microcode assist on fp16-subnormal scales (see
    /// <see cref="QuantMath.HalfBitsToSingle(System.Runtime.Intrinsics.Vector256{int})"/>), and its decode step was
    /// inlined into a method too large for the JIT to keep its accumulators in registers.
    /// q6_Kx8 is on: same machine and shape as a Q4_K_M file (its Q6_K matrices are attn_v and ffn_down
    /// of half the layers, and output.weight), 2 threads, alternating runs: pp128 faster in all eight pairs
    /// (+3% to +38%, e.g. 54→75, 56→68, 60→76, 66→79 t/s), tg equal within the noise (tg32 means of four
    /// pairs 17.1 vs 17.1 t/s). Single-threaded kernels: the prompt tile (16 activations) 2.2× the plain
    /// Q6_K tile, decode 1.3–2× the plain rows.
    /// </summary>
    internal static readonly string[] DefaultLayouts = ["q4_0x8", "q4_1x8", "q5_0x8", "q5_1x8", "q8_0x8", "q2_Kx8", "q3_Kx8", "q4_Kx8", "q5_Kx8", "q6_Kx8", "iq4_nlx8", "mxfp4x8"];

    /// <summary>True when this process repacks anything (AVX2 + FMA present, EDGELLM_REPACK not 0).</summary>
    public static bool Enabled { get; } = (Q4_0x8.IsSupported || Q5_0x8.IsSupported || Q4_1x8.IsSupported || Q5_1x8.IsSupported || IQ4_NLx8.IsSupported || MXFP4x8.IsSupported || Q8_0x8.IsSupported || Q2_Kx8.IsSupported || Q3_Kx8.IsSupported || Q4_Kx8.IsSupported || Q5_Kx8.IsSupported || Q6_Kx8.IsSupported) && s_setting != "0";

    /// <summary>The repacked format matrices of <paramref name="type"/> get, or null when they stay in the GGUF layout.</summary>
    public static WeightFormat? PackedFormat(GgmlType type)
    {
        if (!Enabled) return null;
        WeightFormat? f = type switch
        {
            GgmlType.Q4_0 => s_q4_0x8,
            GgmlType.Q5_0 when Q5_0x8.IsSupported => s_q5_0x8,
            GgmlType.Q4_1 when Q4_1x8.IsSupported => s_q4_1x8,
            GgmlType.Q5_1 when Q5_1x8.IsSupported => s_q5_1x8,
            GgmlType.IQ4_NL when IQ4_NLx8.IsSupported => s_iq4_nlx8,
            GgmlType.MXFP4 when MXFP4x8.IsSupported => s_mxfp4x8,
            GgmlType.Q8_0 => s_q8_0x8,
            GgmlType.Q2_K when Q2_Kx8.IsSupported => s_q2_Kx8,
            GgmlType.Q3_K when Q3_Kx8.IsSupported => s_q3_Kx8,
            GgmlType.Q4_K when Q4_Kx8.IsSupported => s_q4_Kx8,
            GgmlType.Q5_K when Q5_Kx8.IsSupported => s_q5_Kx8,
            GgmlType.Q6_K when Q6_Kx8.IsSupported => s_q6_Kx8,
            _ => null,
        };
        if (f is null) return null;
        if (s_setting is null or "1") return DefaultLayouts.Contains(f.Layout) ? f : null;
        return s_setting.Split(',', StringSplitOptions.TrimEntries).Contains(f.Layout) ? f : null;
    }

    /// <summary>
    /// Packs <paramref name="rows"/> plain rows of <paramref name="n"/> values into <paramref name="fmt"/>'s layout;
    /// false when the layout cannot hold this data (the matrix then stays plain).
    /// </summary>
    private static bool Pack(WeightFormat fmt, byte* src, byte* dst, int rows, int n) => fmt switch
    {
        Q4_0x8Format => Q4_0x8.Pack(src, dst, rows, n),
        Q8_0x8Format => Q8_0x8.Pack(src, dst, rows, n),
        Q2_Kx8Format => Q2_Kx8.Pack(src, dst, rows, n),
        Q3_Kx8Format => Q3_Kx8.Pack(src, dst, rows, n),
        Q4_Kx8Format => Q4_Kx8.Pack(src, dst, rows, n),
        Q5_Kx8Format => Q5_Kx8.Pack(src, dst, rows, n),
        Q5_0x8Format => Q5_0x8.Pack(src, dst, rows, n),
        Q4_1x8Format => Q4_1x8.Pack(src, dst, rows, n),
        Q5_1x8Format => Q5_1x8.Pack(src, dst, rows, n),
        IQ4_NLx8Format => IQ4_NLx8.Pack(src, dst, rows, n),
        MXFP4x8Format => MXFP4x8.Pack(src, dst, rows, n),
        Q6_Kx8Format => Q6_Kx8.Pack(src, dst, rows, n),
        _ => throw new InvalidOperationException($"no packing routine for the {fmt.Layout} layout"),
    };

    /// <summary>EDGELLM_HUGEPAGES=0 keeps repacked weights on ordinary 4 KiB pages (see <see cref="AllocWeights"/>).</summary>
    private static readonly bool s_hugePages = Environment.GetEnvironmentVariable("EDGELLM_HUGEPAGES") != "0";

    /// <summary>Linux transparent huge pages: 2 MiB on x64.</summary>
    private const long HugePageBytes = 2 << 20;

    private const int MADV_HUGEPAGE = 14;

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(void* addr, nuint length, int advice);

    /// <summary>
    /// A buffer for one repacked matrix. On Linux, a matrix of 2 MiB or more starts on a 2 MiB
    /// boundary and its whole 2 MiB spans are advised as transparent huge pages (MADV_HUGEPAGE:
    /// distributions default THP to "madvise", so nothing gets them unasked); the tail stays on
    /// 4 KiB pages, so resident memory does not grow. Decode streams every weight once per token,
    /// and on 4 KiB pages that is a TLB miss per page and a hardware prefetcher that stops at each
    /// page's end. Measured on the 2-core AMD EPYC (AVX2; 2026-11-30, `edgellm bench -t 2 -p 0 -n 32
    /// -r 3`, EDGELLM_HUGEPAGES=0 and 1 alternated): tg32 higher with huge pages in 10 of 11 pairs,
    /// TinyLlama Q4_0 21.4/22.9, 20.5/25.0, 21.3/23.4 t/s; qwen2.5-0.5b Q4_0 +3% to +11% in all four; TinyLlama
    /// Q8_0 three of four. Where THP is off or the kernel refuses, madvise fails and nothing changes.
    /// </summary>
    internal static byte* AllocWeights(long bytes)
    {
        if (!s_hugePages || !OperatingSystem.IsLinux() || bytes < HugePageBytes) return (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePageBytes);
        try { _ = Madvise(p, (nuint)(bytes / HugePageBytes * HugePageBytes), MADV_HUGEPAGE); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // no libc to ask: 4 KiB pages
        return p;
    }

    /// <summary>
    /// Repacks every matrix of <paramref name="matrices"/> that has a repacked format and at least one
    /// whole group of rows. Buffers go to <paramref name="owned"/> (the model frees them).
    /// Returns the bytes repacked.
    /// </summary>
    /// <remarks>
    /// The views of one tensor (a mixture of experts' slices of ffn_*_exps, Phi-3's fused parts) share one
    /// buffer of the whole tensor's size, each at its rows' offset: one allocation, and on huge pages, instead of
    /// one small buffer per expert on 4 KiB pages. OLMoE's 1.15 MiB experts (Q4_0) each in a buffer of its own
    /// decoded 15–16 t/s against 20–24 t/s from the mapping (2026-12-01, `edgellm bench -t 2 -p 0 -n 32 -r 3`).
    /// </remarks>
    public static long Repack(GgufFile file, IEnumerable<WeightMatrix> matrices, List<nint> owned)
    {
        var todo = matrices.Distinct().Where(w => !w.IsRepacked && PackedFormat(w.Type) is { } f && w.Rows >= f.RowGroup).ToArray();
        if (todo.Length == 0) return 0;
        using var handle = file.IsFileBacked ? File.OpenHandle(file.FilePath, FileMode.Open, FileAccess.Read, FileShare.Read) : null;
        // One buffer per tensor, sized to the tensor (views cover parts of it).
        var shared = new Dictionary<GgufTensorInfo, nint>(ReferenceEqualityComparer.Instance);
        var viewCount = new Dictionary<GgufTensorInfo, int>(ReferenceEqualityComparer.Instance);
        foreach (var w in todo) viewCount[w.Tensor] = viewCount.GetValueOrDefault(w.Tensor) + 1;
        var buffers = new nint[todo.Length];
        try
        {
            foreach (var (tensor, views) in viewCount)
                if (views > 1) shared[tensor] = (nint)AllocWeights(tensor.ByteSize);
            // Matrices are independent: pack them on all cores (positioned reads share the handle safely).
            Parallel.For(0, todo.Length, i =>
            {
                var w = todo[i];
                var fmt = PackedFormat(w.Type)!;
                bool own = !shared.TryGetValue(w.Tensor, out nint whole);
                var dst = own ? AllocWeights(w.Rows * w.RowBytes) : (byte*)whole + (w.FileOffset - w.Tensor.FileOffset);
                buffers[i] = (nint)dst;
                bool ok = handle is not null ? PackFromFile(handle, w, fmt, dst) : Pack(fmt, w.FileData, dst, w.Rows, w.Cols);
                if (!ok)
                {
                    // A non-finite scale: the plain kernels handle it as ggml does; keep this matrix plain.
                    if (own) NativeMemory.AlignedFree(dst);
                    buffers[i] = 0;
                }
            });
        }
        catch (AggregateException e)
        {
            for (int i = 0; i < todo.Length; i++)
                if (buffers[i] != 0 && !shared.ContainsKey(todo[i].Tensor)) NativeMemory.AlignedFree((void*)buffers[i]);
            foreach (var b in shared.Values) NativeMemory.AlignedFree((void*)b);
            throw e.InnerExceptions.Count == 1 ? e.InnerExceptions[0] : e;
        }
        owned.AddRange(shared.Values);
        long total = 0;
        for (int i = 0; i < todo.Length; i++)
        {
            if (buffers[i] == 0) continue;
            if (!shared.ContainsKey(todo[i].Tensor)) owned.Add(buffers[i]);
            todo[i].UseRepacked(PackedFormat(todo[i].Type)!, (byte*)buffers[i]);
            total += todo[i].Rows * todo[i].RowBytes;
        }
        return total;
    }

    /// <summary>Reads the tensor into <paramref name="dst"/>, then packs it group by group in place.</summary>
    private static bool PackFromFile(Microsoft.Win32.SafeHandles.SafeFileHandle h, WeightMatrix w, WeightFormat fmt, byte* dst)
    {
        long bytes = w.Rows * w.RowBytes;
        for (long done = 0; done < bytes;)
        {
            int chunk = (int)Math.Min(1 << 30, bytes - done);
            int read = RandomAccess.Read(h, new Span<byte>(dst + done, chunk), w.FileOffset + done);
            if (read <= 0) throw new IOException($"{w.Name}: the file ended while reading the tensor at offset {w.FileOffset + done}");
            done += read;
        }
        long groupBytes = fmt.RowGroup * w.RowBytes;
        var tmp = (byte*)NativeMemory.Alloc((nuint)groupBytes);
        try
        {
            for (int g = 0; g < w.Rows / fmt.RowGroup; g++)
            {
                byte* at = dst + g * groupBytes;
                Buffer.MemoryCopy(at, tmp, groupBytes, groupBytes);
                if (!Pack(fmt, tmp, at, fmt.RowGroup, w.Cols)) return false;
            }
        }
        finally
        {
            NativeMemory.Free(tmp);
        }
        return true;
    }

    /// <summary>
    /// A prompt tile computed one activation at a time with a layout's decode-rows routine (the scalar
    /// statement, where a CPU lacks the tile kernel): same arithmetic per (row, activation) as the rows,
    /// written through a copy because <paramref name="yStride"/> need not be <paramref name="nRows"/>.
    /// </summary>
    internal static void TileByRows(delegate*<int, byte*, long, int, byte*, float*, void> rows, int n, byte* weights, long rowBytes, int nRows,
        byte* acts, long actStride, int nActs, float* y, long yStride)
    {
        var tmp = new float[nRows];
        fixed (float* t = tmp)
            for (int a = 0; a < nActs; a++)
            {
                rows(n, weights, rowBytes, nRows, acts + a * actStride, t);
                for (int r = 0; r < nRows; r++) y[a * yStride + r] = t[r];
            }
    }

    /// <summary>Frees the buffers <see cref="Repack"/> allocated.</summary>
    public static void Free(List<nint> owned)
    {
        foreach (var p in owned) NativeMemory.AlignedFree((void*)p);
        owned.Clear();
    }
}
