/* C[m×n] (+)= A[m×k]·B[k×n], m <= 4, n <= 8: the portable reference tile.
 * Compiled with -fno-tree-vectorize: it stays scalar code. */
#include <stddef.h>

#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                      const float* b, size_t ldb, float* c, size_t ldc,
                                      int accumulate) {
  float acc[4][8] = {{0.0f}};
  for (size_t p = 0; p < k; p++) {
    const float* brow = b + p * ldb;
    for (size_t i = 0; i < m; i++) {
      const float ai = a[i * lda + p];
      for (size_t j = 0; j < n; j++) acc[i][j] += ai * brow[j];
    }
  }
  for (size_t i = 0; i < m; i++) {
    float* crow = c + i * ldc;
    for (size_t j = 0; j < n; j++) crow[j] = accumulate ? crow[j] + acc[i][j] : acc[i][j];
  }
}
