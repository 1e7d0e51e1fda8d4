/* C[m×n] (+)= A[m×k]·B[k×n], m <= 6, n <= 16: the AVX2 + FMA tile.
 *   6x16: 12 acc + 2 B + 1 broadcast A = 15/16 ymm.
 * Rows past m read row m−1 again (valid memory) and are not stored; columns
 * past n are masked on load and store (vmaskmov), so nothing outside the
 * operands is touched. Compiled with -mavx2 -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm.h"

static __m256i mha_avx2_tail_mask(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
}

void mha_f32_gemm_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate) {
  enum { MR = 6 };
  const __m256i mask0 = mha_avx2_tail_mask(n);
  const __m256i mask1 = mha_avx2_tail_mask(n > 8 ? n - 8 : 0);
  const float* ap[MR];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) ap[i] = a + (i < m ? i : m - 1) * lda;

  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  if (n == 16) {
    for (size_t p = 0; p < k; p++) {
      const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
      const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
#pragma GCC unroll 6
      for (size_t i = 0; i < MR; i++) {
        const __m256 ai = _mm256_broadcast_ss(ap[i] + p);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  } else {
    for (size_t p = 0; p < k; p++) {
      const __m256 b0 = _mm256_maskload_ps(b + p * ldb, mask0);
      const __m256 b1 = _mm256_maskload_ps(b + p * ldb + 8, mask1);
#pragma GCC unroll 6
      for (size_t i = 0; i < MR; i++) {
        const __m256 ai = _mm256_broadcast_ss(ap[i] + p);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    if (i >= m) break;
    float* ci = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm256_add_ps(acc0[i], _mm256_maskload_ps(ci, mask0));
      acc1[i] = _mm256_add_ps(acc1[i], _mm256_maskload_ps(ci + 8, mask1));
    }
    _mm256_maskstore_ps(ci, mask0, acc0[i]);
    _mm256_maskstore_ps(ci + 8, mask1, acc1[i]);
  }
}
