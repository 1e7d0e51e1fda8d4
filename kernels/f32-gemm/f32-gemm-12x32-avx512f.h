/*
 * The core of the AVX-512F 12×32 GEMM tile, shared by the f32 micro-kernel
 * (f32-gemm-12x32-avx512f.c) and the K/V cache kernels gemm_pv_{f32,f16,bf16}
 * (kv-gemm/kv-gemm-pv-12x32-avx512f.c): one always_inline function whose
 * element type of B (BT), row addressing of B (PAGED: row p at brows[p] + j0,
 * else b + p·ldb) and layout of A (AT: A[i][p] at a[p·lda + i], A stored
 * transposed, else a[i·lda + p]) are compile-time arguments. Every instance runs the same
 * arithmetic per element (k FMAs in order from zero, then C added once), so
 * a 16-bit or paged instance gives bitwise the f32 kernel's result on the
 * widened rows.
 *   12x32: 24 acc + 2 B + 1 broadcast A = 27/32 zmm.
 * Columns past n are masked on load and store (16-bit B: a plain load for a
 * full vector, 32-bit pairs for a partial one), so nothing outside the
 * operands is touched. Included by files compiled with -mavx512f -mfma.
 */
#ifndef MHA_KERNELS_F32_GEMM_12X32_AVX512F_H
#define MHA_KERNELS_F32_GEMM_12X32_AVX512F_H

#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "kv-gemm/kv-load-avx512f.h"

/* C[MR×n] (+)= A[MR×k]·B[k×n], 1 <= n <= 32; MR, AT, BT and PAGED compile-time.
 * A transposed (AT) is what a packed A panel is (one pointer, the k step's
 * MR values side by side): the broadcasts read one or two lines per step
 * instead of MR, and no register holds a row pointer (Emerald Rapids, in L1,
 * k = 64: 1.05x the row-major form). */
static inline __attribute__((always_inline)) void mha_gemm_rows_avx512f(
    const size_t MR, const int AT, const int BT, const int PAGED, size_t n, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc, int accumulate) {
  /* the f32 kernels' full tile */
  const int mca = BT == MHA_KV_F32 && !PAGED && MR == 12 && !AT, mca_at = BT == MHA_KV_F32 && !PAGED && MR == 12 && AT;
  const __mmask16 mask0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
  const __mmask16 mask1 = n >= 32   ? (__mmask16)0xFFFF
                          : n <= 16 ? 0
                                    : (__mmask16)((1u << (n - 16)) - 1u);
  const size_t n0 = n >= 16 ? 16 : n, n1 = n >= 32 ? 16 : n <= 16 ? 0 : n - 16;
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
      if (mca) MHA_MCA_BEGIN("f32_gemm_12x32__avx512f.kstep");
      if (mca_at) MHA_MCA_BEGIN("f32_gemm_at_12x32__avx512f.kstep");
      const void* bp = PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
      const __m512 b0 = mha_avx512f_load16(BT, bp);
      const __m512 b1 = mha_avx512f_load16(BT, mha_kv_at(BT, bp, 16));
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(AT ? a[p * lda + i] : a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
      if (mca) MHA_MCA_END("f32_gemm_12x32__avx512f.kstep");
      if (mca_at) MHA_MCA_END("f32_gemm_at_12x32__avx512f.kstep");
    }
  } else if (n <= 16) {
    /* one vector of columns: no FMAs on the empty second (a 48-row
     * transposed score tile is a panel of 32 and one of 16) */
    for (size_t p = 0; p < k; p++) {
      const void* bp = PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
      const __m512 b0 = mha_avx512f_load_part(BT, bp, n0, mask0);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        acc0[i] = _mm512_fmadd_ps(_mm512_set1_ps(AT ? a[p * lda + i] : a[i * lda + p]), b0, acc0[i]);
      }
    }
  } else {
    for (size_t p = 0; p < k; p++) {
      const void* bp = PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
      const __m512 b0 = mha_avx512f_load_part(BT, bp, n0, mask0);
      const __m512 b1 = mha_avx512f_load_part(BT, mha_kv_at(BT, bp, 16), n1, mask1);
#pragma GCC unroll 12
      for (size_t i = 0; i < MR; i++) {
        const __m512 ai = _mm512_set1_ps(AT ? a[p * lda + i] : a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
  if (mca) MHA_MCA_BEGIN("f32_gemm_12x32__avx512f.store");
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
  if (mca) MHA_MCA_END("f32_gemm_12x32__avx512f.store");
}

#endif
