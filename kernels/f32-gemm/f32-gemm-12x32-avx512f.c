/* C[m×n] (+)= A[m×k]·B[k×n], m <= 12, n <= 32: the AVX-512F tile.
 *   12x32: 24 acc + 2 B + 1 broadcast A = 27/32 zmm.
 * Each row count 1..12 is its own inlined instance (no wasted FMAs when a
 * tile has few rows, as in decode); columns past n are masked on load and
 * store, so nothing outside the operands is touched.
 * Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "f32-gemm/f32-gemm.h"

static inline __attribute__((always_inline)) void mha_gemm_rows_avx512f(
    const size_t MR, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc, int accumulate) {
  const __mmask16 mask0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
  const __mmask16 mask1 = n >= 32 ? (__mmask16)0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1u);
  __m512 acc0[12], acc1[12];
#pragma GCC unroll 12
  for (size_t i = 0; i < MR; i++) {
    /* C is read (accumulate) and written only after the k loop: fetch it now */
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char*)(c + i * ldc + 16), _MM_HINT_T0);
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  if (n == 32) {
#pragma GCC unroll 1
    for (size_t p = 0; p < k; p++) {
      if (MR == 12) MHA_MCA_BEGIN("f32_gemm_12x32__avx512f.kstep");
      const __m512 b0 = _mm512_loadu_ps(b + p * ldb);
      const __m512 b1 = _mm512_loadu_ps(b + p * ldb + 16);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
      if (MR == 12) MHA_MCA_END("f32_gemm_12x32__avx512f.kstep");
    }
  } else {
    for (size_t p = 0; p < k; p++) {
      const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b + p * ldb);
      const __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + p * ldb + 16);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
  if (MR == 12) MHA_MCA_BEGIN("f32_gemm_12x32__avx512f.store");
#pragma GCC unroll 12
  for (size_t i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm512_add_ps(acc0[i], _mm512_maskz_loadu_ps(mask0, ci));
      acc1[i] = _mm512_add_ps(acc1[i], _mm512_maskz_loadu_ps(mask1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, mask0, acc0[i]);
    _mm512_mask_storeu_ps(ci + 16, mask1, acc1[i]);
  }
  if (MR == 12) MHA_MCA_END("f32_gemm_12x32__avx512f.store");
}

void mha_f32_gemm_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a,
                                         size_t lda, const float* b, size_t ldb, float* c,
                                         size_t ldc, int accumulate) {
  switch (m) {
    case 12: mha_gemm_rows_avx512f(12, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 11: mha_gemm_rows_avx512f(11, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 10: mha_gemm_rows_avx512f(10, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 9: mha_gemm_rows_avx512f(9, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 8: mha_gemm_rows_avx512f(8, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 7: mha_gemm_rows_avx512f(7, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 6: mha_gemm_rows_avx512f(6, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_avx512f(5, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_avx512f(4, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_avx512f(3, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_avx512f(2, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    default: mha_gemm_rows_avx512f(1, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
  }
}
