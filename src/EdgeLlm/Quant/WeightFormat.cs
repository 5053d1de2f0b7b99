using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// The arithmetic of one weight type, paired with its activation ("vec dot") type the way ggml
/// pairs them (ggml-cpu type_traits: <c>vec_dot_type</c>): F32 with F32, F16 with F16, BF16
/// with BF16, Q4_0/Q5_0/Q8_0/IQ4_NL with Q8_0, Q4_1/Q5_1 with Q8_1, K-quants with Q8_K.
/// A matrix-vector product quantizes the activation row once to <see cref="VecDotType"/>
/// (<see cref="ActivationQuantizer"/>) and then calls <see cref="VecDot"/> per weight row.
/// </summary>
public abstract unsafe class WeightFormat
{
    private static readonly Dictionary<GgmlType, WeightFormat> s_formats = new();

    static WeightFormat()
    {
        Register(new F32Format());
        Register(new F16Format());
        Register(new BF16Format());
        QuantFormats.RegisterAll();
        // The kernels are [AggressiveOptimization]: compiled once, at first call, with no later tier. A
        // static they read (a vector constant) whose class is not yet initialized at that moment costs an
        // initialization check in their loops, and the helper call behind it makes the JIT keep the
        // vector accumulators on the stack (measured: Q8_0 decode 10-20% slower when the first product
        // of a process was a one-token one). The kernel classes with static tables and vector
        // constants are initialized here, before any kernel can be compiled (their initializers are
        // plain managed code, safe on every CPU). The lookup tables need none of this: LookupTables has
        // no static constructor (its module initializer fills them before any code of this assembly runs).
        RuntimeHelpers.RunClassConstructor(typeof(QuantMath).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(KQuantFma).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(KQuantLanes).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(IQ4_NL).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q4_0).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q4_0x8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q2_Kx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q3_Kx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q4_Kx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q5_Kx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q5_0x8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q4_1x8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q5_1x8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(IQ4_NLx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(MXFP4).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(MXFP4x8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q6_K).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q6_Kx8).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q8_0).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(Q8_0x8).TypeHandle);
    }

    /// <summary>Adds a format to the registry (one per type; the last registration wins).</summary>
    internal static void Register(WeightFormat format)
    {
        lock (s_formats) s_formats[format.Type] = format;
    }

    /// <summary>The weight type this format computes with.</summary>
    public abstract GgmlType Type { get; }

    /// <summary>The type activations are converted to before <see cref="VecDot"/>.</summary>
    public abstract GgmlType VecDotType { get; }

    /// <summary>Converts <paramref name="n"/> values (a whole number of blocks) to f32.</summary>
    public abstract void DequantizeRow(byte* src, float* dst, long n);

    /// <summary>
    /// Dot product of one weight row of <paramref name="n"/> values with an activation row
    /// already converted to <see cref="VecDotType"/>.
    /// </summary>
    public abstract float VecDot(int n, byte* weights, byte* activations);

    /// <summary>
    /// Dot products of <paramref name="nRows"/> consecutive weight rows (each
    /// <paramref name="rowBytes"/> apart) with <paramref name="nActs"/> activation rows (each
    /// <paramref name="actStride"/> bytes apart): <c>y[a * yStride + r] = VecDot(w_r, act_a)</c>.
    /// This is the tile the matrix-matrix product is built from: a format overrides it to keep a
    /// block of weights in registers while it meets several activation rows (prompt processing),
    /// so each weight byte is read from memory once per tile. Results must equal
    /// <see cref="VecDot"/>'s bit for bit (same per-row summation order).
    /// </summary>
    public virtual void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride)
    {
        for (int r = 0; r < nRows; r++)
        {
            byte* w = weights + r * rowBytes;
            for (int a = 0; a < nActs; a++)
                y[a * yStride + r] = VecDot(n, w, activations + a * actStride);
        }
    }

    /// <summary>
    /// y[r] = <c>VecDot(w_r, act)</c> for <paramref name="nRows"/> consecutive weight rows (each
    /// <paramref name="rowBytes"/> apart): the matrix-vector product of one token (decode). A
    /// repacked format reads its interleaved groups here; results equal <see cref="VecDotTile"/>'s
    /// for the same (row, activation) bit for bit.
    /// </summary>
    public virtual void VecDotRows(int n, byte* weights, long rowBytes, int nRows, byte* activations, float* y)
    {
        for (int r = 0; r < nRows; r++) y[r] = VecDot(n, weights + r * rowBytes, activations);
    }

    /// <summary>
    /// Rows a repacked layout interleaves (1 for the plain GGUF layout): <see cref="VecDotRows"/>
    /// and <see cref="VecDotTile"/> must start at a multiple of it (they may end at the matrix's last row).
    /// </summary>
    public virtual int RowGroup => 1;

    /// <summary>The repacked layout's name (e.g. <c>q4_0x8</c>), or null for the GGUF layout.</summary>
    public virtual string? Layout => null;

    /// <summary>Finds the format of <paramref name="type"/>; false when EdgeLlm cannot compute with that type.</summary>
    public static bool TryGet(GgmlType type, out WeightFormat format)
    {
        lock (s_formats) return s_formats.TryGetValue(type, out format!);
    }

    /// <summary>Types EdgeLlm can compute with.</summary>
    public static IReadOnlyCollection<GgmlType> Supported
    {
        get { lock (s_formats) return s_formats.Keys.ToArray(); }
    }
}

