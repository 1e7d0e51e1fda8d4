/* C (+)= alpha·A·Bᵀ on packed bf16 pairs (bf16-gemm.h), an 8×8 fp32 tile
 * of 16 BFMMLA accumulators (4 pairs of A × 4 pairs of B), one quad of k
 * (4 terms) per step: 8 loads of 16 bytes feed 16 BFMMLA.
 *
 * BFMMLA (FEAT_BF16) computes each of its four results from its own row
 * of A and column of B only: the products are exact in fp32, their sum and
 * the addition to the accumulator are rounded to odd, denormal inputs and
 * outputs flushed to zero (FPCR.EBF = 0, the default). Every element runs the
 * same chain of instructions whatever its tile, so the bits of a row do not
 * depend on which rows are packed beside it. */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/mca-markers.h"

static inline __attribute__((always_inline)) bfloat16x8_t mha_ld_bf16x8(const uint16_t* p) {
  return vreinterpretq_bf16_u16(vld1q_u16(p));
}

/* The tile with NP pairs of A (NP = 1..4): rows 0 .. 2·NP of c (row stride
 * ldc) written or added to, 8 columns each. */
static inline __attribute__((always_inline)) void mha_mmla_tile(const int NP, size_t kq, const uint16_t* a,
                                                                const uint16_t* b, float alpha, float* c,
                                                                size_t ldc, int accumulate) {
  const size_t ldp = 8 * kq;
  float32x4_t acc[4][4];
#pragma GCC unroll 4
  for (int i = 0; i < NP; i++) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
  }
  for (size_t q = 0; q < kq; q++) {
    if (NP == 4) MHA_MCA_BEGIN("bf16_gemm_mmla_8x8__neonbf16.kstep"); /* the full tile's */
    bfloat16x8_t vb[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) vb[j] = mha_ld_bf16x8(b + j * ldp + 8 * q);
#pragma GCC unroll 4
    for (int i = 0; i < NP; i++) {
      const bfloat16x8_t va = mha_ld_bf16x8(a + i * ldp + 8 * q);
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) acc[i][j] = vbfmmlaq_f32(acc[i][j], va, vb[j]);
    }
    if (NP == 4) MHA_MCA_END("bf16_gemm_mmla_8x8__neonbf16.kstep");
  }
  /* pair i's accumulator j holds [c(2i, 2j), c(2i, 2j+1), c(2i+1, 2j),
   * c(2i+1, 2j+1)]: rows 2i and 2i+1 are the 64-bit halves, zipped */
  const float32x4_t va = vdupq_n_f32(alpha);
#pragma GCC unroll 4
  for (int i = 0; i < NP; i++) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
      const float64x2_t lo = vreinterpretq_f64_f32(acc[i][2 * h]);
      const float64x2_t hi = vreinterpretq_f64_f32(acc[i][2 * h + 1]);
      float32x4_t y0 = vmulq_f32(vreinterpretq_f32_f64(vzip1q_f64(lo, hi)), va);
      float32x4_t y1 = vmulq_f32(vreinterpretq_f32_f64(vzip2q_f64(lo, hi)), va);
      float* r0 = c + (size_t)(2 * i) * ldc + 4 * h;
      float* r1 = r0 + ldc;
      if (accumulate) {
        y0 = vaddq_f32(y0, vld1q_f32(r0));
        y1 = vaddq_f32(y1, vld1q_f32(r1));
      }
      vst1q_f32(r0, y0);
      vst1q_f32(r1, y1);
    }
  }
}

static void mha_mmla_pairs(size_t pairs, size_t kq, const uint16_t* a, const uint16_t* b, float alpha, float* c,
                           size_t ldc, int accumulate) {
  switch (pairs) {
    case 4: mha_mmla_tile(4, kq, a, b, alpha, c, ldc, accumulate); break;
    case 3: mha_mmla_tile(3, kq, a, b, alpha, c, ldc, accumulate); break;
    case 2: mha_mmla_tile(2, kq, a, b, alpha, c, ldc, accumulate); break;
    default: mha_mmla_tile(1, kq, a, b, alpha, c, ldc, accumulate); break;
  }
}

void mha_bf16_gemm_mmla_ukernel_8x8__neonbf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                              const uint16_t* b, float alpha, float* c, size_t ldc,
                                              int accumulate) {
  const size_t pairs = (m + 1) / 2;
  if (n == 8 && m % 2 == 0) {
    mha_mmla_pairs(pairs, kq, a, b, alpha, c, ldc, accumulate);
    return;
  }
  /* an edge: the same instructions on a full tile in a buffer (C's values
   * copied in when accumulating), then the m×n part copied out */
  float t[8 * 8];
  memset(t, 0, sizeof t);
  if (accumulate) {
    for (size_t i = 0; i < m; i++) memcpy(t + 8 * i, c + i * ldc, n * sizeof(float));
  }
  mha_mmla_pairs(pairs, kq, a, b, alpha, t, 8, accumulate);
  for (size_t i = 0; i < m; i++) memcpy(c + i * ldc, t + 8 * i, n * sizeof(float));
}
