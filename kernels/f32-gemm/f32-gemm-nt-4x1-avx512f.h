/*
 * The core of the AVX-512F dot-product kernel (up to 4 rows × 1 key), shared
 * by the f32 kernel (f32-gemm-nt-4x1-avx512f.c) and the K/V cache kernels
 * gemm_nt_{f16,bf16} (kv-gemm/kv-gemm-nt-4x1-avx512f.c): the element type
 * of B (BT) is a compile-time argument and only B's loads depend on it (16
 * bits widened in registers; the k tail as 32-bit pairs, AVX-512F having no
 * 16-bit masked loads), so a 16-bit instance gives bitwise the f32 kernel's
 * result on the widened rows.
 *
 * One key at a time: its row is read once, whole, in address order, against
 * the (L1-resident) rows of A. Decode reads every key from DRAM once, and
 * the hardware prefetchers stream a row read in order; a tile of 4 keys
 * interleaves 4 rows line by line, which they stream about half as fast (a
 * K pass of a decode from DRAM on Zen 4: 12–14 GB/s against 19–24 for the
 * same bytes in order). Each score is one accumulator, fma over k in order,
 * then a horizontal sum: the same operations per score as the 4-key tile.
 *   4x1: 4 acc + 1 B + 1 A = 6/32 zmm.
 * Included by files compiled with -mavx512f -mfma.
 */
#ifndef MHA_KERNELS_F32_GEMM_NT_4X1_AVX512F_H
#define MHA_KERNELS_F32_GEMM_NT_4X1_AVX512F_H

#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "kv-gemm/kv-load-avx512f.h"

/* rows [0, MI) of A against keys [0, n) of B; MI and BT are compile-time constants */
static inline __attribute__((always_inline)) void mha_gemm_nt_rows_avx512f(
    const size_t MI, const int BT, size_t n, size_t k, const float* a, size_t lda, const void* b,
    size_t ldb, float* c, size_t ldc) {
  const int mca = BT == MHA_KV_F32 && MI == 4; /* the f32 kernel's full tile */
  for (size_t j = 0; j < n; j++) {
    const void* br = mha_kv_at(BT, b, j * ldb);
    __m512 acc[4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++) acc[i] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + 16 <= k; p += 16) { /* full vectors: no mask to build per step */
      if (mca) MHA_MCA_BEGIN("f32_gemm_nt_4x1__avx512f.kstep");
      const __m512 bv = mha_avx512f_load16(BT, mha_kv_at(BT, br, p));
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i * lda + p), bv, acc[i]);
      if (mca) MHA_MCA_END("f32_gemm_nt_4x1__avx512f.kstep");
    }
    if (p < k) { /* the k tail, masked (zero lanes add zero products) */
      const __mmask16 mk = (__mmask16)((1u << (k - p)) - 1u);
      const __m512 bv = mha_avx512f_load_part(BT, mha_kv_at(BT, br, p), k - p, mk);
#pragma GCC unroll 4
      for (size_t i = 0; i < MI; i++) acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i * lda + p), bv, acc[i]);
    }
#pragma GCC unroll 4
    for (size_t i = 0; i < MI; i++) c[i * ldc + j] = _mm512_reduce_add_ps(acc[i]);
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
