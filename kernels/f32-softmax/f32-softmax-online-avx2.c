/* Online softmax step over one row of a score tile, in base 2, and vector
 * helpers: AVX2 + FMA with SLEEF's Sleef_exp2f8_u10avx2 (compiled with
 * -mavx2 -mfma).
 * Contract: config/kernels.h. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

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

/* Scale and mask one vector of scores: x·scale + add·log2(e); an additive
 * -inf hides its key, even from a NaN score (blendv: only with an additive
 * mask). */
static inline __attribute__((always_inline)) __m256 mha_scale_add8(__m256 x, __m256 vscale,
                                                                   const __m256* a) {
  x = _mm256_mul_ps(x, vscale);
  if (a != NULL) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    x = _mm256_blendv_ps(_mm256_fmadd_ps(*a, _mm256_set1_ps(MHA_LOG2E_F), x), ninf,
                         _mm256_cmp_ps(*a, ninf, _CMP_EQ_OQ));
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
  const int apply = scale != 1.0f || add != NULL; /* else s is only read in the first pass */
  __m256 vmax = ninf;
  size_t j = 0;
  for (; j + 8 <= n_valid; j += 8) {
    __m256 x = _mm256_loadu_ps(s + j);
    if (apply) {
      __m256 a;
      if (add != NULL) a = _mm256_loadu_ps(add + j);
      x = mha_scale_add8(x, vscale, add != NULL ? &a : NULL);
      _mm256_storeu_ps(s + j, x);
    }
    vmax = _mm256_max_ps(x, vmax); /* a NaN lane keeps vmax (max_ps returns its second operand) */
  }
  if (j < n_valid) {
    const __m256i mk = mha_tail8(n_valid - j);
    __m256 a;
    if (add != NULL) a = _mm256_maskload_ps(add + j, mk);
    __m256 x = mha_scale_add8(_mm256_maskload_ps(s + j, mk), vscale, add != NULL ? &a : NULL);
    _mm256_maskstore_ps(s + j, mk, x);
    x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(mk)); /* lanes past the tail: -inf */
    vmax = _mm256_max_ps(x, vmax);
  }
  const float mx = mha_hmax8(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  const __m256 zero = _mm256_setzero_ps();
  if (m_new == -INFINITY && !mha_row_has_nan(s, n_valid)) {
    mha_zero_tail_avx2(s, 0, n);
    return 1.0f;
  }
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 vsum = zero;
  for (j = 0; j + 8 <= n_valid; j += 8) {
    const __m256 p = Sleef_exp2f8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    _mm256_storeu_ps(s + j, p);
    vsum = _mm256_add_ps(vsum, p);
  }
  if (j < n_valid) {
    const __m256i mk = mha_tail8(n_valid - j);
    const __m256 p = Sleef_exp2f8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(s + j, mk), vm));
    _mm256_maskstore_ps(s + j, mk, p);
    vsum = _mm256_add_ps(vsum, _mm256_blendv_ps(zero, p, _mm256_castsi256_ps(mk)));
  }
  mha_zero_tail_avx2(s, n_valid, n);
  return mha_row_finish(m_old, m_new, mha_hsum8(vsum), m, l);
}

/* The step for `rows` whole rows of a tile at once (see config/kernels.h),
 * in chunks of up to 64 rows: first every row's max and s − m' (no call in
 * that loop, so rows overlap in the core), then the exp2 of the chunk, one
 * SLEEF call after another with nothing live across them, and the sums. Per
 * row the operations of the row step's loops, in their order: the same bits.
 * A row still without a visible key, and any n not a multiple of 8, take the
 * row step itself. */
void mha_f32_softmax_online_tile__avx2(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                       float* alpha) {
  if (n % 8 != 0) {
    mha_softmax_tile_by_rows(mha_f32_softmax_online_row__avx2, rows, n, s, lds, m, l, alpha);
    return;
  }
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  for (size_t r0 = 0; r0 < rows; r0 += 64) {
    const size_t nr = rows - r0 < 64 ? rows - r0 : 64;
    uint64_t pending = 0;
    for (size_t i = 0; i < nr; i++) {
      const size_t r = r0 + i;
      float* row = s + r * lds;
      __m256 vmax = ninf;
      for (size_t j = 0; j < n; j += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(row + j), vmax);
      const float mx = mha_hmax8(vmax);
      const float m_old = m[r];
      const float m_new = mx > m_old ? mx : m_old;
      if (m_new == -INFINITY) {
        /* nothing visible yet (or a NaN among -infs): the row step, whole */
        alpha[r] = mha_f32_softmax_online_row__avx2(n, n, row, 1.0f, NULL, &m[r], &l[r]);
        continue;
      }
      const __m256 vm = _mm256_set1_ps(m_new);
      for (size_t j = 0; j < n; j += 8) _mm256_storeu_ps(row + j, _mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
      alpha[r] = mha_step_alpha(m_old, m_new);
      m[r] = m_new;
      pending |= (uint64_t)1 << i;
    }
    for (size_t i = 0; i < nr; i++) {
      if (!(pending >> i & 1)) continue;
      const size_t r = r0 + i;
      float* row = s + r * lds;
      __m256 vsum = _mm256_setzero_ps();
      for (size_t j = 0; j < n; j += 8) {
        const __m256 p = Sleef_exp2f8_u10avx2(_mm256_loadu_ps(row + j));
        _mm256_storeu_ps(row + j, p);
        vsum = _mm256_add_ps(vsum, p);
      }
      l[r] = mha_step_l(l[r], alpha[r], mha_hsum8(vsum));
    }
  }
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

void mha_f32_vexp2_scale__avx2(size_t n, float* x, float c, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha), vc = _mm256_set1_ps(c);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = Sleef_exp2f8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), vc));
    _mm256_storeu_ps(x + j, _mm256_mul_ps(e, va));
  }
  if (j < n) {
    const __m256i mk = mha_tail8(n - j);
    const __m256 e = Sleef_exp2f8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + j, mk), vc));
    _mm256_maskstore_ps(x + j, mk, _mm256_mul_ps(e, va));
  }
}
