/*
 * The P·V kernel's driver, written once for the x86 ISAs (AVX2, AVX-512F):
 * C[m×n] += A[m×k]·B[k×n] with row p of B at b + p·ldb (a contiguous cache)
 * or at brows[p] (the value rows of a paged K/V cache, anywhere in memory),
 * fp32 or 16-bit (f16, bf16) rows, any m and n. Rows go in groups of at most
 * MHA_PV_GROUP <= 4 (decode's query head groups; a 4-row group keeps the
 * compile time of the instances small), each
 * over full columns in wide tiles, then the rest of the columns by the ISA's
 * GEMM micro-kernel core at that many rows. Every tiling runs the f32
 * kernel's operations per element with accumulate = 1 (acc = 0, one fma per
 * p in order, then acc + C), so the result is bitwise that kernel's on the
 * widened rows packed together.
 *
 * The including file (kv-gemm-pv-<MR>x<NR>-<isa>.c, compiled with its ISA's
 * flags) defines first, for its ISA:
 *   mha_pv_vec                the vector type of MHA_PV_LANES floats
 *   MHA_PV_LANES, MHA_PV_NR   lanes per vector; the core's tile columns
 *   MHA_PV_GROUP              rows per group (at most 4; AVX-512: 2)
 *   MHA_PV_NV1 .. MHA_PV_NV4  vectors per wide tile for 1 .. 4 rows
 *   MHA_PV_PRELOAD            1: a wide tile loads a k step's NV vectors of
 *                             B first, then runs the rows (enough registers:
 *                             AVX-512's 32); 0: vector by vector, one B
 *                             register live (AVX2's 16 hold MR·NV <= 12
 *                             accumulators and little else)
 *   mha_pv_zero, mha_pv_load (BT, p), mha_pv_fma (a, b, acc) = a·b + acc,
 *   mha_pv_add_store (c, acc): c[0..LANES) = acc + c
 *   mha_pv_rows (M, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc):
 *                             the core's tile of
 *                             M rows × n <= MHA_PV_NR columns
 * NEON's kernel is written apart (kv-gemm-pv-8x12-neon.c): its core has 8
 * rows and tiles columns outside rows, with a lane-indexed fma.
 */
#ifndef MHA_KERNELS_KV_GEMM_PV_X86_H
#define MHA_KERNELS_KV_GEMM_PV_X86_H

#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-load.h"

/* One tile: m <= 4 rows (each count its own compile-time instance of the
 * core) × n <= MHA_PV_NR columns from column j0 of the rows */
static inline __attribute__((always_inline)) void mha_gemm_pv_tile(const int BT, const int PAGED, size_t m,
                                                                  size_t n, size_t k, const float* a, size_t lda,
                                                                  const void* b, size_t ldb, const void* brows,
                                                                  size_t j0, float* c, size_t ldc) {
  switch (m) {
    case 4: mha_pv_rows(4, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc); break;
    case 3: mha_pv_rows(3, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc); break;
    case 2: mha_pv_rows(2, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc); break;
    default: mha_pv_rows(1, BT, PAGED, n, k, a, lda, b, ldb, brows, j0, c, ldc); break;
  }
}

/* Decode's tile: m = MR <= 4 rows (a query head group) × LANES·NV full
 * columns, so that each k step reads NV whole vectors of row p at once (in
 * address order) instead of NR columns per pass over all k rows. */
static inline __attribute__((always_inline)) void mha_gemm_pv_wide(const size_t MR, const size_t NV, const int BT,
                                                                  const int PAGED, size_t k, const float* a,
                                                                  size_t lda, const void* b, size_t ldb,
                                                                  const void* brows, size_t j0, float* c,
                                                                  size_t ldc) {
  mha_pv_vec acc[4][8];
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (size_t v = 0; v < NV; v++) acc[i][v] = mha_pv_zero();
#pragma GCC unroll 1
  for (size_t p = 0; p < k; p++) {
    const void* bp = mha_kv_src_row(BT, PAGED, b, ldb, brows, p, j0);
    if (MHA_PV_PRELOAD) {
      mha_pv_vec bv[8];
#pragma GCC unroll 8
      for (size_t v = 0; v < NV; v++) bv[v] = mha_pv_load(BT, mha_kv_at(BT, bp, MHA_PV_LANES * v));
#pragma GCC unroll 4
      for (size_t i = 0; i < MR; i++) {
#pragma GCC unroll 8
        for (size_t v = 0; v < NV; v++) acc[i][v] = mha_pv_fma(a[i * lda + p], bv[v], acc[i][v]);
      }
    } else {
#pragma GCC unroll 8
      for (size_t v = 0; v < NV; v++) {
        const mha_pv_vec bv = mha_pv_load(BT, mha_kv_at(BT, bp, MHA_PV_LANES * v));
#pragma GCC unroll 4
        for (size_t i = 0; i < MR; i++) acc[i][v] = mha_pv_fma(a[i * lda + p], bv, acc[i][v]);
      }
    }
  }
#pragma GCC unroll 4
  for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (size_t v = 0; v < NV; v++) mha_pv_add_store(c + i * ldc + MHA_PV_LANES * v, acc[i][v]);
}

