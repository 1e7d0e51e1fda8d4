/*
 * Partial NEON vectors for the edges of the NEON kernels (1 to 3 floats):
 * loads that read nothing past the last float, stores that write nothing past
 * it. Included by the NEON kernel files only (arm_neon.h).
 */
#ifndef MHA_KERNELS_CONFIG_NEON_PARTS_H
#define MHA_KERNELS_CONFIG_NEON_PARTS_H

#include <arm_neon.h>
#include <stddef.h>

/* p[0..r) in lanes 0..r-1 (r = 1..3), zeros above: reads nothing past p[r-1]. */
static inline __attribute__((always_inline)) float32x4_t mha_neon_load_part(const float* p,
                                                                           size_t r) {
  const float32x2_t z = vdup_n_f32(0.0f);
  switch (r) {
    case 1: return vcombine_f32(vld1_lane_f32(p, z, 0), z);
    case 2: return vcombine_f32(vld1_f32(p), z);
    default: return vcombine_f32(vld1_f32(p), vld1_lane_f32(p + 2, z, 0));
  }
}

/* lanes 0..r-1 of v to p[0..r) (r = 1..3) */
static inline __attribute__((always_inline)) void mha_neon_store_part(float* p, float32x4_t v,
                                                                      size_t r) {
  if (r == 1) {
    vst1q_lane_f32(p, v, 0);
  } else {
    vst1_f32(p, vget_low_f32(v));
    if (r == 3) vst1q_lane_f32(p + 2, v, 2);
  }
}

/* 4 floats rounded to bf16, to nearest even; a NaN as (u >> 16) | 0x40:
 * bitwise kv-convert.h's mha_f32_to_bf16 (integer operations, no
 * floating-point mode involved) */
static inline __attribute__((always_inline)) uint16x4_t mha_neon_f32_to_bf16x4(float32x4_t v) {
  const uint32x4_t u = vreinterpretq_u32_f32(v);
  const uint32x4_t abs = vandq_u32(u, vdupq_n_u32(0x7fffffffu));
  const uint16x4_t nan = vmovn_u32(vcgtq_u32(abs, vdupq_n_u32(0x7f800000u)));
  const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
  const uint16x4_t rounded = vshrn_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fffu)), odd), 16);
  const uint16x4_t quiet = vorr_u16(vshrn_n_u32(u, 16), vdup_n_u16(0x40));
  return vbsl_u16(nan, quiet, rounded);
}

#endif
