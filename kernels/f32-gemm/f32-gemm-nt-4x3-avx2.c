/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows, for few-row
 * tiles such as decode. Any m and n: up to 4 rows (a compile-time count) ×
 * 3 keys at a time; full 8-float vectors with plain loads, the k tail (if
 * any) with one masked load per row, once.
 *   4x3: 12 acc + 3 B + 1 A = 16/16 ymm (a 4x4 tile needs 21 and spills:
 *   llvm-mca predicted 16-20 cycles per k step against an FMA bound of 8).
 * Per k step of 8 floats: 12 FMA (2 ports: 6 cycles) vs 7 loads (2-3 ports:
 * <= 3.5 cycles): FMA-bound at 4 rows; one row (MHA decode) is bound by the
 * bytes of K. Compiled with -mavx2 -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "f32-gemm/f32-gemm.h"

static float mha_hsum8_nt(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

enum { NJ = 3 }; /* keys per pass */

/* rows [0, MI) of A against keys [0, n) of B; MI is a compile-time constant */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_avx2(
    const size_t MI, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t j0 = 0; j0 < n; j0 += NJ) {
    const size_t nj = n - j0 < NJ ? n - j0 : NJ;
    const float* br[NJ];
    for (size_t j = 0; j < NJ; j++) br[j] = b + (j0 + (j < nj ? j : nj - 1)) * ldb;
    __m256 acc[4][NJ];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) acc[i][j] = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 8 <= k; p += 8) { /* full vectors: plain loads */
      if (MI == 4) MHA_MCA_BEGIN("f32_gemm_nt_4x3__avx2.kstep");
      __m256 bv[NJ];
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) bv[j] = _mm256_loadu_ps(br[j] + p);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const __m256 av = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 3
        for (size_t j = 0; j < NJ; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
      }
      if (MI == 4) MHA_MCA_END("f32_gemm_nt_4x3__avx2.kstep");
    }
    if (p < k) { /* the k tail, once: masked loads read nothing past the rows */
      const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k - p)), lanes);
      __m256 bv[NJ];
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) bv[j] = _mm256_maskload_ps(br[j] + p, mk);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const __m256 av = _mm256_maskload_ps(a + i * lda + p, mk);
#pragma GCC unroll 3
        for (size_t j = 0; j < NJ; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
      }
    }
    /* reduce every accumulator with compile-time indices (a runtime index
     * into acc would force the whole array into memory), store the nj keys */
    float sums[4][NJ];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) sums[i][j] = mha_hsum8_nt(acc[i][j]);
    for (size_t i = 0; i < MI; i++)
      for (size_t j = 0; j < nj; j++) c[i * ldc + j0 + j] = sums[i][j];
  }
}

void mha_f32_gemm_nt_ukernel_4x3__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4) mha_gemm_nt_rows_avx2(4, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  switch (m - i0) {
    case 3: mha_gemm_nt_rows_avx2(3, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 2: mha_gemm_nt_rows_avx2(2, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    case 1: mha_gemm_nt_rows_avx2(1, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc); break;
    default: break;
  }
}
