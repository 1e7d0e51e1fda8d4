/* Online softmax step over one row of a score tile, in base 2, and vector
 * helpers: the portable reference versions (compiled with
 * -fno-tree-vectorize), with glibc's exp2f. */
#include <math.h>
#include <stddef.h>

#include "f32-softmax/f32-softmax.h"

float mha_f32_softmax_online_row__scalar(size_t n, size_t n_valid, float* s, float scale,
                                         const float* add, float* m, float* l) {
  float mx = -INFINITY;
  int has_nan = 0;
  for (size_t j = 0; j < n_valid; j++) {
    float x = s[j] * scale;
    /* an additive -inf hides its key, even from a NaN score */
    if (add != NULL) x = add[j] == -INFINITY ? -INFINITY : fmaf(add[j], MHA_LOG2E_F, x);
    s[j] = x;
    if (x > mx) mx = x;
    has_nan |= isnan(x);
  }
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  if (m_new == -INFINITY && !has_nan) {
    /* nothing visible yet: all probabilities 0, the accumulator is untouched */
    for (size_t j = 0; j < n; j++) s[j] = 0.0f;
    return 1.0f;
  }
  float sum = 0.0f;
  for (size_t j = 0; j < n_valid; j++) {
    const float p = exp2f(s[j] - m_new);
    s[j] = p;
    sum += p;
  }
  for (size_t j = n_valid; j < n; j++) s[j] = 0.0f;
  /* exp2(-inf) = 0 on the first visible block; a NaN score makes p, l and
   * so the output NaN (fmax-like compares skip NaN, exp2 does not); no
   * exp2 while the running max stays */
  return mha_row_finish(m_old, m_new, sum, m, l);
}

/* The step for whole rows of a tile (config/kernels.h): the row step on
 * each row, which is what the contract asks bit for bit; the reference keeps
 * no tile form of its own. */
void mha_f32_softmax_online_tile__scalar(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                        float* alpha) {
  mha_softmax_tile_by_rows(mha_f32_softmax_online_row__scalar, rows, n, s, lds, m, l, alpha);
}

void mha_f32_vscale__scalar(size_t n, float* x, float alpha) {
  for (size_t j = 0; j < n; j++) x[j] *= alpha;
}

void mha_f32_vexp2_scale__scalar(size_t n, float* x, float c, float alpha) {
  for (size_t j = 0; j < n; j++) x[j] = exp2f(x[j] - c) * alpha;
}
