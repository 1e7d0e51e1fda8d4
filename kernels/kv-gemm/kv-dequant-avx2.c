/* y[0..n) = x[0..n) · scale, int8 to fp32: 8 values per step (vpmovsxbd,
 * vcvtdq2ps exact, one vmulps: the scalar kernel's rounding), the tail one
 * value at a time, so nothing past x[n-1] is read or past y[n-1] written.
 * Compiled with -mavx2 -mfma -mf16c (no FMA used: a product, then nothing). */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kv-gemm/kv-gemm.h"

void mha_i8_dequant__avx2(size_t n, const int8_t* x, float scale, float* y) {
  const __m256 s = _mm256_set1_ps(scale);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int64_t bits;
    memcpy(&bits, x + i, sizeof bits);
    const __m256i q = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bits));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), s));
  }
  for (; i < n; i++) y[i] = (float)x[i] * scale;
}
