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

    // As the widened formats' (WideTile), with nothing to widen: chunks of 1024 in place, so a tile's 4 × 4 blocks
    // compute every pair as this does.
    public override float VecDot(int n, byte* weights, byte* activations) => WideTile.Dot(n, weights, activations, null, 4);

    /// <summary><see cref="VecDot"/> for a tile of rows × activations (<see cref="WideTile.Tile"/>: identical results).</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        WideTile.Tile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride, null, 4);
}

/// <summary>F16 weights: activations are rounded to f16 first, as ggml does (vec_dot_type F16).</summary>
internal sealed unsafe class F16Format : WeightFormat
{
    public override GgmlType Type => GgmlType.F16;
    public override GgmlType VecDotType => GgmlType.F16;

    public override void DequantizeRow(byte* src, float* dst, long n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, checked((int)n)), new Span<float>(dst, checked((int)n)));

    // Both sides are exact in f32, so widening then summing in f32 loses nothing but order.
    public override float VecDot(int n, byte* weights, byte* activations) => WideTile.Dot(n, weights, activations, s_widen, 2);

    private static readonly WideTile.Widen s_widen = static (src, dst, len) => TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, len), new Span<float>(dst, len));

    /// <summary><see cref="VecDot"/> for a tile of rows × activations (<see cref="WideTile.Tile"/>: identical results).</summary>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        WideTile.Tile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride, s_widen, 2);
}

/// <summary>
/// The products of the widened formats (f16, bf16): a row is taken in chunks of 1024 values widened to f32, each
/// chunk's dot one accumulator vector of the widest accelerated width (fused multiply-adds in order, then
/// <c>Vector*.Sum</c>, then the scalar tail) and the chunks' dots summed in order. Written here, not with
/// TensorPrimitives.Dot, so that the tile kernel (a 4 × 4 block of weight rows × activation rows with AVX-512, 4 × 2
/// narrower, each pair still with its own accumulator) computes every pair exactly as <see cref="Dot"/> does, while
/// loading each widened vector once per block instead of once per pair: prompt processing with f16 weights (BERT
/// embedding models ship f16) is then bound by the FMAs, not by the loads and conversions. The kernels are compiled
/// optimized from their first call (AggressiveOptimization): in the JIT's first tier the 16 accumulators live on the
/// stack, and a one-thread encoder run spent most of its time there (bge-small F32 pp128: 539 → 1,404 t/s).
/// </summary>
internal static unsafe class WideTile
{
    public const int Chunk = 1024;

    /// <summary>Widens <c>len</c> values at <c>src</c> to f32.</summary>
    public delegate void Widen(byte* src, float* dst, int len);

    [ThreadStatic] private static float[]? t_buffer;

    private static float[] Buffer(int floats)
    {
        var b = t_buffer;
        if (b is null || b.Length < floats) t_buffer = b = new float[Math.Max(floats, 21 * Chunk)];
        return b;
    }