/// <summary>F32 weights: activations stay f32.</summary>
internal sealed unsafe class F32Format : WeightFormat
{
    public override GgmlType Type => GgmlType.F32;
    public override GgmlType VecDotType => GgmlType.F32;

    public override void DequantizeRow(byte* src, float* dst, long n) =>
        Buffer.MemoryCopy(src, dst, n * 4, n * 4);

    public override float VecDot(int n, byte* weights, byte* activations) =>
        TensorPrimitives.Dot(new ReadOnlySpan<float>(weights, n), new ReadOnlySpan<float>(activations, n));
}

/// <summary>F16 weights: activations are rounded to f16 first, as ggml does (vec_dot_type F16).</summary>
internal sealed unsafe class F16Format : WeightFormat
{
    public override GgmlType Type => GgmlType.F16;
    public override GgmlType VecDotType => GgmlType.F16;

    public override void DequantizeRow(byte* src, float* dst, long n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, checked((int)n)), new Span<float>(dst, checked((int)n)));

    public override float VecDot(int n, byte* weights, byte* activations)
    {
        // Both sides are exact in f32, so converting then summing in f32 loses nothing but order.
        const int Chunk = 1024;
        Span<float> a = stackalloc float[Chunk];
        Span<float> b = stackalloc float[Chunk];
        float sum = 0;
        var w = (Half*)weights;
        var x = (Half*)activations;
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(w + i, len), a[..len]);
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(x + i, len), b[..len]);
            sum += TensorPrimitives.Dot(a[..len], b[..len]);
        }
        return sum;
    }
}

/// <summary>BF16 weights: activations are rounded to bf16 first (vec_dot_type BF16).</summary>
internal sealed unsafe class BF16Format : WeightFormat
{
    public override GgmlType Type => GgmlType.BF16;
    public override GgmlType VecDotType => GgmlType.BF16;

    public override void DequantizeRow(byte* src, float* dst, long n)
    {
        var s = (ushort*)src;
        for (long i = 0; i < n; i += int.MaxValue)
            BFloat16Converter.ToSingle(s + i, dst + i, (int)Math.Min(int.MaxValue, n - i));
    }

    public override float VecDot(int n, byte* weights, byte* activations)
    {
        // Both sides are exact in f32: widen a chunk at a time, then a vectorized f32 dot.
        const int Chunk = 1024;
        float* a = stackalloc float[Chunk];
        float* b = stackalloc float[Chunk];
        var w = (ushort*)weights;
        var x = (ushort*)activations;
        float sum = 0;
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            BFloat16Converter.ToSingle(w + i, a, len);
            BFloat16Converter.ToSingle(x + i, b, len);
            sum += TensorPrimitives.Dot(new ReadOnlySpan<float>(a, len), new ReadOnlySpan<float>(b, len));
        }
        return sum;
    }
}

/// <summary>bf16 &lt;-&gt; f32, rounding as ggml_compute_fp32_to_bf16 does (nearest even, NaN kept quiet).</summary>
public static class BFloat16Converter
{
    public static float ToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Widens <paramref name="n"/> bf16 values to f32 (exact: a bf16 is the top half of an f32).</summary>
    public static unsafe void ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst + i);
                Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + i + 8);
            }
        }
        for (; i < n; i++) dst[i] = ToSingle(src[i]);
    }

    public static ushort FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64); // NaN: force quiet
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }
}

/// <summary>Converts f32 activation rows to a format's <see cref="WeightFormat.VecDotType"/>.</summary>
public static unsafe class ActivationQuantizer
{
    private static readonly Dictionary<GgmlType, QuantizeRowFn> s_quantizers = new();

    /// <summary>Converts <c>n</c> floats at <c>x</c> into <c>dst</c>, laid out in the target type.</summary>
    public delegate void QuantizeRowFn(float* x, byte* dst, int n);

    static ActivationQuantizer()
    {
        s_quantizers[GgmlType.F32] = (x, dst, n) => Buffer.MemoryCopy(x, dst, n * 4L, n * 4L);
        s_quantizers[GgmlType.F16] = (x, dst, n) =>
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x, n), new Span<Half>(dst, n));
        s_quantizers[GgmlType.BF16] = (x, dst, n) =>
        {
            var d = (ushort*)dst;
            for (int i = 0; i < n; i++) d[i] = BFloat16Converter.FromSingle(x[i]);
        };
        QuantFormats.RegisterActivationQuantizers(s_quantizers);
    }

    /// <summary>Bytes needed for a row of <paramref name="n"/> values in <paramref name="type"/>.</summary>
    public static long RowBytes(GgmlType type, long n) => GgmlTypes.Info(type).RowBytes(n);

    /// <summary>Converts one activation row to <paramref name="type"/>.</summary>
    public static void QuantizeRow(GgmlType type, float* x, byte* dst, int n)
    {
        if (!s_quantizers.TryGetValue(type, out var fn))
            throw new NotSupportedException($"no activation quantizer for {GgmlTypes.Name(type)}");
        fn(x, dst, n);
    }
}
