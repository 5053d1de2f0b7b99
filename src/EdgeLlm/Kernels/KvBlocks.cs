using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Engine;

namespace EdgeLlm.Kernels;

/// <summary>Marks an operand of <see cref="Attention"/> as a q8_0 cache (<see cref="KvCache"/>'s layout; pointers to it count bytes).</summary>
internal readonly struct KvQ8_0;

/// <summary>Marks an operand of <see cref="Attention"/> as a q4_0 cache (<see cref="KvCache"/>'s layout; pointers to it count bytes).</summary>
internal readonly struct KvQ4_0;

/// <summary>
/// Dequantizes one block of 64 positions of a quantized <see cref="KvCache"/> into the f32 tile the
/// attention's products read: keys [head_dim, 64], values [rows, head_dim]. Each value is
/// float(q) × float(scale), exact in f32 (an 8-bit integer times an f16 value needs 19 bits), so every
/// vector width and the scalar <see cref="Value"/> give the same bits. Written by hand: no library
/// dequantizes ggml blocks into a transposed tile.
/// </summary>
internal static unsafe class KvBlocks
{
    private const int P = KvCache.BlockPositions;

    /// <summary>The AVX2 steps where the CPU has them; tests clear it to run the portable Vector128 steps (NEON's) on x64.</summary>
    internal static bool UseAvx2 = Avx2.IsSupported;

