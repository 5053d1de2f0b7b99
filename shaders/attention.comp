#version 450
// Causal grouped-query attention of one query head of one token over the f16 KV cache, rounding
// where llama.cpp's non-flash path rounds (Q to f16 for K·Q, the normalized probabilities to f16
// for V·p). Numerically stable softmax in two passes: (1) each thread keeps a running max and a
// sum rescaled to it over its keys, merged across the workgroup; (2) keys in chunks of BLOCK:
// p = exp(s - max) / sum, and thread d accumulates output dimension d. Workgroup = (head, token).
// WINDOW > 0 (Gemma's sliding window): only the last WINDOW keys up to the token's own are seen.
// SOFTCAP > 0 (Gemma 2): each score becomes SOFTCAP * tanh(score / SOFTCAP) before the softmax.
// RING > 0: the cache is a sliding-window layer's ring of RING rows (kv_store.comp), key j in row j mod RING.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint BLOCK = 64;     // >= HEAD_DIM, a power of two
layout(constant_id = 1) const uint HEAD_DIM = 64;  // even
layout(constant_id = 2) const uint N_HEAD = 8;
layout(constant_id = 3) const uint N_HEAD_KV = 8;
layout(constant_id = 4) const float SCALE = 0.125;  // 1 / sqrt(HEAD_DIM)
layout(constant_id = 5) const uint WINDOW = 0;
layout(constant_id = 6) const float SOFTCAP = 0.0;
layout(constant_id = 7) const uint RING = 0;

layout(std430, binding = 0) readonly buffer BufQ { float q[]; };
layout(std430, binding = 1) readonly buffer BufK { uint kc[]; };
layout(std430, binding = 2) readonly buffer BufV { uint vc[]; };
layout(std430, binding = 3) writeonly buffer BufO { float o[]; };
layout(std430, binding = 4) readonly buffer BufP { uint start_pos; } params;

shared float qs[HEAD_DIM];
shared float red[BLOCK];
shared float ps[BLOCK];

const uint KV_LEN = N_HEAD_KV * HEAD_DIM;

float round_f16(float v) { return unpackHalf2x16(packHalf2x16(vec2(v, 0.0))).x; }

uint row(uint j) { return RING > 0u ? j % RING : j; }

float score(uint j, uint kvh) {
    uint base = (row(j) * KV_LEN + kvh * HEAD_DIM) / 2u;
    float s = 0.0;
    for (uint d = 0; d < HEAD_DIM / 2u; d++) {
        vec2 k2 = unpackHalf2x16(kc[base + d]);
        s += qs[2u * d] * k2.x + qs[2u * d + 1u] * k2.y;
    }
    s *= SCALE;
    if (SOFTCAP > 0.0) s = SOFTCAP * tanh(clamp(s / SOFTCAP, -10.0, 10.0));
    return s;
}

void main() {
    uint h = gl_WorkGroupID.x;
    uint t = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x;
    uint kvh = h / (N_HEAD / N_HEAD_KV);
    uint qoff = (t * N_HEAD + h) * HEAD_DIM;
    for (uint d = tid; d < HEAD_DIM; d += BLOCK) qs[d] = round_f16(q[qoff + d]);
    barrier();
    uint n_kv = params.start_pos + t + 1u;
    uint j_first = WINDOW > 0u && n_kv > WINDOW ? n_kv - WINDOW : 0u;

    // pass 1: max and sum of exp(s - max)
    float m = -1.0 / 0.0;
    float sum = 0.0;
    for (uint j = j_first + tid; j < n_kv; j += BLOCK) {
        float s = score(j, kvh);
        if (s > m) { sum = sum * exp(m - s) + 1.0; m = s; }
        else sum += exp(s - m);
    }
    red[tid] = m;
    barrier();
    for (uint k = BLOCK / 2; k > 0; k >>= 1) {
        if (tid < k) red[tid] = max(red[tid], red[tid + k]);
        barrier();
    }
    float gmax = red[0];
    barrier();
    red[tid] = sum > 0.0 ? sum * exp(m - gmax) : 0.0;
    barrier();
    for (uint k = BLOCK / 2; k > 0; k >>= 1) {
        if (tid < k) red[tid] += red[tid + k];
        barrier();
    }
    float inv = 1.0 / red[0];

    // pass 2: o[d] = sum_j p_j * V[j][d]
    float acc = 0.0;
    for (uint j0 = j_first; j0 < n_kv; j0 += BLOCK) {
        uint j = j0 + tid;
        ps[tid] = j < n_kv ? round_f16(exp(score(j, kvh) - gmax) * inv) : 0.0;
        barrier();
        if (tid < HEAD_DIM) {
            uint cnt = min(BLOCK, n_kv - j0);
            uint d = kvh * HEAD_DIM + tid;
            for (uint jj = 0; jj < cnt; jj++) {
                uint idx = row(j0 + jj) * KV_LEN + d;
                float v = unpackHalf2x16(vc[idx >> 1])[idx & 1u];
                acc += ps[jj] * v;
            }
        }
        barrier();
    }
    if (tid < HEAD_DIM) o[qoff + tid] = acc;
}
