/* y[0..n) = x[0..n) rounded to f16 or bf16, bitwise kv-convert.h's
 * mha_f32_to_f16 / mha_f32_to_bf16: 4 values per step, the tail (1-3
 * values) loaded and stored lane by lane, so nothing past x[n-1] is read or
 * past y[n-1] written.
 *
 * f16: FCVTN, which rounds by FPCR.RMode and gives a NaN as
 * sign | 0x7e00 | mantissa >> 13 (the scalar's bits) while FPCR.DN = 0; it
 * never flushes an f16 subnormal result (FZ16 does not apply to
 * conversions), and FPCR.FZ only turns an fp32 subnormal input into the ±0
 * it rounds to anyway. So it assumes the default FPCR (all zero): RMode
 * nearest, DN = 0 and AHP = 0, as FCVTL in the widening does; DN = 1 would
 * give every NaN as 0x7e00, AHP = 1 the alternative format, another RMode
 * another rounding. bf16: integer operations (as the scalar), no
 * floating-point mode involved. */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "config/neon-parts.h"
#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load.h"

/* 4 values rounded to 16 bits */
static inline __attribute__((always_inline)) uint16x4_t mha_neon_narrow4(const int BT,
                                                                         float32x4_t v) {
  if (BT == MHA_KV_F16) return vreinterpret_u16_f16(vcvt_f16_f32(v));
  return mha_neon_f32_to_bf16x4(v); /* integer operations (config/neon-parts.h) */
}

/* lanes 0..r-1 of h to q[0..r) (r = 1..3) */
static inline __attribute__((always_inline)) void mha_neon_store_u16_part(uint16_t* q, uint16x4_t h,
                                                                          size_t r) {
  vst1_lane_u16(q, h, 0);
  if (r >= 2) vst1_lane_u16(q + 1, h, 1);
  if (r == 3) vst1_lane_u16(q + 2, h, 2);
}

static inline __attribute__((always_inline)) void mha_narrow_neon(const int BT, size_t n,
                                                                  const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(y + i, mha_neon_narrow4(BT, vld1q_f32(x + i)));
  if (i < n) {
    mha_neon_store_u16_part(y + i, mha_neon_narrow4(BT, mha_neon_load_part(x + i, n - i)), n - i);
  }
}

void mha_f16_narrow__neon(size_t n, const float* x, uint16_t* y) {
  mha_narrow_neon(MHA_KV_F16, n, x, y);
}

void mha_bf16_narrow__neon(size_t n, const float* x, uint16_t* y) {
  mha_narrow_neon(MHA_KV_BF16, n, x, y);
}
