/* C[m×n] (+)= A[m×k]·B[k×n], m <= 6, n <= 16: the AVX2 + FMA tile.
 *   6x16: 12 acc + 2 B + 1 broadcast A = 15/16 ymm.
 * Each row count 1..6 is its own inlined instance (no wasted FMAs on short
 * tiles); columns past n are masked on load and store (vmaskmov), so nothing
 * outside the operands is touched. Compiled with -mavx2 -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm.h"

static __m256i mha_avx2_tail_mask(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
}

static inline __attribute__((always_inline)) void mha_gemm_rows_avx2(
    const size_t MR, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc, int accumulate) {
  const __m256i mask0 = mha_avx2_tail_mask(n);
  const __m256i mask1 = mha_avx2_tail_mask(n > 8 ? n - 8 : 0);
  __m256 acc0[6], acc1[6];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    /* C is read (accumulate) and written only after the k loop: fetch it now */
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  if (n == 16) {
    for (size_t p = 0; p < k; p++) {
      const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
      const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
#pragma GCC unroll 6
      for (size_t i = 0; i < MR; i++) {
        const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
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
        const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm256_add_ps(acc0[i], _mm256_maskload_ps(ci, mask0));
      acc1[i] = _mm256_add_ps(acc1[i], _mm256_maskload_ps(ci + 8, mask1));
    }
    _mm256_maskstore_ps(ci, mask0, acc0[i]);
    _mm256_maskstore_ps(ci + 8, mask1, acc1[i]);
  }
}

void mha_f32_gemm_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate) {
  switch (m) {
    case 6: mha_gemm_rows_avx2(6, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_avx2(5, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_avx2(4, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_avx2(3, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_avx2(2, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
    default: mha_gemm_rows_avx2(1, n, k, a, lda, b, ldb, c, ldc, accumulate); break;
  }
}
