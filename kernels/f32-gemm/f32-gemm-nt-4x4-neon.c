/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows, for few-row
 * tiles such as decode. Any m and n: up to 4 rows (a compile-time count) ×
 * 4 keys at a time; full 4-float vectors with plain loads, the k tail (if
 * any) once, lane by lane into zeroed vectors, so nothing past a row is read.
 *   4x4: 16 acc + 4 B + 1 A = 21/32 q regs.
 * Per k step of 4 floats: 16 FMLA (2 pipes on Neoverse N1: 8 cycles; 4 on
 * V1, V2, Apple M1: 4) vs 8 LDR Q (2-3 load pipes: <= 4 cycles): FMA-bound
 * at 4 rows; one row (MHA decode) is bound by the bytes of K.
 * Every row and key gets the same arithmetic in every instance (lane sums
 * in k order, the tail added last, one pairwise reduction), so a result does
 * not depend on m, n or the position of the row or key in the call. The
 * core is shared with the K/V cache kernels: f32-gemm-nt-4x4-neon.h. */
#include <arm_neon.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-nt-4x4-neon.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_4x4__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_neon(MHA_KV_F32, m, n, k, a, lda, b, ldb, c, ldc);
}