    /// <summary>Keys of one block (at <paramref name="block"/>: quants, then scales) into <paramref name="dst"/>, [head_dim, 64].</summary>
    public static void Keys(KvCacheType type, byte* block, int headDim, float* dst)
    {
        float* s = stackalloc float[P];
        int groups = headDim / 32;
        ushort* scales = (ushort*)(block + (type == KvCacheType.Q8_0 ? P * headDim : P * headDim / 2));
        for (int g = 0; g < groups; g++)
        {
            HalfMath.Widen((Half*)(scales + g * P), s, P);
            for (int i = 0; i < 32; i++)
            {
                int d = g * 32 + i;
                float* o = dst + d * P;
                if (type == KvCacheType.Q8_0)
                {
                    sbyte* q = (sbyte*)block + d * P;
                    if (UseAvx2)
                    {
                        // 64 positions: eight sign-extending loads (vpmovsxbd from memory), converts and scales.
                        for (int p = 0; p < P; p += 8)
                            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + p)) * Vector256.Load(s + p)).Store(o + p);
                    }
                    else
                        for (int p = 0; p < P; p += 16) Emit16(Vector128.Load(q + p), s + p, o + p);
                }
                else
                {
                    // 32 bytes: position p in byte p's low nibble, p + 32 in its high nibble.
                    byte* q = block + d * 32;
                    for (int b = 0; b < 32; b += 16)
                    {
                        var x = Vector128.Load(q + b);
                        Emit16(Nibbles(x & Vector128.Create((byte)0x0F)), s + b, o + b);
                        Emit16(Nibbles(Vector128.ShiftRightLogical(x, 4)), s + 32 + b, o + 32 + b);
                    }
                }
            }
        }
    }

    /// <summary>The first <paramref name="rows"/> positions' values of one block into <paramref name="dst"/>, [rows, head_dim].</summary>
    public static void Values(KvCacheType type, byte* block, int rows, int headDim, float* dst)
    {
        int groups = headDim / 32;
        ushort* scales = (ushort*)(block + (type == KvCacheType.Q8_0 ? P * headDim : P * headDim / 2));
        // The rows' scales widened at once (a scalar Half -> float conversion is a software routine in .NET).
        int count = rows * groups;
        float* s = stackalloc float[Math.Min(count, 1024)];
        bool widened = count <= 1024;
        if (widened) HalfMath.Widen((Half*)scales, s, count);
        for (int p = 0; p < rows; p++)
            for (int g = 0; g < groups; g++)
            {
                float d = widened ? s[p * groups + g] : (float)BitConverter.UInt16BitsToHalf(scales[p * groups + g]);
                float* o = dst + p * headDim + g * 32;
                if (type == KvCacheType.Q8_0)
                {
                    sbyte* q = (sbyte*)block + p * headDim + g * 32;
                    if (UseAvx2)
                    {
                        var dv = Vector256.Create(d);
                        for (int j = 0; j < 32; j += 8)
                            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + j)) * dv).Store(o + j);
                    }
                    else
                    {
                        Emit16(Vector128.Load(q), d, o);
                        Emit16(Vector128.Load(q + 16), d, o + 16);
                    }
                }
                else
                {
                    // A ggml block_q4_0's 16 bytes: dimension i in byte i's low nibble, i + 16 in its high one.
                    var x = Vector128.Load(block + p * headDim / 2 + g * 16);
                    Emit16(Nibbles(x & Vector128.Create((byte)0x0F)), d, o);
                    Emit16(Nibbles(Vector128.ShiftRightLogical(x, 4)), d, o + 16);
                }
            }
    }

    /// <summary>
    /// The scalar statement of the layout: dimension <paramref name="d"/> of position <paramref name="j"/> in the
    /// keys (<paramref name="key"/>) or values of one KV head starting at <paramref name="head"/>.
    /// </summary>
    public static float Value(KvCacheType type, byte* head, long j, int d, int headDim, bool key)
    {
        byte* block = head + j / P * KvCache.BlockBytes(type, headDim);
        int p = (int)(j % P), g = d / 32, groups = headDim / 32;
        ushort* scales = (ushort*)(block + (type == KvCacheType.Q8_0 ? P * headDim : P * headDim / 2));
        float scale = (float)BitConverter.UInt16BitsToHalf(key ? scales[g * P + p] : scales[p * groups + g]);
        int q;
        if (type == KvCacheType.Q8_0) q = ((sbyte*)block)[key ? d * P + p : p * headDim + d];
        else if (key) q = (block[d * 32 + p % 32] >> (p < 32 ? 0 : 4) & 0x0F) - 8;
        else q = (block[p * headDim / 2 + g * 16 + d % 16] >> (d % 32 < 16 ? 0 : 4) & 0x0F) - 8;
        return q * scale;
    }

    /// <summary>
    /// Rounds <paramref name="n"/> (a multiple of 32) query values to q8_0 and back in place: the query
    /// llama.cpp multiplies with quantized keys (<c>quantize_row_q8_0</c>, ggml's vec_dot_type of q8_0 and q4_0).
    /// </summary>
    public static void RoundToQ8_0(float* x, int n)
    {
        int groups = n / 32;
        var blocks = stackalloc Quant.BlockQ8_0[Math.Min(groups, 512)];
        for (int g0 = 0; g0 < groups; g0 += 512)
        {
            int count = Math.Min(512, groups - g0);
            Quant.Q8_0.QuantizeActivationRow(x + g0 * 32, (byte*)blocks, count * 32);
            Quant.Q8_0.DequantizeRowReference((byte*)blocks, x + g0 * 32, count * 32);
        }
    }

    /// <summary>
    /// x ← H·x on each run of <paramref name="block"/> (a power of two) consecutive values of the
    /// <paramref name="n"/> at <paramref name="x"/>: H the orthonormal Walsh-Hadamard matrix in natural
    /// (Sylvester) order, H[i][j] = (−1)^popcount(i &amp; j) / √block, its own inverse. llama.cpp (its
    /// PR 21038) rotates the query and keys, and the values and the attention's output, with it when the
    /// cache is quantized (<see cref="KvCache.KeyRotation"/>): an orthonormal rotation leaves every score and
    /// output as it was, but spreads a head's outlier dimensions over the block, so 32 values sharing one
    /// scale lose less to rounding. The fast transform (butterflies, then one scale) gives ggml's matrix
    /// product to f32 rounding.
    /// </summary>
    public static void Hadamard(float* x, int n, int block)
    {
        float c = 1.0f / MathF.Sqrt(block);
        for (int b0 = 0; b0 < n; b0 += block)
        {
            float* v = x + b0;
            for (int h = 1; h < block; h *= 2)
                for (int i = 0; i < block; i += 2 * h)
                {
                    int j = i;
                    if (h >= 8 && Vector256.IsHardwareAccelerated)
                        for (; j + 8 <= i + h; j += 8)
                        {
                            var a = Vector256.Load(v + j);
                            var b = Vector256.Load(v + j + h);
                            (a + b).Store(v + j);
                            (a - b).Store(v + j + h);
                        }
                    else if (h >= 4 && Vector128.IsHardwareAccelerated)
                        for (; j + 4 <= i + h; j += 4)
                        {
                            var a = Vector128.Load(v + j);
                            var b = Vector128.Load(v + j + h);
                            (a + b).Store(v + j);
                            (a - b).Store(v + j + h);
                        }
                    for (; j < i + h; j++)
                    {
                        float a = v[j], b = v[j + h];
                        v[j] = a + b;
                        v[j + h] = a - b;
                    }
                }
            for (int j = 0; j < block; j++) v[j] *= c;
        }
    }

    /// <summary>Nibbles 0..15 as the values −8..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Nibbles(Vector128<byte> x) => (x - Vector128.Create((byte)8)).AsSByte();

    /// <summary>16 int8 values times 16 scales into 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit16(Vector128<sbyte> x, float* s, float* o)
    {
        if (UseAvx2)
        {
            var a = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(x));
            var b = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(x, 8)));
            (a * Vector256.Load(s)).Store(o);
            (b * Vector256.Load(s + 8)).Store(o + 8);
            return;
        }
        var (i0, i1, i2, i3) = Widen(x);
        (Vector128.ConvertToSingle(i0) * Vector128.Load(s)).Store(o);
        (Vector128.ConvertToSingle(i1) * Vector128.Load(s + 4)).Store(o + 4);
        (Vector128.ConvertToSingle(i2) * Vector128.Load(s + 8)).Store(o + 8);
        (Vector128.ConvertToSingle(i3) * Vector128.Load(s + 12)).Store(o + 12);
    }

    /// <summary>16 int8 values times one scale into 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit16(Vector128<sbyte> x, float scale, float* o)
    {
        if (UseAvx2)
        {
            var sv = Vector256.Create(scale);
            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(x)) * sv).Store(o);
            (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(x, 8))) * sv).Store(o + 8);
            return;
        }
        var s = Vector128.Create(scale);
        var (i0, i1, i2, i3) = Widen(x);
        (Vector128.ConvertToSingle(i0) * s).Store(o);
        (Vector128.ConvertToSingle(i1) * s).Store(o + 4);
        (Vector128.ConvertToSingle(i2) * s).Store(o + 8);
        (Vector128.ConvertToSingle(i3) * s).Store(o + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int>, Vector128<int>, Vector128<int>, Vector128<int>) Widen(Vector128<sbyte> x)
    {
        var lo = Vector128.WidenLower(x);
        var hi = Vector128.WidenUpper(x);
        return (Vector128.WidenLower(lo), Vector128.WidenUpper(lo), Vector128.WidenLower(hi), Vector128.WidenUpper(hi));
    }
}
