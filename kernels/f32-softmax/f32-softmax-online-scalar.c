/* Online softmax step over one row of a score tile, and vector helpers: the
 * portable reference versions (compiled with -fno-tree-vectorize). */
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
    if (add != NULL) x = add[j] == -INFINITY ? -INFINITY : x + add[j];
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
    const float p = expf(s[j] - m_new);
    s[j] = p;
    sum += p;
  }
  for (size_t j = n_valid; j < n; j++) s[j] = 0.0f;
  /* exp(-inf) = 0 on the first visible block; a NaN score makes p, l and
   * so the output NaN (fmax-like compares skip NaN, exp does not) */
  const float alpha = expf(m_old - m_new);
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

void mha_f32_vscale__scalar(size_t n, float* x, float alpha) {
  for (size_t j = 0; j < n; j++) x[j] *= alpha;
}

void mha_f32_vexp_scale__scalar(size_t n, float* x, float c, float alpha) {
  for (size_t j = 0; j < n; j++) x[j] = expf(x[j] - c) * alpha;
}
