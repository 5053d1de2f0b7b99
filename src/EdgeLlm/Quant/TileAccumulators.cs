using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Quant;

/// <summary>
/// Eight float vectors in a fixed stack slot: the accumulators of a four-activation AVX2 tile (even and
/// odd blocks, or sums and min terms, of four rows), read and written once per block. AVX2 has 16 vector
/// registers; a tile that also keeps a block's weights, the broadcast activations and its int32 sums live
/// leaves no room for eight accumulators, so they are kept in memory on purpose by taking the address
/// (<c>(Vector256&lt;float&gt;*)&amp;accs</c>). This alone did not stop the spills NativeAOT made inside the
/// steps (that took writing the steps out, see <c>Q8_0x8.Group4</c>); it keeps the steps' registers free.
/// Unlike a stackalloc, the slot is part of the frame even where the method is inlined into a loop.
/// </summary>
[InlineArray(8)]
internal struct TileAccumulators
{
    private Vector256<float> _first;
}
