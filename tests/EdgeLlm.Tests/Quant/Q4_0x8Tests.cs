using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q4_0 layout (<see cref="Q4_0x8"/>): the packing round-trips, the AVX2 kernels
/// equal the scalar statement of the packed arithmetic bit for bit, decode rows equal prompt tiles
/// bit for bit, and all of them agree with the plain Q4_0 dot product within float rounding.
/// </summary>
public unsafe class Q4_0x8Tests
{
    private readonly ITestOutputHelper _out;

    public Q4_0x8Tests(ITestOutputHelper output) => _out = output;

    private const int Rows = 21; // two whole groups and a plain tail of five rows

    [Theory]
    [InlineData(32)]
    [InlineData(96)]
    [InlineData(2048)]
    public void Pack_RoundTrips_AndKeepsTheTailPlain(int n)
    {
        var rng = new Random(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * Rows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        var back = new byte[plain.Length];
        long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* b = back)
        {
            Assert.True(Q4_0x8.Pack(p, q, Rows, n));
            Q4_0x8.Unpack(q, b, Rows, n);
        }
        Assert.Equal(plain, back);
        Assert.NotEqual(plain.AsSpan(0, (int)(16 * rowBytes)).ToArray(), packed.AsSpan(0, (int)(16 * rowBytes)).ToArray());
        Assert.Equal(plain.AsSpan((int)(16 * rowBytes)).ToArray(), packed.AsSpan((int)(16 * rowBytes)).ToArray());
    }

