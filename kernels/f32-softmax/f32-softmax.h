/* Online-softmax row kernels and vector helpers, one set per ISA, in base 2
 * (contracts: config/kernels.h, kernels/README.md). */
#ifndef MHA_KERNELS_F32_SOFTMAX_H
#define MHA_KERNELS_F32_SOFTMAX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "config/kernels.h" /* MHA_LOG2E_F, mha_f32_softmax_online_row_fn */

/* The scalar parts every ISA's step shares (plain C: the same operations, so
 * the same bits, whatever the file's -m flags). */

/* A row that saw no visible key in this block either (m' = −inf): zeros and
 * alpha 1, unless a NaN hides among the -infs (max skips NaN lanes), which
 * the step then lets through exp2 into p and l. Rare: a scan. */
static inline int mha_row_has_nan(const float* s, size_t n) {
  for (size_t j = 0; j < n; j++) {
    if (isnan(s[j])) return 1;
  }
  return 0;
}

/* the running max moved: the one scalar exp2 of the step (none when it did not) */
static inline float mha_step_alpha(float m_old, float m_new) {
  return m_new == m_old ? 1.0f : exp2f(m_old - m_new);
}

/* l·alpha + sum: one expression for every path, so one rounding (whatever
 * the compiler's contraction) */
static inline float mha_step_l(float l, float alpha, float sum) { return l * alpha + sum; }

/* The end of a row step: alpha, then l and m; returns alpha. */
static inline float mha_row_finish(float m_old, float m_new, float sum, float* m, float* l) {
  const float alpha = mha_step_alpha(m_old, m_new);
  *l = mha_step_l(*l, alpha, sum);
  *m = m_new;
  return alpha;
}

/* The tile step as the row step on each row (config/kernels.h asks exactly
 * these bits): the scalar and NEON tile kernels, and the x86 ones where n is
 * not a whole number of vectors. */
static inline void mha_softmax_tile_by_rows(mha_f32_softmax_online_row_fn row_step, size_t rows, size_t n,
                                            float* s, size_t lds, float* m, float* l, float* alpha) {
  for (size_t r = 0; r < rows; r++) alpha[r] = row_step(n, n, s + r * lds, 1.0f, NULL, &m[r], &l[r]);
}

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
void mha_f32_softmax_online_tile_t__avx2(size_t rows, size_t n, float* st, size_t ldst, float* m, float* l,
                                         float* alpha);
void mha_f32_vscale__avx2(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__avx2(size_t n, float* x, float c, float alpha);

float mha_f32_softmax_online_row__avx512f(size_t n, size_t n_valid, float* s, float scale,
                                          const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__avx512f(size_t rows, size_t n, float* s, size_t lds, float* m,
                                            float* l, float* alpha);
void mha_f32_softmax_online_tile_t__avx512f(size_t rows, size_t n, float* st, size_t ldst, float* m,
                                            float* l, float* alpha);
void mha_f32_vscale__avx512f(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__avx512f(size_t n, float* x, float c, float alpha);
void mha_f32_softmax_online_tile_pack__avx512bf16(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                                   float* alpha, uint16_t* pb);

float mha_f32_softmax_online_row__neon(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l);
void mha_f32_softmax_online_tile__neon(size_t rows, size_t n, float* s, size_t lds, float* m,
                                         float* l, float* alpha);
void mha_f32_vscale__neon(size_t n, float* x, float alpha);
void mha_f32_vexp2_scale__neon(size_t n, float* x, float c, float alpha);
void mha_f32_softmax_online_tile_pack__neon(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                            float* alpha, uint16_t* pb);

#endif
