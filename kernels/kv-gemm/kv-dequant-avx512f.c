/* y[0..n) = x[0..n) · scale, int8 to fp32: 16 values per step (vpmovsxbd,
 * vcvtdq2ps exact, one vmulps: the scalar kernel's rounding), the tail one
 * value at a time, so nothing past x[n-1] is read or past y[n-1] written.
 * Compiled with -mavx512f -mfma (no FMA used). */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"

void mha_i8_dequant__avx512f(size_t n, const int8_t* x, float scale, float* y) {
  const __m512 s = _mm512_set1_ps(scale);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(x + i)));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q), s));
  }
  for (; i < n; i++) y[i] = (float)x[i] * scale;
}
