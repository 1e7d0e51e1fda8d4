/*
 * The core of the scalar dot-product kernel, shared by the f32 kernel
 * (f32-gemm-nt-1x1-scalar.c) and the K/V cache kernels gemm_nt_{f16,bf16}
 * (kv-gemm/kv-gemm-nt-1x1-scalar.c): the element type of B (BT) is a
 * compile-time argument and only B's loads depend on it (16 bits widened
 * exactly, kv-gemm/kv-convert.h), so a 16-bit instance gives bitwise the
 * f32 kernel's result on the widened rows.
 * Included by files compiled with -fno-tree-vectorize (they stay scalar).
 */
#ifndef MHA_KERNELS_F32_GEMM_NT_1X1_SCALAR_H
#define MHA_KERNELS_F32_GEMM_NT_1X1_SCALAR_H

#include <stddef.h>

#include "kv-gemm/kv-load.h"

/* C[m×n] = A[m×k]·B[n×k]ᵀ: plain dot products in k order; BT compile-time */
static inline __attribute__((always_inline)) void mha_gemm_nt_scalar(const int BT, size_t m,
                                                                     size_t n, size_t k,
                                                                     const float* a, size_t lda,
                                                                     const void* b, size_t ldb,
                                                                     float* c, size_t ldc) {
  for (size_t i = 0; i < m; i++) {
    for (size_t j = 0; j < n; j++) {
      float acc = 0.0f;
      for (size_t p = 0; p < k; p++) acc += a[i * lda + p] * mha_kv_load_scalar(BT, b, j * ldb + p);
      c[i * ldc + j] = acc;
    }
  }
}

#endif
