/* C[m×n] = A[m×k]·B[n×k]ᵀ: plain dot products, the portable reference
 * (compiled with -fno-tree-vectorize). */
#include <stddef.h>

#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_1x1__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const float* b, size_t ldb, float* c, size_t ldc) {
  for (size_t i = 0; i < m; i++) {
    for (size_t j = 0; j < n; j++) {
      float acc = 0.0f;
      for (size_t p = 0; p < k; p++) acc += a[i * lda + p] * b[j * ldb + p];
      c[i * ldc + j] = acc;
    }
  }
}
