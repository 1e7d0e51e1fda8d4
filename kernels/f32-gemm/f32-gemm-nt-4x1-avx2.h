/*
 * The core of the AVX2 dot-product kernel (4 rows × 1 key), shared by the
 * f32 kernel (f32-gemm-nt-4x1-avx2.c) and the K/V cache kernels
 * gemm_nt_{f16,bf16} (kv-gemm/kv-gemm-nt-4x1-avx2.c): the element type of B
 * (BT) is a compile-time argument and only B's loads depend on it (16 bits
 * widened in registers), so a 16-bit instance gives bitwise the f32
 * kernel's result on the widened rows.
 *   4x1: 4 acc + 1 B + 1 A = 6/16 ymm (keys one at a time, each row read
 *   whole: see f32-gemm-nt-4x1-avx2.c).
 * Included by files compiled with -mavx2 -mfma -mf16c.
 */
#ifndef MHA_KERNELS_F32_GEMM_NT_4X1_AVX2_H
#define MHA_KERNELS_F32_GEMM_NT_4X1_AVX2_H

#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "kv-gemm/kv-load-avx2.h"

static inline float mha_hsum8_nt(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

/* keys per pass: 1, each key row read whole in address order (3 fit the
 * registers and give every score the same bits, but interleave 3 rows line
 * by line, which the prefetchers stream worse) */
enum { MHA_NT_AVX2_NJ = 1 };

/* rows [0, MI) of A against keys [0, n) of B; MI and BT are compile-time constants */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_avx2(
    const size_t MI, const int BT, size_t n, size_t k, const float* a, size_t lda, const void* b,
    size_t ldb, float* c, size_t ldc) {
  enum { NJ = MHA_NT_AVX2_NJ };
  const int mca = BT == MHA_KV_F32 && MI == 4; /* the f32 kernel's full tile */
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t j0 = 0; j0 < n; j0 += NJ) {
    const size_t nj = n - j0 < NJ ? n - j0 : NJ;
    const void* br[NJ];
    for (size_t j = 0; j < NJ; j++) br[j] = mha_kv_at(BT, b, (j0 + (j < nj ? j : nj - 1)) * ldb);
    __m256 acc[4][NJ];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) acc[i][j] = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 8 <= k; p += 8) { /* full vectors: plain loads */
      if (mca) MHA_MCA_BEGIN("f32_gemm_nt_4x1__avx2.kstep");
      __m256 bv[NJ];
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++) bv[j] = mha_avx2_load8(BT, mha_kv_at(BT, br[j], p));
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const __m256 av = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 3
        for (size_t j = 0; j < NJ; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
      }
      if (mca) MHA_MCA_END("f32_gemm_nt_4x1__avx2.kstep");
    }
    if (p < k) { /* the k tail, once: masked loads read nothing past the rows */
      const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k - p)), lanes);
      __m256 bv[NJ];
#pragma GCC unroll 3
      for (size_t j = 0; j < NJ; j++)
        bv[j] = mha_avx2_load_part(BT, mha_kv_at(BT, br[j], p), k - p, mk);
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

/* C[m×n] = A[m×k]·B[n×k]ᵀ, any m: 4 rows at a time, then 3, 2 or 1 */
static inline __attribute__((always_inline)) void mha_gemm_nt_avx2(const int BT, size_t m, size_t n,
                                                                   size_t k, const float* a,
                                                                   size_t lda, const void* b,
                                                                   size_t ldb, float* c,
                                                                   size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4)
    mha_gemm_nt_rows_avx2(4, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  switch (m - i0) {
    case 3:
      mha_gemm_nt_rows_avx2(3, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 2:
      mha_gemm_nt_rows_avx2(2, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 1:
      mha_gemm_nt_rows_avx2(1, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    default:
      break;
  }
}

#endif
