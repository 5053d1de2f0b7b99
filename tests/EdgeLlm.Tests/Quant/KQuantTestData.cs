using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>Random and edge-case K-quant blocks, and tensors read from GGUF files as f32.</summary>
public static unsafe class KQuantTestData
{
    internal static readonly GgmlType[] WeightTypes = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>Edge patterns a block can be filled with.</summary>
    public enum Pattern { Random, AllZeroBytes, AllOnesBytes, ZeroScale, ExtremeScale, TinyScale }

    internal static int BlockSize(GgmlType t) => GgmlTypes.Info(t).TypeSize;

    /// <summary>Offsets of the f16 super-scales (d, and dmin where the format has one) inside a block.</summary>
    internal static int[] HalfOffsets(GgmlType t) => t switch
    {
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q4_K => [0, 2],
        GgmlType.Q5_K => [0, 2],
        GgmlType.Q6_K => [208],
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Fills <paramref name="blocks"/> blocks of <paramref name="t"/> following <paramref name="p"/>.</summary>
    internal static byte[] MakeBlocks(GgmlType t, int blocks, Pattern p, Random rng)
    {
        int bs = BlockSize(t);
        var data = new byte[bs * blocks];
        for (int b = 0; b < blocks; b++)
        {
            var block = data.AsSpan(b * bs, bs);
            switch (p)
            {
                case Pattern.AllZeroBytes: block.Clear(); break;
                case Pattern.AllOnesBytes: block.Fill(0xFF); break;
                default: rng.NextBytes(block); break;
            }
            foreach (int off in HalfOffsets(t))
            {
                float v = p switch
                {
                    Pattern.ZeroScale => 0f,
                    Pattern.ExtremeScale => rng.Next(2) == 0 ? 65504f : -65504f,
                    Pattern.TinyScale => 6e-8f, // smallest f16 subnormal
                    Pattern.AllZeroBytes => 0f,
                    Pattern.AllOnesBytes => 1.5f, // keep all-ones quants/scales but finite super-scales
                    _ => (float)(rng.NextDouble() * 2 - 1) * 0.05f,
                };
                MemoryMarshal.Write(block[off..], BitConverter.HalfToUInt16Bits((Half)v));
            }
        }
        return data;
    }

    /// <summary>Random Q8_K activation blocks with consistent bsums; quants in [-127, 127].</summary>
    internal static byte[] MakeQ8KBlocks(int blocks, Random rng, bool extremes = false)
    {
        var data = new byte[292 * blocks];
        for (int b = 0; b < blocks; b++)
        {
            var block = data.AsSpan(b * 292, 292);
            float d = extremes ? 1e30f : (float)rng.NextDouble() * 0.02f;
            MemoryMarshal.Write(block, d);
            for (int g = 0; g < 16; g++)
            {
                int sum = 0;
                for (int k = 0; k < 16; k++)
                {
                    sbyte q = extremes ? (sbyte)(rng.Next(2) == 0 ? 127 : -127) : (sbyte)rng.Next(-127, 128);
                    block[4 + 16 * g + k] = (byte)q;
                    sum += q;
                }
                MemoryMarshal.Write(block[(260 + 2 * g)..], (short)sum);
            }
        }
        return data;
    }

    /// <summary>Σ_i |weight term_i · a_i| in double: the scale part and (Q4_K/Q5_K) the min part separately.</summary>
    internal static double Magnitude(GgmlType type, byte[] w, byte[] a, int blocks)
    {
        int n = blocks * 256, bs = BlockSize(type);
        int[] halves = HalfOffsets(type);
        var parts = new List<float[]>();
        foreach (int keep in halves.Length == 2 ? new[] { 0, 1 } : new[] { 0 })
        {
            byte[] copy = (byte[])w.Clone();
            if (halves.Length == 2)
                for (int b = 0; b < blocks; b++) MemoryMarshal.Write(copy.AsSpan(b * bs + halves[1 - keep]), (ushort)0);
            var deq = new float[n];
            WeightFormat.TryGet(type, out var fmt);
            fixed (byte* pc = copy)
            fixed (float* pd = deq)
                fmt.DequantizeRow(pc, pd, n);
            parts.Add(deq);
        }
        double m = 0;
        for (int i = 0; i < n; i++)
        {
            int b = i / 256;
            double ai = Math.Abs((double)BitConverter.ToSingle(a, b * 292) * (sbyte)a[b * 292 + 4 + i % 256]);
            foreach (var p in parts) m += Math.Abs((double)p[i]) * ai;
        }
        return m;
    }

    /// <summary>Q8_K blocks with d = 1, quants in [−8, 8] and consistent bsums.</summary>
    internal static byte[] SmallQ8K(int blocks, Random rng)
    {
        var data = new byte[292 * blocks];
        for (int b = 0; b < blocks; b++)
        {
            var block = data.AsSpan(b * 292, 292);
            MemoryMarshal.Write(block, 1f);
            for (int g = 0; g < 16; g++)
            {
                short sum = 0;
                for (int k = 0; k < 16; k++)
                {
                    sbyte q = (sbyte)rng.Next(-8, 9);
                    block[4 + 16 * g + k] = (byte)q;
                    sum += q;
                }
                MemoryMarshal.Write(block[(260 + 2 * g)..], sum);
            }
        }
        return data;
    }

    /// <summary>
    /// A fast K-quant dot against ggml's reference over random rows of several lengths (the last
    /// trial with extreme activations): |fast − reference| ≤ <paramref name="tolerance"/> ×
    /// <see cref="Magnitude"/>, both non-finite together, or bit for bit with <paramref name="exact"/>.
    /// Returns the worst relative difference and the number of finite cases.
    /// </summary>
    /// <summary>
    /// A seed from a case's parts that is the same in every run (<see cref="HashCode.Combine{T1, T2, T3}"/>
    /// is randomized per process, which made a rare case differ from run to run).
    /// </summary>
    internal static int Seed(int a, int b, int c) => (a * 7919 + b) * 104729 + c;

    internal static (double Worst, int Checks) AssertWithinFloatOrder(GgmlType type, Pattern pattern, int seed, int[] blockCounts,
        SelfTest.DotFn fast, SelfTest.DotFn reference, double tolerance, bool exact = false)
    {
        var rng = new Random(seed);
        double worst = 0;
        int checks = 0;
        foreach (int blocks in blockCounts)
        {
            int n = blocks * 256;
            for (int trial = 0; trial < 6; trial++)
            {
                byte[] w = MakeBlocks(type, blocks, pattern, rng);
                byte[] a = MakeQ8KBlocks(blocks, rng, extremes: trial == 5);
                fixed (byte* pw = w)
                fixed (byte* pa = a)
                {
                    float r = reference(n, pw, pa);
                    float f = fast(n, pw, pa);
                    if (exact)
                    {
                        Assert.True(SelfTest.SameFloat(r, f), $"{type} {pattern} blocks={blocks} trial {trial}: fast {f:R} != reference {r:R}");
                        continue;
                    }
                    if (!float.IsFinite(r) || !float.IsFinite(f))
                    {
                        // Overflowing scales: whether a partial sum overflows depends on the order of
                        // the sums, so one order may end at ±∞ or NaN (∞ − ∞) where the other ends
                        // finite, but then only near the end of the float range.
                        float other = float.IsFinite(r) ? r : f;
                        Assert.True(!float.IsFinite(other) || MathF.Abs(other) > float.MaxValue / 1000,
                            $"{type} {pattern} blocks={blocks} trial {trial}: reference {r:R} but fast {f:R}");
                        continue;
                    }
                    double magnitude = Magnitude(type, w, a, blocks);
                    double err = Math.Abs((double)f - r);
                    Assert.True(err <= tolerance * magnitude,
                        $"{type} {pattern} blocks={blocks} trial {trial}: fast {f:R} vs reference {r:R}, |diff| {err:E3} > {tolerance} x {magnitude:E3}");
                    if (magnitude > 0) worst = Math.Max(worst, err / magnitude);
                    checks++;
                }
            }
        }
        return (worst, checks);
    }

    /// <summary>A whole tensor as f32, dequantized through its <see cref="WeightFormat"/>.</summary>
    internal static float[] ReadTensor(GgufFile f, GgufTensorInfo t)
    {
        if (!WeightFormat.TryGet(t.Type, out var fmt)) throw new NotSupportedException($"{t}: no format");
        var result = new float[t.ElementCount];
        byte* src = f.GetTensorPointer(t);
        long rowBytes = GgmlTypes.Info(t.Type).RowBytes(t.RowLength);
        fixed (float* dst = result)
        {
            for (long r = 0; r < t.RowCount; r++)
                fmt.DequantizeRow(src + r * rowBytes, dst + r * t.RowLength, t.RowLength);
        }
        return result;
    }

    /// <summary>Root-mean-square of a − b.</summary>
    internal static double RmsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; s += d * d; }
        return Math.Sqrt(s / a.Length);
    }

    internal static double Rms(ReadOnlySpan<float> a)
    {
        double s = 0;
        foreach (float v in a) s += (double)v * v;
        return Math.Sqrt(s / a.Length);
    }
}
