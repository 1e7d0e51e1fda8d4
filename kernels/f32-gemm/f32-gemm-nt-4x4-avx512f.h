/*
 * The core of the AVX-512F dot-product kernel (4 rows × 4 keys), shared by
 * the f32 kernel (f32-gemm-nt-4x4-avx512f.c) and the K/V cache kernels
 * gemm_nt_{f16,bf16} (kv-gemm/kv-gemm-nt-4x4-avx512f.c): the element type
 * of B (BT) is a compile-time argument and only B's loads depend on it (16
 * bits widened in registers; the k tail as 32-bit pairs, AVX-512F having no
 * 16-bit masked loads), so a 16-bit instance gives bitwise the f32 kernel's
 * result on the widened rows.
 *   4x4: 16 acc + 4 B + 1 A = 21/32 zmm.
 * Included by files compiled with -mavx512f -mfma.
 */
#ifndef MHA_KERNELS_F32_GEMM_NT_4X4_AVX512F_H
#define MHA_KERNELS_F32_GEMM_NT_4X4_AVX512F_H

#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "kv-gemm/kv-load-avx512f.h"

/* rows [0, MI) of A against keys [0, n) of B; MI and BT are compile-time constants */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_avx512f(
    const size_t MI, const int BT, size_t n, size_t k, const float* a, size_t lda, const void* b,
    size_t ldb, float* c, size_t ldc) {
  const int mca = BT == MHA_KV_F32 && MI == 4; /* the f32 kernel's full tile */
  for (size_t j0 = 0; j0 < n; j0 += 4) {
    const size_t nj = n - j0 < 4 ? n - j0 : 4;
    const void* br[4];
    for (size_t j = 0; j < 4; j++) br[j] = mha_kv_at(BT, b, (j0 + (j < nj ? j : nj - 1)) * ldb);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++)
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < k; p += 16) {
      if (mca) MHA_MCA_BEGIN("f32_gemm_nt_4x4__avx512f.kstep");
      const __mmask16 mk = k - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - p)) - 1u);
      __m512 bv[4];
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; j++)
        bv[j] = mha_avx512f_load_part(BT, mha_kv_at(BT, br[j], p), k - p, mk);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) {
        const __m512 av = _mm512_maskz_loadu_ps(mk, a + i * lda + p);
#pragma GCC unroll 4
        for (size_t j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
      }
      if (mca) MHA_MCA_END("f32_gemm_nt_4x4__avx512f.kstep");
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

/* C[m×n] = A[m×k]·B[n×k]ᵀ, any m: 4 rows at a time, then 3, 2 or 1 */
static inline __attribute__((always_inline)) void mha_gemm_nt_avx512f(const int BT, size_t m,
                                                                      size_t n, size_t k,
                                                                      const float* a, size_t lda,
                                                                      const void* b, size_t ldb,
                                                                      float* c, size_t ldc) {
  size_t i0 = 0;
  for (; i0 + 4 <= m; i0 += 4)
    mha_gemm_nt_rows_avx512f(4, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  switch (m - i0) {
    case 3:
      mha_gemm_nt_rows_avx512f(3, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 2:
      mha_gemm_nt_rows_avx512f(2, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    case 1:
      mha_gemm_nt_rows_avx512f(1, BT, n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
      break;
    default:
      break;
  }
}

#endif
