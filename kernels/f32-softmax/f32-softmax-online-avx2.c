/* Online softmax step over one row of a score tile, and vector helpers:
 * AVX2 + FMA with SLEEF's Sleef_expf8_u10avx2 (compiled with -mavx2 -mfma).
 * Contract: config/kernels.h. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>

#include "f32-softmax/f32-softmax.h"

static __m256i mha_tail8(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n >= 8 ? 8 : (int)n), lanes);
}

static float mha_hmax8(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

static float mha_hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

float mha_f32_softmax_online_row__avx2(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 vmax = ninf;
  int nan_seen = 0;
  for (size_t j = 0; j < n_valid; j += 8) {
    const __m256i mk = mha_tail8(n_valid - j);
    __m256 x = _mm256_mul_ps(_mm256_maskload_ps(s + j, mk), vscale);
    if (add != NULL) {
      /* an additive -inf hides its key, even from a NaN score */
      const __m256 a = _mm256_maskload_ps(add + j, mk);
      x = _mm256_blendv_ps(_mm256_add_ps(x, a), ninf, _mm256_cmp_ps(a, ninf, _CMP_EQ_OQ));
    }
    _mm256_maskstore_ps(s + j, mk, x);
    /* lanes past the tail are -inf; a NaN lane keeps vmax (max_ps returns its second operand) */
    x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(mk));
    nan_seen |= _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    vmax = _mm256_max_ps(x, vmax);
  }
  const float mx = mha_hmax8(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  const __m256 zero = _mm256_setzero_ps();
  if (m_new == -INFINITY && nan_seen == 0) {
    for (size_t j = 0; j < n; j += 8) _mm256_maskstore_ps(s + j, mha_tail8(n - j), zero);
    return 1.0f;
  }
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 vsum = zero;
  for (size_t j = 0; j < n_valid; j += 8) {
    const __m256i mk = mha_tail8(n_valid - j);
    const __m256 p = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(s + j, mk), vm));
    _mm256_maskstore_ps(s + j, mk, p);
    vsum = _mm256_add_ps(vsum, _mm256_blendv_ps(zero, p, _mm256_castsi256_ps(mk)));
  }
  for (size_t j = n_valid; j < n; j += 8) _mm256_maskstore_ps(s + j, mha_tail8(n - j), zero);
  const float alpha = expf(m_old - m_new);
  *l = *l * alpha + mha_hsum8(vsum);
  *m = m_new;
  return alpha;
}

void mha_f32_vscale__avx2(size_t n, float* x, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha);
  for (size_t j = 0; j < n; j += 8) {
    const __m256i mk = mha_tail8(n - j);
    _mm256_maskstore_ps(x + j, mk, _mm256_mul_ps(_mm256_maskload_ps(x + j, mk), va));
  }
}

void mha_f32_vexp_scale__avx2(size_t n, float* x, float c, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha), vc = _mm256_set1_ps(c);
  for (size_t j = 0; j < n; j += 8) {
    const __m256i mk = mha_tail8(n - j);
    const __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + j, mk), vc));
    _mm256_maskstore_ps(x + j, mk, _mm256_mul_ps(e, va));
  }
}
