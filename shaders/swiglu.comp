#version 450
// SwiGLU: gate = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer BufG { float g[]; };
layout(std430, binding = 1) readonly buffer BufU { float u[]; };
layout(push_constant) uniform Push { uint n; } p;
void main() {
    uint i = gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x + gl_GlobalInvocationID.x;
    if (i >= p.n) return;
    float v = g[i];
    g[i] = v / (1.0 + exp(-v)) * u[i];
}
