#version 450
// Stores this batch's K or V rows (f32 [n][kv_len]) into a layer's f16 cache ([ctx][kv_len],
// two halves per uint) at positions start_pos.. (ggml_cpy f32 -> f16, round to nearest even).
// RING > 0 (a sliding-window layer's ring of RING rows): position p goes to row p mod RING.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint KV_LEN = 64;   // even
layout(constant_id = 2) const uint RING = 0;

layout(std430, binding = 0) readonly buffer BufS { float src[]; };
layout(std430, binding = 1) writeonly buffer BufD { uint dst[]; };
layout(std430, binding = 2) readonly buffer BufP { uint start_pos; } params;

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (i >= KV_LEN / 2) return;
    uint s = t * KV_LEN + 2u * i;
    uint p = params.start_pos + t;
    uint row = RING > 0u ? p % RING : p;
    dst[row * (KV_LEN / 2) + i] = packHalf2x16(vec2(src[s], src[s + 1u]));
}
