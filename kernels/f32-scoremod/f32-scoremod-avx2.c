/* Score modifiers of one row: AVX2 + FMA, SLEEF's Sleef_tanhf8_u35avx2 for
 * the soft-cap. Full vectors use plain loads and stores; the tail is one
 * masked load and store per row (vmaskmovps stores cost ~12 cycles on AMD
 * Zen 2-4). Contract: config/kernels.h. */
#include <immintrin.h>
#include <sleef.h>
#include <stddef.h>

#include "f32-scoremod/f32-scoremod.h"

static inline __attribute__((always_inline)) __m256 mha_scoremod8(__m256 s, __m256 vscale,
                                                                  float cap, __m256 vcap,
                                                                  __m256 vinv, float slope,
                                                                  __m256 vslope, __m256 vd) {
  s = _mm256_mul_ps(s, vscale);
  if (cap > 0.0f) s = _mm256_mul_ps(vcap, Sleef_tanhf8_u35avx2(_mm256_mul_ps(s, vinv)));
  if (slope != 0.0f) s = _mm256_fmadd_ps(vslope, vd, s);
  return s;
}

void mha_f32_scoremod__avx2(size_t n, float* x, float scale, float cap, float slope, float d0) {
  const __m256 vscale = _mm256_set1_ps(scale), vcap = _mm256_set1_ps(cap);
  const __m256 vinv = _mm256_set1_ps(cap > 0.0f ? 1.0f / cap : 0.0f);
  const __m256 vslope = _mm256_set1_ps(slope), eight = _mm256_set1_ps(8.0f);
  __m256 vd = _mm256_add_ps(_mm256_set1_ps(d0), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 s = _mm256_loadu_ps(x + j);
    _mm256_storeu_ps(x + j, mha_scoremod8(s, vscale, cap, vcap, vinv, slope, vslope, vd));
    vd = _mm256_add_ps(vd, eight);
  }
  if (j < n) {
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - j)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 s = _mm256_maskload_ps(x + j, mk);
    _mm256_maskstore_ps(x + j, mk, mha_scoremod8(s, vscale, cap, vcap, vinv, slope, vslope, vd));
  }
}
