/* C[m×n] (+)= A[m×k]·B[k×n], m <= 4, n <= 8: the portable reference tile.
 * Compiled with -fno-tree-vectorize: it stays scalar code. The core is
 * shared with the K/V cache kernels: f32-gemm-4x8-scalar.h. */
#include <stddef.h>

#include "f32-gemm/f32-gemm-4x8-scalar.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                      const float* b, size_t ldb, float* c, size_t ldc,
                                      int accumulate) {
  mha_gemm_tile_scalar(MHA_KV_F32, 0, m, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate);
}
