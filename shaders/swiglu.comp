#version 450
// SwiGLU: gate = silu(gate) * up, silu(g) = g / (1 + exp(-g)). -DGELU (GeGLU, Gemma): gate = gelu(gate) * up
// as ggml's CPU build computes it (ggml_vec_geglu_f32 with its f16 table): 0 from -10 down, the gate
// itself from 10 up, between them gelu's tanh form at the gate rounded to f16, rounded to f16.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer BufG { float g[]; };
layout(std430, binding = 1) readonly buffer BufU { float u[]; };
layout(push_constant) uniform Push { uint n; } p;
#ifdef GELU
float round_f16(float v) { return unpackHalf2x16(packHalf2x16(vec2(v, 0.0))).x; }
#endif
void main() {
    uint i = gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x + gl_GlobalInvocationID.x;
    if (i >= p.n) return;
    float v = g[i];
#ifdef GELU
    if (v <= -10.0) { g[i] = 0.0; return; }
    if (v >= 10.0) { g[i] = v * u[i]; return; }
    float x = round_f16(v);
    // The argument stays within ±44 here; clamped to ±10, where tanh is 1 in float, so that no
    // driver's exp-based tanh overflows.
    float t = tanh(clamp(0.79788456080286535588 * x * (1.0 + 0.044715 * x * x), -10.0, 10.0));
    g[i] = round_f16(0.5 * x * (1.0 + t)) * u[i];
#else
    g[i] = v / (1.0 + exp(-v)) * u[i];
#endif
}
