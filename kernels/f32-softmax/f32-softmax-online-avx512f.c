/* Online softmax step over one row of a score tile, in base 2, and vector
 * helpers: AVX-512F with SLEEF's Sleef_exp2f16_u10avx512f (compiled with
 * -mavx512f). Contract: config/kernels.h. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

#include "f32-softmax/f32-softmax-avx512f.h"
#include "f32-softmax/f32-softmax.h"

static __mmask16 mha_tail16(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

float mha_f32_softmax_online_row__avx512f(size_t n, size_t n_valid, float* s, float scale,
                                          const float* add, float* m, float* l) {
  const __m512 vscale = _mm512_set1_ps(scale);
  const __m512 vlog2e = _mm512_set1_ps(MHA_LOG2E_F);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const int apply = scale != 1.0f || add != NULL;
  __m512 vmax = ninf;
  for (size_t j = 0; j < n_valid; j += 16) {
    const __mmask16 mk = mha_tail16(n_valid - j);
    __m512 x = _mm512_maskz_loadu_ps(mk, s + j);
    if (apply) {
      x = _mm512_mul_ps(x, vscale);
      if (add != NULL) {
        /* an additive -inf hides its key, even from a NaN score */
        const __m512 a = _mm512_maskz_loadu_ps(mk, add + j);
        x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, ninf, _CMP_EQ_OQ), _mm512_fmadd_ps(a, vlog2e, x), ninf);
      }
      _mm512_mask_storeu_ps(s + j, mk, x);
    }
    vmax = _mm512_mask_max_ps(vmax, mk, x, vmax); /* a NaN lane keeps vmax */
  }
  const float mx = mha_avx512f_hmax(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  if (m_new == -INFINITY && !mha_row_has_nan(s, n_valid)) {
    for (size_t j = 0; j < n; j += 16) _mm512_mask_storeu_ps(s + j, mha_tail16(n - j), _mm512_setzero_ps());
    return 1.0f;
  }
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 vsum = _mm512_setzero_ps();
  for (size_t j = 0; j < n_valid; j += 16) {
    const __mmask16 mk = mha_tail16(n_valid - j);
    const __m512 p = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, s + j), vm));
    _mm512_mask_storeu_ps(s + j, mk, p);
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(mk, p));
  }
  for (size_t j = n_valid; j < n; j += 16) _mm512_mask_storeu_ps(s + j, mha_tail16(n - j), _mm512_setzero_ps());
  return mha_row_finish(m_old, m_new, mha_avx512f_hadd(vsum), m, l);
}

void mha_f32_vscale__avx512f(size_t n, float* x, float alpha) {
  const __m512 va = _mm512_set1_ps(alpha);
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 mk = mha_tail16(n - j);
    _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + j), va));
  }
}

void mha_f32_vexp2_scale__avx512f(size_t n, float* x, float c, float alpha) {
  const __m512 va = _mm512_set1_ps(alpha), vc = _mm512_set1_ps(c);
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 mk = mha_tail16(n - j);
    const __m512 e = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), vc));
    _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(e, va));
  }
}

/* The step for `rows` whole rows of a tile at once (see config/kernels.h),
 * in chunks of up to 64 rows: first every row's max and s − m' (no call in
 * that loop, so rows overlap in the core), then the exp2 of the chunk, one
 * SLEEF call after another with nothing live across them, and the sums. Per
 * row the operations of the row step's loops, in their order: the same bits.
 * A row still without a visible key, and any n not a multiple of 16, take
 * the row step itself. */
void mha_f32_softmax_online_tile__avx512f(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                          float* alpha) {
  if (n % 16 != 0) {
    mha_softmax_tile_by_rows(mha_f32_softmax_online_row__avx512f, rows, n, s, lds, m, l, alpha);
    return;
  }
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (size_t r0 = 0; r0 < rows; r0 += 64) {
    const size_t nr = rows - r0 < 64 ? rows - r0 : 64;
    uint64_t pending = 0;
    for (size_t i = 0; i < nr; i++) {
      const size_t r = r0 + i;
      float* row = s + r * lds;
      __m512 vmax = ninf;
      for (size_t j = 0; j < n; j += 16) vmax = _mm512_max_ps(_mm512_loadu_ps(row + j), vmax);
      const float mx = mha_avx512f_hmax(vmax);
      const float m_old = m[r];
      const float m_new = mx > m_old ? mx : m_old;
      if (m_new == -INFINITY) {
        /* nothing visible yet (or a NaN among -infs): the row step, whole */
        alpha[r] = mha_f32_softmax_online_row__avx512f(n, n, row, 1.0f, NULL, &m[r], &l[r]);
        continue;
      }
      const __m512 vm = _mm512_set1_ps(m_new);
      for (size_t j = 0; j < n; j += 16) _mm512_storeu_ps(row + j, _mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
      alpha[r] = mha_step_alpha(m_old, m_new);
      m[r] = m_new;
      pending |= (uint64_t)1 << i;
    }
    for (size_t i = 0; i < nr; i++) {
      if (!(pending >> i & 1)) continue;
      const size_t r = r0 + i;
      float* row = s + r * lds;
      __m512 vsum = _mm512_setzero_ps();
      for (size_t j = 0; j < n; j += 16) {
        const __m512 p = Sleef_exp2f16_u10avx512f(_mm512_loadu_ps(row + j));
        _mm512_storeu_ps(row + j, p);
        vsum = _mm512_add_ps(vsum, p);
      }
      l[r] = mha_step_l(l[r], alpha[r], mha_avx512f_hadd(vsum));
    }
  }
}
