/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows (no transpose
 * of B), for few-row tiles such as decode, where the rows of B (keys) are
 * read once. Any m and n: up to 4 rows (a compile-time count) × 1 key at a
 * time (each key row read whole, in address order), the k tail masked. The core is shared
 * with the K/V cache kernels: f32-gemm-nt-4x1-avx512f.h.
 * Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-nt-4x1-avx512f.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_4x1__avx512f(size_t m, size_t n, size_t k, const float* a,
                                          size_t lda, const float* b, size_t ldb, float* c,
                                          size_t ldc) {
  mha_gemm_nt_avx512f(MHA_KV_F32, m, n, k, a, lda, b, ldb, c, ldc);
}
