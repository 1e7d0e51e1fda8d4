/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows, for few-row
 * tiles such as decode. Any m and n: up to 4 rows (a compile-time count) ×
 * 3 keys at a time; full 8-float vectors with plain loads, the k tail (if
 * any) with one masked load per row, once.
 *   4x3: 12 acc + 3 B + 1 A = 16/16 ymm (a 4x4 tile needs 21 and spills:
 *   llvm-mca predicted 16-20 cycles per k step against an FMA bound of 8).
 * Per k step of 8 floats: 12 FMA (2 ports: 6 cycles) vs 7 loads (2-3 ports:
 * <= 3.5 cycles): FMA-bound at 4 rows; one row (MHA decode) is bound by the
 * bytes of K. The core is shared with the K/V cache kernels:
 * f32-gemm-nt-4x3-avx2.h. Compiled with -mavx2 -mfma -mf16c. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-nt-4x3-avx2.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_4x3__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_avx2(MHA_KV_F32, m, n, k, a, lda, b, ldb, c, ldc);
}
