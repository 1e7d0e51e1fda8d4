/* C[m×n] += A[m×k]·B[k×n] with row p of B at brows[p] (the value rows of a
 * paged K/V cache, anywhere in memory), fp32 or 16-bit (f16, bf16) rows, any
 * m and n: groups of up to 4 rows, in wide decode tiles and tiles of up to
 * 4×16 by the avx2 GEMM micro-kernel's own core
 * (f32-gemm/f32-gemm-6x16-avx2.h), with row p read from brows[p] and 16-bit
 * values widened exactly as they are loaded. Per element it runs the f32
 * kernel's operations with accumulate = 1, so the result is bitwise
 * mha_f32_gemm_ukernel_6x16__avx2 on the widened rows packed together.
 * Used for decode (few rows); prefill widens V into the fp32 tile the GEMM
 * reads. Compiled with -mavx2 -mfma -mf16c. */
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-6x16-avx2.h"
#include "kv-gemm/kv-gemm.h"

/* One tile: m <= 4 rows (each count its own compile-time instance of the 6×16
 * core) × n <= 16 columns from column j0 of the rows */
static inline __attribute__((always_inline)) void mha_gemm_pv_tile_avx2(
    const int BT, size_t m, size_t n, size_t k, const float* a, size_t lda, const void* brows,
    size_t j0, float* c, size_t ldc) {
  switch (m) {
    case 4:
      mha_gemm_rows_avx2(4, BT, 1, n, k, a, lda, NULL, 0, brows, j0, c, ldc, 1);
      break;
    case 3:
      mha_gemm_rows_avx2(3, BT, 1, n, k, a, lda, NULL, 0, brows, j0, c, ldc, 1);
      break;
    case 2:
      mha_gemm_rows_avx2(2, BT, 1, n, k, a, lda, NULL, 0, brows, j0, c, ldc, 1);
      break;
    default:
      mha_gemm_rows_avx2(1, BT, 1, n, k, a, lda, NULL, 0, brows, j0, c, ldc, 1);
      break;
  }
}

/* Decode's tile: m = MR <= 4 rows (a query head group) × 8·NV full columns
 * (MR·NV <= 12 accumulators of the 16 ymm), so that each k step reads NV·32
 * bytes (fp32) or NV·16 (16-bit) of row p at once instead of 16 columns per
 * pass over all k rows. The same operations per element as the 6×16 core
 * (acc = 0, one fma per p in order, then acc + C), so the same bits. */
static inline __attribute__((always_inline)) void mha_gemm_pv_wide_avx2(
    const size_t MR, const size_t NV, const int BT, size_t k, const float* a, size_t lda,
    const void* brows, size_t j0, float* c, size_t ldc) {
  __m256 acc[4][8];
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (size_t v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 1
  for (size_t p = 0; p < k; p++) {
    const void* bp = mha_kv_row(BT, brows, p, j0);
#pragma GCC unroll 8
    for (size_t v = 0; v < NV; v++) {
      const __m256 bv = mha_avx2_load8(BT, mha_kv_at(BT, bp, 8 * v));
#pragma GCC unroll 4
      for (size_t i = 0; i < MR; i++) acc[i][v] = _mm256_fmadd_ps(_mm256_set1_ps(a[i * lda + p]), bv, acc[i][v]);
    }
  }
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (size_t v = 0; v < NV; v++) {
      float* ci = c + i * ldc + 8 * v;
      _mm256_storeu_ps(ci, _mm256_add_ps(acc[i][v], _mm256_loadu_ps(ci)));
    }
}

/* brows: a const float* const* (BT fp32) or a const uint16_t* const*.
 * Rows in groups of at most 4 (decode's query head groups; a 4-row group
 * keeps the compile time of the instances small), each over full columns in
 * wide tiles, then the rest of the columns by the 6×16 core at that many
 * rows: every tiling runs the same operations per element. */
static inline __attribute__((always_inline)) void mha_gemm_pv_avx2(const int BT, size_t m, size_t n,
                                                                   size_t k, const float* a,
                                                                   size_t lda, const void* brows,
                                                                   float* c, size_t ldc) {
  for (size_t i0 = 0; i0 < m; i0 += 4) {
    const size_t mi = m - i0 < 4 ? m - i0 : 4;
    const float* ai = a + i0 * lda;
    float* ci = c + i0 * ldc;
    size_t jw = 0;
    switch (mi) {
      case 1: for (; jw + 64 <= n; jw += 64) mha_gemm_pv_wide_avx2(1, 8, BT, k, ai, lda, brows, jw, ci + jw, ldc); break;
      case 2: for (; jw + 48 <= n; jw += 48) mha_gemm_pv_wide_avx2(2, 6, BT, k, ai, lda, brows, jw, ci + jw, ldc); break;
      case 3: for (; jw + 32 <= n; jw += 32) mha_gemm_pv_wide_avx2(3, 4, BT, k, ai, lda, brows, jw, ci + jw, ldc); break;
      default: for (; jw + 24 <= n; jw += 24) mha_gemm_pv_wide_avx2(4, 3, BT, k, ai, lda, brows, jw, ci + jw, ldc); break;
    }
    for (size_t j0 = jw; j0 < n; j0 += 16) {
      const size_t nj = n - j0 < 16 ? n - j0 : 16;
      mha_gemm_pv_tile_avx2(BT, mi, nj, k, ai, lda, brows, j0, ci + j0, ldc);
    }
  }
}

void mha_f32_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const float* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_avx2(MHA_KV_F32, m, n, k, a, lda, brows, c, ldc);
}

void mha_f16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_avx2(MHA_KV_F16, m, n, k, a, lda, brows, c, ldc);
}

void mha_bf16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_avx2(MHA_KV_BF16, m, n, k, a, lda, brows, c, ldc);
}
