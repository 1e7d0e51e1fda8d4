/* C[m×n] (+)= A[m×k]·B[k×n], m <= 6, n <= 16: the AVX2 + FMA tile.
 *   6x16: 12 acc + 2 B + 1 broadcast A = 15/16 ymm.
 * Each row count 1..6 is its own inlined instance (no wasted FMAs on short
 * tiles). Full tiles (n = 16) use plain loads and stores only; an edge tile
 * masks only its one partial vector of columns (loads of B and C, the store
 * of C), so nothing outside the operands is touched.
 * Budget per k step of the full tile: 12 FMA (2 ports: 6 cycles) vs 2 loads
 * + 6 broadcasts (2-3 load ports: <= 4 cycles): FMA-bound on Zen 2-5 and
 * Intel Skylake through Sapphire Rapids. Compiled with -mavx2 -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "f32-gemm/f32-gemm.h"

static __m256i mha_avx2_tail_mask(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
}

/* The full tile, n == 16: plain loads and stores only. Per k step: 2 B
 * loads + MR broadcasts (load ports), 2·MR FMAs (2 FMA ports on Zen 2-5 and
 * Intel client/server cores): FMA-bound at MR = 6. */
static inline __attribute__((always_inline)) void mha_gemm_full_avx2(
    const size_t MR, size_t k, const float* a, size_t lda, const float* b, size_t ldb, float* c,
    size_t ldc, int accumulate) {
  __m256 acc0[6], acc1[6];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    /* C is read (accumulate) and written only after the k loop: fetch it now */
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (size_t p = 0; p < k; p++) {
    if (MR == 6) MHA_MCA_BEGIN("f32_gemm_6x16__avx2.kstep");
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
    const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
      const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    if (MR == 6) MHA_MCA_END("f32_gemm_6x16__avx2.kstep");
  }
  if (MR == 6) MHA_MCA_BEGIN("f32_gemm_6x16__avx2.store");
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm256_add_ps(acc0[i], _mm256_loadu_ps(ci));
      acc1[i] = _mm256_add_ps(acc1[i], _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, acc0[i]);
    _mm256_storeu_ps(ci + 8, acc1[i]);
  }
  if (MR == 6) MHA_MCA_END("f32_gemm_6x16__avx2.store");
}

/* An edge tile, n < 16 (rare: the last columns of a projection or of an odd
 * Dv). Only the one partial vector is masked: a vmaskmovps store costs ~12
 * cycles on AMD Zen 2-4 (1 on Intel), so full vectors never go through it.
 * NV: vectors of 8 columns touched (1 or 2). */
static inline __attribute__((always_inline)) void mha_gemm_edge_avx2(
    const size_t MR, const size_t NV, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  const size_t full = n / 8; /* vectors with all 8 columns: 0 or 1 */
  const __m256i tail = mha_avx2_tail_mask(n - 8 * full);
  __m256 acc0[6], acc1[6];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (size_t p = 0; p < k; p++) {
    const float* bp = b + p * ldb;
    const __m256 b0 = full ? _mm256_loadu_ps(bp) : _mm256_maskload_ps(bp, tail);
    const __m256 b1 = NV == 2 ? _mm256_maskload_ps(bp + 8, tail) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
      const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      if (NV == 2) acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
  }
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    float* ci = c + i * ldc;
    if (NV == 2) {
      if (accumulate) {
        acc0[i] = _mm256_add_ps(acc0[i], _mm256_loadu_ps(ci));
        acc1[i] = _mm256_add_ps(acc1[i], _mm256_maskload_ps(ci + 8, tail));
      }
      _mm256_storeu_ps(ci, acc0[i]);
      _mm256_maskstore_ps(ci + 8, tail, acc1[i]);
    } else if (full) { /* n == 8 */
      if (accumulate) acc0[i] = _mm256_add_ps(acc0[i], _mm256_loadu_ps(ci));
      _mm256_storeu_ps(ci, acc0[i]);
    } else {
      if (accumulate) acc0[i] = _mm256_add_ps(acc0[i], _mm256_maskload_ps(ci, tail));
      _mm256_maskstore_ps(ci, tail, acc0[i]);
    }
  }
}

static inline __attribute__((always_inline)) void mha_gemm_rows_avx2(
    const size_t MR, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
    float* c, size_t ldc, int accumulate) {
  if (n == 16) {
    mha_gemm_full_avx2(MR, k, a, lda, b, ldb, c, ldc, accumulate);
  } else if (n > 8) {
    mha_gemm_edge_avx2(MR, 2, n, k, a, lda, b, ldb, c, ldc, accumulate);
  } else {
    mha_gemm_edge_avx2(MR, 1, n, k, a, lda, b, ldb, c, ldc, accumulate);
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
