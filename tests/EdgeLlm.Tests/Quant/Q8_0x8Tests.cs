using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q8_0 layout (<see cref="Q8_0x8"/>): the packing round-trips and refuses what its
/// kernels cannot compute exactly, the AVX2 kernels equal the scalar statement of the packed
/// arithmetic bit for bit, decode rows equal prompt tiles bit for bit for 1..9 activations, and all
/// of them agree with the plain Q8_0 dot product within float rounding.
/// </summary>
public unsafe class Q8_0x8Tests
{
    private readonly ITestOutputHelper _out;

    public Q8_0x8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 29; // three whole groups and a plain tail of five rows

    /// <summary>Q8_0 weight blocks of <paramref name="fill"/> with every -128 quant made -127 (ggml's quantizers never write -128; Pack refuses it).</summary>
    private static byte[] Weights(int n, int rows, SelfTest.Fill fill, Random rng)
    {
        byte[] data = SelfTest.MakeBlocks(GgmlType.Q8_0, n * rows, fill, rng);
        for (int b = 0; b < data.Length; b += 34)
            for (int j = 2; j < 34; j++)
                if (data[b + j] == 0x80) data[b + j] = 0x81;
        return data;
    }

    [Theory]
    [InlineData(32)]
    [InlineData(96)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        var rng = new Random(n);
        byte[] plain = Weights(n, Rows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Q8_0x8.Pack(p, q, Rows, n));
            Q8_0x8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        int packedBytes = (int)(24 * rowBytes);
        Assert.NotEqual(plain.AsSpan(0, packedBytes).ToArray(), packed.AsSpan(0, packedBytes).ToArray());
        Assert.Equal(plain.AsSpan(packedBytes).ToArray(), packed.AsSpan(packedBytes).ToArray());
        // Group g, block 0 starts with the eight rows' scales in row order.
        for (int r = 0; r < 8; r++)
            Assert.Equal(BitConverter.ToUInt16(plain, (int)(8 * rowBytes + r * rowBytes)), BitConverter.ToUInt16(packed, (int)(8 * rowBytes + 2 * r)));
    }

