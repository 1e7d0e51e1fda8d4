/*
 * The core of the NEON dot-product kernel (4 rows × 4 keys), shared by the
 * f32 kernel (f32-gemm-nt-4x4-neon.c) and the K/V cache kernels
 * gemm_nt_{f16,bf16} (kv-gemm/kv-gemm-nt-4x4-neon.c): the element type of B
 * (BT) is a compile-time argument and only B's loads depend on it (16 bits
 * widened in registers), so a 16-bit instance gives bitwise the f32
 * kernel's result on the widened rows.
 *   4x4: 16 acc + 4 B + 1 A = 21/32 q regs.
 */
#ifndef MHA_KERNELS_F32_GEMM_NT_4X4_NEON_H
#define MHA_KERNELS_F32_GEMM_NT_4X4_NEON_H

#include <arm_neon.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "config/neon-parts.h"
#include "kv-gemm/kv-load-neon.h"

enum { MHA_NT_NEON_NJ = 4 }; /* keys per pass */

/* rows [0, MI) of A against keys [0, n) of B; MI and BT are compile-time constants */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_neon(
    const size_t MI, const int BT, size_t n, size_t k, const float* a, size_t lda, const void* b,
    size_t ldb, float* c, size_t ldc) {
  enum { NJ = MHA_NT_NEON_NJ };
  const int mca = BT == MHA_KV_F32 && MI == 4; /* the f32 kernel's full tile */
  for (size_t j0 = 0; j0 < n; j0 += NJ) {
    const size_t nj = n - j0 < NJ ? n - j0 : NJ;
    /* a short last pass repeats its last key in the unused slots */
    const void* br[NJ];
    for (size_t j = 0; j < NJ; j++) br[j] = mha_kv_at(BT, b, (j0 + (j < nj ? j : nj - 1)) * ldb);
    float32x4_t acc[4][NJ];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) acc[i][j] = vdupq_n_f32(0.0f);
    size_t p = 0;
    for (; p + 4 <= k; p += 4) { /* full vectors: plain loads */
      if (mca) MHA_MCA_BEGIN("f32_gemm_nt_4x4__neon.kstep");
      float32x4_t bv[NJ];
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) bv[j] = mha_neon_load4(BT, mha_kv_at(BT, br[j], p));
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const float32x4_t av = vld1q_f32(a + i * lda + p);
#pragma GCC unroll 4
        for (size_t j = 0; j < NJ; j++) acc[i][j] = vfmaq_f32(acc[i][j], av, bv[j]);
      }
      if (mca) MHA_MCA_END("f32_gemm_nt_4x4__neon.kstep");
    }
    if (p < k) { /* the k tail (1-3 values), once */
      const size_t r = k - p;
      float32x4_t bv[NJ];
#pragma GCC unroll 4
      for (size_t j = 0; j < NJ; j++) bv[j] = mha_neon_load_part4(BT, mha_kv_at(BT, br[j], p), r);
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
      const float32x4_t sums =
          vpaddq_f32(vpaddq_f32(acc[i][0], acc[i][1]), vpaddq_f32(acc[i][2], acc[i][3]));
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

/* C[m×n] = A[m×k]·B[n×k]ᵀ, any m: 4 rows at a time, then 3, 2 or 1 */
static inline __attribute__((always_inline)) void mha_gemm_nt_neon(const int BT, size_t m, size_t n,
                                                                   size_t k, const float* a,
                                                                   size_t lda, const void* b,
                                                                   size_t ldb, float* c,
                                                                   size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4) {
    mha_gemm_nt_rows_neon(4, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  }
  switch (m - i0) {
    case 3:
      mha_gemm_nt_rows_neon(3, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 2:
      mha_gemm_nt_rows_neon(2, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 1:
      mha_gemm_nt_rows_neon(1, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    default:
      break;
  }
}

#endif
