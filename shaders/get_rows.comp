#version 450
// get_rows (inp_embd): out[t][:] = dequantized row ids[t] of the embedding matrix.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_GOOGLE_include_directive : enable
#include "dequant.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint K = 32;       // row length
layout(constant_id = 2) const uint ROW_BYTES = 128;

layout(std430, binding = 1) readonly buffer BufIds { int ids[]; };
layout(std430, binding = 2) writeonly buffer BufOut { float o[]; };

void main() {
    uint u = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (u >= K / UNIT) return;
    float v[UNIT];
    dequant_unit(uint(ids[t]) * ROW_BYTES, u, v);
    [[unroll]] for (uint i = 0; i < UNIT; i++) o[t * K + u * UNIT + i] = v[i];
}
