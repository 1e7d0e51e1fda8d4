/* The tile step of the online softmax fused with P's packing for the BF16
 * form on AVX512-BF16 (contract: config/kernels.h, bf16_softmax_tile_pack):
 * per row, the max, then 2^(s − m') by SLEEF's Sleef_exp2f16_u10avx512f,
 * summed, and rounded to bf16 by vcvtne2ps2bf16 straight into A's rows for
 * bf16_gemm (x86: row r at pb + r·4·⌈n/4⌉). Against the tile step and
 * bf16_pack_a_f32 one after the other, s − m' and P are never stored in
 * fp32 and read back. Per row the same operations in the same order (the
 * max over the same vectors, one exp2 per vector, the sum vector by vector,
 * the same reduction trees and scalar steps, the same conversion): the same
 * bits. Compiled with -mavx512f -mavx512bw -mavx512bf16. */
#include <immintrin.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

#include "bf16-gemm/bf16-gemm.h"
#include "f32-softmax/f32-softmax-avx512f.h"
#include "f32-softmax/f32-softmax.h"

void mha_f32_softmax_online_tile_pack__avx512bf16(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                                   float* alpha, uint16_t* pb) {
  const size_t ldp = (n + 3) / 4 * 4;
  if (n % 16 != 0) {
    /* the two steps (a tail on every row: not the BF16 form's blocks) */
    mha_f32_softmax_online_tile__avx512f(rows, n, s, lds, m, l, alpha);
    for (size_t r = 0; r < rows; r++) {
      const float* row = s + r * lds;
      mha_bf16_pack_a_f32__avx512bf16(1, n, &row, pb + r * ldp);
    }
    return;
  }
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (size_t r = 0; r < rows; r++) {
    const float* row = s + r * lds;
    uint16_t* p = pb + r * ldp;
    __m512 vmax = ninf;
    for (size_t j = 0; j < n; j += 16) vmax = _mm512_max_ps(_mm512_loadu_ps(row + j), vmax);
    const float mx = mha_avx512f_hmax(vmax);
    const float m_old = m[r];
    const float m_new = mx > m_old ? mx : m_old;
    if (m_new == -INFINITY) {
      /* nothing visible yet (or a NaN among -infs): the row step, whole, and its P packed */
      alpha[r] = mha_f32_softmax_online_row__avx512f(n, n, s + r * lds, 1.0f, NULL, &m[r], &l[r]);
      mha_bf16_pack_a_f32__avx512bf16(1, n, &row, p);
      continue;
    }
    const __m512 vm = _mm512_set1_ps(m_new);
    __m512 vsum = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
      const __m512 p0 = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
      vsum = _mm512_add_ps(vsum, p0);
      const __m512 p1 = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vm));
      vsum = _mm512_add_ps(vsum, p1);
      _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    }
    if (j < n) { /* 16 left */
      const __m512 p0 = Sleef_exp2f16_u10avx512f(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
      vsum = _mm512_add_ps(vsum, p0);
      _mm256_storeu_si256((__m256i*)(p + j), (__m256i)_mm512_cvtneps_pbh(p0));
    }
    alpha[r] = mha_step_alpha(m_old, m_new);
    m[r] = m_new;
    l[r] = mha_step_l(l[r], alpha[r], mha_avx512f_hadd(vsum));
  }
}
