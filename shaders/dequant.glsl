// Dequantization of one "unit" (UNIT consecutive values of a row) for the weight type chosen by
// one DATA_A_* define. Layouts are ggml's (ggml-common.h: block_q8_0, block_q4_0, block_q4_1,
// block_q5_0, block_q5_1, block_q4_K, block_q5_K, block_q6_K) and the value formulas those of
// ggml-quants.c dequantize_row_* (also block_q2_K, block_q3_K, block_iq4_nl below). A unit is 16 values for every block type: a block's scale
// (and min) is read once per unit rather than once per value.
#include "types.glsl"

#if defined(DATA_A_F32)
#define UNIT 1
void dequant_unit(uint row_off, uint u, out float v[UNIT]) { v[0] = uintBitsToFloat(a_u32[(row_off >> 2) + u]); }
#elif defined(DATA_A_F16)
#define UNIT 1
void dequant_unit(uint row_off, uint u, out float v[UNIT]) { v[0] = a_half(row_off + 2u * u); }
#elif defined(DATA_A_BF16)
#define UNIT 1
void dequant_unit(uint row_off, uint u, out float v[UNIT]) { v[0] = uintBitsToFloat(a_u16(row_off + 2u * u) << 16); }
#elif defined(DATA_A_Q8_0)
// block_q8_0 (34 bytes, 32 values): f16 d; int8 qs[32]. x = d * q
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 34u;
    float d = a_half(b);
    uint q = b + 2u + (u & 1u) * 16u;
    [[unroll]] for (uint i = 0; i < 16u; i++) v[i] = d * float(a_int8(q + i));
}
#elif defined(DATA_A_Q4_0)
// block_q4_0 (18 bytes, 32 values): f16 d; qs[16]: value j in the low nibble of qs[j],
// value j+16 in the high nibble. x = d * (q - 8)
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 18u;
    float d = a_half(b);
    uint shift = (u & 1u) * 4u;
    [[unroll]] for (uint i = 0; i < 16u; i++) v[i] = d * (float((a_byte(b + 2u + i) >> shift) & 0xFu) - 8.0);
}
#elif defined(DATA_A_Q4_1)
// block_q4_1 (20 bytes): f16 d, f16 m; qs[16] as Q4_0. x = d * q + m
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 20u;
    float d = a_half(b);
    float m = a_half(b + 2u);
    uint shift = (u & 1u) * 4u;
    [[unroll]] for (uint i = 0; i < 16u; i++) v[i] = d * float((a_byte(b + 4u + i) >> shift) & 0xFu) + m;
}
#elif defined(DATA_A_Q5_0)
// block_q5_0 (22 bytes): f16 d; qh[4] (bit j = 5th bit of value j); qs[16] as Q4_0. x = d * (q - 16)
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 22u;
    float d = a_half(b);
    uint qh = a_byte(b + 2u) | (a_byte(b + 3u) << 8) | (a_byte(b + 4u) << 16) | (a_byte(b + 5u) << 24);
    uint hi = u & 1u;
    [[unroll]] for (uint i = 0; i < 16u; i++) {
        uint q = ((a_byte(b + 6u + i) >> (hi * 4u)) & 0xFu) | (((qh >> (i + hi * 16u)) & 1u) << 4);
        v[i] = d * (float(q) - 16.0);
    }
}
#elif defined(DATA_A_Q5_1)
// block_q5_1 (24 bytes): f16 d, f16 m; qh[4]; qs[16]. x = d * q + m
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 24u;
    float d = a_half(b);
    float m = a_half(b + 2u);
    uint qh = a_byte(b + 4u) | (a_byte(b + 5u) << 8) | (a_byte(b + 6u) << 16) | (a_byte(b + 7u) << 24);
    uint hi = u & 1u;
    [[unroll]] for (uint i = 0; i < 16u; i++) {
        uint q = ((a_byte(b + 8u + i) >> (hi * 4u)) & 0xFu) | (((qh >> (i + hi * 16u)) & 1u) << 4);
        v[i] = d * float(q) + m;
    }
}
#elif defined(DATA_A_Q4_K) || defined(DATA_A_Q5_K)
// block_q4_K (144 bytes, 256 values): f16 d, f16 dmin; scales[12] (8 6-bit scales and mins,
// get_scale_min_k4); qs[128]. block_q5_K (176 bytes): the same plus qh[32] before qs.
// Each 64-value chunk j uses scale/min 2j for the low nibbles of qs[32j..32j+31] and 2j+1 for
// the high nibbles; x = d * sc * q - dmin * m.
#define UNIT 16
void scale_min_k4(uint sb, uint j, out uint sc, out uint m) {
    if (j < 4u) {
        sc = a_byte(sb + j) & 63u;
        m = a_byte(sb + j + 4u) & 63u;
    } else {
        sc = (a_byte(sb + j + 4u) & 0xFu) | ((a_byte(sb + j - 4u) >> 6) << 4);
        m = (a_byte(sb + j + 4u) >> 4) | ((a_byte(sb + j) >> 6) << 4);
    }
}
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
#if defined(DATA_A_Q4_K)
    uint b = row_off + (u >> 4) * 144u;
    uint qs = b + 16u;
#else
    uint b = row_off + (u >> 4) * 176u;
    uint qh = b + 16u;
    uint qs = b + 48u;
