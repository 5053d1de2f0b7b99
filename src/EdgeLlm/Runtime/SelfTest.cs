using System.Globalization;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Runtime;

/// <summary>
/// Checks every SIMD kernel this CPU can run against its scalar reference on random data
/// (fixed seed), with edge values: zero, huge, tiny and negative scales, all-max and all-min
/// quants, and block counts that reach every tail path. Meant for targets where
/// <c>dotnet test</c> cannot run (the linux-arm64 NativeAOT binary under qemu:
/// <c>edgellm selftest</c>). No reflection: the kernel list is written out.
/// </summary>
public static unsafe class SelfTest
{
    /// <summary>Runs every check available here, one line each, then <c>N passed, M failed</c>; returns the failed count.</summary>
    public static int Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var ci = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(ci, $"cpu: {CpuFeatures.Describe()}; kernel path {CpuFeatures.KernelPath}"));
        int passed = 0, failed = 0;
        foreach (var c in Checks())
        {
            if (!c.Supported)
            {
                output.WriteLine(string.Create(ci, $"skip {c.Name} [{c.Isa}]: not supported on this CPU"));
                continue;
            }
            string? error;
            try { error = c.Execute(); }
            catch (Exception e) when (e is not OutOfMemoryException) { error = $"{e.GetType().Name}: {e.Message}"; }
            if (error is null) { passed++; output.WriteLine(string.Create(ci, $"ok   {c.Name} [{c.Isa}]")); }
            else { failed++; output.WriteLine(string.Create(ci, $"FAIL {c.Name} [{c.Isa}]: {error}")); }
        }
        output.WriteLine(string.Create(ci, $"{passed} passed, {failed} failed"));
        return failed;
    }

    /// <summary>A dot-product kernel: <paramref name="n"/> values of weights <paramref name="x"/> with activations <paramref name="y"/>.</summary>
    internal delegate float DotFn(int n, byte* x, byte* y);

    /// <summary>One check: <see cref="Execute"/> returns null when it passes, else what differed.</summary>
    internal sealed class Check(string name, string isa, bool supported, Func<string?> execute)
    {
        public string Name => name;
        public string Isa => isa;
        public bool Supported => supported;
        public Func<string?> Execute => execute;
    }

    /// <summary>A fast dot path and its reference.</summary>
    internal sealed record DotKernel(string Format, GgmlType Weight, GgmlType Act, string Isa, bool Supported, DotFn Fast, DotFn Reference);

    /// <summary>The ways weights and activations are filled.</summary>
    internal enum Fill { Random, ZeroScale, HugeScale, TinyScale, NegativeScale, AllMax, AllMin }

    /// <summary>Block counts: 0, odd, 4k-1 .. 4k+3 (AVX-512 steps of four blocks and their tails), long rows.</summary>
    internal static readonly int[] BlockCounts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 16, 33, 128];

    private static bool Neon => AdvSimd.Arm64.IsSupported;
    private static bool NeonDp => AdvSimd.Arm64.IsSupported && Dp.IsSupported;

    /// <summary>Every fast dot kernel with its ISA requirement.</summary>
    internal static IReadOnlyList<DotKernel> DotKernels() =>
    [
        .. Legacy("Q4_0", GgmlType.Q4_0, GgmlType.Q8_0, Q4_0.DotQ4_0Q8_0Reference, Q4_0.DotQ4_0Q8_0Avx512, Q4_0.DotQ4_0Q8_0Avx2, Q4_0.DotQ4_0Q8_0AdvSimdDp, Q4_0.DotQ4_0Q8_0AdvSimd, Q4_0.DotQ4_0Q8_0Vector128),
        .. Legacy("Q4_1", GgmlType.Q4_1, GgmlType.Q8_1, Q4_1.DotQ4_1Q8_1Reference, Q4_1.DotQ4_1Q8_1Avx512, Q4_1.DotQ4_1Q8_1Avx2, Q4_1.DotQ4_1Q8_1AdvSimdDp, Q4_1.DotQ4_1Q8_1AdvSimd, Q4_1.DotQ4_1Q8_1Vector128),
        .. Legacy("Q5_0", GgmlType.Q5_0, GgmlType.Q8_0, Q5_0.DotQ5_0Q8_0Reference, Q5_0.DotQ5_0Q8_0Avx512, Q5_0.DotQ5_0Q8_0Avx2, Q5_0.DotQ5_0Q8_0AdvSimdDp, Q5_0.DotQ5_0Q8_0AdvSimd, Q5_0.DotQ5_0Q8_0Vector128),
        .. Legacy("Q5_1", GgmlType.Q5_1, GgmlType.Q8_1, Q5_1.DotQ5_1Q8_1Reference, Q5_1.DotQ5_1Q8_1Avx512, Q5_1.DotQ5_1Q8_1Avx2, Q5_1.DotQ5_1Q8_1AdvSimdDp, Q5_1.DotQ5_1Q8_1AdvSimd, Q5_1.DotQ5_1Q8_1Vector128),
        .. Legacy("Q8_0", GgmlType.Q8_0, GgmlType.Q8_0, Q8_0.DotQ8_0Q8_0Reference, Q8_0.DotQ8_0Q8_0Avx512, Q8_0.DotQ8_0Q8_0Avx2, Q8_0.DotQ8_0Q8_0AdvSimdDp, Q8_0.DotQ8_0Q8_0AdvSimd, Q8_0.DotQ8_0Q8_0Vector128),
        .. Legacy("IQ4_NL", GgmlType.IQ4_NL, GgmlType.Q8_0, IQ4_NL.DotIQ4_NLQ8_0Reference, IQ4_NL.DotIQ4_NLQ8_0Avx512, IQ4_NL.DotIQ4_NLQ8_0Avx2, IQ4_NL.DotIQ4_NLQ8_0AdvSimdDp, IQ4_NL.DotIQ4_NLQ8_0AdvSimd, IQ4_NL.DotIQ4_NLQ8_0Vector128),
        .. Legacy("MXFP4", GgmlType.MXFP4, GgmlType.Q8_0, MXFP4.DotMXFP4Q8_0Reference, MXFP4.DotMXFP4Q8_0Avx512, MXFP4.DotMXFP4Q8_0Avx2, MXFP4.DotMXFP4Q8_0AdvSimdDp, MXFP4.DotMXFP4Q8_0AdvSimd, MXFP4.DotMXFP4Q8_0Vector128),
        // LegacyTile.DotRow, the formats' NEON VecDot, with the portable lanes: what x64 can run of it.
        RowOf<Q4_0TileWeights>(GgmlType.Q4_0, GgmlType.Q8_0, Q4_0.DotQ4_0Q8_0Reference),
        RowOf<Q4_1TileWeights>(GgmlType.Q4_1, GgmlType.Q8_1, Q4_1.DotQ4_1Q8_1Reference),
        RowOf<Q5_0TileWeights>(GgmlType.Q5_0, GgmlType.Q8_0, Q5_0.DotQ5_0Q8_0Reference),
        RowOf<Q5_1TileWeights>(GgmlType.Q5_1, GgmlType.Q8_1, Q5_1.DotQ5_1Q8_1Reference),
        RowOf<Q8_0TileWeights>(GgmlType.Q8_0, GgmlType.Q8_0, Q8_0.DotQ8_0Q8_0Reference),
        RowOf<IQ4_NLTileWeights>(GgmlType.IQ4_NL, GgmlType.Q8_0, IQ4_NL.DotIQ4_NLQ8_0Reference),
        RowOf<MXFP4TileWeights>(GgmlType.MXFP4, GgmlType.Q8_0, MXFP4.DotMXFP4Q8_0Reference),
        .. KQuant("Q2_K", GgmlType.Q2_K, (n, x, y) => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)x, (BlockQ8_K*)y),
            (n, x, y) => Q2_K.DotQ2_KQ8_KAvx512(n, (BlockQ2_K*)x, (BlockQ8_K*)y), (n, x, y) => Q2_K.DotQ2_KQ8_KAvx2(n, (BlockQ2_K*)x, (BlockQ8_K*)y)),
        .. KQuant("Q3_K", GgmlType.Q3_K, (n, x, y) => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)x, (BlockQ8_K*)y),
            (n, x, y) => Q3_K.DotQ3_KQ8_KAvx512(n, (BlockQ3_K*)x, (BlockQ8_K*)y), (n, x, y) => Q3_K.DotQ3_KQ8_KAvx2(n, (BlockQ3_K*)x, (BlockQ8_K*)y)),
        .. KQuant("Q4_K", GgmlType.Q4_K, (n, x, y) => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)x, (BlockQ8_K*)y),
            (n, x, y) => Q4_K.DotQ4_KQ8_KAvx512(n, (BlockQ4_K*)x, (BlockQ8_K*)y), (n, x, y) => Q4_K.DotQ4_KQ8_KAvx2(n, (BlockQ4_K*)x, (BlockQ8_K*)y)),
        .. KQuant("Q5_K", GgmlType.Q5_K, (n, x, y) => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)x, (BlockQ8_K*)y),
            (n, x, y) => Q5_K.DotQ5_KQ8_KAvx512(n, (BlockQ5_K*)x, (BlockQ8_K*)y), (n, x, y) => Q5_K.DotQ5_KQ8_KAvx2(n, (BlockQ5_K*)x, (BlockQ8_K*)y)),
        .. KQuant("Q6_K", GgmlType.Q6_K, (n, x, y) => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)x, (BlockQ8_K*)y),
            (n, x, y) => Q6_K.DotQ6_KQ8_KAvx512(n, (BlockQ6_K*)x, (BlockQ8_K*)y), (n, x, y) => Q6_K.DotQ6_KQ8_KAvx2(n, (BlockQ6_K*)x, (BlockQ8_K*)y)),
        .. KQuantNeonDp(),
    ];

    /// <summary>
    /// K-quant dot products with their own NEON DotProd kernel (registers only, for decode): equal
    /// to the llama.cpp-order statement, as the <c>sdot</c> tile is.
    /// </summary>
    private static DotKernel[] KQuantNeonDp() =>
    [
        new("Q4_K", GgmlType.Q4_K, GgmlType.Q8_K, "AdvSimdDp", NeonDp, (n, x, y) => Q4_K.DotQ4_KQ8_KAdvSimdDp(n, (BlockQ4_K*)x, (BlockQ8_K*)y), KQuant128.DotTotalOrderReference<Q4_K128>),
        new("Q5_K", GgmlType.Q5_K, GgmlType.Q8_K, "AdvSimdDp", NeonDp, (n, x, y) => Q5_K.DotQ5_KQ8_KAdvSimdDp(n, (BlockQ5_K*)x, (BlockQ8_K*)y), KQuant128.DotTotalOrderReference<Q5_K128>),
        new("Q6_K", GgmlType.Q6_K, GgmlType.Q8_K, "AdvSimdDp", NeonDp, (n, x, y) => Q6_K.DotQ6_KQ8_KAdvSimdDp(n, (BlockQ6_K*)x, (BlockQ8_K*)y), KQuant128.DotTotalOrderReference<Q6_K128>),
    ];

    private static DotKernel[] Legacy(string name, GgmlType w, GgmlType a, DotFn reference, DotFn avx512, DotFn avx2, DotFn neonDp, DotFn neon, DotFn v128) =>
    [
        new(name, w, a, "Avx512BW", Avx512BW.IsSupported, avx512, reference),
        new(name, w, a, "Avx2", Avx2.IsSupported, avx2, reference),
        new(name, w, a, "AdvSimdDp", NeonDp, neonDp, reference),
        new(name, w, a, "AdvSimd", Neon, neon, reference),
        new(name, w, a, "Vector128", Vector128.IsHardwareAccelerated, v128, reference),
    ];

    private static DotKernel RowOf<TW>(GgmlType w, GgmlType a, DotFn reference) where TW : struct, ILegacyTileWeights =>
        new(TW.Name, w, a, "Vector128Row", Vector128.IsHardwareAccelerated, LegacyTile.DotRow<TW, Vector128BlockDot>, reference);

    private static DotKernel[] KQuant(string name, GgmlType w, DotFn reference, DotFn avx512, DotFn avx2) =>
    [
        new(name, w, GgmlType.Q8_K, "Avx512BW", Avx512BW.IsSupported, avx512, reference),
        new(name, w, GgmlType.Q8_K, "Avx2", Avx2.IsSupported, avx2, reference),
    ];

    /// <summary>All checks: one per fast dot kernel (every fill and block count inside).</summary>
    internal static IEnumerable<Check> Checks()
    {
        foreach (var k in DotKernels())
            yield return new Check($"dot {k.Format}x{GgmlTypes.Name(k.Act)}", k.Isa, k.Supported, () => CheckDot(k, seed: 1234));
        yield return new Check("repacked q4_0x8 rows and tiles", Q4_0x8.UseAvx512Tile ? "avx2+fma, avx512bw tile" : "avx2+fma", Q4_0x8.IsSupported, () => CheckQ4_0x8(seed: 1234));
        yield return new Check("repacked q8_0x8 rows and tiles", Q8_0x8.UseAvx512Tile ? "avx2+fma, avx512bw tile" : "avx2+fma", Q8_0x8.IsSupported, () => CheckQ8_0x8(seed: 1234));
        yield return new Check("repacked q4_Kx8 rows and tiles", "avx2+fma", Q4_Kx8.IsSupported, () => CheckQ4_Kx8(seed: 1234));
        yield return new Check("repacked q4_Kx8 rows and AVX-512 tiles", "avx512bw", Q4_Kx8.IsAvx512Supported, () => CheckQ4_Kx8Avx512(seed: 1234));
        yield return new Check("repacked iq4_nlx8 rows and tiles", "avx2+fma", IQ4_NLx8.IsSupported, () => CheckIQ4_NLx8(seed: 1234));
        yield return new Check("repacked mxfp4x8 rows and tiles", MXFP4x8.IsAvx512Supported ? "avx2+fma, avx512bw rows" : "avx2+fma", MXFP4x8.IsSupported, () => CheckMXFP4x8(seed: 1234));
        yield return new Check("repacked q2_Kx8 rows and tiles", "avx2+fma", Q2_Kx8.IsSupported, () => CheckQ2_Kx8(seed: 1234));
        yield return new Check("repacked q2_Kx8 rows and AVX-512 tiles", "avx512bw", Q2_Kx8.IsAvx512Supported, () => CheckQ2_Kx8Avx512(seed: 1234));
        yield return new Check("repacked q3_Kx8 rows and tiles", "avx2+fma", Q3_Kx8.IsSupported, () => CheckQ3_Kx8(seed: 1234));
        yield return new Check("repacked q3_Kx8 rows and AVX-512 tiles", "avx512bw", Q3_Kx8.IsAvx512Supported, () => CheckQ3_Kx8Avx512(seed: 1234));
        yield return new Check("repacked q4_1x8 rows and tiles", "avx2+fma", Q4_1x8.IsSupported, () => CheckQ4_1x8(seed: 1234));
        yield return new Check("repacked q5_1x8 rows and tiles", "avx2+fma", Q5_1x8.IsSupported, () => CheckQ5_1x8(seed: 1234));
        yield return new Check("repacked q5_0x8 rows and tiles", "avx2+fma", Q5_0x8.IsSupported, () => CheckQ5_0x8(seed: 1234));
        yield return new Check("repacked q5_Kx8 rows and tiles", "avx2+fma", Q5_Kx8.IsSupported, () => CheckQ5_Kx8(seed: 1234));
        yield return new Check("repacked q5_Kx8 rows and AVX-512 tiles", "avx512bw", Q5_Kx8.IsAvx512Supported, () => CheckQ5_Kx8Avx512(seed: 1234));
        yield return new Check("repacked q6_Kx8 rows and tiles", "avx2+fma", Q6_Kx8.IsSupported, () => CheckQ6_Kx8(seed: 1234));
        yield return new Check("repacked q6_Kx8 avx-512 tile", "avx512bw", Q6_Kx8.IsAvx512Supported, () => CheckQ6_Kx8Avx512(seed: 1234));
        yield return new Check("quantize Q8_0 activations", "avx2", System.Runtime.Intrinsics.X86.Avx2.IsSupported, () => CheckQ8_0Activations(seed: 1234));
        foreach (var t in Tiles128())
            yield return new Check($"tile {t.Format}x{GgmlTypes.Name(t.Act)}", t.Isa, t.Supported, () => CheckTile128(t, seed: 1234));
        yield return new Check("K-quant VecDot dispatch", NeonDp ? "AdvSimdDp" : Neon ? "AdvSimd" : "Vector128",
            Neon || (!Avx2.IsSupported && KQuant128.IsSupported), () => CheckKQuantDispatch(seed: 1234));
    }

    /// <summary>
    /// Where <see cref="KQuant128"/> serves the K-quants (NEON; x64 without AVX2), each format's
    /// VecDot, VecDotRows and VecDotTile take the strategy this CPU should run: with DotProd the sdot lanes
    /// (equal to <see cref="KQuant128.DotTotalOrderReference{TK}"/> bit for bit), else ggml's lanes
    /// (equal to the reference bit for bit).
    /// </summary>
    internal static string? CheckKQuantDispatch(int seed)
    {
        const int rows = 3;
        float* yr = stackalloc float[rows];
        var rng = new Random(seed);
        (GgmlType Type, DotFn Expected)[] formats =
        [
            (GgmlType.Q2_K, NeonDp ? KQuant128.DotTotalOrderReference<Q2_K128> : (n, x, y) => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)x, (BlockQ8_K*)y)),
            (GgmlType.Q3_K, NeonDp ? KQuant128.DotTotalOrderReference<Q3_K128> : (n, x, y) => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)x, (BlockQ8_K*)y)),
            (GgmlType.Q4_K, NeonDp ? KQuant128.DotTotalOrderReference<Q4_K128> : (n, x, y) => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)x, (BlockQ8_K*)y)),
            (GgmlType.Q5_K, NeonDp ? KQuant128.DotTotalOrderReference<Q5_K128> : (n, x, y) => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)x, (BlockQ8_K*)y)),
            (GgmlType.Q6_K, NeonDp ? KQuant128.DotTotalOrderReference<Q6_K128> : (n, x, y) => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)x, (BlockQ8_K*)y)),
        ];
        foreach (var (type, expected) in formats)
        {
            if (!WeightFormat.TryGet(type, out var fmt)) return $"{GgmlTypes.Name(type)}: no format";
            foreach (int blocks in new[] { 1, 3, 8 })
            {
                int n = blocks * 256;
                long rowBytes = GgmlTypes.Info(type).RowBytes(n);
                byte[] w = MakeBlocks(type, n * rows, Fill.Random, rng);
                byte[] a = MakeBlocks(GgmlType.Q8_K, n, Fill.Random, rng);
                fixed (byte* pw = w)
                fixed (byte* pa = a)
                {
                    fmt.VecDotRows(n, pw, rowBytes, rows, pa, yr);
                    for (int r = 0; r < rows; r++)
                    {
                        byte* row = pw + r * rowBytes;
                        float want = expected(n, row, pa);
                        float dot = fmt.VecDot(n, row, pa);
                        float tile;
                        fmt.VecDotTile(n, row, rowBytes, 1, pa, a.Length, 1, &tile, 1);
                        if (!SameFloat(want, dot) || !SameFloat(want, tile) || !SameFloat(want, yr[r]))
                            return string.Create(CultureInfo.InvariantCulture, $"{GgmlTypes.Name(type)} n={n} row {r}: VecDot {dot:R}, VecDotTile {tile:R}, VecDotRows {yr[r]:R}, expected {want:R}");
                    }
                }
            }
        }
        return null;
    }

    /// <summary>A 128-bit prompt tile (<see cref="LegacyTile"/>, <see cref="KQuant128"/>) with one integer strategy, and the format's reference dot.</summary>
    internal sealed record TileKernel(string Format, GgmlType Weight, GgmlType Act, string Isa, bool Supported, TileFn Tile, DotFn Reference);

    /// <summary>
    /// Every 128-bit tile instantiation: the six 32-value formats × NEON with DotProd, plain NEON,
    /// portable Vector128; Q2_K … Q6_K × NEON with DotProd, plain NEON, portable Vector128 and its total-order twin.
    /// </summary>
    internal static IReadOnlyList<TileKernel> Tiles128() =>
    [
        .. LegacyTileSet<Q4_0TileWeights>("Q4_0", GgmlType.Q4_0, Q4_0.DotQ4_0Q8_0Reference),
        .. LegacyTileSet<Q4_1TileWeights>("Q4_1", GgmlType.Q4_1, Q4_1.DotQ4_1Q8_1Reference),
        .. LegacyTileSet<Q5_1TileWeights>("Q5_1", GgmlType.Q5_1, Q5_1.DotQ5_1Q8_1Reference),
        .. LegacyTileSet<Q5_0TileWeights>("Q5_0", GgmlType.Q5_0, Q5_0.DotQ5_0Q8_0Reference),
        .. LegacyTileSet<Q8_0TileWeights>("Q8_0", GgmlType.Q8_0, Q8_0.DotQ8_0Q8_0Reference),
        .. LegacyTileSet<IQ4_NLTileWeights>("IQ4_NL", GgmlType.IQ4_NL, IQ4_NL.DotIQ4_NLQ8_0Reference),
        .. LegacyTileSet<MXFP4TileWeights>("MXFP4", GgmlType.MXFP4, MXFP4.DotMXFP4Q8_0Reference),
        .. KQuantTileSet<Q2_K128>("Q2_K", GgmlType.Q2_K, (n, x, y) => Q2_K.DotQ2_KQ8_KReference(n, (BlockQ2_K*)x, (BlockQ8_K*)y)),
        .. KQuantTileSet<Q3_K128>("Q3_K", GgmlType.Q3_K, (n, x, y) => Q3_K.DotQ3_KQ8_KReference(n, (BlockQ3_K*)x, (BlockQ8_K*)y)),
        .. KQuantTileSet<Q4_K128>("Q4_K", GgmlType.Q4_K, (n, x, y) => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)x, (BlockQ8_K*)y)),
        .. KQuantTileSet<Q5_K128>("Q5_K", GgmlType.Q5_K, (n, x, y) => Q5_K.DotQ5_KQ8_KReference(n, (BlockQ5_K*)x, (BlockQ8_K*)y)),
        .. KQuantTileSet<Q6_K128>("Q6_K", GgmlType.Q6_K, (n, x, y) => Q6_K.DotQ6_KQ8_KReference(n, (BlockQ6_K*)x, (BlockQ8_K*)y)),
        new("Q4_K", GgmlType.Q4_K, GgmlType.Q8_K, "AdvSimdDpRegs", NeonDp, Q4_K.DotTileAdvSimdDp, KQuant128.DotTotalOrderReference<Q4_K128>),
    ];

    /// <summary>
    /// The K-quant tiles: the lane strategies against ggml's reference; the total strategies
    /// (NEON DotProd, and its portable twin that x64 tests run) against
    /// <see cref="KQuant128.DotTotalOrderReference{TK}"/>, llama.cpp's NEON float order, whose
    /// distance from ggml's reference the unit tests bound.
    /// </summary>
    private static TileKernel[] KQuantTileSet<TK>(string name, GgmlType w, DotFn reference) where TK : struct, IKQuant128Block =>
    [
        new(name, w, GgmlType.Q8_K, "AdvSimdDp", NeonDp, KQuant128.DotTile<TK, AdvSimdDpKLanes>, KQuant128.DotTotalOrderReference<TK>),
        new(name, w, GgmlType.Q8_K, "AdvSimd", Neon, KQuant128.DotTile<TK, AdvSimdKLanes>, reference),
        new(name, w, GgmlType.Q8_K, "Vector128", Vector128.IsHardwareAccelerated, KQuant128.DotTile<TK, Vector128KLanes>, reference),
        new(name, w, GgmlType.Q8_K, "Vector128Total", Vector128.IsHardwareAccelerated, KQuant128.DotTile<TK, Vector128TotalKLanes>, KQuant128.DotTotalOrderReference<TK>),
    ];

    private static TileKernel[] LegacyTileSet<TW>(string name, GgmlType w, DotFn reference) where TW : struct, ILegacyTileWeights =>
    [
        new(name, w, TW.Q8_1Acts ? GgmlType.Q8_1 : GgmlType.Q8_0, "AdvSimdDp", NeonDp, LegacyTile.Dot<TW, AdvSimdDpBlockDot>, reference),
        new(name, w, TW.Q8_1Acts ? GgmlType.Q8_1 : GgmlType.Q8_0, "AdvSimd", Neon, LegacyTile.Dot<TW, AdvSimdBlockDot>, reference),
        new(name, w, TW.Q8_1Acts ? GgmlType.Q8_1 : GgmlType.Q8_0, "Vector128", Vector128.IsHardwareAccelerated, LegacyTile.Dot<TW, Vector128BlockDot>, reference),
    ];

    /// <summary>
    /// A 128-bit tile instantiation equals its reference dot (<see cref="TileKernel.Reference"/>) bit for bit, for
    /// every (row, activation) of 5 rows (two pairs and an odd row) against 1, 2 and 7 activation
    /// rows (a full pass of four and a short one), every fill and the given lengths (in blocks).
    /// </summary>
    internal static string? CheckTile128(TileKernel k, int seed, int[]? blockCounts = null)
    {
        var rng = new Random(seed ^ (int)k.Weight * 7919);
        const int rows = 5;
        var info = GgmlTypes.Info(k.Weight);
        var actInfo = GgmlTypes.Info(k.Act);
        foreach (Fill fill in Enum.GetValues<Fill>())
        foreach (int blocks in blockCounts ?? (info.BlockSize == 256 ? [1, 2, 3] : [1, 2, 3, 9, 33]))
        foreach (int nActs in new[] { 1, 2, 7 })
        {
            int n = blocks * info.BlockSize;
            long rowBytes = info.RowBytes(n), actBytes = actInfo.RowBytes(n);
            byte[] w = MakeBlocks(k.Weight, n * rows, fill, rng);
            byte[] acts = new byte[actBytes * nActs];
            for (int a = 0; a < nActs; a++) MakeBlocks(k.Act, n, fill, rng).CopyTo(acts, a * actBytes);
            var y = new float[rows * nActs];
            fixed (byte* pw = w)
            fixed (byte* pa = acts)
            fixed (float* py = y)
            {
                k.Tile(n, pw, rowBytes, rows, pa, actBytes, nActs, py, rows);
                for (int a = 0; a < nActs; a++)
                for (int r = 0; r < rows; r++)
                {
                    float want = k.Reference(n, pw + r * rowBytes, pa + a * actBytes);
                    if (!SameFloat(want, y[a * rows + r]))
                        return string.Create(CultureInfo.InvariantCulture, $"{fill} n={n} {nActs} activations, row {r} act {a}: tile {y[a * rows + r]:R} != reference {want:R}");
                }
            }
        }
        return null;
    }

    /// <summary>Packs rows into a repacked layout (false: the data cannot be held, the matrix stays plain).</summary>
    internal delegate bool PackFn(byte* src, byte* dst, int rows, int n);

    /// <summary>A repacked layout's decode product (rows from a group boundary against one activation row).</summary>
    internal delegate void RowsFn(int n, byte* weights, long rowBytes, int nRows, byte* act, float* y);

    /// <summary>A repacked layout's prompt tile.</summary>
    internal delegate void TileFn(int n, byte* weights, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride);

    /// <summary>The repacked q4_0x8 kernels (Q4_0 matrices after load-time repacking): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ4_0x8(int seed) =>
        CheckRepacked(GgmlType.Q4_0, GgmlType.Q8_0, [1, 2, 3, 8, 33], Q4_0x8.Pack, Q4_0x8.DotRows, Q4_0x8.DotRowsReference, Q4_0x8.DotTile, seed);

    /// <summary>
    /// The repacked q8_0x8 kernels (Q8_0 matrices, Q8_0 activations): see <see cref="CheckRepacked"/>.
    /// Random blocks hold -128, which ggml's quantizer never writes and the layout refuses; it becomes -127 first.
    /// </summary>
    internal static string? CheckQ8_0x8(int seed) =>
        CheckRepacked(GgmlType.Q8_0, GgmlType.Q8_0, [1, 2, 3, 8, 33], PackQ8_0x8NoMinus128, Q8_0x8.DotRows, Q8_0x8.DotRowsReference, Q8_0x8.DotTile, seed);

    private static bool PackQ8_0x8NoMinus128(byte* src, byte* dst, int rows, int n)
    {
        long bytes = (long)rows * GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
        for (long i = 0; i < bytes; i++)
            if (i % 34 >= 2 && src[i] == 0x80) src[i] = 0x81;
        return Q8_0x8.Pack(src, dst, rows, n);
    }

    /// <summary>The repacked q4_Kx8 kernels (Q4_K matrices, Q8_K activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ4_Kx8(int seed) =>
        CheckRepacked(GgmlType.Q4_K, GgmlType.Q8_K, [1, 2, 3], Q4_Kx8.Pack, Q4_Kx8.DotRows, Q4_Kx8.DotRowsReference, Q4_Kx8.DotTile, seed);

    /// <summary>The repacked mxfp4x8 kernels (MXFP4 matrices, Q8_0 activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckMXFP4x8(int seed) =>
        CheckRepacked(GgmlType.MXFP4, GgmlType.Q8_0, [1, 2, 3, 9], MXFP4x8.Pack, MXFP4x8.DotRows, MXFP4x8.DotRowsReference, MXFP4x8.DotTile, seed);

    /// <summary>The repacked iq4_nlx8 kernels (IQ4_NL matrices, Q8_0 activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckIQ4_NLx8(int seed) =>
        CheckRepacked(GgmlType.IQ4_NL, GgmlType.Q8_0, [1, 2, 3, 9], IQ4_NLx8.Pack, IQ4_NLx8.DotRows, IQ4_NLx8.DotRowsReference, IQ4_NLx8.DotTile, seed);

    /// <summary>The repacked q2_Kx8 kernels (Q2_K matrices, Q8_K activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ2_Kx8(int seed) =>
        CheckRepacked(GgmlType.Q2_K, GgmlType.Q8_K, [1, 2, 3], Q2_Kx8.Pack, Q2_Kx8.DotRows, Q2_Kx8.DotRowsReference, Q2_Kx8.DotTile, seed);

    /// <summary>The repacked q3_Kx8 kernels (Q3_K matrices, Q8_K activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ3_Kx8(int seed) =>
        CheckRepacked(GgmlType.Q3_K, GgmlType.Q8_K, [1, 2, 3], Q3_Kx8.Pack, Q3_Kx8.DotRows, Q3_Kx8.DotRowsReference, Q3_Kx8.DotTile, seed);

    /// <summary>The repacked q4_1x8 kernels (Q4_1 matrices, Q8_1 activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ4_1x8(int seed) =>
        CheckRepacked(GgmlType.Q4_1, GgmlType.Q8_1, [1, 2, 3, 9], Q4_1x8.Pack, Q4_1x8.DotRows, Q4_1x8.DotRowsReference, Q4_1x8.DotTile, seed);

    /// <summary>The q2_Kx8 AVX-512 prompt tile called directly (whatever DotTile dispatches to): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ2_Kx8Avx512(int seed) =>
        CheckRepacked(GgmlType.Q2_K, GgmlType.Q8_K, [1, 2, 3], Q2_Kx8.Pack, Q2_Kx8.DotRows, Q2_Kx8.DotRowsReference, (n, w, rb, nr, a, st, na, y, ys) => Q2_Kx8.DotTile(n, w, rb, nr, a, st, na, y, ys, avx512: true), seed);

    /// <summary>The q3_Kx8 AVX-512 prompt tile called directly (whatever DotTile dispatches to): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ3_Kx8Avx512(int seed) =>
        CheckRepacked(GgmlType.Q3_K, GgmlType.Q8_K, [1, 2, 3], Q3_Kx8.Pack, Q3_Kx8.DotRows, Q3_Kx8.DotRowsReference, (n, w, rb, nr, a, st, na, y, ys) => Q3_Kx8.DotTile(n, w, rb, nr, a, st, na, y, ys, avx512: true), seed);

    /// <summary>The repacked q5_1x8 kernels (Q5_1 matrices, Q8_1 activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ5_1x8(int seed) =>
        CheckRepacked(GgmlType.Q5_1, GgmlType.Q8_1, [1, 2, 3, 9], Q5_1x8.Pack, Q5_1x8.DotRows, Q5_1x8.DotRowsReference, Q5_1x8.DotTile, seed);

    /// <summary>The repacked q5_0x8 kernels (Q5_0 matrices, Q8_0 activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ5_0x8(int seed) =>
        CheckRepacked(GgmlType.Q5_0, GgmlType.Q8_0, [1, 2, 3, 9], Q5_0x8.Pack, Q5_0x8.DotRows, Q5_0x8.DotRowsReference, Q5_0x8.DotTile, seed);

    /// <summary>The repacked q5_Kx8 kernels (Q5_K matrices, Q8_K activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ5_Kx8(int seed) =>
        CheckRepacked(GgmlType.Q5_K, GgmlType.Q8_K, [1, 2, 3], Q5_Kx8.Pack, Q5_Kx8.DotRows, Q5_Kx8.DotRowsReference, Q5_Kx8.DotTile, seed);

    /// <summary>The q5_Kx8 AVX-512 prompt tile called directly (whatever DotTile dispatches to): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ5_Kx8Avx512(int seed) =>
        CheckRepacked(GgmlType.Q5_K, GgmlType.Q8_K, [1, 2, 3], Q5_Kx8.Pack, Q5_Kx8.DotRows, Q5_Kx8.DotRowsReference, Q5_Kx8.DotTileAvx512, seed);

    /// <summary>The q4_Kx8 AVX-512 prompt tile, called directly (16-row pairs of groups, an odd activation row through AVX2): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ4_Kx8Avx512(int seed) =>
        CheckRepacked(GgmlType.Q4_K, GgmlType.Q8_K, [1, 2, 3], Q4_Kx8.Pack, Q4_Kx8.DotRows, Q4_Kx8.DotRowsReference, Q4_Kx8.DotTileAvx512, seed);

    /// <summary>The repacked q6_Kx8 kernels (Q6_K matrices, Q8_K activations): see <see cref="CheckRepacked"/>.</summary>
    internal static string? CheckQ6_Kx8(int seed) =>
        CheckRepacked(GgmlType.Q6_K, GgmlType.Q8_K, [1, 2, 3], Q6_Kx8.Pack, Q6_Kx8.DotRows, Q6_Kx8.DotRowsReference, Q6_Kx8.DotTile, seed);

    /// <summary>The q6_Kx8 AVX-512 prompt tile called directly (whatever DotTile dispatches to): tiles equal the AVX2 rows bit for bit.</summary>
    internal static string? CheckQ6_Kx8Avx512(int seed) =>
        CheckRepacked(GgmlType.Q6_K, GgmlType.Q8_K, [1, 2, 3], Q6_Kx8.Pack, Q6_Kx8.DotRows, Q6_Kx8.DotRowsReference, Q6_Kx8.DotTileAvx512, seed);

    /// <summary>
    /// A repacked layout's kernels: decode rows equal the scalar statement of the packed arithmetic,
    /// and prompt tiles equal the rows, bit for bit, on 21 rows (two groups and a plain tail) for
    /// every fill and the given lengths (in blocks).
    /// </summary>
    internal static string? CheckRepacked(GgmlType weight, GgmlType act, int[] blockCounts, PackFn pack, RowsFn rowsFast, RowsFn rowsReference, TileFn tileFast, int seed)
    {
        var rng = new Random(seed);
        const int rows = 21, nActs = 5;
        foreach (Fill fill in Enum.GetValues<Fill>())
        foreach (int blocks in blockCounts)
        {
            int n = blocks * GgmlTypes.Info(weight).BlockSize;
            long rowBytes = GgmlTypes.Info(weight).RowBytes(n);
            long actBytes = GgmlTypes.Info(act).RowBytes(n);
            byte[] plain = MakeBlocks(weight, n * rows, fill, rng);
            byte[] acts = new byte[actBytes * nActs];
            for (int a = 0; a < nActs; a++) MakeBlocks(act, n, fill, rng).CopyTo(acts, a * actBytes);
            var packed = new byte[plain.Length];
            var tile = new float[rows * nActs];
            var fast = new float[rows];
            var reference = new float[rows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* pa = acts)
            fixed (float* yt = tile)
            fixed (float* yf = fast)
            fixed (float* yr = reference)
            {
                if (!pack(p, q, rows, n)) continue; // non-finite scales stay plain
                tileFast(n, q, rowBytes, rows, pa, actBytes, nActs, yt, rows);
                for (int a = 0; a < nActs; a++)
                {
                    rowsFast(n, q, rowBytes, rows, pa + a * actBytes, yf);
                    rowsReference(n, q, rowBytes, rows, pa + a * actBytes, yr);
                    for (int r = 0; r < rows; r++)
                    {
                        if (!SameFloat(yr[r], yf[r]))
                            return string.Create(CultureInfo.InvariantCulture, $"{fill} n={n} row {r}: rows {yf[r]:R} != reference {yr[r]:R}");
                        if (!SameFloat(yf[r], yt[a * rows + r]))
                            return string.Create(CultureInfo.InvariantCulture, $"{fill} n={n} row {r} act {a}: tile {yt[a * rows + r]:R} != rows {yf[r]:R}");
                    }
                }
            }
        }
        return null;
    }

    /// <summary>The SIMD Q8_0 activation quantizer equals its scalar statement byte for byte.</summary>
    internal static string? CheckQ8_0Activations(int seed)
    {
        var rng = new Random(seed);
        foreach (int n in new[] { 32, 96, 2048 })
        foreach (double scale in new[] { 1.0, 1e4, 1e-30, 0.0 })
        {
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
            var a = new byte[n / 32 * 34];
            var b = new byte[a.Length];
            fixed (float* px = x)
            fixed (byte* pa = a)
            fixed (byte* pb = b)
            {
                Q8_0.QuantizeActivationRowScalar(px, pa, n);
                Q8_0.QuantizeActivationRowAvx2(px, pb, n);
            }
            int at = a.AsSpan().CommonPrefixLength(b);
            if (at < a.Length) return string.Create(CultureInfo.InvariantCulture, $"n={n} scale {scale}: byte {at} differs");
        }
        return null;
    }

    /// <summary>Fast == reference, bit for bit (or both NaN), for every fill and block count; null when all agree.</summary>
    internal static string? CheckDot(DotKernel k, int seed)
    {
        var rng = new Random(seed ^ (int)k.Weight * 7919);
        foreach (Fill fill in Enum.GetValues<Fill>())
        {
            foreach (int blocks in BlockCounts)
            {
                int n = blocks * GgmlTypes.Info(k.Weight).BlockSize;
                byte[] w = MakeBlocks(k.Weight, n, fill, rng);
                byte[] a = MakeBlocks(k.Act, n, fill, rng);
                fixed (byte* pw = w)
                fixed (byte* pa = a)
                {
                    float r = k.Reference(n, pw, pa);
                    float f = k.Fast(n, pw, pa);
                    if (!SameFloat(r, f))
                        return string.Create(CultureInfo.InvariantCulture, $"{fill} n={n}: fast {f:R} != reference {r:R}");
                }
            }
        }
        return null;
    }

    /// <summary>Bitwise float equality, any NaN equal to any NaN.</summary>
    internal static bool SameFloat(float a, float b) =>
        BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b) || (float.IsNaN(a) && float.IsNaN(b));

    /// <summary>
    /// Random blocks of <paramref name="type"/> for <paramref name="n"/> values: quant bytes
    /// random (or all 0xFF / all 0x00; for the int8 types 127 / -128), scale fields set per
    /// <paramref name="fill"/>, Q8_K's block sums the sums of its values.
    /// </summary>
    internal static byte[] MakeBlocks(GgmlType type, int n, Fill fill, Random rng)
    {
        var info = GgmlTypes.Info(type);
        int nb = n / info.BlockSize;
        var data = new byte[nb * info.TypeSize];
        bool int8 = type is GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.Q8_K;
        if (fill == Fill.AllMax) Array.Fill(data, int8 ? (byte)0x7F : (byte)0xFF);
        else if (fill == Fill.AllMin) Array.Fill(data, int8 ? (byte)0x80 : (byte)0x00);
        else rng.NextBytes(data);
        var (halves, floats) = ScaleOffsets(type);
        for (int b = 0; b < nb; b++)
        {
            int o = b * info.TypeSize;
            foreach (int h in halves) BitConverter.TryWriteBytes(data.AsSpan(o + h), BitConverter.HalfToUInt16Bits((Half)Scale(fill, rng)));
            foreach (int f in floats) BitConverter.TryWriteBytes(data.AsSpan(o + f), Scale(fill, rng));
            if (type == GgmlType.Q8_K)
            {
                // bsums[j] = Σ qs[16j .. 16j + 16), as every Q8_K quantizer writes them (q3_Kx8 reads them for its −4 offset).
                fixed (byte* pb = &data[o])
                {
                    var blk = (BlockQ8_K*)pb;
                    for (int j = 0; j < 16; j++)
                    {
                        int sum = 0;
                        for (int i = 0; i < 16; i++) sum += blk->Qs[16 * j + i];
                        blk->Bsums[j] = (short)sum;
                    }
                }
            }
        }
        return data;
    }

    private static float Scale(Fill fill, Random rng) => fill switch
    {
        Fill.ZeroScale => 0f,
        Fill.HugeScale => rng.Next(2) == 0 ? 65504f : -65504f,
        Fill.TinyScale => rng.Next(2) == 0 ? 5.96e-8f : 6.1e-5f,
        Fill.NegativeScale => -(float)(rng.NextDouble() + 1e-3),
        _ => (float)(rng.NextDouble() * 2 - 1),
    };

    /// <summary>Byte offsets of a block's f16 and f32 scale fields (ggml-common.h layouts, taken from the structs).</summary>
    internal static (int[] Halves, int[] Floats) ScaleOffsets(GgmlType type)
    {
        switch (type)
        {
            case GgmlType.Q4_0: return ([0], []);
            case GgmlType.Q5_0: return ([0], []);
            case GgmlType.Q8_0: return ([0], []);
            case GgmlType.IQ4_NL: return ([0], []);
            case GgmlType.MXFP4: return ([], []); // its scale is an exponent byte: every random byte is one (subnormal to 2^127)
            case GgmlType.Q4_1: return ([0, 2], []);
            case GgmlType.Q5_1: return ([0, 2], []);
            case GgmlType.Q8_1: return ([0, 2], []);
            case GgmlType.Q8_K: return ([], [0]);
            case GgmlType.Q2_K: { BlockQ2_K b; return ([Off(&b, &b.D), Off(&b, &b.DMin)], []); }
            case GgmlType.Q3_K: { BlockQ3_K b; return ([Off(&b, &b.D)], []); }
            case GgmlType.Q4_K: { BlockQ4_K b; return ([Off(&b, &b.D), Off(&b, &b.DMin)], []); }
            case GgmlType.Q5_K: { BlockQ5_K b; return ([Off(&b, &b.D), Off(&b, &b.DMin)], []); }
            case GgmlType.Q6_K: { BlockQ6_K b; return ([Off(&b, &b.D)], []); }
            default: throw new ArgumentException($"self test: no block layout for {GgmlTypes.Name(type)}", nameof(type));
        }

        static int Off(void* block, void* field) => (int)((byte*)field - (byte*)block);
    }
}
