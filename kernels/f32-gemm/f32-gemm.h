/* GEMM micro-kernels, one per ISA and tile (contract: config/kernels.h, kernels/README.md). */
#ifndef MHA_KERNELS_F32_GEMM_H
#define MHA_KERNELS_F32_GEMM_H

#include <stddef.h>

void mha_f32_gemm_ukernel_4x8__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                      const float* b, size_t ldb, float* c, size_t ldc,
                                      int accumulate);
void mha_f32_gemm_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate);
void mha_f32_gemm_at_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const float* b, size_t ldb, float* c, size_t ldc,
                                        int accumulate);
void mha_f32_gemm_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a,
                                         size_t lda, const float* b, size_t ldb, float* c,
                                         size_t ldc, int accumulate);
void mha_f32_gemm_at_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a,
                                            size_t lda, const float* b, size_t ldb, float* c,
                                            size_t ldc, int accumulate);
void mha_f32_gemm_ukernel_8x12__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                     const float* b, size_t ldb, float* c, size_t ldc,
                                     int accumulate);

/* C[m×n] = A[m×k]·B[n×k]ᵀ (any m, n): dot products of rows, for few-row tiles */
void mha_f32_gemm_nt_ukernel_1x1__scalar(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                         const float* b, size_t ldb, float* c, size_t ldc);
void mha_f32_gemm_nt_ukernel_4x1__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc);
void mha_f32_gemm_nt_ukernel_4x1__avx512f(size_t m, size_t n, size_t k, const float* a,
                                          size_t lda, const float* b, size_t ldb, float* c,
                                          size_t ldc);
void mha_f32_gemm_nt_ukernel_4x4__neon(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                       const float* b, size_t ldb, float* c, size_t ldc);

#endif
