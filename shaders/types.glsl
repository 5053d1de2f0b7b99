// Byte-level access to a weight buffer bound as uint words (binding 0, "a_u32"), so that the
// shaders need neither 8- nor 16-bit storage: any Vulkan 1.1 device can run them. Blocks of
// ggml's quantized types are 2-byte aligned at best (Q8_0 is 34 bytes), hence byte offsets.
layout(std430, binding = 0) readonly buffer BufA { uint a_u32[]; };

uint a_byte(uint off) { return (a_u32[off >> 2] >> ((off & 3u) * 8u)) & 0xFFu; }
// off must be even
uint a_u16(uint off) { return (a_u32[off >> 2] >> ((off & 2u) * 8u)) & 0xFFFFu; }
float a_half(uint off) { return unpackHalf2x16(a_u16(off)).x; }
int a_int8(uint off) { return int(a_byte(off) << 24) >> 24; }
