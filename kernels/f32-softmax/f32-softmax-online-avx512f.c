/* Online softmax step over one row of a score tile, and vector helpers:
 * AVX-512F with SLEEF's Sleef_expf16_u10avx512f (compiled with -mavx512f).
 * Contract: config/kernels.h. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>

#include "f32-softmax/f32-softmax.h"

static __mmask16 mha_tail16(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

float mha_f32_softmax_online_row__avx512f(size_t n, size_t n_valid, float* s, float scale,
                                          const float* add, float* m, float* l) {
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  __mmask16 nan_seen = 0;
  for (size_t j = 0; j < n_valid; j += 16) {
    const __mmask16 mk = mha_tail16(n_valid - j);
    __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, s + j), vscale);
    if (add != NULL) {
      /* an additive -inf hides its key, even from a NaN score */
      const __m512 a = _mm512_maskz_loadu_ps(mk, add + j);
      const __m512 ninf = _mm512_set1_ps(-INFINITY);
      x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, ninf, _CMP_EQ_OQ), _mm512_add_ps(x, a), ninf);
    }
    _mm512_mask_storeu_ps(s + j, mk, x);
    nan_seen |= _mm512_mask_cmp_ps_mask(mk, x, x, _CMP_UNORD_Q);
    vmax = _mm512_mask_max_ps(vmax, mk, x, vmax); /* a NaN lane keeps vmax */
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  if (m_new == -INFINITY && nan_seen == 0) {
    for (size_t j = 0; j < n; j += 16) _mm512_mask_storeu_ps(s + j, mha_tail16(n - j), _mm512_setzero_ps());
    return 1.0f;
  }
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 vsum = _mm512_setzero_ps();
  for (size_t j = 0; j < n_valid; j += 16) {
    const __mmask16 mk = mha_tail16(n_valid - j);
    const __m512 p = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, s + j), vm));
    _mm512_mask_storeu_ps(s + j, mk, p);
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(mk, p));
  }
  for (size_t j = n_valid; j < n; j += 16) _mm512_mask_storeu_ps(s + j, mha_tail16(n - j), _mm512_setzero_ps());
  const float alpha = expf(m_old - m_new);
  *l = *l * alpha + _mm512_reduce_add_ps(vsum);
  *m = m_new;
  return alpha;
}

void mha_f32_vscale__avx512f(size_t n, float* x, float alpha) {
  const __m512 va = _mm512_set1_ps(alpha);
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 mk = mha_tail16(n - j);
    _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + j), va));
  }
}

void mha_f32_vexp_scale__avx512f(size_t n, float* x, float c, float alpha) {
  const __m512 va = _mm512_set1_ps(alpha), vc = _mm512_set1_ps(c);
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 mk = mha_tail16(n - j);
    const __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), vc));
    _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(e, va));
  }
}
