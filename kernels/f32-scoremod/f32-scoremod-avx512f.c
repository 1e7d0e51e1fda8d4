/* Score modifiers of one row: AVX-512F, SLEEF's Sleef_tanhf16_u35avx512f for
 * the soft-cap; the tail is one masked load and store (k-masks cost no more
 * than plain ones on Intel and on Zen 4). Contract: config/kernels.h. */
#include <immintrin.h>
#include <sleef.h>
#include <stddef.h>

#include "f32-scoremod/f32-scoremod.h"

void mha_f32_scoremod__avx512f(size_t n, float* x, float scale, float cap, float slope, float d0) {
  const __m512 vscale = _mm512_set1_ps(scale), vcap = _mm512_set1_ps(cap);
  const __m512 vinv = _mm512_set1_ps(cap > 0.0f ? 1.0f / cap : 0.0f);
  const __m512 vslope = _mm512_set1_ps(slope), sixteen = _mm512_set1_ps(16.0f);
  __m512 vd = _mm512_add_ps(_mm512_set1_ps(d0), _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                               11, 12, 13, 14, 15));
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
    __m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + j), vscale);
    if (cap > 0.0f) s = _mm512_mul_ps(vcap, Sleef_tanhf16_u35avx512f(_mm512_mul_ps(s, vinv)));
    if (slope != 0.0f) s = _mm512_fmadd_ps(vslope, vd, s);
    _mm512_mask_storeu_ps(x + j, mk, s);
    vd = _mm512_add_ps(vd, sixteen);
  }
}
