/* C[m×n] (+)= A[m×k]·B[k×n], m <= 8, n <= 12: the AArch64 Advanced SIMD tile.
 *   8x12: 24 acc + 3 B + 2 A = 29/32 q regs (v0-v31).
 * A is broadcast one element at a time: a scalar load (LDR S, a load-pipe op
 * only) feeding FMLA by element, lane 0 (vfmaq_laneq_f32). Loading A 4 k at
 * a time would need the B rows of 4 k steps live (12 regs): it does not fit
 * beside 24 accumulators.
 * Each row count 1..8 is its own inlined instance (no wasted FMAs on short
 * tiles). Full vectors of 4 columns (n = 12, 8 or 4) use plain loads and
 * stores only; an edge with a partial vector loads and stores only its 1-3
 * columns, lane by lane, so nothing outside the operands is touched.
 * Budget per k step of the full tile: 24 FMLA (2 pipes on Neoverse N1: 12
 * cycles; 4 on V1, V2 and Apple M1: 6) vs 3 LDR Q + 8 LDR S (2-3 load pipes:
 * <= 5.5 cycles): FMA-bound on all four. */
#include <arm_neon.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "config/neon-parts.h"
#include "f32-gemm/f32-gemm.h"

/* One tile of MR rows and NV vectors of columns (compile-time constants);
 * PART: the last vector holds only rn = 1..3 columns (a runtime count).
 * The full tile is (8, 3, 0). The arithmetic of an element is the same in
 * every instance: k FMAs in order from zero, then C added once. */
static inline __attribute__((always_inline)) void mha_gemm_tile_neon(
    const size_t MR, const size_t NV, const int PART, size_t rn, size_t k, const float* a,
    size_t lda, const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  float32x4_t acc0[8], acc1[8], acc2[8];
#pragma GCC unroll 8
  for (size_t i = 0; i < MR; i++) {
    /* C is read (accumulate) and written only after the k loop: fetch it now */
    __builtin_prefetch(c + i * ldc);
    acc0[i] = vdupq_n_f32(0.0f);
    acc1[i] = vdupq_n_f32(0.0f);
    acc2[i] = vdupq_n_f32(0.0f);
  }
  for (size_t p = 0; p < k; p++) {
    if (MR == 8 && NV == 3 && !PART) MHA_MCA_BEGIN("f32_gemm_8x12__neon.kstep");
    const float* bp = b + p * ldb;
    float32x4_t b0, b1 = vdupq_n_f32(0.0f), b2 = vdupq_n_f32(0.0f);
    if (NV == 1) {
      b0 = PART ? mha_neon_load_part(bp, rn) : vld1q_f32(bp);
    } else {
      b0 = vld1q_f32(bp);
      if (NV == 2) {
        b1 = PART ? mha_neon_load_part(bp + 4, rn) : vld1q_f32(bp + 4);
      } else {
        b1 = vld1q_f32(bp + 4);
        b2 = PART ? mha_neon_load_part(bp + 8, rn) : vld1q_f32(bp + 8);
      }
    }
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
      const float32x4_t ai = vsetq_lane_f32(a[i * lda + p], vdupq_n_f32(0.0f), 0);
      acc0[i] = vfmaq_laneq_f32(acc0[i], b0, ai, 0);
      if (NV >= 2) acc1[i] = vfmaq_laneq_f32(acc1[i], b1, ai, 0);
      if (NV == 3) acc2[i] = vfmaq_laneq_f32(acc2[i], b2, ai, 0);
    }
    if (MR == 8 && NV == 3 && !PART) MHA_MCA_END("f32_gemm_8x12__neon.kstep");
  }
  if (MR == 8 && NV == 3 && !PART) MHA_MCA_BEGIN("f32_gemm_8x12__neon.store");
#pragma GCC unroll 8
  for (size_t i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    float32x4_t v[3] = {acc0[i], acc1[i], acc2[i]};
#pragma GCC unroll 3
    for (size_t j = 0; j < NV; j++) {
      float* cj = ci + 4 * j;
      const int part = PART && j == NV - 1;
      if (accumulate) {
        v[j] = vaddq_f32(part ? mha_neon_load_part(cj, rn) : vld1q_f32(cj), v[j]);
      }
      if (part) {
        mha_neon_store_part(cj, v[j], rn);
      } else {
        vst1q_f32(cj, v[j]);
      }
    }
  }
  if (MR == 8 && NV == 3 && !PART) MHA_MCA_END("f32_gemm_8x12__neon.store");
}

static inline __attribute__((always_inline)) void mha_gemm_rows_neon(
    const size_t MR, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc, int accumulate) {
  switch (n) {
    case 12: mha_gemm_tile_neon(MR, 3, 0, 4, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 8: mha_gemm_tile_neon(MR, 2, 0, 4, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: mha_gemm_tile_neon(MR, 1, 0, 4, k, a, lda, b, ldb, c, ldc, accumulate); break;
    default:
      if (n > 8) {
        mha_gemm_tile_neon(MR, 3, 1, n - 8, k, a, lda, b, ldb, c, ldc, accumulate);
      } else if (n > 4) {
        mha_gemm_tile_neon(MR, 2, 1, n - 4, k, a, lda, b, ldb, c, ldc, accumulate);
      } else {
        mha_gemm_tile_neon(MR, 1, 1, n, k, a, lda, b, ldb, c, ldc, accumulate);
      }
      break;
  }
}

void mha_f32_gemm_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate) {
  switch (m) {
    case 8: mha_gemm_rows_neon(8, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 7: mha_gemm_rows_neon(7, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 6: mha_gemm_rows_neon(6, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_neon(5, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_neon(4, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_neon(3, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_neon(2, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    default: mha_gemm_rows_neon(1, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
  }
}
