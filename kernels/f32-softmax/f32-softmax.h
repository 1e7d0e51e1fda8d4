/* Online-softmax row kernels and vector helpers, one set per ISA
 * (contracts: config/kernels.h, kernels/README.md). */
#ifndef MHA_KERNELS_F32_SOFTMAX_H
#define MHA_KERNELS_F32_SOFTMAX_H

#include <stddef.h>

float mha_f32_softmax_online_row__scalar(size_t n, size_t n_valid, float* s, float scale,
                                         const float* add, float* m, float* l);
void mha_f32_vscale__scalar(size_t n, float* x, float alpha);
void mha_f32_vexp_scale__scalar(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__avx2(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l);
void mha_f32_vscale__avx2(size_t n, float* x, float alpha);
void mha_f32_vexp_scale__avx2(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__avx512f(size_t n, size_t n_valid, float* s, float scale,
                                          const float* add, float* m, float* l);
void mha_f32_vscale__avx512f(size_t n, float* x, float alpha);
void mha_f32_vexp_scale__avx512f(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__neon(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l);
void mha_f32_vscale__neon(size_t n, float* x, float alpha);
void mha_f32_vexp_scale__neon(size_t n, float* x, float c, float alpha);

#endif
