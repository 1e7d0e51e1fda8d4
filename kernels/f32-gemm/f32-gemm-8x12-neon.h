/*
 * The core of the NEON 8×12 GEMM tile, shared by the f32 micro-kernel
 * (f32-gemm-8x12-neon.c) and the K/V cache kernels gemm_pv_{f32,f16,bf16}
 * (kv-gemm/kv-gemm-pv-8x12-neon.c): always_inline functions whose element
 * type of B (BT) and row addressing (PAGED: row p at brows[p] + j0, else
 * b + p·ldb) are compile-time arguments. Every instance runs the same
 * arithmetic per element (k FMAs in order from zero, then C added once), so
 * a 16-bit or paged instance gives bitwise the f32 kernel's result on the
 * widened rows.
 *   8x12: 24 acc + 3 B + 2 A = 29/32 q regs (v0-v31).
 */
#ifndef MHA_KERNELS_F32_GEMM_8X12_NEON_H
#define MHA_KERNELS_F32_GEMM_8X12_NEON_H

#include <arm_neon.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "config/neon-parts.h"
#include "kv-gemm/kv-load-neon.h"

/* One tile of MR rows and NV vectors of columns (compile-time constants);
 * PART: the last vector holds only rn = 1..3 columns (a runtime count).
 * The full tile is (8, 3, 0). The arithmetic of an element is the same in
 * every instance: k FMAs in order from zero, then C added once. */
static inline __attribute__((always_inline)) void mha_gemm_tile_neon(
    const size_t MR, const size_t NV, const int PART, const int BT, const int PAGED, size_t rn,
    size_t k, const float* a, size_t lda, const void* b, size_t ldb, const void* brows, size_t j0,
    float* c, size_t ldc, int accumulate) {
  /* the f32 kernel's full tile */
  const int mca = BT == MHA_KV_F32 && !PAGED && MR == 8 && NV == 3 && !PART;
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
    if (mca) MHA_MCA_BEGIN("f32_gemm_8x12__neon.kstep");
    const void* bp = PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
    float32x4_t b0, b1 = vdupq_n_f32(0.0f), b2 = vdupq_n_f32(0.0f);
    if (NV == 1) {
      b0 = PART ? mha_neon_load_part4(BT, bp, rn) : mha_neon_load4(BT, bp);
    } else {
      b0 = mha_neon_load4(BT, bp);
      if (NV == 2) {
        b1 = PART ? mha_neon_load_part4(BT, mha_kv_at(BT, bp, 4), rn)
                  : mha_neon_load4(BT, mha_kv_at(BT, bp, 4));
      } else {
        b1 = mha_neon_load4(BT, mha_kv_at(BT, bp, 4));
        b2 = PART ? mha_neon_load_part4(BT, mha_kv_at(BT, bp, 8), rn)
                  : mha_neon_load4(BT, mha_kv_at(BT, bp, 8));
      }
    }
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
      const float32x4_t ai = vsetq_lane_f32(a[i * lda + p], vdupq_n_f32(0.0f), 0);
      acc0[i] = vfmaq_laneq_f32(acc0[i], b0, ai, 0);
      if (NV >= 2) acc1[i] = vfmaq_laneq_f32(acc1[i], b1, ai, 0);
      if (NV == 3) acc2[i] = vfmaq_laneq_f32(acc2[i], b2, ai, 0);
    }
    if (mca) MHA_MCA_END("f32_gemm_8x12__neon.kstep");
  }
  if (mca) MHA_MCA_BEGIN("f32_gemm_8x12__neon.store");
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
  if (mca) MHA_MCA_END("f32_gemm_8x12__neon.store");
}

/* C[MR×n] (+)= A[MR×k]·B[k×n], 1 <= n <= 12; MR, BT and PAGED compile-time */
static inline __attribute__((always_inline)) void mha_gemm_rows_neon(
    const size_t MR, const int BT, const int PAGED, size_t n, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc, int accumulate) {
  switch (n) {
    case 12:
      mha_gemm_tile_neon(MR, 3, 0, BT, PAGED, 4, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
      break;
    case 8:
      mha_gemm_tile_neon(MR, 2, 0, BT, PAGED, 4, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
      break;
    case 4:
      mha_gemm_tile_neon(MR, 1, 0, BT, PAGED, 4, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
      break;
    default:
      if (n > 8) {
        mha_gemm_tile_neon(MR, 3, 1, BT, PAGED, n - 8, k, a, lda, b, ldb, brows, j0, c, ldc,
                           accumulate);
      } else if (n > 4) {
        mha_gemm_tile_neon(MR, 2, 1, BT, PAGED, n - 4, k, a, lda, b, ldb, brows, j0, c, ldc,
                           accumulate);
      } else {
        mha_gemm_tile_neon(MR, 1, 1, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc,
                           accumulate);
      }
      break;
  }
}

#endif