    /// <summary>One row's dot with one activation row, both widened chunk by chunk (the definition the tile reproduces).</summary>
    public static float Dot(int n, byte* weights, byte* activations, Widen? widen, int elementBytes)
    {
        float* a = stackalloc float[Chunk];
        float* b = stackalloc float[Chunk];
        float sum = 0;
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            if (widen is null) sum += PairDot((float*)weights + i, (float*)activations + i, len); // f32: in place
            else
            {
                widen(weights + (long)i * elementBytes, a, len);
                widen(activations + (long)i * elementBytes, b, len);
                sum += PairDot(a, b, len);
            }
        }
        return sum;
    }

    /// <summary>Σ w[i]·x[i] over one chunk: one accumulator vector, its sum, then the tail in order.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static float PairDot(float* w, float* x, int len)
    {
        int i = 0;
        float s;
        if (Vector512.IsHardwareAccelerated)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= len; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(w + i), Vector512.Load(x + i), acc);
            s = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= len; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), acc);
            s = Vector256.Sum(acc);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var acc = Vector128<float>.Zero;
            for (; i + 4 <= len; i += 4) acc = Vector128.FusedMultiplyAdd(Vector128.Load(w + i), Vector128.Load(x + i), acc);
            s = Vector128.Sum(acc);
        }
        else s = 0;
        return Tail(s, w, x, i, len);
    }

    private static float Tail(float s, float* w, float* x, int i, int len)
    {
        for (; i < len; i++) s += w[i] * x[i];
        return s;
    }

    /// <summary>The tile: <c>y[a·yStride + r]</c> = <see cref="Dot"/>(row r, activation a), bit for bit.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Tile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride, Widen? widen, int elementBytes)
    {
        if (widen is null)
        {
            TileInPlace(n, (float*)weights, rowBytes / 4, nRows, (float*)activations, actStride / 4, nActs, y, yStride);
            return;
        }
        var buffer = Buffer((nActs + 4) * Chunk);
        for (int a = 0; a < nActs; a++)
            for (int r = 0; r < nRows; r++) y[a * yStride + r] = 0;
        int actBlock = Vector512.IsHardwareAccelerated ? 4 : 2;
        bool blocked = Vector128.IsHardwareAccelerated;
        fixed (float* b = buffer)
        {
            float* rows = b + (long)nActs * Chunk; // 4 widened weight rows
            for (int i = 0; i < n; i += Chunk)
            {
                int len = Math.Min(Chunk, n - i);
                for (int a = 0; a < nActs; a++) widen(activations + a * actStride + (long)i * elementBytes, b + (long)a * Chunk, len);
                for (int r0 = 0; r0 < nRows; r0 += 4)
                {
                    int nr = Math.Min(4, nRows - r0);
                    for (int r = 0; r < nr; r++) widen(weights + (r0 + r) * rowBytes + (long)i * elementBytes, rows + r * Chunk, len);
                    int a0 = 0;
                    if (blocked && nr == 4)
                        for (; a0 + actBlock <= nActs; a0 += actBlock)
                        {
                            if (actBlock == 4) Block4x4(rows, Chunk, b + (long)a0 * Chunk, Chunk, len, y + a0 * yStride + r0, yStride);
                            else Block4x2(rows, Chunk, b + (long)a0 * Chunk, Chunk, len, y + a0 * yStride + r0, yStride);
                        }
                    for (int a = a0; a < nActs; a++)
                        for (int r = 0; r < nr; r++)
                            y[a * yStride + r0 + r] += PairDot(rows + r * Chunk, b + (long)a * Chunk, len);
                }
            }
        }
    }

    /// <summary>The tile of f32 weights and activations, read where they are (rows <paramref name="ws"/> and <paramref name="xs"/> floats apart).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void TileInPlace(int n, float* w, long ws, int nRows, float* x, long xs, int nActs, float* y, long yStride)
    {
        for (int a = 0; a < nActs; a++)
            for (int r = 0; r < nRows; r++) y[a * yStride + r] = 0;
        int actBlock = Vector512.IsHardwareAccelerated ? 4 : 2;
        bool blocked = Vector128.IsHardwareAccelerated;
        for (int i = 0; i < n; i += Chunk)
        {
            int len = Math.Min(Chunk, n - i);
            for (int r0 = 0; r0 < nRows; r0 += 4)
            {
                int nr = Math.Min(4, nRows - r0);
                float* rows = w + r0 * ws + i;
                int a0 = 0;
                if (blocked && nr == 4)
                    for (; a0 + actBlock <= nActs; a0 += actBlock)
                    {
                        if (actBlock == 4) Block4x4(rows, ws, x + a0 * xs + i, xs, len, y + a0 * yStride + r0, yStride);
                        else Block4x2(rows, ws, x + a0 * xs + i, xs, len, y + a0 * yStride + r0, yStride);
                    }
                for (int a = a0; a < nActs; a++)
                    for (int r = 0; r < nr; r++)
                        y[a * yStride + r0 + r] += PairDot(rows + r * ws, x + a * xs + i, len);
            }
        }
    }

    /// <summary>4 weight rows × 4 activation rows (Vector512): 16 accumulators, 8 loads per 16 fused multiply-adds.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Block4x4(float* w, long ws, float* x, long xs, int len, float* y, long yStride)
    {
        var a00 = Vector512<float>.Zero; var a01 = a00; var a02 = a00; var a03 = a00;
        var a10 = a00; var a11 = a00; var a12 = a00; var a13 = a00;
        var a20 = a00; var a21 = a00; var a22 = a00; var a23 = a00;
        var a30 = a00; var a31 = a00; var a32 = a00; var a33 = a00;
        int i = 0;
        for (; i + 16 <= len; i += 16)
        {
            var w0 = Vector512.Load(w + i); var w1 = Vector512.Load(w + ws + i);
            var w2 = Vector512.Load(w + 2 * ws + i); var w3 = Vector512.Load(w + 3 * ws + i);
            var x0 = Vector512.Load(x + i);
            a00 = Vector512.FusedMultiplyAdd(w0, x0, a00); a10 = Vector512.FusedMultiplyAdd(w1, x0, a10);
            a20 = Vector512.FusedMultiplyAdd(w2, x0, a20); a30 = Vector512.FusedMultiplyAdd(w3, x0, a30);
            var x1 = Vector512.Load(x + xs + i);
            a01 = Vector512.FusedMultiplyAdd(w0, x1, a01); a11 = Vector512.FusedMultiplyAdd(w1, x1, a11);
            a21 = Vector512.FusedMultiplyAdd(w2, x1, a21); a31 = Vector512.FusedMultiplyAdd(w3, x1, a31);
            var x2 = Vector512.Load(x + 2 * xs + i);
            a02 = Vector512.FusedMultiplyAdd(w0, x2, a02); a12 = Vector512.FusedMultiplyAdd(w1, x2, a12);
            a22 = Vector512.FusedMultiplyAdd(w2, x2, a22); a32 = Vector512.FusedMultiplyAdd(w3, x2, a32);
            var x3 = Vector512.Load(x + 3 * xs + i);
            a03 = Vector512.FusedMultiplyAdd(w0, x3, a03); a13 = Vector512.FusedMultiplyAdd(w1, x3, a13);
            a23 = Vector512.FusedMultiplyAdd(w2, x3, a23); a33 = Vector512.FusedMultiplyAdd(w3, x3, a33);
        }
        void Put(Vector512<float> acc, int r, int a) =>
            y[a * yStride + r] += Tail(Vector512.Sum(acc), w + r * ws, x + a * xs, i, len);
        Put(a00, 0, 0); Put(a10, 1, 0); Put(a20, 2, 0); Put(a30, 3, 0);
        Put(a01, 0, 1); Put(a11, 1, 1); Put(a21, 2, 1); Put(a31, 3, 1);
        Put(a02, 0, 2); Put(a12, 1, 2); Put(a22, 2, 2); Put(a32, 3, 2);
        Put(a03, 0, 3); Put(a13, 1, 3); Put(a23, 2, 3); Put(a33, 3, 3);
    }

    /// <summary>4 weight rows × 2 activation rows at the widest of Vector256 / Vector128 (8 accumulators).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Block4x2(float* w, long ws, float* x, long xs, int len, float* y, long yStride)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var a00 = Vector256<float>.Zero; var a01 = a00; var a10 = a00; var a11 = a00;
            var a20 = a00; var a21 = a00; var a30 = a00; var a31 = a00;
            int i = 0;
            for (; i + 8 <= len; i += 8)
            {
                var x0 = Vector256.Load(x + i); var x1 = Vector256.Load(x + xs + i);
                var w0 = Vector256.Load(w + i); a00 = Vector256.FusedMultiplyAdd(w0, x0, a00); a01 = Vector256.FusedMultiplyAdd(w0, x1, a01);
                var w1 = Vector256.Load(w + ws + i); a10 = Vector256.FusedMultiplyAdd(w1, x0, a10); a11 = Vector256.FusedMultiplyAdd(w1, x1, a11);
                var w2 = Vector256.Load(w + 2 * ws + i); a20 = Vector256.FusedMultiplyAdd(w2, x0, a20); a21 = Vector256.FusedMultiplyAdd(w2, x1, a21);
                var w3 = Vector256.Load(w + 3 * ws + i); a30 = Vector256.FusedMultiplyAdd(w3, x0, a30); a31 = Vector256.FusedMultiplyAdd(w3, x1, a31);
            }
            void Put(Vector256<float> acc, int r, int a) =>
                y[a * yStride + r] += Tail(Vector256.Sum(acc), w + r * ws, x + a * xs, i, len);
            Put(a00, 0, 0); Put(a10, 1, 0); Put(a20, 2, 0); Put(a30, 3, 0);
            Put(a01, 0, 1); Put(a11, 1, 1); Put(a21, 2, 1); Put(a31, 3, 1);
        }
        else
        {
            var a00 = Vector128<float>.Zero; var a01 = a00; var a10 = a00; var a11 = a00;
            var a20 = a00; var a21 = a00; var a30 = a00; var a31 = a00;
            int i = 0;
            for (; i + 4 <= len; i += 4)
            {
                var x0 = Vector128.Load(x + i); var x1 = Vector128.Load(x + xs + i);
                var w0 = Vector128.Load(w + i); a00 = Vector128.FusedMultiplyAdd(w0, x0, a00); a01 = Vector128.FusedMultiplyAdd(w0, x1, a01);
                var w1 = Vector128.Load(w + ws + i); a10 = Vector128.FusedMultiplyAdd(w1, x0, a10); a11 = Vector128.FusedMultiplyAdd(w1, x1, a11);
                var w2 = Vector128.Load(w + 2 * ws + i); a20 = Vector128.FusedMultiplyAdd(w2, x0, a20); a21 = Vector128.FusedMultiplyAdd(w2, x1, a21);
                var w3 = Vector128.Load(w + 3 * ws + i); a30 = Vector128.FusedMultiplyAdd(w3, x0, a30); a31 = Vector128.FusedMultiplyAdd(w3, x1, a31);
            }
            void Put(Vector128<float> acc, int r, int a) =>
                y[a * yStride + r] += Tail(Vector128.Sum(acc), w + r * ws, x + a * xs, i, len);
            Put(a00, 0, 0); Put(a10, 1, 0); Put(a20, 2, 0); Put(a30, 3, 0);
            Put(a01, 0, 1); Put(a11, 1, 1); Put(a21, 2, 1); Put(a31, 3, 1);
        }
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

    // Both sides are exact in f32: widened chunk by chunk, as f16.
    public override float VecDot(int n, byte* weights, byte* activations) => WideTile.Dot(n, weights, activations, s_widen, 2);

    private static readonly WideTile.Widen s_widen = static (src, dst, len) => BFloat16Converter.ToSingle((ushort*)src, dst, len);

    /// <inheritdoc cref="F16Format.VecDotTile"/>
    public override void VecDotTile(int n, byte* weights, long rowBytes, int nRows, byte* activations, long actStride, int nActs, float* y, long yStride) =>
        WideTile.Tile(n, weights, rowBytes, nRows, activations, actStride, nActs, y, yStride, s_widen, 2);
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