/* Wide tiles of MR rows over columns [jw, n): NV vectors at a time, then
 * NV/2, so that a row of 2·LANES·NV/2 columns (Dv 64 on AVX-512) is still
 * read whole; returns where the wide tiles stopped */
static inline __attribute__((always_inline)) size_t mha_gemm_pv_wide_cols(const size_t MR, const size_t NV,
                                                                         const int BT, const int PAGED, size_t n,
                                                                         size_t k, const float* a, size_t lda,
                                                                         const void* b, size_t ldb,
                                                                         const void* brows, float* c,
                                                                         size_t ldc) {
  size_t jw = 0;
  for (; jw + MHA_PV_LANES * NV <= n; jw += MHA_PV_LANES * NV)
    mha_gemm_pv_wide(MR, NV, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc);
  if (NV / 2 >= 2) {
    for (; jw + MHA_PV_LANES * (NV / 2) <= n; jw += MHA_PV_LANES * (NV / 2))
      mha_gemm_pv_wide(MR, NV / 2, BT, PAGED, k, a, lda, b, ldb, brows, jw, c + jw, ldc);
  }
  return jw;
}

/* Rows go in groups of MHA_PV_GROUP (at most 4): AVX-512 takes pairs, whose
 * 2×128 tiles read each V row whole in address order (a 4×64 tile reads
 * half rows in two passes, which the hardware prefetchers stream worse), the
 * second pair from L1/L2. */
static inline __attribute__((always_inline)) void mha_gemm_pv_rows_x86(const int BT, const int PAGED, size_t m,
                                                                      size_t n, size_t k, const float* a,
                                                                      size_t lda, const void* b, size_t ldb,
                                                                      const void* brows, float* c, size_t ldc) {
  for (size_t i0 = 0; i0 < m; i0 += MHA_PV_GROUP) {
    const size_t mi = m - i0 < MHA_PV_GROUP ? m - i0 : MHA_PV_GROUP;
    const float* ai = a + i0 * lda;
    float* ci = c + i0 * ldc;
    size_t jw = 0;
    switch (mi) {
      case 1: jw = mha_gemm_pv_wide_cols(1, MHA_PV_NV1, BT, PAGED, n, k, ai, lda, b, ldb, brows, ci, ldc); break;
      case 2: jw = mha_gemm_pv_wide_cols(2, MHA_PV_NV2, BT, PAGED, n, k, ai, lda, b, ldb, brows, ci, ldc); break;
      case 3: jw = mha_gemm_pv_wide_cols(3, MHA_PV_NV3, BT, PAGED, n, k, ai, lda, b, ldb, brows, ci, ldc); break;
      default: jw = mha_gemm_pv_wide_cols(4, MHA_PV_NV4, BT, PAGED, n, k, ai, lda, b, ldb, brows, ci, ldc); break;
    }
    for (size_t j0 = jw; j0 < n; j0 += MHA_PV_NR) {
      const size_t nj = n - j0 < MHA_PV_NR ? n - j0 : MHA_PV_NR;
      mha_gemm_pv_tile(BT, PAGED, mi, nj, k, ai, lda, b, ldb, brows, j0, ci + j0, ldc);
    }
  }
}

/* b, ldb: strided rows (brows NULL); brows: a const float* const* (BT fp32)
 * or a const uint16_t* const* of row pointers */
static inline __attribute__((always_inline)) void mha_gemm_pv(const int BT, size_t m, size_t n, size_t k,
                                                             const float* a, size_t lda, const void* b,
                                                             size_t ldb, const void* brows, float* c,
                                                             size_t ldc) {
  if (brows != NULL) {
    mha_gemm_pv_rows_x86(BT, 1, m, n, k, a, lda, NULL, 0, brows, c, ldc);
  } else {
    mha_gemm_pv_rows_x86(BT, 0, m, n, k, a, lda, b, ldb, NULL, c, ldc);
  }
}

#endif
