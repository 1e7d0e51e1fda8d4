/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows (no transpose
 * of B), for few-row tiles such as decode, where the rows of B (keys) are
 * read once. Any m and n: up to 4 rows (a compile-time count) × 4 keys at a
 * time, at most 16 zmm accumulators, the k tail masked. Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "f32-gemm/f32-gemm.h"

/* rows [0, MI) of A against keys [0, n) of B; MI is a compile-time constant */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_avx512f(
    const size_t MI, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc) {
  for (size_t j0 = 0; j0 < n; j0 += 4) {
    const size_t nj = n - j0 < 4 ? n - j0 : 4;
    const float* br[4];
    for (size_t j = 0; j < 4; j++) br[j] = b + (j0 + (j < nj ? j : nj - 1)) * ldb;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < k; p += 16) {
      if (MI == 4) MHA_MCA_BEGIN("f32_gemm_nt_4x4__avx512f.kstep");
      const __mmask16 mk = k - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - p)) - 1u);
      __m512 bv[4];
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; j++) bv[j] = _mm512_maskz_loadu_ps(mk, br[j] + p);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const __m512 av = _mm512_maskz_loadu_ps(mk, a + i * lda + p);
#pragma GCC unroll 4
        for (size_t j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
      }
      if (MI == 4) MHA_MCA_END("f32_gemm_nt_4x4__avx512f.kstep");
    }
    /* reduce every accumulator with compile-time indices (a runtime index
     * into acc would force the whole array into memory), store the nj keys */
    float sums[4][4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; j++) sums[i][j] = _mm512_reduce_add_ps(acc[i][j]);
    for (size_t i = 0; i < MI; i++)
      for (size_t j = 0; j < nj; j++) c[i * ldc + j0 + j] = sums[i][j];
  }
}

void mha_f32_gemm_nt_ukernel_4x4__avx512f(size_t m, size_t n, size_t k, const float* a,
                                          size_t lda, const float* b, size_t ldb, float* c,
                                          size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4) mha_gemm_nt_rows_avx512f(4, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  switch (m - i0) {
    case 3: mha_gemm_nt_rows_avx512f(3, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 2: mha_gemm_nt_rows_avx512f(2, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 1: mha_gemm_nt_rows_avx512f(1, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    default: break;
  }
}
