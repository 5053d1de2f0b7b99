using System.Runtime.InteropServices;
using EdgeLlm.Models;

namespace EdgeLlm.Engine;

/// <summary>
/// The state of LFM2's short-convolution layers: for each such layer, the gated inputs (B ⊙ x) of the last
/// <see cref="HistoryPositions"/> positions, f32, position p in slot p mod that. A layer's output at p reads
/// the inputs of p − taps + 1 … p, so a forward pass at P needs P − taps + 1 … P − 1 from here (zeros before
/// position 0), as llama.cpp's recurrent cache holds them (its <c>conv_state</c>, f32).
/// </summary>
/// <remarks>
/// llama.cpp keeps exactly taps − 1 inputs and cannot go back at all; this keeps a history, so that a rewind by
/// up to <see cref="HistoryPositions"/> − taps + 1 positions (speculative decoding's rejected drafts, a chat's
/// re-rendered last turn) goes on from the stored inputs. <see cref="Intact"/> says when a deeper rewind lost
/// them; <see cref="InferenceContext"/> then evaluates the tokens before again, as for a sliding-window ring.
/// </remarks>
internal sealed unsafe class ShortConvCache : IDisposable
{
    /// <summary>Positions each convolution layer keeps.</summary>
    public const int HistoryPositions = 64;

    private readonly float*[] _layer;   // per model layer: [HistoryPositions, width], null for attention layers
    private readonly int[] _slotPosition = new int[HistoryPositions];
    private bool _disposed;

    public ShortConvCache(ModelConfig config)
    {
        if (config.ShortConvTaps < 2 || config.ShortConvTaps > HistoryPositions)
            throw new ArgumentOutOfRangeException(nameof(config), config.ShortConvTaps, $"short-convolution taps must be 2..{HistoryPositions}");
        Taps = config.ShortConvTaps;
        Width = config.EmbeddingLength;
        _layer = new float*[config.BlockCount];
        for (int l = 0; l < config.BlockCount; l++)
            if (config.IsShortConvLayer(l))
                _layer[l] = (float*)NativeMemory.AllocZeroed((nuint)HistoryPositions * (nuint)Width, sizeof(float));
        Array.Fill(_slotPosition, -1);
    }

    /// <summary>Taps of each convolution (lfm2.shortconv.l_cache).</summary>
    public int Taps { get; }

    /// <summary>Channels of each convolution (the embedding width).</summary>
    public int Width { get; }

    /// <summary>Bytes the state of a model of <paramref name="config"/> takes (0 without convolution layers).</summary>
    public static long Bytes(ModelConfig config) =>
        config.ShortConvTaps == 0 ? 0 : (long)Enumerable.Range(0, config.BlockCount).Count(config.IsShortConvLayer) * HistoryPositions * config.EmbeddingLength * sizeof(float);

    /// <summary>Bytes this state holds.</summary>
    public long TotalBytes
    {
        get
        {
            long layers = 0;
            foreach (float* p in _layer) if (p != null) layers++;
            return layers * HistoryPositions * Width * sizeof(float);
        }
    }

    /// <summary>The stored input row of position <paramref name="p"/> in <paramref name="layer"/> (p ≥ 0, still <see cref="Intact"/>).</summary>
    public float* Row(int layer, int p) => _layer[layer] + (long)(p % HistoryPositions) * Width;

    /// <summary>Stores the input rows of positions <paramref name="start"/> … + <paramref name="n"/> − 1 of <paramref name="layer"/>.</summary>
    public void Store(int layer, int start, float* rows, int n)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Only the last HistoryPositions of a long batch can be kept.
        for (int t = Math.Max(0, n - HistoryPositions); t < n; t++)
        {
            new ReadOnlySpan<float>(rows + (long)t * Width, Width).CopyTo(new Span<float>(Row(layer, start + t), Width));
            _slotPosition[(start + t) % HistoryPositions] = start + t;
        }
    }

    /// <summary>True when positions [<paramref name="from"/>, <paramref name="to"/>) are still held (positions before 0 always are: zeros).</summary>
    public bool Intact(int from, int to)
    {
        for (int p = Math.Max(0, from); p < to; p++)
            if (_slotPosition[p % HistoryPositions] != p) return false;
        return true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int l = 0; l < _layer.Length; l++)
        {
            NativeMemory.Free(_layer[l]);
            _layer[l] = null;
        }
    }
}
