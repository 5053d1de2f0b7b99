using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Quant;

/// <summary>
/// Eight float vectors in a fixed stack slot: the accumulators of a four-activation AVX2 tile (even and
/// odd blocks of four rows), read and written once per block. AVX2 has 16 vector registers; a tile
/// that also keeps a block's unpacked weights, the broadcast activations and its int32 sums live cannot
/// hold eight accumulators too, and the compilers then spill inside the block's inner steps instead
/// (NativeAOT worst). Taking the address (<c>(Vector256&lt;float&gt;*)&amp;accs</c>) keeps them in memory on
/// purpose; unlike a stackalloc, the slot is part of the frame even where the method is inlined into a loop.
/// </summary>
[InlineArray(8)]
internal struct TileAccumulators
{
    private Vector256<float> _first;
}
