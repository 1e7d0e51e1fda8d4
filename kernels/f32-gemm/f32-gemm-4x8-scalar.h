/*
 * The core of the scalar 4×8 GEMM tile, shared by the f32 micro-kernel
 * (f32-gemm-4x8-scalar.c) and the K/V cache kernels gemm_pv_{f32,f16,bf16}
 * (kv-gemm/kv-gemm-pv-4x8-scalar.c): the element type of B (BT) and the row
 * addressing (PAGED: row p at brows[p] + j0, else b + p·ldb) are
 * compile-time arguments; every instance runs the same arithmetic per
 * element (acc += a·b in k order from zero, then c + acc), so a 16-bit or
 * paged instance gives bitwise the f32 kernel's result on the widened rows.
 * Included by files compiled with -fno-tree-vectorize (they stay scalar).
 */
#ifndef MHA_KERNELS_F32_GEMM_4X8_SCALAR_H
#define MHA_KERNELS_F32_GEMM_4X8_SCALAR_H

#include <stddef.h>

#include "kv-gemm/kv-load.h"

/* C[m×n] (+)= A[m×k]·B[k×n], m <= 4, n <= 8; BT and PAGED compile-time */
static inline __attribute__((always_inline)) void mha_gemm_tile_scalar(
    const int BT, const int PAGED, size_t m, size_t n, size_t k, const float* a, size_t lda,
    const void* b, size_t ldb, const void* brows, size_t j0, float* c, size_t ldc, int accumulate) {
  float acc[4][8] = {{0.0f}};
  for (size_t p = 0; p < k; p++) {
    const void* brow = PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb);
    for (size_t i = 0; i < m; i++) {
      const float ai = a[i * lda + p];
      for (size_t j = 0; j < n; j++) acc[i][j] += ai * mha_kv_load_scalar(BT, brow, j);
    }
  }
  for (size_t i = 0; i < m; i++) {
    float* crow = c + i * ldc;
    for (size_t j = 0; j < n; j++) crow[j] = accumulate ? crow[j] + acc[i][j] : acc[i][j];
  }
}

#endif
