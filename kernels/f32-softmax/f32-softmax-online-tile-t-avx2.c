/* The online softmax tile step on a transposed score tile, AVX2 + FMA with
 * SLEEF's Sleef_exp2f8_u10avx2 (compiled with -mavx2 -mfma -mf16c).
 * Contract: config/kernels.h (softmax_online_tile_t).
 *
 * As the AVX-512 one (f32-softmax-online-tile-t-avx512f.c) with 8 query rows
 * per vector: the row step's lane l (keys l, l + 8, ...) becomes the vector
 * part[l], updated in the row step's key order, and the row step's
 * horizontal tree (f32-softmax-online-avx2.c: lanes (i, i+4), then (i, i+2),
 * (i, i+1), the lower lane first in each max) runs across the 8 vectors.
 * Plain stores only (a masked store costs ~12 cycles on AMD Zen 2-4): a row
 * still without a visible key has its column saved before the exp2 pass and
 * goes through the row step afterwards. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

#include "f32-softmax/f32-softmax.h"

/* lane r: mha_hmax8's tree over (v[0][r], ..., v[7][r]) */
static inline __m256 mha_avx2_vmax8(const __m256 v[8]) {
  __m256 t[4];
  for (int i = 0; i < 4; i++) t[i] = _mm256_max_ps(v[i], v[i + 4]);
  const __m256 t0 = _mm256_max_ps(t[0], t[2]), t1 = _mm256_max_ps(t[1], t[3]);
  return _mm256_max_ps(t0, t1);
}

/* lane r: mha_hsum8's tree over (v[0][r], ..., v[7][r]) */
static inline __m256 mha_avx2_vadd8(const __m256 v[8]) {
  __m256 t[4];
  for (int i = 0; i < 4; i++) t[i] = _mm256_add_ps(v[i], v[i + 4]);
  const __m256 t0 = _mm256_add_ps(t[0], t[2]), t1 = _mm256_add_ps(t[1], t[3]);
  return _mm256_add_ps(t0, t1);
}

void mha_f32_softmax_online_tile_t__avx2(size_t rows, size_t n, float* st, size_t ldst, float* m, float* l,
                                         float* alpha) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  for (size_t r0 = 0; r0 < rows; r0 += 8) {
    float* col = st + r0;
    __m256 part[8];
    for (int i = 0; i < 8; i++) part[i] = ninf;
    for (size_t j = 0; j < n; j += 8) {
      for (int i = 0; i < 8; i++) part[i] = _mm256_max_ps(_mm256_loadu_ps(col + (j + (size_t)i) * ldst), part[i]);
    }
    const __m256 mx = mha_avx2_vmax8(part);
    const __m256 m_old = _mm256_loadu_ps(m + r0);
    /* m' = mx > m ? mx : m, lane by lane as the row step's scalar */
    const __m256 m_new = _mm256_blendv_ps(m_old, mx, _mm256_cmp_ps(mx, m_old, _CMP_GT_OQ));
    const unsigned empty = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(m_new, ninf, _CMP_EQ_OQ));
    float mo[8], mn[8], sum[8];
    _mm256_storeu_ps(mo, m_old);
    _mm256_storeu_ps(mn, m_new);
    /* the columns of rows without a visible key, as they are, for the row step */
    float saved[8][MHA_TILE_T_MAX_KEYS];
    for (size_t i = 0; i < 8; i++) {
      if (!(empty >> i & 1)) continue;
      for (size_t j = 0; j < n; j++) saved[i][j] = col[j * ldst + i];
    }
    /* the exp2 calls back to back with nothing live across them (a call
     * clobbers every vector register): m' comes from memory */
    for (size_t j = 0; j < n; j++) {
      float* at = col + j * ldst;
      _mm256_storeu_ps(at, Sleef_exp2f8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(at), _mm256_loadu_ps(mn))));
    }
    for (int i = 0; i < 8; i++) part[i] = _mm256_setzero_ps();
    for (size_t j = 0; j < n; j += 8) {
      for (int i = 0; i < 8; i++) part[i] = _mm256_add_ps(part[i], _mm256_loadu_ps(col + (j + (size_t)i) * ldst));
    }
    _mm256_storeu_ps(sum, mha_avx2_vadd8(part));
    for (size_t i = 0; i < 8; i++) {
      const size_t r = r0 + i;
      if (empty >> i & 1) {
        alpha[r] = mha_f32_softmax_online_row__avx2(n, n, saved[i], 1.0f, NULL, &m[r], &l[r]);
        for (size_t j = 0; j < n; j++) col[j * ldst + i] = saved[i][j];
        continue;
      }
      alpha[r] = mha_step_alpha(mo[i], mn[i]);
      l[r] = mha_step_l(l[r], alpha[r], sum[i]);
      m[r] = mn[i];
    }
  }
}
