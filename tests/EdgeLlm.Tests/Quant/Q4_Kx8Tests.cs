using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The repacked Q4_K layout (<see cref="Q4_Kx8"/>, Q8_K activations): the shared layout tests and
/// the AVX-512 tile's self-test check; the helpers the Q4_K-header layouts (<see cref="Q5_Kx8"/>) share.
/// </summary>
public unsafe class Q4_Kx8Tests(ITestOutputHelper output) : RepackedLayoutWithAvx512TileTests(output)
{
    protected override GgmlType Weight => GgmlType.Q4_K;
    protected override GgmlType Act => GgmlType.Q8_K;
    protected override string Layout => "q4_Kx8";
    protected override string ModelName => "syn-llama-q4_k_m";
    protected override bool IsSupported => Q4_Kx8.IsSupported;
    protected override bool IsAvx512Supported => Q4_Kx8.IsAvx512Supported;
    protected override bool Pack(byte* src, byte* dst, int rows, int n) => Q4_Kx8.Pack(src, dst, rows, n);
    protected override void Unpack(byte* src, byte* dst, int rows, int n) => Q4_Kx8.Unpack(src, dst, rows, n);
    protected override void DotRows(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q4_Kx8.DotRows(n, w, rowBytes, nRows, act, y);
    protected override void DotRowsReference(int n, byte* w, long rowBytes, int nRows, byte* act, float* y) => Q4_Kx8.DotRowsReference(n, w, rowBytes, nRows, act, y);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride) =>
        Q4_Kx8.DotTile(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    protected override void DotTile(int n, byte* w, long rowBytes, int nRows, byte* acts, long actStride, int nActs, float* y, long yStride, bool avx512)
    {
        if (avx512) Q4_Kx8.DotTileAvx512(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
        else Q4_Kx8.DotTileAvx2(n, w, rowBytes, nRows, acts, actStride, nActs, y, yStride);
    }
    protected override float PlainReference(int n, byte* row, byte* act) => Q4_K.DotQ4_KQ8_KReference(n, (BlockQ4_K*)row, (BlockQ8_K*)act);
    protected override void Dequantize(byte* row, float* dst, int n) => Q4_K.DequantizeRowReference((BlockQ4_K*)row, dst, n);
    protected override string? SelfTestCheck(int seed) => SelfTest.CheckQ4_Kx8(seed);

    /// <summary>Every six-bit scale and min 1 (the exact sum stays below 2^24); extreme: every nibble 15.</summary>
    protected override void IntegerWeightBlock(Span<byte> block, int b, bool extreme) => UnitScalesAndMins(block, extreme ? 16 + 128 : 0);

    protected override double Magnitude(int n, byte* w, byte* act) => KMagnitude(n, w, BlockQ4_K.Size, act, (x, v) =>
    {
        var b = (BlockQ4_K*)x;
        int c = v / 64, l = v % 32;
        return (v % 64) < 32 ? b->Qs[32 * c + l] & 0xF : b->Qs[32 * c + l] >> 4;
    });

    protected override float PackedValue(byte* o, int r, int v)
    {
        var (k, l, high, c) = NibblePlace(v);
        int b = o[Q4_Kx8.OffQ + (8 * c + k) * 32 + 4 * r + l];
        return KValue(o, r, v, high ? b >> 4 : b & 0xF);
    }

    [Fact]
    public void SelfTest_ChecksTheAvx512Tile()
    {
        Assert.Contains(SelfTest.Checks(), c => c.Name == "repacked q4_Kx8 rows and AVX-512 tiles" && c.Supported == Q4_Kx8.IsAvx512Supported);
        if (Q4_Kx8.IsAvx512Supported) Assert.Null(SelfTest.CheckQ4_Kx8Avx512(seed: 99));
    }

    /// <summary>
    /// A Q4_K/Q5_K block (d, dmin, twelve scale bytes, ...) with every six-bit scale and min 1
    /// (<see cref="KQuant.GetScaleMinK4"/>'s encoding), and its bytes from 16 up to <paramref name="fillTo"/> 0xFF.
    /// </summary>
    internal static void UnitScalesAndMins(Span<byte> block, int fillTo)
    {
        if (fillTo > 16) block[16..fillTo].Fill(0xFF);
        block.Slice(4, 8).Fill(1); // scales and mins 0..3 = 1 ...
        block.Slice(12, 4).Fill(0x11); // ... and 4..7 = 1
    }

    /// <summary>Where value v of a Q4_K-style group super-block sits: Q[8c + k], byte l of a row lane, high or low nibble.</summary>
    internal static (int K, int L, bool High, int C) NibblePlace(int v) => ((v % 32) / 4, v % 4, v % 64 >= 32, v / 64);

    /// <summary>Value v of row lane r with quant q, dequantized as Q4_K/Q5_K's reference does: d·scale·q − dmin·min.</summary>
    internal static float KValue(byte* o, int r, int v, int q)
    {
        float d = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_Kx8.OffD))[r]), min = QuantMath.Fp16ToFp32(((ushort*)(o + Q4_Kx8.OffDMin))[r]);
        int j = v / 32;
        float d1 = d * Q4_Kx8.SixBit(o, r, j), m1 = min * Q4_Kx8.SixBit(o, r, 8 + j);
        return d1 * q - m1;
    }

    /// <summary>Σ_i (|d·scale·q·a| + |dmin·min·a|) in double over one Q4_K/Q5_K row (blocks of <paramref name="blockBytes"/>), q from <paramref name="quant"/>(block, v).</summary>
    internal static double KMagnitude(int n, byte* w, int blockBytes, byte* act, Func<nint, int, int> quant)
    {
        var y = (BlockQ8_K*)act;
        double sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = w + (long)i * blockBytes; // d, dmin and the twelve scale bytes sit alike in Q4_K and Q5_K blocks
            double d = QuantMath.Fp16ToFp32(*(ushort*)b), dmin = QuantMath.Fp16ToFp32(*(ushort*)(b + 2));
            for (int v = 0; v < 256; v++)
            {
                KQuant.GetScaleMinK4(v / 32, b + 4, out byte sc, out byte m);
                double a = Math.Abs((double)y[i].D * y[i].Qs[v]);
                sum += (Math.Abs(d * sc * quant((nint)b, v)) + Math.Abs(dmin * m)) * a;
            }
        }
        return sum;
    }
}
