#version 450
// Rotary position embedding in place (ggml_rope_ext; YaRN's ramp when EXT_FACTOR is given): for the pair i of each head
// at position pos = start_pos + t, theta = pos * theta_scale^i (the running float product of
// ggml_rope_cache_init, theta_scale computed on the host as powf(base, -2/n_dims)), divided by
// the frequency factor (Llama 3 rope_freqs, Phi-3 LongRoPE) and scaled by freq_scale; cos and sin are
// multiplied by attn_factor (rope_yarn's mscale: rope.scaling.attn_factor, 1 unless LongRoPE). NORMAL rotates
// (x[2i], x[2i+1]); -DROPE_NEOX rotates (x[i], x[i + n_dims/2]). Everything but the position is
// fixed per model and tensor, hence specialization constants.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint HEAD_DIM = 64;
layout(constant_id = 2) const uint N_DIMS = 64;   // rotated dimensions per head
layout(constant_id = 3) const uint N_HEADS = 1;   // heads of the rotated tensor (Q or K)
layout(constant_id = 4) const float THETA_SCALE = 1.0;
layout(constant_id = 5) const float FREQ_SCALE = 1.0;
layout(constant_id = 6) const uint HAS_FACTORS = 0;
layout(constant_id = 7) const float ATTN_FACTOR = 1.0;
// YaRN (given only for a YaRN model): ext_factor and the ramp's ends in rotary pairs (ggml_rope_yarn_corr_dims); the
// magnitude correction 1 + 0.1 ln(1 / freq_scale) is folded into ATTN_FACTOR on the host, as the CPU computes it.
layout(constant_id = 8) const float EXT_FACTOR = 0.0;
layout(constant_id = 9) const float CORR_LOW = 0.0;
layout(constant_id = 10) const float CORR_HIGH = 0.0;
// Llama 4's attention temperature on the queries (Ministral 3; given only for rope.q): cos and sin, hence the rotated
// query, times 1 + TEMP_SCALE * ln(floor(pos / TEMP_FLOOR) + 1), which equals scaling the query after the rotation.
layout(constant_id = 11) const float TEMP_SCALE = 0.0;
layout(constant_id = 12) const float TEMP_FLOOR = 1.0;

layout(std430, binding = 0) buffer BufX { float x[]; };
layout(std430, binding = 1) readonly buffer BufF { float freq_factors[]; };
layout(std430, binding = 2) readonly buffer BufP { uint start_pos; } params;


void main() {
    uint half_dims = N_DIMS / 2;
    uint g = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (g >= half_dims * N_HEADS) return;
    uint h = g / half_dims;
    uint i = g % half_dims;
    float theta = float(params.start_pos + t);
    for (uint k = 0; k < i; k++) theta *= THETA_SCALE;
    float ff = HAS_FACTORS != 0u ? freq_factors[i] : 1.0;
    float extrap = theta / ff;
    float angle = FREQ_SCALE * extrap;
    if (EXT_FACTOR != 0.0) {
        // rope_yarn_ramp: interpolated below the ramp, extrapolated above it
        float y = (float(i) - CORR_LOW) / max(0.001, CORR_HIGH - CORR_LOW);
        float mix = (1.0 - min(1.0, max(0.0, y))) * EXT_FACTOR;
        angle = angle * (1.0 - mix) + extrap * mix;
    }
    float mscale = ATTN_FACTOR;
    if (TEMP_SCALE != 0.0) mscale *= log(floor(float(params.start_pos + t) / TEMP_FLOOR) + 1.0) * TEMP_SCALE + 1.0;
    float c = cos(angle) * mscale;
    float s = sin(angle) * mscale;
    uint base = (t * N_HEADS + h) * HEAD_DIM;
#ifdef ROPE_NEOX
    uint i0 = base + i, i1 = base + i + half_dims;
#else
    uint i0 = base + 2u * i, i1 = base + 2u * i + 1u;
#endif
    float x0 = x[i0], x1 = x[i1];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
}
