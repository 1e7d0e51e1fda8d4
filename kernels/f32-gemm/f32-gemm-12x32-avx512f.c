/* C[m×n] (+)= A[m×k]·B[k×n], m <= 12, n <= 32: the AVX-512F tile.
 *   12x32: 24 acc + 2 B + 1 broadcast A = 27/32 zmm.
 * Each row count 1..12 is its own inlined instance (no wasted FMAs when a
 * tile has few rows, as in decode); columns past n are masked on load and
 * store, so nothing outside the operands is touched. The _at_ kernel reads A
 * transposed (A[i][p] at a[p·lda + i]: a packed panel, or the transposed score
 * tile of the flash loop) with per element the same operations in the same
 * order: bitwise the row-major kernel's result. The core is shared with
 * the K/V cache kernels: f32-gemm-12x32-avx512f.h.
 * Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-12x32-avx512f.h"
#include "f32-gemm/f32-gemm.h"

/* The instance of each row count, A row-major (AT = 0) or transposed (AT = 1) */
static inline __attribute__((always_inline)) void mha_gemm_12x32_avx512f(const int AT, size_t m, size_t n,
                                                                        size_t k, const float* a, size_t lda,
                                                                        const float* b, size_t ldb, float* c,
                                                                        size_t ldc, int accumulate) {
  switch (m) {
    case 12: mha_gemm_rows_avx512f(12, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 11: mha_gemm_rows_avx512f(11, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 10: mha_gemm_rows_avx512f(10, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 9: mha_gemm_rows_avx512f(9, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 8: mha_gemm_rows_avx512f(8, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 7: mha_gemm_rows_avx512f(7, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 6: mha_gemm_rows_avx512f(6, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_avx512f(5, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_avx512f(4, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_avx512f(3, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_avx512f(2, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    default: mha_gemm_rows_avx512f(1, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
  }
}

void mha_f32_gemm_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  mha_gemm_12x32_avx512f(0, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

void mha_f32_gemm_at_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                            const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  mha_gemm_12x32_avx512f(1, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}