#endif
    uint i = u & 15u;
    uint j = i >> 2;          // 64-value chunk
    uint r = i & 3u;          // 16-value quarter of the chunk
    uint high = r >> 1;       // high nibbles for the second 32 values
    uint l0 = (r & 1u) * 16u;
    uint sc, mn;
    scale_min_k4(b + 4u, 2u * j + high, sc, mn);
    float d = a_half(b) * float(sc);
    float m = a_half(b + 2u) * float(mn);
    [[unroll]] for (uint k = 0; k < 16u; k++) {
        uint q = (a_byte(qs + 32u * j + l0 + k) >> (high * 4u)) & 0xFu;
#if defined(DATA_A_Q5_K)
        q |= ((a_byte(qh + l0 + k) >> (2u * j + high)) & 1u) << 4;
#endif
        v[k] = d * float(q) - m;
    }
}
#elif defined(DATA_A_Q6_K)
// block_q6_K (210 bytes, 256 values): ql[128]; qh[64]; int8 scales[16]; f16 d. In each
// 128-value half n, quarter w (32 values) takes the low (w < 2) or high nibble of
// ql[64n + 32(w&1) + l] and bits 2w..2w+1 of qh[32n + l]; scale scales[8n + 2w + l/16];
// x = d * sc * (q - 32).
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 4) * 210u;
    uint i = u & 15u;
    uint n = i >> 3;
    uint r = i & 7u;
    uint w = r >> 1;
    uint l0 = (r & 1u) * 16u;
    float d = a_half(b + 208u) * float(a_int8(b + 192u + 8u * n + 2u * w + (l0 >> 4)));
    uint ql = b + 64u * n + 32u * (w & 1u) + l0;
    uint qh = b + 128u + 32u * n + l0;
    uint lshift = (w >> 1) * 4u;
    [[unroll]] for (uint k = 0; k < 16u; k++) {
        uint q = ((a_byte(ql + k) >> lshift) & 0xFu) | (((a_byte(qh + k) >> (2u * w)) & 3u) << 4);
        v[k] = d * (float(q) - 32.0);
    }
}
#elif defined(DATA_A_Q2_K)
// block_q2_K (84 bytes, 256 values): scales[16] (low nibble scale, high nibble min); qs[64];
// f16 d; f16 dmin. Unit i (16 values) of the block: half n = i/8, r = i%8, j = r/2; its
// scale byte is scales[i]; values are bits 2j..2j+1 of qs[32n + 16(r&1) + l]; x = d*sc*q - dmin*m.
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 4) * 84u;
    uint i = u & 15u;
    uint n = i >> 3;
    uint r = i & 7u;
    uint sc = a_byte(b + i);
    float dl = a_half(b + 80u) * float(sc & 0xFu);
    float ml = a_half(b + 82u) * float(sc >> 4);
    uint q = b + 16u + 32u * n + 16u * (r & 1u);
    uint shift = 2u * (r >> 1);
    [[unroll]] for (uint k = 0; k < 16u; k++) v[k] = dl * float((a_byte(q + k) >> shift) & 3u) - ml;
}
#elif defined(DATA_A_Q3_K)
// block_q3_K (110 bytes, 256 values): hmask[32]; qs[64]; scales[12] (16 6-bit scales, packed as
// dequantize_row_q3_K unpacks them with kmask1/kmask2); f16 d. Unit i: half n = i/8, r = i%8,
// j = r/2, h = r&1; low bits 2j..2j+1 of qs[32n + 16h + l], high bit 4n+j of hmask[16h + l]
// (clear = subtract 4); x = d * (scale_i - 32) * q.
#define UNIT 16
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 4) * 110u;
    uint i = u & 15u;
    uint n = i >> 3;
    uint r = i & 7u;
    uint j = r >> 1;
    uint h = r & 1u;
    uint w = i >> 2;                       // aux word of dequantize_row_q3_K
    uint pos = i & 3u;                     // byte in that word
    uint lowb = a_byte(b + 96u + ((w & 1u) != 0u ? 4u : 0u) + pos);
    uint nib = w >= 2u ? (lowb >> 4) : (lowb & 0xFu);
    uint hb = (a_byte(b + 104u + pos) >> (2u * w)) & 3u;
    float dl = a_half(b + 108u) * float(int(nib | (hb << 4)) - 32);
    uint q = b + 32u + 32u * n + 16u * h;
    uint hm = b + 16u * h;
    uint hbit = 4u * n + j;
    [[unroll]] for (uint k = 0; k < 16u; k++) {
        float qv = float((a_byte(q + k) >> (2u * j)) & 3u) - (((a_byte(hm + k) >> hbit) & 1u) != 0u ? 0.0 : 4.0);
        v[k] = dl * qv;
    }
}
#elif defined(DATA_A_IQ4_NL)
// block_iq4_nl (18 bytes, 32 values): f16 d; qs[16] as Q4_0 (value j low nibble of qs[j], value
// j+16 high nibble); x = d * kvalues_iq4nl[q] (ggml-common.h's non-linear 16-entry table).
#define UNIT 16
const float kvalues_iq4nl[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
void dequant_unit(uint row_off, uint u, out float v[UNIT]) {
    uint b = row_off + (u >> 1) * 18u;
    float d = a_half(b);
    uint shift = (u & 1u) * 4u;
    [[unroll]] for (uint i = 0; i < 16u; i++) v[i] = d * kvalues_iq4nl[(a_byte(b + 2u + i) >> shift) & 0xFu];
}
#else
#error "define one DATA_A_* type"
#endif
