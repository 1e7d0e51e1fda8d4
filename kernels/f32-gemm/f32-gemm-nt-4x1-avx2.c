/* C[m×n] = A[m×k]·B[n×k]ᵀ: dot products of A rows with B rows, for few-row
 * tiles such as decode. Any m and n: up to 4 rows (a compile-time count) ×
 * 1 key at a time, each key row read whole in address order (decode reads
 * every key from DRAM once; the prefetchers stream rows read in order, not
 * 3 rows interleaved line by line: MHA decode from DRAM 1.4× faster on
 * Zen 4 with the AVX2 set); full 8-float vectors with plain loads, the k
 * tail (if any) with one masked load per row, once.
 *   4x1: 4 acc + 1 B + 1 A = 6/16 ymm.
 * Per k step of 8 floats: 4 FMA (2 ports: 2 cycles) vs 5 loads (2 ports of
 * 256 bits: 2.5 cycles): bound by the loads in L1 (the rows of A are reloaded
 * per key), by the bytes of K from DRAM. The core is shared with the K/V cache kernels:
 * f32-gemm-nt-4x1-avx2.h. Compiled with -mavx2 -mfma -mf16c. */
#include <immintrin.h>
#include <stddef.h>

#include "f32-gemm/f32-gemm-nt-4x1-avx2.h"
#include "f32-gemm/f32-gemm.h"

void mha_f32_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc) {
  mha_gemm_nt_avx2(MHA_KV_F32, m, n, k, a, lda, b, ldb, c, ldc);
}
