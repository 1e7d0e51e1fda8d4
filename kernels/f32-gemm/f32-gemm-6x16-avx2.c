/* C[m×n] (+)= A[m×k]·B[k×n], m <= 6, n <= 16: the AVX2 + FMA tile.
 *   6x16: 12 acc + 2 B + 1 broadcast A = 15/16 ymm.
 * Each row count 1..6 is its own inlined instance (no wasted FMAs on short
 * tiles). Full tiles (n = 16) use plain loads and stores only; an edge tile
 * masks only its one partial vector of columns (loads of B and C, the store
 * of C), so nothing outside the operands is touched.
 * Budget per k step of the full tile: 12 FMA (2 ports: 6 cycles) vs 2 loads
 * + 6 broadcasts (2-3 load ports: <= 4 cycles): FMA-bound on Zen 2-5 and
 * Intel Skylake through Sapphire Rapids. The _at_ kernel reads A transposed
 * (A[i][p] at a[p·lda + i]) with per element the same operations in the
 * same order: bitwise the row-major kernel's result. The core is shared with the K/V
 * cache kernels: f32-gemm-6x16-avx2.h. Compiled with -mavx2 -mfma -mf16c. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-6x16-avx2.h"
#include "f32-gemm/f32-gemm.h"

/* The instance of each row count, A row-major (AT = 0) or transposed (AT = 1) */
static inline __attribute__((always_inline)) void mha_gemm_6x16_avx2(const int AT, size_t m, size_t n, size_t k,
                                                                    const float* a, size_t lda, const float* b,
                                                                    size_t ldb, float* c, size_t ldc,
                                                                    int accumulate) {
  switch (m) {
    case 6: mha_gemm_rows_avx2(6, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_avx2(5, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_avx2(4, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_avx2(3, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_avx2(2, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    default: mha_gemm_rows_avx2(1, AT, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
  }
}

void mha_f32_gemm_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  mha_gemm_6x16_avx2(0, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

void mha_f32_gemm_at_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  mha_gemm_6x16_avx2(1, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}
