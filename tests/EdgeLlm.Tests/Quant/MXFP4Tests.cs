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

    private const int RtldLazy = 1, RtldNoLoad = 4;

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);
}
