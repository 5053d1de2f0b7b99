#version 450
// LFM2's short convolution (llama.cpp's build_shortconv_block; ggml_ssm_conv), over a layer's ring of gated
// inputs (f32 [RING][EMBD], position p in row p mod RING, as the CPU's ShortConvCache):
//   -DSTORE: ring[start_pos + t] = B[t] * x[t]        (bcx = in_proj output [n][3 * EMBD]: B, C, x)
//   else:    y[t][d] = C[t][d] * sum_k ring[p - TAPS + 1 + k][d] * w[d][k],   p = start_pos + t,
//            rows before position 0 read as zeros; the taps summed first to last, as ggml_ssm_conv (and the CPU).
// One invocation per (channel, token); STORE runs as its own dispatch first, so the conv reads this batch's
// inputs and the ones before it (RING >= batch + TAPS - 1 keeps them apart).
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint EMBD = 64;
layout(constant_id = 2) const uint TAPS = 3;
layout(constant_id = 3) const uint RING = 128;

layout(std430, binding = 0) readonly buffer BufBcx { float bcx[]; };
#ifdef STORE
layout(std430, binding = 1) writeonly buffer BufRing { float ring[]; };
layout(std430, binding = 2) readonly buffer BufP { uint start_pos; } params;
#else
layout(std430, binding = 1) readonly buffer BufRing { float ring[]; };
layout(std430, binding = 2) readonly buffer BufW { float w[]; };
layout(std430, binding = 3) writeonly buffer BufY { float y[]; };
layout(std430, binding = 4) readonly buffer BufP { uint start_pos; } params;
#endif

void main() {
    uint d = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (d >= EMBD) return;
    uint p = params.start_pos + t;
    uint row = t * 3u * EMBD;
#ifdef STORE
    ring[(p % RING) * EMBD + d] = bcx[row + d] * bcx[row + 2u * EMBD + d];
#else
    precise float sum = 0.0;
    for (uint k = 0u; k < TAPS; k++) {
        uint back = TAPS - 1u - k;           // positions before p
        if (p < back) continue;              // before position 0: zero
        precise float v = ring[((p - back) % RING) * EMBD + d] * w[d * TAPS + k];
        sum += v;
    }
    y[t * EMBD + d] = bcx[row + EMBD + d] * sum;
#endif
}
