/* C[m×n] (+)= A[m×k]·B[k×n], m <= 8, n <= 12: the AArch64 Advanced SIMD tile.
 *   8x12: 24 acc + 3 B + 2 A = 29/32 q regs (v0-v31).
 * A is broadcast one element at a time: a scalar load (LDR S, a load-pipe op
 * only) feeding FMLA by element, lane 0 (vfmaq_laneq_f32). Loading A 4 k at
 * a time would need the B rows of 4 k steps live (12 regs): it does not fit
 * beside 24 accumulators.
 * Each row count 1..8 is its own inlined instance (no wasted FMAs on short
 * tiles). Full vectors of 4 columns (n = 12, 8 or 4) use plain loads and
 * stores only; an edge with a partial vector loads and stores only its 1-3
 * columns, lane by lane, so nothing outside the operands is touched.
 * Budget per k step of the full tile: 24 FMLA (2 pipes on Neoverse N1: 12
 * cycles; 4 on V1, V2 and Apple M1: 6) vs 3 LDR Q + 8 LDR S (2-3 load pipes:
 * <= 5.5 cycles): FMA-bound on all four. The core is shared with the K/V
 * cache kernels: f32-gemm-8x12-neon.h. */
#include <arm_neon.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-8x12-neon.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate) {
  switch (m) {
    case 8: mha_gemm_rows_neon(8, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 7: mha_gemm_rows_neon(7, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 6: mha_gemm_rows_neon(6, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 5: mha_gemm_rows_neon(5, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 4: mha_gemm_rows_neon(4, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 3: mha_gemm_rows_neon(3, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    case 2: mha_gemm_rows_neon(2, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
    default: mha_gemm_rows_neon(1, MHA_KV_F32, 0, n, k, a, lda, b, ldb, NULL, 0, c, ldc, accumulate); break;
  }
}
