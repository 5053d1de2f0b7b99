using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using Xunit;

namespace EdgeLlm.Tests.Quant;

/// <summary>Block structs match ggml-common.h: size (the static_asserts there) and field offsets.</summary>
public class BlockLayoutTests
{
    [Fact]
    public void BlockSizes_MatchGgmlCommon()
    {
        Assert.Equal(18, Unsafe.SizeOf<BlockQ4_0>());
        Assert.Equal(20, Unsafe.SizeOf<BlockQ4_1>());
        Assert.Equal(22, Unsafe.SizeOf<BlockQ5_0>());
        Assert.Equal(24, Unsafe.SizeOf<BlockQ5_1>());
        Assert.Equal(34, Unsafe.SizeOf<BlockQ8_0>());
        Assert.Equal(36, Unsafe.SizeOf<BlockQ8_1>());
        Assert.Equal(18, Unsafe.SizeOf<BlockIQ4_NL>());
    }

    [Fact]
    public void BlockSizes_MatchTypeTable()
    {
        Assert.Equal(GgmlTypes.Info(GgmlType.Q4_0).TypeSize, Unsafe.SizeOf<BlockQ4_0>());
        Assert.Equal(GgmlTypes.Info(GgmlType.Q4_1).TypeSize, Unsafe.SizeOf<BlockQ4_1>());
        Assert.Equal(GgmlTypes.Info(GgmlType.Q5_0).TypeSize, Unsafe.SizeOf<BlockQ5_0>());
        Assert.Equal(GgmlTypes.Info(GgmlType.Q5_1).TypeSize, Unsafe.SizeOf<BlockQ5_1>());
        Assert.Equal(GgmlTypes.Info(GgmlType.Q8_0).TypeSize, Unsafe.SizeOf<BlockQ8_0>());
        Assert.Equal(GgmlTypes.Info(GgmlType.Q8_1).TypeSize, Unsafe.SizeOf<BlockQ8_1>());
        Assert.Equal(GgmlTypes.Info(GgmlType.IQ4_NL).TypeSize, Unsafe.SizeOf<BlockIQ4_NL>());
    }

    [Fact]
    public void FieldOffsets_MatchGgmlCommon()
    {
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockQ4_0>(nameof(BlockQ4_0.Qs)));
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockQ4_1>(nameof(BlockQ4_1.M)));
        Assert.Equal(4, (int)Marshal.OffsetOf<BlockQ4_1>(nameof(BlockQ4_1.Qs)));
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockQ5_0>(nameof(BlockQ5_0.Qh)));
        Assert.Equal(6, (int)Marshal.OffsetOf<BlockQ5_0>(nameof(BlockQ5_0.Qs)));
        Assert.Equal(4, (int)Marshal.OffsetOf<BlockQ5_1>(nameof(BlockQ5_1.Qh)));
        Assert.Equal(8, (int)Marshal.OffsetOf<BlockQ5_1>(nameof(BlockQ5_1.Qs)));
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockQ8_0>(nameof(BlockQ8_0.Qs)));
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockQ8_1>(nameof(BlockQ8_1.S)));
        Assert.Equal(4, (int)Marshal.OffsetOf<BlockQ8_1>(nameof(BlockQ8_1.Qs)));
        Assert.Equal(2, (int)Marshal.OffsetOf<BlockIQ4_NL>(nameof(BlockIQ4_NL.Qs)));
    }

    [Fact]
    public void EveryWeightFormat_IsRegistered_WithGgmlsVecDotType()
    {
        var expected = new Dictionary<GgmlType, GgmlType>
        {
            [GgmlType.Q4_0] = GgmlType.Q8_0, [GgmlType.Q4_1] = GgmlType.Q8_1, [GgmlType.Q5_0] = GgmlType.Q8_0,
            [GgmlType.Q5_1] = GgmlType.Q8_1, [GgmlType.Q8_0] = GgmlType.Q8_0, [GgmlType.IQ4_NL] = GgmlType.Q8_0,
        };
        foreach (var (type, vecDot) in expected)
        {
            Assert.True(WeightFormat.TryGet(type, out var fmt), $"{type} not registered");
            Assert.Equal(type, fmt.Type);
            Assert.Equal(vecDot, fmt.VecDotType);
            Assert.True(RowQuantizer.TryGet(type, out _), $"{type} has no row quantizer");
        }
    }

    [Fact]
    public void UnsupportedType_HasNoWeightFormat()
    {
        Assert.False(WeightFormat.TryGet(GgmlType.IQ2_XXS, out _));
        Assert.False(WeightFormat.TryGet(GgmlType.IQ1_S, out _));
    }
}
