/* C[m×n] (+)= A[m×k]·B[k×n], m <= 12, n <= 32: the AVX-512F tile.
 *   12x32: 24 acc + 2 B + 1 broadcast A = 27/32 zmm.
 * Rows past m read row m−1 again (valid memory) and are not stored; columns
 * past n are masked on load and store, so nothing outside the operands is
 * touched. Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a,
                                         size_t lda, const float* b, size_t ldb, float* c,
                                         size_t ldc, int accumulate) {
  enum { MR = 12 };
  const __mmask16 mask0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
  const __mmask16 mask1 = n >= 32 ? (__mmask16)0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1u);
  const float* ap[MR];
#pragma GCC unroll 12
  for (size_t i = 0; i < MR; i++) ap[i] = a + (i < m ? i : m - 1) * lda;

  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (size_t i = 0; i < MR; i++) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  if (n == 32) {
    for (size_t p = 0; p < k; p++) {
      const __m512 b0 = _mm512_loadu_ps(b + p * ldb);
      const __m512 b1 = _mm512_loadu_ps(b + p * ldb + 16);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(ap[i][p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  } else {
    for (size_t p = 0; p < k; p++) {
      const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b + p * ldb);
      const __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + p * ldb + 16);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(ap[i][p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 12
  for (size_t i = 0; i < MR; i++) {
    if (i >= m) break;
    float* ci = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm512_add_ps(acc0[i], _mm512_maskz_loadu_ps(mask0, ci));
      acc1[i] = _mm512_add_ps(acc1[i], _mm512_maskz_loadu_ps(mask1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, mask0, acc0[i]);
    _mm512_mask_storeu_ps(ci + 16, mask1, acc1[i]);
  }
}
