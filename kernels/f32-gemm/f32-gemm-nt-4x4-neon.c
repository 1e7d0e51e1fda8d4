/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows, for few-row
 * tiles such as decode. Any m and n: up to 4 rows (a compile-time count) ×
 * 4 keys at a time; full 4-float vectors with plain loads, the k tail (if
 * any) once, lane by lane into zeroed vectors, so nothing past a row is read.
 *   4x4: 16 acc + 4 B + 1 A = 21/32 q regs.
 * Per k step of 4 floats: 16 FMLA (2 pipes on Neoverse N1: 8 cycles; 4 on
 * V1, V2, Apple M1: 4) vs 8 LDR Q (2-3 load pipes: <= 4 cycles): FMA-bound
 * at 4 rows; one row (MHA decode) is bound by the bytes of K.
 * Every row and key gets the same arithmetic in every instance (lane sums
 * in k order, the tail added last, one pairwise reduction), so a result does
 * not depend on m, n or the position of the row or key in the call. */
#include <arm_neon.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "config/neon-parts.h"
#include "f32-gemm/f32-gemm.h"

enum { NJ = 4 }; /* keys per pass */

/* rows [0, MI) of A against keys [0, n) of B; MI is a compile-time constant */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_neon(
    const size_t MI, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc) {
  for (size_t j0 = 0; j0 < n; j0 += NJ) {
    const size_t nj = n - j0 < NJ ? n - j0 : NJ;
    /* a short last pass repeats its last key in the unused slots */
    const float* br[NJ];
    for (size_t j = 0; j < NJ; j++) br[j] = b + (j0 + (j < nj ? j : nj - 1)) * ldb;
    float32x4_t acc[4][NJ];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) acc[i][j] = vdupq_n_f32(0.0f);
    size_t p = 0;
    for (; p + 4 <= k; p += 4) { /* full vectors: plain loads */
      if (MI == 4) MHA_MCA_BEGIN("f32_gemm_nt_4x4__neon.kstep");
      float32x4_t bv[NJ];
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) bv[j] = vld1q_f32(br[j] + p);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const float32x4_t av = vld1q_f32(a + i * lda + p);
#pragma GCC unroll 4
        for (size_t j = 0; j < NJ; j++) acc[i][j] = vfmaq_f32(acc[i][j], av, bv[j]);
      }
      if (MI == 4) MHA_MCA_END("f32_gemm_nt_4x4__neon.kstep");
    }
    if (p < k) { /* the k tail (1-3 floats), once */
      const size_t r = k - p;
      float32x4_t bv[NJ];
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) bv[j] = mha_neon_load_part(br[j] + p, r);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const float32x4_t av = mha_neon_load_part(a + i * lda + p, r);
#pragma GCC unroll 4
        for (size_t j = 0; j < NJ; j++) acc[i][j] = vfmaq_f32(acc[i][j], av, bv[j]);
      }
    }
    /* reduce with compile-time indices (a runtime index into acc would force
     * the whole array into memory): lane j of sums is ((x0+x1)+(x2+x3)) of key j */
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++) {
      const float32x4_t sums = vpaddq_f32(vpaddq_f32(acc[i][0], acc[i][1]),
                                          vpaddq_f32(acc[i][2], acc[i][3]));
      float* ci = c + i * ldc + j0;
      if (nj == NJ) {
        vst1q_f32(ci, sums);
      } else if (nj == 1) {
        vst1q_lane_f32(ci, sums, 0);
      } else {
        vst1_f32(ci, vget_low_f32(sums));
        if (nj == 3) vst1q_lane_f32(ci + 2, sums, 2);
      }
    }
  }
}

void mha_f32_gemm_nt_ukernel_4x4__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4) {
    mha_gemm_nt_rows_neon(4, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  }
  switch (m - i0) {
    case 3: mha_gemm_nt_rows_neon(3, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 2: mha_gemm_nt_rows_neon(2, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 1: mha_gemm_nt_rows_neon(1, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    default: break;
  }
}
