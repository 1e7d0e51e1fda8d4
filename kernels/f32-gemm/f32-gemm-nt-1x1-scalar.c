/* C[m×n] = A[m×k]·B[n×k]ᵀ: plain dot products, the portable reference
 * (compiled with -fno-tree-vectorize). The core is shared with the K/V cache
 * kernels: f32-gemm-nt-1x1-scalar.h. */
#include <stddef.h>

#include "f32-gemm/f32-gemm-nt-1x1-scalar.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_1x1__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const float* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_scalar(MHA_KV_F32, m, n, k, a, lda, b, ldb, c, ldc);
}
