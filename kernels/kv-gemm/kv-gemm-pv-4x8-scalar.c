/* C[m×n] += A[m×k]·B[k×n] with row p of B at brows[p] (the value rows of a
 * paged K/V cache, anywhere in memory), fp32 or 16-bit (f16, bf16) rows, any
 * m and n: tiles of 4×8 by the scalar GEMM micro-kernel's own core
 * (f32-gemm/f32-gemm-4x8-scalar.h), with row p read from brows[p] and 16-bit
 * values widened exactly as they are loaded. Per element it runs the f32
 * kernel's operations with accumulate = 1, so the result is bitwise
 * mha_f32_gemm_ukernel_4x8__scalar on the widened rows packed together.
 * Columns are tiled outside rows: a 8-column slice of the k rows is reused
 * by every row tile. Compiled with -fno-tree-vectorize: it stays scalar code. */
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-4x8-scalar.h"
#include "kv-gemm/kv-gemm.h"

/* PAGED: row p at brows[p] (a const float* const* for BT fp32, else a
 * const uint16_t* const*); else at b + p·ldb */
static inline __attribute__((always_inline)) void mha_gemm_pv_scalar_rows(const int BT, const int PAGED,
                                                                          size_t m, size_t n, size_t k,
                                                                          const float* a, size_t lda,
                                                                          const void* b, size_t ldb,
                                                                          const void* brows, float* c,
                                                                          size_t ldc) {
  for (size_t j0 = 0; j0 < n; j0 += 8) {
    const size_t nj = n - j0 < 8 ? n - j0 : 8;
    for (size_t i0 = 0; i0 < m; i0 += 4) {
      const size_t mi = m - i0 < 4 ? m - i0 : 4;
      mha_gemm_tile_scalar(BT, PAGED, mi, nj, k, a + i0 * lda, lda, PAGED ? NULL : mha_kv_at(BT, b, j0), ldb,
                           brows, j0, c + i0 * ldc + j0, ldc, 1);
    }
  }
}

/* strided rows (b, ldb) when brows is NULL, else the row pointers */
static inline __attribute__((always_inline)) void mha_gemm_pv_scalar(const int BT, size_t m, size_t n, size_t k,
                                                                     const float* a, size_t lda, const void* b,
                                                                     size_t ldb, const void* brows, float* c,
                                                                     size_t ldc) {
  if (brows != NULL) {
    mha_gemm_pv_scalar_rows(BT, 1, m, n, k, a, lda, NULL, 0, brows, c, ldc);
  } else {
    mha_gemm_pv_scalar_rows(BT, 0, m, n, k, a, lda, b, ldb, NULL, c, ldc);
  }
}

void mha_f32_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_scalar(MHA_KV_F32, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_f16_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_scalar(MHA_KV_F16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_bf16_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv_scalar(MHA_KV_BF16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}
