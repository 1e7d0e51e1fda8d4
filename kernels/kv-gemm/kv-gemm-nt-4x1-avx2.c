/* C[m×n] = A[m×k]·B[n×k]ᵀ with B's rows in 16 bits (f16, bf16: keys of a K
 * cache), any m and n: the avx2 dot-product kernel's own core
 * (f32-gemm/f32-gemm-nt-4x1-avx2.h) with B widened exactly as it is loaded, so the
 * result is bitwise mha_f32_gemm_nt_ukernel_4x1__avx2 on the widened rows.
 * Compiled with -mavx2 -mfma -mf16c. */
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-nt-4x1-avx2.h"
#include "kv-gemm/kv-gemm.h"

void mha_f16_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const uint16_t* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_avx2(MHA_KV_F16, m, n, k, a, lda, b, ldb, c, ldc);
}

void mha_bf16_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const uint16_t* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_avx2(MHA_KV_BF16, m, n, k, a, lda, b, ldb, c, ldc);
}
