/* Online-softmax row kernels and vector helpers, one set per ISA, in base 2
 * (contracts: config/kernels.h, kernels/README.md). */
#ifndef MHA_KERNELS_F32_SOFTMAX_H
#define MHA_KERNELS_F32_SOFTMAX_H

#include <stddef.h>

#include "config/kernels.h" /* MHA_LOG2E_F */

float mha_f32_softmax_online_row__scalar(size_t n, size_t n_valid, float* s, float scale,
                                         const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__scalar(size_t rows, size_t n, float* s, size_t lds, float* m,
                                           float* l, float* alpha);
void mha_f32_vscale__scalar(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__scalar(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__avx2(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__avx2(size_t rows, size_t n, float* s, size_t lds, float* m,
                                         float* l, float* alpha);
void mha_f32_vscale__avx2(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__avx2(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__avx512f(size_t n, size_t n_valid, float* s, float scale,
                                          const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__avx512f(size_t rows, size_t n, float* s, size_t lds, float* m,
                                            float* l, float* alpha);
void mha_f32_vscale__avx512f(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__avx512f(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__neon(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__neon(size_t rows, size_t n, float* s, size_t lds, float* m,
                                         float* l, float* alpha);
void mha_f32_vscale__neon(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__neon(size_t n, float* x, float c, float alpha);

#endif
