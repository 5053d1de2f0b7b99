#version 450
// RMSNorm (ggml_rms_norm then ggml_mul by the weight): out = x / sqrt(mean(x²) + eps) * w.
// One workgroup per row. The sum of squares is reduced in shared memory, or with subgroupAdd
// when built with -DUSE_SUBGROUP (chosen when the device has subgroup arithmetic).
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 64;
layout(constant_id = 1) const uint N = 64;       // row length
layout(constant_id = 2) const float EPS = 1e-5;  // rms_norm_eps

layout(std430, binding = 0) readonly buffer BufX { float x[]; };
layout(std430, binding = 1) readonly buffer BufW { float w[]; };
layout(std430, binding = 2) writeonly buffer BufO { float o[]; };

layout(push_constant) uniform Push { uint row0; } p;

shared float red[BLOCK];

void main() {
    uint row = p.row0 + gl_WorkGroupID.x;
    uint tid = gl_LocalInvocationID.x;
    uint base = row * N;
    float s = 0.0;
    for (uint i = tid; i < N; i += BLOCK) s += x[base + i] * x[base + i];
#ifdef USE_SUBGROUP
    s = subgroupAdd(s);
    if (subgroupElect()) red[gl_SubgroupID] = s;
    barrier();
    float total = 0.0;
    for (uint g = 0; g < gl_NumSubgroups; g++) total += red[g];
#else
    red[tid] = s;
    barrier();
    for (uint k = BLOCK / 2; k > 0; k >>= 1) {
        if (tid < k) red[tid] += red[tid + k];
        barrier();
    }
    float total = red[0];
#endif
    float scale = 1.0 / sqrt(total / float(N) + EPS);
    for (uint i = tid; i < N; i += BLOCK) o[base + i] = x[base + i] * scale * w[i];
}
