/*
 * 4 lanes of B for the NEON cores: fp32, or 16 bits widened exactly in
 * registers (f16 by FCVTL, bf16 by USHLL #16). Partial vectors load lane by
 * lane, never past the last value.
 */
#ifndef MHA_KERNELS_KV_LOAD_NEON_H
#define MHA_KERNELS_KV_LOAD_NEON_H

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "config/neon-parts.h"
#include "kv-gemm/kv-load.h"

/* 4 widened values from 4 16-bit ones */
static inline __attribute__((always_inline)) float32x4_t mha_neon_widen4(const int BT,
                                                                         uint16x4_t h) {
  if (BT == MHA_KV_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* p[0..4) */
static inline __attribute__((always_inline)) float32x4_t mha_neon_load4(const int BT,
                                                                        const void* p) {
  if (BT == MHA_KV_F32) return vld1q_f32((const float*)p);
  return mha_neon_widen4(BT, vld1_u16((const uint16_t*)p));
}

/* q[0..r) (16-bit, r = 1..3) in lanes 0..r-1, zeros above */
static inline __attribute__((always_inline)) uint16x4_t mha_neon_load_u16_part(const uint16_t* q,
                                                                               size_t r) {
  uint16x4_t h = vld1_lane_u16(q, vdup_n_u16(0), 0);
  if (r >= 2) h = vld1_lane_u16(q + 1, h, 1);
  if (r == 3) h = vld1_lane_u16(q + 2, h, 2);
  return h;
}

/* p[0..r) (r = 1..3) in lanes 0..r-1, zeros above */
static inline __attribute__((always_inline)) float32x4_t mha_neon_load_part4(const int BT,
                                                                             const void* p,
                                                                             size_t r) {
  if (BT == MHA_KV_F32) return mha_neon_load_part((const float*)p, r);
  return mha_neon_widen4(BT, mha_neon_load_u16_part((const uint16_t*)p, r));
}

#endif
