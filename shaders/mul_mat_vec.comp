#version 450
// y[c][row] = sum_k W[row][k] * x[c][k] for up to NCOLS activation rows (tokens) per workgroup:
// each weight unit is dequantized once and multiplied with every column. Used for generation
// (one token) and short batches; longer prompts take the tiled mul_mat.comp.
// Workgroup = one weight row × NCOLS columns; threads split the row, then reduce: in shared
// memory (any Vulkan 1.1 device), or with subgroupAdd when built with -DUSE_SUBGROUP (chosen at
// pipeline creation when the device supports subgroup arithmetic in compute shaders).
// Shapes fixed per model are specialization constants; per-call values are push constants.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_GOOGLE_include_directive : enable
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
#include "dequant.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 64;   // workgroup size (a power of two)
layout(constant_id = 1) const uint K = 32;       // row length (values)
layout(constant_id = 2) const uint ROW_BYTES = 128;
layout(constant_id = 3) const uint ROWS = 1;     // weight rows (output width)

#define NCOLS 8

layout(std430, binding = 1) readonly buffer BufX { float x[]; };
layout(std430, binding = 2) writeonly buffer BufY { float y[]; };

layout(push_constant) uniform Push {
    uint ncols;     // activation rows
    uint x_off;     // first activation value
    uint y_off;     // first output value
} p;

shared float red[NCOLS * BLOCK];

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint c0 = gl_WorkGroupID.z * NCOLS;
    uint tid = gl_LocalInvocationID.x;
    uint nc = min(uint(NCOLS), p.ncols - c0);
    float acc[NCOLS];
    [[unroll]] for (uint c = 0; c < NCOLS; c++) acc[c] = 0.0;
    if (row < ROWS) {
        uint row_off = row * ROW_BYTES;
        for (uint u = tid; u < K / UNIT; u += BLOCK) {
            float v[UNIT];
            dequant_unit(row_off, u, v);
            [[unroll]] for (uint c = 0; c < NCOLS; c++) {
                if (c < nc) {
                    uint xb = p.x_off + (c0 + c) * K + u * UNIT;
                    [[unroll]] for (uint i = 0; i < UNIT; i++) acc[c] += v[i] * x[xb + i];
                }
            }
        }
    }
#ifdef USE_SUBGROUP
    // one partial sum per subgroup and column, then thread c adds column c's partials
    [[unroll]] for (uint c = 0; c < NCOLS; c++) {
        float s = subgroupAdd(acc[c]);
        if (subgroupElect()) red[c * BLOCK + gl_SubgroupID] = s;
    }
    barrier();
    if (row < ROWS && tid < nc) {
        float s = 0.0;
        for (uint g = 0; g < gl_NumSubgroups; g++) s += red[tid * BLOCK + g];
        y[p.y_off + (c0 + tid) * ROWS + row] = s;
    }
#else
    [[unroll]] for (uint c = 0; c < NCOLS; c++) red[c * BLOCK + tid] = acc[c];
    barrier();
    for (uint s = BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) {
            [[unroll]] for (uint c = 0; c < NCOLS; c++) red[c * BLOCK + tid] += red[c * BLOCK + tid + s];
        }
        barrier();
    }
    if (row < ROWS && tid < nc) y[p.y_off + (c0 + tid) * ROWS + row] = red[tid * BLOCK];
#endif
}
