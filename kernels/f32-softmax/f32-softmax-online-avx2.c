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

/* s[from, n) ← 0: plain stores on full vectors, one masked store at the end. */
static void mha_zero_tail_avx2(float* s, size_t from, size_t n) {
  const __m256 zero = _mm256_setzero_ps();
  size_t j = from;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, zero);
  if (j < n) _mm256_maskstore_ps(s + j, mha_tail8(n - j), zero);
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

/* Scale and mask one vector of scores; an additive -inf hides its key, even
 * from a NaN score (blendv: only with an additive mask). */
static inline __attribute__((always_inline)) __m256 mha_scale_add8(__m256 x, __m256 vscale,
                                                                   const __m256* a) {
  x = _mm256_mul_ps(x, vscale);
  if (a != NULL) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    x = _mm256_blendv_ps(_mm256_add_ps(x, *a), ninf, _mm256_cmp_ps(*a, ninf, _CMP_EQ_OQ));
  }
  return x;
}

/* Full 8-key vectors use plain loads and stores; the tail of n_valid (and of
 * n) is one masked load/store, once per row: vmaskmovps stores cost ~12
 * cycles on AMD Zen 2-4. */
float mha_f32_softmax_online_row__avx2(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 vmax = ninf;
  __m256 nan_acc = _mm256_setzero_ps(); /* NaN lanes collect here (x != x) */
  size_t j = 0;
  for (; j + 8 <= n_valid; j += 8) {
    __m256 a;
    if (add != NULL) a = _mm256_loadu_ps(add + j);
    const __m256 x = mha_scale_add8(_mm256_loadu_ps(s + j), vscale, add != NULL ? &a : NULL);
    _mm256_storeu_ps(s + j, x);
    nan_acc = _mm256_or_ps(nan_acc, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    vmax = _mm256_max_ps(x, vmax); /* a NaN lane keeps vmax (max_ps returns its second operand) */
  }
  if (j < n_valid) {
    const __m256i mk = mha_tail8(n_valid - j);
    __m256 a;
    if (add != NULL) a = _mm256_maskload_ps(add + j, mk);
    __m256 x = mha_scale_add8(_mm256_maskload_ps(s + j, mk), vscale, add != NULL ? &a : NULL);
    _mm256_maskstore_ps(s + j, mk, x);
    x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(mk)); /* lanes past the tail: -inf */
    nan_acc = _mm256_or_ps(nan_acc, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    vmax = _mm256_max_ps(x, vmax);
  }
  const int nan_seen = _mm256_movemask_ps(nan_acc);
  const float mx = mha_hmax8(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  const __m256 zero = _mm256_setzero_ps();
  if (m_new == -INFINITY && nan_seen == 0) {
    mha_zero_tail_avx2(s, 0, n);
    return 1.0f;
  }
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 vsum = zero;
  for (j = 0; j + 8 <= n_valid; j += 8) {
    const __m256 p = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    _mm256_storeu_ps(s + j, p);
    vsum = _mm256_add_ps(vsum, p);
  }
  if (j < n_valid) {
    const __m256i mk = mha_tail8(n_valid - j);
    const __m256 p = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(s + j, mk), vm));
    _mm256_maskstore_ps(s + j, mk, p);
    vsum = _mm256_add_ps(vsum, _mm256_blendv_ps(zero, p, _mm256_castsi256_ps(mk)));
  }
  mha_zero_tail_avx2(s, n_valid, n);
  const float alpha = expf(m_old - m_new);
  *l = *l * alpha + mha_hsum8(vsum);
  *m = m_new;
  return alpha;
}

void mha_f32_vscale__avx2(size_t n, float* x, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), va));
  if (j < n) {
    const __m256i mk = mha_tail8(n - j);
    _mm256_maskstore_ps(x + j, mk, _mm256_mul_ps(_mm256_maskload_ps(x + j, mk), va));
  }
}

void mha_f32_vexp_scale__avx2(size_t n, float* x, float c, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha), vc = _mm256_set1_ps(c);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), vc));
    _mm256_storeu_ps(x + j, _mm256_mul_ps(e, va));
  }
  if (j < n) {
    const __m256i mk = mha_tail8(n - j);
    const __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + j, mk), vc));
    _mm256_maskstore_ps(x + j, mk, _mm256_mul_ps(e, va));
  }
}
