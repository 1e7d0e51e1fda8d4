/*
 * The core of the AVX2 + FMA 6×16 GEMM tile, shared by the f32 micro-kernel
 * (f32-gemm-6x16-avx2.c) and the K/V cache kernels gemm_pv_{f32,f16,bf16}
 * (kv-gemm/kv-gemm-pv-6x16-avx2.c): always_inline functions whose element
 * type of B (BT), row addressing of B (PAGED: row p at brows[p] + j0, else
 * b + p·ldb) and layout of A (AT: A[i][p] at a[p·lda + i], A transposed as
 * a packed panel is; else a[i·lda + p]) are compile-time arguments. Every instance runs the same
 * arithmetic per element (k FMAs in order from zero, then C added once), so
 * a 16-bit or paged instance gives bitwise the f32 kernel's result on the
 * widened rows.
 *   6x16: 12 acc + 2 B + 1 broadcast A = 15/16 ymm.
 * Included by files compiled with -mavx2 -mfma -mf16c.
 */
#ifndef MHA_KERNELS_F32_GEMM_6X16_AVX2_H
#define MHA_KERNELS_F32_GEMM_6X16_AVX2_H

#include <immintrin.h>
#include <stddef.h>

#include "config/mca-markers.h"
#include "kv-gemm/kv-load-avx2.h"

static inline __attribute__((always_inline)) __m256i mha_avx2_tail_mask(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
}

/* row p of B */
static inline __attribute__((always_inline)) const void* mha_gemm_brow_avx2(
    const int BT, const int PAGED, const void* b, size_t ldb, const void* brows, size_t j0,
    size_t p) {
  return PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
}

/* The full tile, n == 16: plain loads and stores only. Per k step: 2 B
 * loads + MR broadcasts (load ports), 2·MR FMAs (2 FMA ports on Zen 2-5 and
 * Intel client/server cores): FMA-bound at MR = 6. */
static inline __attribute__((always_inline)) void mha_gemm_full_avx2(
    const size_t MR, const int AT, const int BT, const int PAGED, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc, int accumulate) {
  /* the f32 kernels' full tile */
  const int mca = BT == MHA_KV_F32 && !PAGED && MR == 6 && !AT, mca_at = BT == MHA_KV_F32 && !PAGED && MR == 6 && AT;
  __m256 acc0[6], acc1[6];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    /* C is read (accumulate) and written only after the k loop: fetch it now */
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (size_t p = 0; p < k; p++) {
    if (mca) MHA_MCA_BEGIN("f32_gemm_6x16__avx2.kstep");
    if (mca_at) MHA_MCA_BEGIN("f32_gemm_at_6x16__avx2.kstep");
    const void* bp = mha_gemm_brow_avx2(BT, PAGED, b, ldb, brows, j0, p);
    const __m256 b0 = mha_avx2_load8(BT, bp);
    const __m256 b1 = mha_avx2_load8(BT, mha_kv_at(BT, bp, 8));
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
      const __m256 ai = _mm256_broadcast_ss(AT ? a + p * lda + i : a + i * lda + p);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    if (mca) MHA_MCA_END("f32_gemm_6x16__avx2.kstep");
    if (mca_at) MHA_MCA_END("f32_gemm_at_6x16__avx2.kstep");
  }
  if (mca) MHA_MCA_BEGIN("f32_gemm_6x16__avx2.store");
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
  if (mca) MHA_MCA_END("f32_gemm_6x16__avx2.store");
}

/* An edge tile, n < 16 (rare: the last columns of a projection or of an odd
 * Dv). Only the one partial vector is masked: a vmaskmovps store costs ~12
 * cycles on AMD Zen 2-4 (1 on Intel), so full vectors never go through it.
 * NV: vectors of 8 columns touched (1 or 2). A partial vector of 16-bit B is
 * loaded as 32-bit pairs (kv-load-avx2.h), never past column n. */
static inline __attribute__((always_inline)) void mha_gemm_edge_avx2(
    const size_t MR, const size_t NV, const int AT, const int BT, const int PAGED, size_t n, size_t k,
    const float* a, size_t lda, const void* b, size_t ldb, const void* brows, size_t j0, float* c,
    size_t ldc, int accumulate) {
  const size_t full = n / 8; /* vectors with all 8 columns: 0 or 1 */
  const __m256i tail = mha_avx2_tail_mask(n - 8 * full);
  __m256 acc0[6], acc1[6];
#pragma GCC unroll 6
  for (size_t i = 0; i < MR; i++) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (size_t p = 0; p < k; p++) {
    const void* bp = mha_gemm_brow_avx2(BT, PAGED, b, ldb, brows, j0, p);
    const __m256 b0 = full ? mha_avx2_load8(BT, bp) : mha_avx2_load_part(BT, bp, n, tail);
    const __m256 b1 =
        NV == 2 ? mha_avx2_load_part(BT, mha_kv_at(BT, bp, 8), n - 8, tail) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
      const __m256 ai = _mm256_broadcast_ss(AT ? a + p * lda + i : a + i * lda + p);
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

/* C[MR×n] (+)= A[MR×k]·B[k×n], 1 <= n <= 16; MR, AT, BT and PAGED compile-time */
static inline __attribute__((always_inline)) void mha_gemm_rows_avx2(
    const size_t MR, const int AT, const int BT, const int PAGED, size_t n, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc, int accumulate) {
  if (n == 16) {
    mha_gemm_full_avx2(MR, AT, BT, PAGED, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
  } else if (n > 8) {
    mha_gemm_edge_avx2(MR, 2, AT, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
  } else {
    mha_gemm_edge_avx2(MR, 1, AT, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc, accumulate);
  }
}

#endif
