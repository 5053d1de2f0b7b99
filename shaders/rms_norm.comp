#version 450
// RMSNorm (ggml_rms_norm then ggml_mul by the weight): out = x / sqrt(mean(x²) + eps) * w.
// One workgroup per row.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 64;
layout(constant_id = 1) const uint N = 64;       // row length

layout(std430, binding = 0) readonly buffer BufX { float x[]; };
layout(std430, binding = 1) readonly buffer BufW { float w[]; };
layout(std430, binding = 2) writeonly buffer BufO { float o[]; };

layout(push_constant) uniform Push { uint row0; float eps; } p;

shared float red[BLOCK];

void main() {
    uint row = p.row0 + gl_WorkGroupID.x;
    uint tid = gl_LocalInvocationID.x;
    uint base = row * N;
    float s = 0.0;
    for (uint i = tid; i < N; i += BLOCK) s += x[base + i] * x[base + i];
    red[tid] = s;
    barrier();
    for (uint k = BLOCK / 2; k > 0; k >>= 1) {
        if (tid < k) red[tid] += red[tid + k];
        barrier();
    }
    float scale = 1.0 / sqrt(red[0] / float(N) + p.eps);
    for (uint i = tid; i < N; i += BLOCK) o[base + i] = x[base + i] * scale * w[i];
}
