#version 450
// Matrix-matrix product for prompt processing: y[c][row] = sum_k W[row][k] * x[c][k] with
// shared-memory tiles. A workgroup owns a TM×TN tile of the output (TM weight rows × TN tokens);
// for each TK-wide slice of the rows it dequantizes the TM×TK weight tile once into shared
// memory (dequant_unit, UNIT values at a time), loads the TN×TK activation tile, and every
// thread accumulates TM*TN/BLOCK outputs from the two tiles. Each weight value is dequantized
// once per TN tokens instead of once per NCOLS (mul_mat_vec). BLOCK must be 128 (the Vulkan
// minimum of maxComputeWorkGroupInvocations): thread t owns row t % TM and the columns
// t / TM + 4j, j < 8.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_GOOGLE_include_directive : enable
#include "dequant.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 128;
layout(constant_id = 1) const uint K = 32;       // row length (values)
layout(constant_id = 2) const uint ROW_BYTES = 128;
layout(constant_id = 3) const uint ROWS = 1;     // weight rows (output width)

#define TM 32u
#define TN 32u
#define TK 32u   // a multiple of UNIT (16)
#define LD (TK + 1u)   // padded row stride: threads of consecutive rows hit different banks
#define CG 4u    // column groups: BLOCK / TM
#define NPT 8u   // outputs per thread: TN / CG

layout(std430, binding = 1) readonly buffer BufX { float x[]; };
layout(std430, binding = 2) writeonly buffer BufY { float y[]; };

layout(push_constant) uniform Push {
    uint ncols;     // activation rows
    uint x_off;     // first activation value
    uint y_off;     // first output value
} p;

shared float sa[TM * LD];
shared float sb[TN * LD];

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint r0 = gl_WorkGroupID.x * TM;
    uint c0 = gl_WorkGroupID.y * TN;
    uint tr = tid % TM;
    uint cg = tid / TM;
    float acc[NPT];
    [[unroll]] for (uint j = 0; j < NPT; j++) acc[j] = 0.0;

    for (uint k0 = 0; k0 < K; k0 += TK) {
        // weight tile: TM rows × TK values, UNIT values per dequant_unit call
        for (uint i = tid; i < TM * (TK / UNIT); i += BLOCK) {
            uint r = i / (TK / UNIT);
            uint u = i % (TK / UNIT);
            uint gu = k0 / UNIT + u;
            float v[UNIT];
            if (r0 + r < ROWS && gu * UNIT < K) {
                dequant_unit((r0 + r) * ROW_BYTES, gu, v);
            } else {
                [[unroll]] for (uint e = 0; e < UNIT; e++) v[e] = 0.0;
            }
            [[unroll]] for (uint e = 0; e < UNIT; e++) sa[r * LD + u * UNIT + e] = v[e];
        }
        // activation tile: TN tokens × TK values (zero past the row end or the last token)
        for (uint i = tid; i < TN * TK; i += BLOCK) {
            uint c = i / TK;
            uint k = i % TK;
            sb[c * LD + k] = (c0 + c < p.ncols && k0 + k < K) ? x[p.x_off + (c0 + c) * K + k0 + k] : 0.0;
        }
        barrier();
        [[unroll]] for (uint k = 0; k < TK; k++) {
            float a = sa[tr * LD + k];
            [[unroll]] for (uint j = 0; j < NPT; j++) acc[j] += a * sb[(cg + CG * j) * LD + k];
        }
        barrier();
    }
    uint row = r0 + tr;
    if (row < ROWS) {
        [[unroll]] for (uint j = 0; j < NPT; j++) {
            uint c = c0 + cg + CG * j;
            if (c < p.ncols) y[p.y_off + c * ROWS + row] = acc[j];
        }
    }
}
