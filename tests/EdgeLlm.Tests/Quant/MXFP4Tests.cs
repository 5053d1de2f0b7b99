using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// MXFP4 (gpt-oss's expert weights) against ggml itself, called in llama.cpp's own libraries (LLamaSharp 0.30.0):
/// the same blocks from the same floats (quantize_row_mxfp4_ref), the same floats back (dequantize_row_mxfp4), and the
/// same dot products with Q8_0 activations (ggml_vec_dot_mxfp4_q8_0); every SIMD path equals the scalar reference.
/// </summary>
public sealed unsafe class MXFP4Tests(ITestOutputHelper output)
{
    private const int QK = 32;

    // ggml.h struct ggml_type_traits: type_name, blck_size, blck_size_interleave, type_size, is_quantized, to_float, from_float_ref
    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraits
    {
        public nint TypeName;
        public long BlockSize, BlockSizeInterleave;
        public nuint TypeSize;
        [MarshalAs(UnmanagedType.U1)] public bool IsQuantized;
        public delegate* unmanaged<void*, float*, long, void> ToFloat;
        public delegate* unmanaged<float*, void*, long, void> FromFloatRef;
    }

    // ggml-cpu.h struct ggml_type_traits_cpu: from_float, vec_dot, vec_dot_type, nrows
    [StructLayout(LayoutKind.Sequential)]
    private struct CpuTraits
    {
        public delegate* unmanaged<float*, void*, long, void> FromFloat;
        public delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDot;
        public int VecDotType;
        public long Nrows;
    }

    private static (nint Base, nint Cpu) Ggml()
    {
        _ = LlamaCppOracle.NativeLibrary; // loads llama.cpp (and its ggml) quietly
        nint b = dlopen("libggml-base.so", RtldLazy | RtldNoLoad), c = dlopen("libggml-cpu.so", RtldLazy | RtldNoLoad);
        Assert.True(b != 0 && c != 0, "llama.cpp's ggml libraries are not loaded in this process");
        return (NativeLibrary.GetExport(b, "ggml_get_type_traits"), NativeLibrary.GetExport(c, "ggml_get_type_traits_cpu"));
    }

    private static float[] Values(int blocks, Random rng)
    {
        var x = new float[blocks * QK];
        for (int b = 0; b < blocks; b++)
        {
            // every block its own magnitude (2^-30 .. 2^30), one all zero, one with a single non-zero value
            float scale = MathF.Pow(2, rng.Next(-30, 31));
            for (int j = 0; j < QK; j++) x[b * QK + j] = b == 3 ? 0 : b == 5 && j != 7 ? 0 : (float)(rng.NextDouble() * 2 - 1) * scale;
        }
        return x;
    }

    [Fact]
    public void QuantizeAndDequantize_AreGgmlsBitForBit()
    {
        var (getTraits, _) = Ggml();
        var traits = ((delegate* unmanaged<int, TypeTraits*>)getTraits)((int)GgmlType.MXFP4);
        Assert.Equal(QK, traits->BlockSize);
        Assert.Equal((nuint)BlockMXFP4.Size, traits->TypeSize);
        var rng = new Random(39);
        const int Blocks = 64;
        var x = Values(Blocks, rng);
        var ours = new byte[Blocks * BlockMXFP4.Size];
        var theirs = new byte[ours.Length];
        var back = new float[x.Length];
        var theirsBack = new float[x.Length];
        fixed (float* px = x) fixed (byte* po = ours) fixed (byte* pt = theirs) fixed (float* pb = back) fixed (float* ptb = theirsBack)
        {
            MXFP4.QuantizeRowReference(px, po, x.Length);
            traits->FromFloatRef(px, pt, x.Length);
            MXFP4.DequantizeRowReference(po, pb, x.Length);
            traits->ToFloat(po, ptb, x.Length);
        }
        Assert.Equal(theirs, ours);
        Assert.Equal(theirsBack.Select(BitConverter.SingleToInt32Bits), back.Select(BitConverter.SingleToInt32Bits));
        output.WriteLine($"{Blocks} blocks: bytes and dequantized floats equal ggml's");
    }

