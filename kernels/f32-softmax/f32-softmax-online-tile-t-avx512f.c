/* The online softmax tile step on a transposed score tile, AVX-512F with
 * SLEEF's Sleef_exp2f16_u10avx512f (compiled with -mavx512f -mfma).
 * Contract: config/kernels.h (softmax_online_tile_t).
 *
 * Each vector holds one key's scores of 16 query rows, so a row's max and
 * sum are vertical: per group of 16 rows, one pass over the n keys for the
 * maxima, one for exp2(s − m') and its store, one for the sums (the exp2
 * pass keeps nothing in registers across SLEEF's calls). To give each row the
 * bits of the row step, the lanes of the row form become vectors here: the
 * partial max and sum of lane l (keys l, l + 16, ...) are the vector
 * part[l], updated in the row step's key order, and the row step's
 * horizontal tree runs across the 16 vectors (f32-softmax-avx512f.h). A row
 * with no visible key yet (m' = −inf) takes the row step itself, on its
 * column gathered into a row. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

#include "f32-softmax/f32-softmax-avx512f.h"
#include "f32-softmax/f32-softmax.h"

/* Column r of the tile through the row step (a row still without a visible
 * key: rare). */
static void mha_tile_t_row_step(size_t n, float* st, size_t ldst, size_t r, float* m, float* l, float* alpha) {
  float row[MHA_TILE_T_MAX_KEYS];
  for (size_t j = 0; j < n; j++) row[j] = st[j * ldst + r];
  alpha[r] = mha_f32_softmax_online_row__avx512f(n, n, row, 1.0f, NULL, &m[r], &l[r]);
  for (size_t j = 0; j < n; j++) st[j * ldst + r] = row[j];
}

void mha_f32_softmax_online_tile_t__avx512f(size_t rows, size_t n, float* st, size_t ldst, float* m, float* l,
                                            float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (size_t r0 = 0; r0 < rows; r0 += 16) {
    float* col = st + r0;
    __m512 part[16];
    for (int i = 0; i < 16; i++) part[i] = ninf;
    for (size_t j = 0; j < n; j += 16) {
      for (int i = 0; i < 16; i++) part[i] = _mm512_max_ps(_mm512_loadu_ps(col + (j + (size_t)i) * ldst), part[i]);
    }
    const __m512 mx = mha_avx512f_vmax16(part);
    const __m512 m_old = _mm512_loadu_ps(m + r0);
    /* m' = mx > m ? mx : m, lane by lane as the row step's scalar */
    const __m512 m_new = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mx, m_old, _CMP_GT_OQ), m_old, mx);
    const __mmask16 empty = _mm512_cmp_ps_mask(m_new, ninf, _CMP_EQ_OQ);
    const __mmask16 keep = (__mmask16)~empty;
    float mo[16], mn[16], sum[16];
    _mm512_storeu_ps(mo, m_old);
    _mm512_storeu_ps(mn, m_new);
    /* the exp2 calls back to back with nothing live across them (a call
     * clobbers every vector register): m' comes from memory */
    for (size_t j = 0; j < n; j++) {
      float* at = col + j * ldst;
      const __m512 p = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_loadu_ps(at), _mm512_loadu_ps(mn)));
      _mm512_mask_storeu_ps(at, keep, p);
    }
    for (int i = 0; i < 16; i++) part[i] = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
      for (int i = 0; i < 16; i++) part[i] = _mm512_add_ps(part[i], _mm512_loadu_ps(col + (j + (size_t)i) * ldst));
    }
    _mm512_storeu_ps(sum, mha_avx512f_vadd16(part));
    for (size_t i = 0; i < 16; i++) {
      const size_t r = r0 + i;
      if (empty >> i & 1) {
        mha_tile_t_row_step(n, st, ldst, r, m, l, alpha);
        continue;
      }
      alpha[r] = mha_step_alpha(mo[i], mn[i]);
      l[r] = mha_step_l(l[r], alpha[r], sum[i]);
      m[r] = mn[i];
    }
  }
}
