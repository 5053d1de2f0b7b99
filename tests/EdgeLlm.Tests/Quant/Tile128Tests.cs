using EdgeLlm.Quant;
using EdgeLlm.Runtime;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Models;
using Xunit;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The 128-bit kernels where no AVX2 kernel serves (NEON on the Raspberry Pi and phones; portable
/// Vector128): <see cref="LegacyTile"/>, the prompt tile of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL, and
/// <see cref="KQuant128"/>, the dot and tile of Q2_K … Q6_K. Every (row, activation)
/// equals its reference dot bit for bit (the format's, or for the K-quant total strategies the
/// llama.cpp-order statement <see cref="KQuant128.DotTotalOrderReference{TK}"/>, which
/// <see cref="KQuantTotalOrderTests"/> bounds), for each integer strategy this CPU runs (the
/// NEON ones run under qemu through <c>edgellm selftest</c>, tests/deployment/run.sh), and a
/// model run on these paths (the JIT with AVX2 switched off) still matches llama.cpp's logits.
/// </summary>
public class Tile128Tests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Kernels() =>
        SelfTest.Tiles128().Select(k => new object[] { k.Format, k.Isa });

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Tile_EqualsReferenceBitForBit(string format, string isa)
    {
        var k = SelfTest.Tiles128().Single(k => k.Format == format && k.Isa == isa);
        if (!k.Supported)
        {
            output.WriteLine($"SKIPPED {format} [{isa}]: not supported on this CPU");
            return;
        }
        foreach (int seed in new[] { 1, 2 })
        {
            string? error = SelfTest.CheckTile128(k, seed);
            Assert.True(error is null, $"{format} [{isa}] seed {seed}: {error}");
        }
    }

    [Fact]
    public void Tile_LongRows_UseTheHeapTable_AndStillMatch()
    {
        // 2049 blocks (65568 values) is past the stack table's 2048.
        var k = SelfTest.Tiles128().Single(k => k.Format == "Q4_0" && k.Isa == "Vector128");
        Assert.True(k.Supported);
        Assert.Null(SelfTest.CheckTile128(k, 7, [2049]));
    }

    [Fact]
    public void CheckTile128_DetectsAWrongTile()
    {
        var good = SelfTest.Tiles128().Single(k => k.Format == "Q8_0" && k.Isa == "Vector128");
        unsafe
        {
            // Off by one ulp in the last activation of a short pass: the checker must see it.
            var bad = good with
            {
                Tile = (n, w, rb, nr, a, st, na, y, ys) =>
                {
                    good.Tile(n, w, rb, nr, a, st, na, y, ys);
                    float* last = y + (na - 1) * ys + nr - 1;
                    *last = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(*last) + 1);
                },
            };
            Assert.NotNull(SelfTest.CheckTile128(bad, 1));
        }
    }

    /// <summary>
    /// The whole forward pass on the tile: the CLI under the JIT with AVX2 off (no repacking, no
    /// AVX2 tiles; x64's stand-in for NEON, whose kernels share the tile's loop), the batch logits
    /// of a golden prompt within the quantized bound of <see cref="GoldenLogitsTests"/>. The
    /// selftest in the same environment shows the path really was the 128-bit one.
    /// </summary>
    [Theory]
    [InlineData("syn-llama-q4_0")]
    [InlineData("syn-llama-q5_0")]
    [InlineData("syn-llama-q4_1")]
    [InlineData("syn-llama-q5_1")]
    [InlineData("syn-llama-q8_0")]
    [InlineData("syn-llama-iq4_nl")]
    [InlineData("stories260K-q4_0")]
    [InlineData("syn-llama-q2_k")]
    [InlineData("syn-llama-q3_k_m")]
    [InlineData("syn-llama-q4_k_m")]
    [InlineData("syn-llama-q5_k_m")]
    [InlineData("syn-llama-q6_k")]
    [InlineData("syn-qwen2-q4_k_m")]
    public void ModelWithoutAvx2_RunsTheTile_AndMatchesLlamaCpp(string model)
    {
        // AVX-512 builds on AVX2; both knob spellings are set so an AVX-512 host lands on sse too.
        var env = new Dictionary<string, string?> { ["DOTNET_EnableAVX2"] = "0", ["DOTNET_EnableAVX512F"] = "0", ["DOTNET_EnableAVX512"] = "0" };
        var self = CliRunner.Run(["selftest"], env);
        Assert.Equal(0, self.ExitCode);
        Assert.Contains("kernel path sse", self.Stdout);
        Assert.Contains("ok   tile Q4_0xQ8_0 [Vector128]", self.Stdout);
        Assert.Contains("ok   tile Q4_KxQ8_K [Vector128]", self.Stdout);
        Assert.Contains("ok   K-quant VecDot dispatch [Vector128]", self.Stdout);

        var golden = GoldenCase.Load(model, "p1");
        var outPath = Path.Combine(Path.GetTempPath(), $"edgellm-tile-{Guid.NewGuid():N}.f32");
        try
        {
            var r = CliRunner.Run(["logits", "-m", SharedData.Model(model), "--ids", string.Join(',', golden.PromptIds), "-o", outPath], env);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var bytes = File.ReadAllBytes(outPath);
            var ours = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, ours, 0, bytes.Length);
            double figure = GoldenCase.Figure(ours, golden.Logits);
            output.WriteLine($"{model}.p1 without AVX2: figure {figure:G4}");
            Assert.True(figure <= 0.10, $"{model}: figure {figure:G4}");
        }
        finally { File.Delete(outPath); }
    }
}
