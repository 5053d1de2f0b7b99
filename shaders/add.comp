#version 450
// x[i] += y[i % y_len]: the residual add (y_len = n) and the bias add (y = a bias of y_len
// values broadcast over the rows). -DMUL: x[i] *= y[i % y_len] (Gemma's √embd embedding scale).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer BufX { float x[]; };
layout(std430, binding = 1) readonly buffer BufY { float y[]; };
layout(push_constant) uniform Push { uint n; uint y_len; } p;
void main() {
    uint i = gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x + gl_GlobalInvocationID.x;
    if (i >= p.n) return;
#ifdef MUL
    x[i] *= y[i % p.y_len];
#else
    x[i] += y[i % p.y_len];
#endif
}