    [Fact]
    public void Pack_RefusesNonFiniteScales()
    {
        int n = 64;
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * 8, SelfTest.Fill.Random, new Random(3));
        plain[18 * 5] = 0x00;
        plain[18 * 5 + 1] = 0x7C; // block 5 (row 2, block 1): d = +inf
        var packed = new byte[plain.Length];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
            Assert.False(Q4_0x8.Pack(p, q, 8, n));
    }

    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("HugeScale")]
    [InlineData("NegativeScale")]
    public void Kernels_EqualTheScalarStatement_AndTilesEqualRows(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q4_0x8.IsSupported)
        {
            // xunit 2 has no dynamic skip; without AVX2 the kernels are the scalar statement itself.
            _out.WriteLine("SKIPPED: the Q4_0x8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random((int)fill + 7);
        int pairs = 0;
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 7, 64 })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * Rows, fill, rng);
            var packed = new byte[plain.Length];
            const int nActs = 9;
            long actStride = actBytes + 32;
            var acts = new byte[actStride * nActs];
            for (int k = 0; k < nActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = Rows + 3;
            var tile = new float[yStride * nActs];
            var rows = new float[Rows];
            var reference = new float[Rows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* yt = tile)
            fixed (float* yr = rows)
            fixed (float* yref = reference)
            {
                Assert.True(Q4_0x8.Pack(p, q, Rows, n));
                Q4_0x8.DotTile(n, q, rowBytes, Rows, a, actStride, nActs, yt, yStride);
                for (int k = 0; k < nActs; k++)
                {
                    byte* act = a + k * actStride;
                    Q4_0x8.DotRows(n, q, rowBytes, Rows, act, yr);
                    Q4_0x8.DotRowsReference(n, q, rowBytes, Rows, act, yref);
                    for (int r = 0; r < Rows; r++)
                    {
                        Assert.True(SelfTest.SameFloat(yref[r], yr[r]), $"{fill} n={n} row {r} act {k}: rows {yr[r]:R} vs scalar {yref[r]:R}");
                        Assert.True(SelfTest.SameFloat(yr[r], yt[k * yStride + r]), $"{fill} n={n} row {r} act {k}: tile {yt[k * yStride + r]:R} vs rows {yr[r]:R}");
                        float plainDot = Q4_0.DotQ4_0Q8_0Reference(n, p + r * rowBytes, act);
                        // Float order differs: bound the difference by the size of the terms, Σ|w·a|.
                        double scale = AbsSum(n, p + r * rowBytes, act);
                        double err = Math.Abs(plainDot - yr[r]) / scale;
                        if (float.IsFinite(plainDot)) Assert.True(err < 1e-5, $"{fill} n={n} row {r}: packed {yr[r]:R} vs plain {plainDot:R}");
                        worst = Math.Max(worst, float.IsFinite(plainDot) ? err : 0);
                        pairs++;
                    }
                    for (int g = Rows; g < yStride; g++) Assert.Equal(0f, tile[k * yStride + g]);
                }
            }
        }
        _out.WriteLine($"{fill}: {pairs} pairs: AVX2 rows == scalar statement == tiles bit for bit; worst relative difference to the plain dot {worst:E2}");
    }

    /// <summary>
    /// The two lane orders (<see cref="Q4_0x8.DwordLanes"/>): each round-trips, they are different
    /// bytes, and their AVX2 kernels give the same bits as each other and as the scalar statement of
    /// either order, for decode rows and for prompt tiles (odd group counts, a plain tail, 1–9
    /// activations so the tile runs its four-row passes and its single rows). Runs on any AVX2 machine,
    /// whichever order the machine uses itself.
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("HugeScale")]
    public void LaneOrders_GiveTheSameBits(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        _out.WriteLine($"this machine packs in {(Q4_0x8.DwordLanes ? 4 : 8)}-byte lanes (AVX-512 tile {(Q4_0x8.UseAvx512Tile ? "on" : "off")})");
        if (Environment.GetEnvironmentVariable("EDGELLM_Q4_0X8_LANES") is null) Assert.Equal(!Q4_0x8.UseAvx512Tile, Q4_0x8.DwordLanes);
        var rng = new Random((int)fill + 11);
        int checkedValues = 0;
        foreach (var (blocks, nRows) in new[] { (1, 8), (3, 29), (64, 40), (176, 24) })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * nRows, fill, rng);
            var q8 = new byte[plain.Length];
            var q4 = new byte[plain.Length];
            var back = new byte[plain.Length];
            const int maxActs = 9;
            var acts = new byte[actBytes * maxActs];
            for (int k = 0; k < maxActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actBytes);
            var y8 = new float[nRows * maxActs];
            var y4 = new float[nRows * maxActs];
            var r8 = new float[nRows];
            var r4 = new float[nRows];
            var s4 = new float[nRows];
            var s8 = new float[nRows];
            fixed (byte* p = plain)
            fixed (byte* w8 = q8)
            fixed (byte* w4 = q4)
            fixed (byte* b = back)
            fixed (byte* a = acts)
            fixed (float* t8 = y8)
            fixed (float* t4 = y4)
            fixed (float* pr8 = r8)
            fixed (float* pr4 = r4)
            fixed (float* ps4 = s4)
            fixed (float* ps8 = s8)
            {
                Assert.True(Q4_0x8.Pack(p, w8, nRows, n, dword: false));
                Assert.True(Q4_0x8.Pack(p, w4, nRows, n, dword: true));
                Q4_0x8.Unpack(w4, b, nRows, n, dword: true);
                Assert.Equal(plain, back);
                Q4_0x8.Unpack(w8, b, nRows, n, dword: false);
                Assert.Equal(plain, back);
                if (fill is SelfTest.Fill.Random) Assert.NotEqual(q8, q4); // (AllMin/AllMax: every quant byte alike, any order is the same bytes)
                if (!Q4_0x8.IsSupported)
                {
                    _out.WriteLine("SKIPPED (kernels): the Q4_0x8 kernels need AVX2 and FMA");
                    continue;
                }
                // 2 and 3 activations take the few-activation kernels, 6 = 4 + 2, 9 = 4 + 4 + 1
                foreach (int nActs in new[] { 2, 3, 6, 9 })
                {
                    Array.Fill(y8, float.NaN); // no result left from the last count
                    Array.Fill(y4, float.NaN);
                    Q4_0x8.DotTile(n, w8, rowBytes, nRows, a, actBytes, nActs, t8, nRows, avx512: false, dword: false);
                    Q4_0x8.DotTile(n, w4, rowBytes, nRows, a, actBytes, nActs, t4, nRows, avx512: true, dword: true);
                    for (int k = 0; k < nActs; k++)
                    {
                        Q4_0x8.DotRows(n, w8, rowBytes, nRows, a + k * actBytes, pr8, avx512: false, dword: false);
                        Q4_0x8.DotRows(n, w4, rowBytes, nRows, a + k * actBytes, pr4, avx512: true, dword: true);
                        Q4_0x8.DotRowsReference(n, w4, rowBytes, nRows, a + k * actBytes, ps4, dword: true);
                        Q4_0x8.DotRowsReference(n, w8, rowBytes, nRows, a + k * actBytes, ps8, dword: false);
                        for (int r = 0; r < nRows; r++)
                        {
                            string at = $"{fill} n={n} row {r} act {k}";
                            Assert.True(SelfTest.SameFloat(s8[r], s4[r]), $"{at}: scalar 4-byte {s4[r]:R} vs 8-byte {s8[r]:R}");
                            Assert.True(SelfTest.SameFloat(s4[r], r4[r]), $"{at}: 4-byte rows {r4[r]:R} vs scalar {s4[r]:R}");
                            Assert.True(SelfTest.SameFloat(r8[r], r4[r]), $"{at}: 4-byte rows {r4[r]:R} vs 8-byte rows {r8[r]:R}");
                            Assert.True(SelfTest.SameFloat(r4[r], y4[k * nRows + r]), $"{at}: 4-byte tile {y4[k * nRows + r]:R} vs rows {r4[r]:R}");
                            Assert.True(SelfTest.SameFloat(y8[k * nRows + r], y4[k * nRows + r]), $"{at}: 4-byte tile {y4[k * nRows + r]:R} vs 8-byte tile {y8[k * nRows + r]:R}");
                            checkedValues++;
                        }
                    }
                }
            }
        }
        _out.WriteLine($"{fill}: {checkedValues} (row, activation) values: 4-byte == 8-byte lanes, rows == tiles == scalar, bit for bit");
    }

    /// <summary>
    /// The AVX-512 tile (two groups per register) against the AVX2 tile and the decode rows, bit for
    /// bit: odd and even group counts, plain tails, activation counts around the tile width of 4.
    /// </summary>
    [Theory]
    [InlineData("Random")]
    [InlineData("AllMin")]
    [InlineData("AllMax")]
    [InlineData("HugeScale")]
    public void Avx512Tile_EqualsAvx2Tile_AndRows(string fillName)
    {
        var fill = Enum.Parse<SelfTest.Fill>(fillName);
        if (!Q4_0x8.UseAvx512Tile)
        {
            _out.WriteLine($"SKIPPED: the Q4_0x8 AVX-512 tile needs AVX-512BW ({CpuFeatures.KernelPath})");
            return;
        }
        var rng = new Random((int)fill + 11);
        int pairs = 0;
        foreach (int blocks in new[] { 1, 3, 64 })
        foreach (int nRows in new[] { 16, 17, 24, 40, 47 })
        {
            int n = blocks * 32;
            long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
            long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
            byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * nRows, fill, rng);
            var packed = new byte[plain.Length];
            const int maxActs = 13;
            long actStride = actBytes + 6;
            var acts = new byte[actStride * maxActs];
            for (int k = 0; k < maxActs; k++) SelfTest.MakeBlocks(GgmlType.Q8_0, n, fill, rng).CopyTo(acts, k * actStride);
            long yStride = nRows + 1;
            var wide = new float[yStride * maxActs];
            var narrow = new float[yStride * maxActs];
            var rows = new float[nRows];
            fixed (byte* p = plain)
            fixed (byte* q = packed)
            fixed (byte* a = acts)
            fixed (float* yw = wide)
            fixed (float* yn = narrow)
            fixed (float* yr = rows)
            {
                Assert.True(Q4_0x8.Pack(p, q, nRows, n));
                foreach (int nActs in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 12, 13 })
                {
                    Q4_0x8.DotTile(n, q, rowBytes, nRows, a, actStride, nActs, yw, yStride, avx512: true);
                    Q4_0x8.DotTile(n, q, rowBytes, nRows, a, actStride, nActs, yn, yStride, avx512: false);
                    for (int k = 0; k < nActs; k++)
                    {
                        // decode rows: the AVX2 two-group step, then the AVX-512 one into yr
                        Q4_0x8.DotRows(n, q, rowBytes, nRows, a + k * actStride, yr, avx512: false);
                        var avx2Rows = rows.ToArray();
                        Q4_0x8.DotRows(n, q, rowBytes, nRows, a + k * actStride, yr, avx512: true);
                        for (int r = 0; r < nRows; r++)
                            Assert.True(SelfTest.SameFloat(avx2Rows[r], yr[r]), $"{fill} n={n} rows={nRows} row {r} act {k}: avx512 rows {yr[r]:R} vs avx2 rows {avx2Rows[r]:R}");
                        for (int r = 0; r < nRows; r++)
                        {
                            float w = yw[k * yStride + r], v = yn[k * yStride + r];
                            Assert.True(SelfTest.SameFloat(v, w), $"{fill} n={n} rows={nRows} acts={nActs} row {r} act {k}: avx512 {w:R} vs avx2 {v:R}");
                            Assert.True(SelfTest.SameFloat(yr[r], w), $"{fill} n={n} rows={nRows} acts={nActs} row {r} act {k}: avx512 {w:R} vs rows {yr[r]:R}");
                            pairs++;
                        }
                    }
                }
            }
        }
        _out.WriteLine($"{fill}: {pairs} (row, activation) pairs: AVX-512 tile == AVX2 tile == AVX-512 rows == AVX2 rows, bit for bit");
    }

    /// <summary>
    /// The tile caches its per-activation terms between calls (a forward pass walks a matrix in
    /// slices): slices of one matrix, then the same activation buffer changed in place (one quant,
    /// one scale, everything), must each give the decode rows' results.
    /// </summary>
    [Fact]
    public void Tile_TermsCache_FollowsActivationsChangedInPlace()
    {
        if (!Q4_0x8.IsSupported)
        {
            _out.WriteLine("SKIPPED: the Q4_0x8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random(21);
        const int n = 256, nRows = 32, nActs = 13;
        long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
        long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * nRows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        byte[] acts = SelfTest.MakeBlocks(GgmlType.Q8_0, n * nActs, SelfTest.Fill.Random, rng);
        var tile = new float[nRows * nActs];
        var rows = new float[nRows];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* a = acts)
        fixed (float* yt = tile)
        fixed (float* yr = rows)
        {
            Assert.True(Q4_0x8.Pack(p, q, nRows, n));
            for (int round = 0; round < 4; round++)
            {
                foreach (bool avx512 in new[] { true, false })
                {
                    Array.Clear(tile);
                    // two slices of 16 rows, as a forward pass hands them out: the second meets the cache
                    Q4_0x8.DotTile(n, q, rowBytes, 16, a, actBytes, nActs, yt, nRows, avx512);
                    Q4_0x8.DotTile(n, q + 16 * rowBytes, rowBytes, 16, a, actBytes, nActs, yt + 16, nRows, avx512);
                    for (int k = 0; k < nActs; k++)
                    {
                        Q4_0x8.DotRows(n, q, rowBytes, nRows, a + k * actBytes, yr);
                        for (int r = 0; r < nRows; r++)
                            Assert.True(SelfTest.SameFloat(yr[r], tile[k * nRows + r]), $"round {round} avx512={avx512} row {r} act {k}: tile {tile[k * nRows + r]:R} vs rows {yr[r]:R}");
                    }
                }
                if (round == 0) acts[9 * actBytes + actBytes - 1] ^= 0x5A;           // one quant of activation 9
                else if (round == 1) acts[12 * actBytes + 34 + 1] ^= 0x04;          // the scale of block 1 of activation 12
                else SelfTest.MakeBlocks(GgmlType.Q8_0, n * nActs, SelfTest.Fill.Random, rng).CopyTo(acts, 0);
            }
        }
    }

    /// <summary>
    /// Inside a worker-pool job the tile reuses its terms without comparing the activations (a
    /// job's inputs are fixed while it runs): changed in place between jobs, on every worker of a
    /// pool and inline, the results must still follow them.
    /// </summary>
    [Fact]
    public void Tile_TermsCache_InPoolJobs_FollowsActivationsChangedBetweenJobs()
    {
        if (!Q4_0x8.IsSupported)
        {
            _out.WriteLine("SKIPPED: the Q4_0x8 kernels need AVX2 and FMA");
            return;
        }
        var rng = new Random(22);
        const int n = 256, nRows = 32, nActs = 40; // 5 tiles of 8
        long rowBytes = GgmlTypes.Info(GgmlType.Q4_0).RowBytes(n);
        long actBytes = GgmlTypes.Info(GgmlType.Q8_0).RowBytes(n);
        byte[] plain = SelfTest.MakeBlocks(GgmlType.Q4_0, n * nRows, SelfTest.Fill.Random, rng);
        var packed = new byte[plain.Length];
        byte[] acts = SelfTest.MakeBlocks(GgmlType.Q8_0, n * nActs, SelfTest.Fill.Random, rng);
        using var pool = new EdgeLlm.Kernels.WorkerPool(2);
        var tiles = new float[2][] { new float[nRows * nActs], new float[nRows * nActs] };
        var rows = new float[nRows];
        fixed (byte* p = plain)
        fixed (byte* q = packed)
        fixed (byte* a = acts)
        fixed (float* yr = rows)
        {
            Assert.True(Q4_0x8.Pack(p, q, nRows, n));
            byte* qq = q, aa = a;
            for (int round = 0; round < 3; round++)
            {
                foreach (bool avx512 in new[] { true, false })
                {
                    // Every worker walks two slices, each meeting the tiles of 16 activations (as MatMul does).
                    void Walk(int w)
                    {
                        fixed (float* yt = tiles[w])
                            for (int slice = 0; slice < 2; slice++)
                                for (int a0 = 0; a0 < nActs; a0 += 16)
                                    Q4_0x8.DotTile(n, qq + slice * 16 * rowBytes, rowBytes, 16, aa + a0 * actBytes, actBytes, Math.Min(16, nActs - a0), yt + a0 * nRows + slice * 16, nRows, avx512);
                    }
                    if (round == 1) pool.ForDynamic(1, 1, 1, (_, _, w) => Walk(w)); // inline: a job of its own
                    else pool.Run((w, _) => Walk(w));
                    for (int k = 0; k < nActs; k++)
                    {
                        Q4_0x8.DotRows(n, q, rowBytes, nRows, a + k * actBytes, yr);
                        for (int w = 0; w < (round == 1 ? 1 : 2); w++)
                            for (int r = 0; r < nRows; r++)
                                Assert.True(SelfTest.SameFloat(yr[r], tiles[w][k * nRows + r]), $"round {round} avx512={avx512} worker {w} row {r} act {k}: tile {tiles[w][k * nRows + r]:R} vs rows {yr[r]:R}");
                    }
                }
                if (round == 0) acts[33 * actBytes + actBytes - 1] ^= 0x5A;   // one quant of activation 33
                else SelfTest.MakeBlocks(GgmlType.Q8_0, n * nActs, SelfTest.Fill.Random, rng).CopyTo(acts, 0);
            }
        }
    }

    private static double AbsSum(int n, byte* w, byte* a)
    {
        var fw = new float[n];
        var fa = new float[n];
        Assert.True(WeightFormat.TryGet(GgmlType.Q8_0, out var q8));
        fixed (float* pw = fw)
        fixed (float* pa = fa)
        {
            Q4_0.DequantizeRowReference(w, pw, n);
            q8.DequantizeRow(a, pa, n);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.Abs((double)fw[i] * fa[i]);
        return Math.Max(sum, 1e-30);
    }
}
