/* K/V cache kernels, one set per ISA (contracts: config/kernels.h,
 * kernels/README.md): dot products against 16-bit key rows (gemm_nt_*),
 * P·V with the value rows through pointers (gemm_pv_*), exact widening
 * (widen_*) and its inverse, rounding to 16 bits (narrow_*). Each mirrors its ISA's f32 kernel operation for operation: the
 * two share one core (the f32-gemm/ headers). */
#ifndef MHA_KERNELS_KV_GEMM_H
#define MHA_KERNELS_KV_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* C[m×n] = A[m×k]·B[n×k]ᵀ, B's rows 16-bit (any m, n >= 1, k >= 1) */
void mha_f16_gemm_nt_ukernel_1x1__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_bf16_gemm_nt_ukernel_1x1__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                          const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_f16_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_bf16_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_f16_gemm_nt_ukernel_4x1__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                          const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_bf16_gemm_nt_ukernel_4x1__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                           const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_f16_gemm_nt_ukernel_4x4__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const uint16_t* b, size_t ldb, float* c, size_t ldc);
void mha_bf16_gemm_nt_ukernel_4x4__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const uint16_t* b, size_t ldb, float* c, size_t ldc);

/* C[m×n] += A[m×k]·B[k×n], row p of B at brows[p], or at b + p·ldb when
 * brows is NULL (any m, n >= 1, k >= 1; tiled by the ISA's gemm tile) */
void mha_f32_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc);
void mha_f16_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_bf16_gemm_pv_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_f32_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc);
void mha_f16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_bf16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_f32_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc);
void mha_f16_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_bf16_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_f32_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc);
void mha_f16_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);
void mha_bf16_gemm_pv_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc);

/* y[0..n) = x[0..n) widened to fp32, exactly */
void mha_f16_widen__scalar(size_t n, const uint16_t* x, float* y);
void mha_bf16_widen__scalar(size_t n, const uint16_t* x, float* y);
void mha_f16_widen__avx2(size_t n, const uint16_t* x, float* y);
void mha_bf16_widen__avx2(size_t n, const uint16_t* x, float* y);
void mha_f16_widen__avx512f(size_t n, const uint16_t* x, float* y);
void mha_bf16_widen__avx512f(size_t n, const uint16_t* x, float* y);
void mha_f16_widen__neon(size_t n, const uint16_t* x, float* y);
void mha_bf16_widen__neon(size_t n, const uint16_t* x, float* y);

/* y[0..n) = (float)x[0..n) · scale: an int8 cache row dequantized, one
 * rounding per value (the same bits on every set) */
void mha_i8_dequant__scalar(size_t n, const int8_t* x, float scale, float* y);
void mha_i8_dequant__avx2(size_t n, const int8_t* x, float scale, float* y);
void mha_i8_dequant__avx512f(size_t n, const int8_t* x, float scale, float* y);
void mha_i8_dequant__neon(size_t n, const int8_t* x, float scale, float* y);

/* y[0..n) = x[0..n) rounded to f16 / bf16, bitwise kv-convert.h's
 * mha_f32_to_f16 / mha_f32_to_bf16 */
void mha_f16_narrow__scalar(size_t n, const float* x, uint16_t* y);
void mha_bf16_narrow__scalar(size_t n, const float* x, uint16_t* y);
void mha_f16_narrow__avx2(size_t n, const float* x, uint16_t* y);
void mha_bf16_narrow__avx2(size_t n, const float* x, uint16_t* y);
void mha_f16_narrow__avx512f(size_t n, const float* x, uint16_t* y);
void mha_bf16_narrow__avx512f(size_t n, const float* x, uint16_t* y);
void mha_f16_narrow__neon(size_t n, const float* x, uint16_t* y);
void mha_bf16_narrow__neon(size_t n, const float* x, uint16_t* y);

#endif
