/* C[m×n] += A[m×k]·B[k×n] with row p of B at brows[p] (the value rows of a
 * paged K/V cache, anywhere in memory), fp32 or 16-bit (f16, bf16) rows, any
 * m and n: tiles of 8×12 by the neon GEMM micro-kernel's own core
 * (f32-gemm/f32-gemm-8x12-neon.h), with row p read from brows[p] and 16-bit
 * values widened exactly as they are loaded. Per element it runs the f32
 * kernel's operations with accumulate = 1, so the result is bitwise
 * mha_f32_gemm_ukernel_8x12__neon on the widened rows packed together.
 * Columns are tiled outside rows: a 12-column slice of the k rows is reused
 * by every row tile. AArch64 Advanced SIMD: no extra flags. */
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-8x12-neon.h"
#include "kv-gemm/kv-gemm.h"

/* One tile: m <= 8 rows (each count its own compile-time instance) × n <= 12
 * columns from column j0 of the rows */
static inline __attribute__((always_inline)) void mha_gemm_pv_tile_neon(
    const int BT, const int PAGED, size_t m, size_t n, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc) {
  const void* bj = PAGED ? NULL : mha_kv_at(BT, b, j0); /* strided rows from column j0 */
  switch (m) {
    case 8:
      mha_gemm_rows_neon(8, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 7:
      mha_gemm_rows_neon(7, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 6:
      mha_gemm_rows_neon(6, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 5:
      mha_gemm_rows_neon(5, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 4:
      mha_gemm_rows_neon(4, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 3:
      mha_gemm_rows_neon(3, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    case 2:
      mha_gemm_rows_neon(2, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
    default:
      mha_gemm_rows_neon(1, BT, PAGED, n, k, a, lda, bj, ldb, brows, j0, c, ldc, 1);
      break;
  }
}

/* Decode's tile: m = MR <= 4 rows (a query head group) × 4·NV full columns
 * (MR·NV <= 24 accumulators of the 32 q registers), so that each k step
 * reads NV·16 bytes (fp32) or NV·8 (16-bit) of row p at once instead of 12
 * columns per pass over all k rows. The same operations per element as the
 * 8×12 core (acc = 0, one fma per p in order, then C + acc), so the same bits. */
static inline __attribute__((always_inline)) void mha_gemm_pv_wide_neon(
    const size_t MR, const size_t NV, const int BT, const int PAGED, size_t k, const float* a,
    size_t lda, const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc) {
  float32x4_t acc[4][16];
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 16
    for (size_t v = 0; v < NV; v++) acc[i][v] = vdupq_n_f32(0.0f);
#pragma GCC unroll 1
  for (size_t p = 0; p < k; p++) {
    const void* bp = mha_kv_src_row(BT, PAGED, b, ldb, brows, p, j0);
    float32x4_t ai[4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; i++) ai[i] = vsetq_lane_f32(a[i * lda + p], vdupq_n_f32(0.0f), 0);
#pragma GCC unroll 16
    for (size_t v = 0; v < NV; v++) {
      const float32x4_t bv = mha_neon_load4(BT, mha_kv_at(BT, bp, 4 * v));
#pragma GCC unroll 4
      for (size_t i = 0; i < MR; i++) acc[i][v] = vfmaq_laneq_f32(acc[i][v], bv, ai[i], 0);
    }
  }
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 16
    for (size_t v = 0; v < NV; v++) {
      float* ci = c + i * ldc + 4 * v;
      vst1q_f32(ci, vaddq_f32(vld1q_f32(ci), acc[i][v]));
    }
}

/* PAGED: row p at brows[p] (a const float* const* for BT fp32, else a
 * const uint16_t* const*); else at b + p·ldb */
static inline __attribute__((always_inline)) void mha_gemm_pv_neon_rows(const int BT, const int PAGED, size_t m, size_t n,
                                                                   size_t k, const float* a,
                                                                   size_t lda, const void* b, size_t ldb, const void* brows,
                                                                   float* c, size_t ldc) {
  size_t jw = 0; /* decode (m <= 4): full columns in wide tiles first */
  switch (m) {
    case 1: for (; jw + 64 <= n; jw += 64) mha_gemm_pv_wide_neon(1, 16, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc); break;
    case 2: for (; jw + 48 <= n; jw += 48) mha_gemm_pv_wide_neon(2, 12, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc); break;
    case 3: for (; jw + 24 <= n; jw += 24) mha_gemm_pv_wide_neon(3, 6, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc); break;
    case 4: for (; jw + 24 <= n; jw += 24) mha_gemm_pv_wide_neon(4, 6, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc); break;
    default: break;
  }
  for (size_t j0 = jw; j0 < n; j0 += 12) {
    const size_t nj = n - j0 < 12 ? n - j0 : 12;
    for (size_t i0 = 0; i0 < m; i0 += 8) {
      const size_t mi = m - i0 < 8 ? m - i0 : 8;
      mha_gemm_pv_tile_neon(BT, PAGED, mi, nj, k, a + i0 * lda, lda, b, ldb, brows, j0, c + i0 * ldc + j0, ldc);
    }
  }
}

/* strided rows (b, ldb) when brows is NULL, else the row pointers */
static inline __attribute__((always_inline)) void mha_gemm_pv_neon(const int BT, size_t m, size_t n, size_t k,
                                                                   const float* a, size_t lda, const void* b,
                                                                   size_t ldb, const void* brows, float* c,
                                                                   size_t ldc) {
  if (brows != NULL) {
    mha_gemm_pv_neon_rows(BT, 1, m, n, k, a, lda, NULL, 0, brows, c, ldc);
  } else {
    mha_gemm_pv_neon_rows(BT, 0, m, n, k, a, lda, b, ldb, NULL, c, ldc);
  }
}

void mha_f32_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_neon(MHA_KV_F32, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_f16_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_neon(MHA_KV_F16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_bf16_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_neon(MHA_KV_BF16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}