    [Fact]
    public void DotProducts_EqualTheReference_AndGgmls()
    {
        var (_, getCpu) = Ggml();
        var cpu = ((delegate* unmanaged<int, CpuTraits*>)getCpu)((int)GgmlType.MXFP4);
        Assert.Equal((int)GgmlType.Q8_0, cpu->VecDotType);
        var rng = new Random(40);
        foreach (int blocks in new[] { 1, 2, 3, 7, 64, 90 })
        {
            int n = blocks * QK;
            var w = new float[n];
            var a = new float[n];
            for (int i = 0; i < n; i++) { w[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + i % 5); a[i] = (float)(rng.NextDouble() * 2 - 1); }
            var qw = new byte[blocks * BlockMXFP4.Size];
            var qa = new byte[ActivationQuantizer.RowBytes(GgmlType.Q8_0, n)];
            fixed (float* pw = w) fixed (float* pa = a) fixed (byte* pqw = qw) fixed (byte* pqa = qa)
            {
                MXFP4.QuantizeRowReference(pw, pqw, n);
                ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, pa, pqa, n);
                float reference = MXFP4.DotMXFP4Q8_0Reference(n, pqw, pqa);
                if (Avx2.IsSupported) Assert.Equal(reference, MXFP4.DotMXFP4Q8_0Avx2(n, pqw, pqa));
                if (Avx512BW.IsSupported) Assert.Equal(reference, MXFP4.DotMXFP4Q8_0Avx512(n, pqw, pqa));
                if (Vector128.IsHardwareAccelerated) Assert.Equal(reference, MXFP4.DotMXFP4Q8_0Vector128(n, pqw, pqa));
                Assert.True(WeightFormat.TryGet(GgmlType.MXFP4, out var fmt));
                Assert.Equal(reference, fmt.VecDot(n, pqw, pqa));
                float theirs;
                cpu->VecDot(n, &theirs, 0, pqw, 0, pqa, 0, 1);
                var q8 = ((delegate* unmanaged<int, CpuTraits*>)getCpu)((int)GgmlType.Q8_0);
                var qa2 = new byte[qa.Length];
                fixed (byte* pqa2 = qa2) q8->FromFloat(pa, pqa2, n);
                Assert.True(qa.AsSpan().SequenceEqual(qa2), $"{blocks} blocks: the Q8_0 activation row differs from ggml's");
                // ggml's SIMD kernels add the blocks' float terms in their own order: equal up to that rounding
                double magnitude = 0;
                var deq = new float[n];
                fixed (float* pd = deq) MXFP4.DequantizeRowReference(pqw, pd, n);
                for (int i = 0; i < n; i++) magnitude += Math.Abs(deq[i] * a[i]);
                Assert.True(Math.Abs(reference - theirs) <= 1e-5 * magnitude, $"{blocks} blocks: ours {reference}, ggml {theirs}");
            }
        }
    }

    /// <summary>
    /// The prompt tile (rows × activation rows, 1 to 6 activations, block counts around its four-block step) and the
    /// decode product (rows four at a time, then the rest) equal one dot product per pair, bit for bit.
    /// </summary>
    [Fact]
    public void Tile_EqualsOneDotPerPair()
    {
        Assert.True(WeightFormat.TryGet(GgmlType.MXFP4, out var fmt));
        var rng = new Random(41);
        foreach (int blocks in new[] { 1, 3, 4, 5, 9 })
        foreach (int acts in new[] { 1, 2, 3, 4, 5, 6 })
        {
            int n = blocks * QK, rows = 5;
            long rowBytes = (long)blocks * BlockMXFP4.Size, actBytes = ActivationQuantizer.RowBytes(GgmlType.Q8_0, n);
            var w = new byte[rows * rowBytes];
            var a = new byte[acts * actBytes];
            var f = new float[Math.Max(n, 1)];
            fixed (byte* pw = w) fixed (byte* pa = a) fixed (float* pf = f)
            {
                for (int r = 0; r < rows; r++)
                {
                    for (int i = 0; i < n; i++) pf[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + r);
                    MXFP4.QuantizeRowReference(pf, pw + r * rowBytes, n);
                }
                for (int k = 0; k < acts; k++)
                {
                    for (int i = 0; i < n; i++) pf[i] = (float)(rng.NextDouble() * 2 - 1);
                    ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, pf, pa + k * actBytes, n);
                }
                var y = new float[acts * rows];
                fixed (float* py = y) fmt.VecDotTile(n, pw, rowBytes, rows, pa, actBytes, acts, py, rows);
                for (int k = 0; k < acts; k++)
                    for (int r = 0; r < rows; r++)
                        Assert.Equal(fmt.VecDot(n, pw + r * rowBytes, pa + k * actBytes), y[k * rows + r]);
                var yr = new float[rows];
                fixed (float* pyr = yr) fmt.VecDotRows(n, pw, rowBytes, rows, pa, pyr);
                for (int r = 0; r < rows; r++) Assert.Equal(MXFP4.DotMXFP4Q8_0Reference(n, pw + r * rowBytes, pa), yr[r]);
            }
        }
    }

    /// <summary>The eight-row layout's exponent widening equals the plain kernels' scale for all 256 exponents.</summary>
    [Fact]
    public void PackedScales_EqualScaleHalf_ForEveryExponent()
    {
        if (!MXFP4x8.IsSupported) return; // AVX2 machines only
        byte* e = stackalloc byte[8];
        float* f = stackalloc float[8];
        for (int b = 0; b < 256; b += 8)
        {
            for (int i = 0; i < 8; i++) e[i] = (byte)(b + i);
            MXFP4x8.Scales(e).Store(f);
            for (int i = 0; i < 8; i++) Assert.Equal(BitConverter.SingleToInt32Bits(MXFP4.ScaleHalf(e[i])), BitConverter.SingleToInt32Bits(f[i]));
        }
    }

    /// <summary>
    /// The eight-row layout (mxfp4x8): packing round-trips, the decode rows equal its scalar statement and the prompt
    /// tile equals the rows bit for bit (two whole groups and a plain tail of five rows, 1 to 6 activation rows), and
    /// all agree with the plain dot product within float rounding.
    /// </summary>
    [Fact]
    public void EightRowLayout_RoundTrips_AndEveryKernelAgrees()
    {
        const int Rows = 21;
        var rng = new Random(42);
        foreach (int blocks in new[] { 1, 2, 7, 90 })
        {
            int n = blocks * QK;
            long rowBytes = (long)blocks * BlockMXFP4.Size, actBytes = ActivationQuantizer.RowBytes(GgmlType.Q8_0, n);
            var plain = new byte[Rows * rowBytes];
            var packed = new byte[plain.Length];
            var back = new byte[plain.Length];
            var f = new float[n];
            const int Acts = 6;
            var a = new byte[Acts * actBytes];
            fixed (byte* pp = plain) fixed (byte* pk = packed) fixed (byte* pb = back) fixed (float* pf = f) fixed (byte* pa = a)
            {
                for (int r = 0; r < Rows; r++)
                {
                    for (int i = 0; i < n; i++) pf[i] = (float)(rng.NextDouble() * 2 - 1) * MathF.Pow(2, rng.Next(-8, 9));
                    MXFP4.QuantizeRowReference(pf, pp + r * rowBytes, n);
                }
                for (int k = 0; k < Acts; k++)
                {
                    for (int i = 0; i < n; i++) pf[i] = (float)(rng.NextDouble() * 2 - 1);
                    ActivationQuantizer.QuantizeRow(GgmlType.Q8_0, pf, pa + k * actBytes, n);
                }
                Assert.True(MXFP4x8.Pack(pp, pk, Rows, n));
                MXFP4x8.Unpack(pk, pb, Rows, n);
                Assert.Equal(plain, back);
                var rows = new float[Rows];
                var reference = new float[Rows];
                fixed (float* pr = rows) fixed (float* pref = reference)
                {
                    MXFP4x8.DotRowsReference(n, pk, rowBytes, Rows, pa, pref);
                    MXFP4x8.DotRows(n, pk, rowBytes, Rows, pa, pr);
                    Assert.Equal(reference.Select(BitConverter.SingleToInt32Bits), rows.Select(BitConverter.SingleToInt32Bits));
                    var deq = new float[n];
                    for (int r = 0; r < Rows; r++)
                    {
                        float plainDot = MXFP4.DotMXFP4Q8_0Reference(n, pp + r * rowBytes, pa);
                        fixed (float* pd = deq) MXFP4.DequantizeRowReference(pp + r * rowBytes, pd, n);
                        double magnitude = 0;
                        for (int i = 0; i < n; i++) magnitude += Math.Abs(deq[i]) * 127 * QuantMath.Fp16ToFp32(*(ushort*)(pa + i / QK * 34));
                        Assert.True(Math.Abs(plainDot - rows[r]) <= 1e-5 * magnitude + 1e-30, $"{blocks} blocks, row {r}: packed {rows[r]}, plain {plainDot}");
                    }
                }
                for (int acts = 1; acts <= Acts; acts++)
                {
                    var tile = new float[acts * Rows];
                    fixed (float* pt = tile) MXFP4x8.DotTile(n, pk, rowBytes, Rows, pa, actBytes, acts, pt, Rows);
                    for (int k = 0; k < acts; k++)
                    {
                        var one = new float[Rows];
                        fixed (float* po = one) MXFP4x8.DotRows(n, pk, rowBytes, Rows, pa + k * actBytes, po);
                        for (int r = 0; r < Rows; r++) Assert.Equal(BitConverter.SingleToInt32Bits(one[r]), BitConverter.SingleToInt32Bits(tile[k * Rows + r]));
                    }
                }
            }
        }
        // The int16 sums' worst case: every value ±12 (codes 7 and 15) against activations of 127 of one sign.
        {
            const int Blocks = 4, N = Blocks * QK;
            long rowBytes = Blocks * BlockMXFP4.Size, actBytes = ActivationQuantizer.RowBytes(GgmlType.Q8_0, N);
            var plain = new byte[16 * rowBytes]; // two groups: the AVX-512 pair step, whose offset table reaches 24
            var packed = new byte[plain.Length];
            var act = new byte[actBytes];
            for (int r = 0; r < 16; r++)
                for (int b = 0; b < Blocks; b++)
                {
                    long o = r * rowBytes + b * BlockMXFP4.Size;
                    plain[o] = 127; // scale 2^-1 · (±12) = ±6
                    for (int j = 0; j < 16; j++) plain[o + 1 + j] = (byte)(r % 2 == 0 ? 0x77 : 0xFF);
                }
            for (int b = 0; b < Blocks; b++)
            {
                BitConverter.TryWriteBytes(act.AsSpan(b * 34), BitConverter.HalfToUInt16Bits((Half)1));
                for (int j = 0; j < 32; j++) act[b * 34 + 2 + j] = 127;
            }
            var rows = new float[16];
            fixed (byte* pp = plain) fixed (byte* pk = packed) fixed (byte* pa = act) fixed (float* pr = rows)
            {
                Assert.True(MXFP4x8.Pack(pp, pk, 16, N));
                MXFP4x8.DotRows(N, pk, rowBytes, 16, pa, pr);
            }
            for (int r = 0; r < 16; r++) Assert.Equal((r % 2 == 0 ? 1 : -1) * 6f * 127 * N, rows[r]);
        }
        output.WriteLine($"mxfp4x8: round trip, rows = scalar statement, tile = rows (bit for bit), within 1e-5 of the plain dot; kernels {(MXFP4x8.IsSupported ? "AVX2" : "scalar")}");
    }

    private const int RtldLazy = 1, RtldNoLoad = 4;

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);
}