    [Fact]
    public void Pack_RefusesNonFiniteScales_AndMinus128()
    {
        int n = 64;
        byte[] plain = Weights(n, 9, SelfTest.Fill.Random, new Random(3));
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        {
            Assert.True(Q8_0x8.Pack(p, q, 9, n));

            var inf = (byte[])plain.Clone();
            inf[34 * 5] = 0x00;
            inf[34 * 5 + 1] = 0xFC; // block 5 (row 2, block 1): d = -inf
            fixed (byte* pi = inf) Assert.False(Q8_0x8.Pack(pi, q, 9, n));

            var nan = (byte[])plain.Clone();
            nan[34 * 3] = 0x01;
            nan[34 * 3 + 1] = 0x7C; // NaN
            fixed (byte* pn = nan) Assert.False(Q8_0x8.Pack(pn, q, 9, n));

            foreach (int at in new[] { 2, 17, 33 })
            {
                var m = (byte[])plain.Clone();
                m[34 * 7 + at] = 0x80; // row 3, block 1, a quant of -128
                fixed (byte* pm = m) Assert.False(Q8_0x8.Pack(pm, q, 9, n));
            }

            // Row 8 is the plain tail: a -128 there is the plain kernels' business.
            var tail = (byte[])plain.Clone();
            tail[34 * 16 + 9] = 0x80;
            fixed (byte* pt = tail) Assert.True(Q8_0x8.Pack(pt, q, 9, n));
        }
    }

    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("HugeScale")]
    [InlineData("NegativeScale")]
    [InlineData("TinyScale")]
    // Activations in the quantizer's range (no -128): the AVX2 tile takes its |w|·sign(a, w) form (Group4W).
    [InlineData("Random", true)]
    [InlineData("AllMin", true)]
    [InlineData("AllMax", true)]
    [InlineData("HugeScale", true)]
    public void Kernels_EqualTheScalarStatement_AndTilesEqualRows(string fillName, bool quantizerRange = false)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q8_0x8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the Q8_0x8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 11);
        int pairs = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 7, 64 })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            byte[] plain = Weights(n, Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int maxActs = 9;
            long actStride = actBytes + 32;
            var acts = new byte[actStride * maxActs];
            for (int k = 0; k < maxActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actStride);
            if (quantizerRange)
                for (int k = 0; k < maxActs; k++)
                    for (int b = 0; b < blocks; b++)
                        for (int j = 0; j < 32; j++)
                            if (acts[k * actStride + b * 34 + 2 + j] == 0x80) acts[k * actStride + b * 34 + 2 + j] = 0x81;
            long yStride = Rows + 3;
            var tile = new float[yStride * maxActs];
            var rows = new float[Rows];
            var reference = new float[Rows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* yt = tile)
            fixed (float* yr = rows)
            fixed (float* yref = reference)
            {
                Assert.True(Q8_0x8.Pack(p, q, Rows, n));
                for (int nActs = 1; nActs <= maxActs; nActs++)
                {
                    Array.Clear(tile);
                    Q8_0x8.DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
                    for (int k = 0; k < nActs; k++)
                    {
                        byte* act = a + k * actStride;
                        Q8_0x8.DotRows(n, q, rowBytes, Rows, act, yr);
                        Q8_0x8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                        for (int r = 0; r < Rows; r++)
                        {
                            Assert.True(SelfTest.SameFloat(yref[r], yr[r]), $"{fill} n={n} row {r} act {k}: rows {yr[r]:R} vs scalar {yref[r]:R}");
                            Assert.True(SelfTest.SameFloat(yr[r], yt[k * yStride + r]), $"{fill} n={n} nActs={nActs} row {r} act {k}: tile {yt[k * yStride + r]:R} vs rows {yr[r]:R}");
                            if (nActs != maxActs) continue;
                            float plainDot = Q8_0.DotQ8_0Q8_0Reference(n, p + r * rowBytes, act);
                            // Float order differs: bound the difference by the size of the terms, Σ|w·a|.
                            double scale = AbsSum(n, p + r * rowBytes, act);
                            double err = Math.Abs(plainDot - yr[r]) / scale;
                            if (float.IsFinite(plainDot)) Assert.True(err < 1e-5, $"{fill} n={n} row {r}: packed {yr[r]:R} vs plain {plainDot:R}");
                            worst = Math.Max(worst, float.IsFinite(plainDot) ? err : 0);
                            pairs++;
                        }
                        for (int g = Rows; g < yStride; g++) Assert.Equal(0f, tile[k * yStride + g]);
                    }
                    for (int k = nActs; k < maxActs; k++)
                        for (int r = 0; r < yStride; r++) Assert.Equal(0f, tile[k * yStride + r]);
                }
            }
        }
        _out.WriteLine($"{fill}{(quantizerRange ? " (activations within ±127)" : "")}: {pairs} pairs: rows == scalar statement == tiles (1..9 activations, {(Q8_0x8.UseAvx512Tile ? "AVX-512" : "AVX2")} tile) bit for bit; worst relative difference to the plain dot {worst:E2}");
    }

    [Fact]
    public void Q8_0x8_IsDefault_AndMatchesLlamaCpp()
    {
        // On by default where its kernels run (WeightPacking.DefaultLayouts), off with EDGELLM_REPACK=0.
        Assert.Contains("q8_0x8", WeightPacking.DefaultLayouts);
        if (Environment.GetEnvironmentVariable("EDGELLM_REPACK") is null)
            Assert.Equal(Q8_0x8.IsSupported ? "q8_0x8" : null, WeightPacking.PackedFormat(GgmlType.Q8_0)?.Layout);
        if (!Q8_0x8.IsSupported)
        {
            _out.WriteLine("SKIPPED: the q8_0x8 kernels need AVX2 and FMA");
            return;
        }
        // The CLI computes with it by default and meets llama.cpp's logits.
        string model = SharedData.Model("syn-llama-q8_0");
        var info = EdgeLlm.Tests.Cli.CliRunner.Run(["info", "-m", model]);
        Assert.Contains("weight layout: q8_0x8 repacked at load", info.Stdout, StringComparison.Ordinal);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedData.Golden, "syn-llama-q8_0.p1.json")));
        var ids = doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string outPath = Path.Combine(Path.GetTempPath(), $"edgellm-q8x8-{Guid.NewGuid():N}.f32");
        try
        {
            var r = EdgeLlm.Tests.Cli.CliRunner.Run(["logits", "-m", model, "--ids", string.Join(',', ids), "-o", outPath]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var ours = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(outPath)).ToArray();
            var golden = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(SharedData.Golden, "syn-llama-q8_0.p1.logits.f32"))).ToArray();
            Assert.Equal(golden.Length, ours.Length);
            double mean = golden.Average(x => (double)x);
            double std = Math.Sqrt(golden.Average(x => (x - mean) * (x - mean)));
            double figure = ours.Zip(golden, (x, y) => Math.Abs((double)x - y)).Max() / std;
            _out.WriteLine($"syn-llama-q8_0 p1 with q8_0x8 (CLI): figure {figure:G4} (bound 0.10)");
            Assert.True(figure <= 0.10, $"figure {figure}");
        }
        finally
        {
            File.Delete(outPath);
        }
    }

    private static double AbsSum(int n, byte* w, byte* a)
    {
        var fw = new float[n];
        var fa = new float[n];
        fixed (float* pw = fw)
        fixed (float* pa = fa)
        {
            Q8_0.DequantizeRowReference(w, pw, n);
            Q8_0.DequantizeRowReference(a, pa, n);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.Abs((double)fw[i] * fa[i]);
        return Math.Max(sum, 1e-30);
    }
}
