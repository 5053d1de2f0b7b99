#version 450
// y[c][row] = sum_k W[row][k] * x[c][k] for up to NCOLS activation rows (tokens) per workgroup:
// each weight unit is dequantized once and multiplied with every column, so a prompt's tokens
// share the dequantization (the matrix-matrix case); one token is the matrix-vector case.
// Workgroup = one weight row × NCOLS columns; threads split the row, then reduce in shared memory.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_GOOGLE_include_directive : enable
#include "dequant.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 64;   // workgroup size (a power of two)
layout(constant_id = 1) const uint K = 32;       // row length (values)
layout(constant_id = 2) const uint ROW_BYTES = 128;

#define NCOLS 8

layout(std430, binding = 1) readonly buffer BufX { float x[]; };
layout(std430, binding = 2) writeonly buffer BufY { float y[]; };

layout(push_constant) uniform Push {
    uint rows;      // weight rows (output width)
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
    if (row < p.rows) {
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
    [[unroll]] for (uint c = 0; c < NCOLS; c++) red[c * BLOCK + tid] = acc[c];
    barrier();
    for (uint s = BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) {
            [[unroll]] for (uint c = 0; c < NCOLS; c++) red[c * BLOCK + tid] += red[c * BLOCK + tid + s];
        }
        barrier();
    }
    if (row < p.rows && tid < nc) y[p.y_off + (c0 + tid) * p.rows + row] = red[tid * BLOCK];
}
