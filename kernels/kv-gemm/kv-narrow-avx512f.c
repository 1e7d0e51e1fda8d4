/* y[0..n) = x[0..n) rounded to f16 or bf16, bitwise kv-convert.h's
 * mha_f32_to_f16 / mha_f32_to_bf16: 16 values per step, the tail (1-15
 * values) loaded masked and stored as 32-bit pairs plus an odd last value
 * (no AVX512BW: no 16-bit masked stores), so nothing past x[n-1] is read or
 * past y[n-1] written. Compiled with -mavx512f -mfma.
 *
 * f16: vcvtps2ph on zmm with the rounding in the immediate (nearest even);
 * it ignores MXCSR.FTZ, and MXCSR.DAZ only turns an fp32 subnormal input
 * into the ±0 it rounds to anyway, so the bits do not depend on the
 * caller's MXCSR (kv-narrow-avx2.c has the details). bf16: integer
 * operations (as the scalar), not AVX512-BF16's vcvtneps2bf16, which
 * flushes fp32 subnormal inputs to zero; vpmovdw packs the 16-bit lanes. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load.h"

/* 16 values rounded to 16 bits */
static inline __attribute__((always_inline)) __m256i mha_avx512f_narrow16(const int BT, __m512 v) {
  if (BT == MHA_KV_F16) return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  /* bf16: u + 0x7fff + ((u >> 16) & 1), the upper half; a NaN: (u >> 16) | 0x40 */
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

/* the low r 16-bit values of h (r = 1..15) to q[0..r); writes nothing past
 * q[r-1]: the r/2 whole pairs by one masked store of 32-bit lanes, an odd
 * last value (the low half of lane r/2) on its own */
static inline __attribute__((always_inline)) void mha_avx512f_store_u16_part(uint16_t* q, __m256i h,
                                                                             size_t r) {
  const __m512i w = _mm512_castsi256_si512(h);
  _mm512_mask_storeu_epi32(q, (__mmask16)((1u << (r >> 1)) - 1u), w);
  if (r & 1) {
    const __m512i last = _mm512_permutexvar_epi32(_mm512_set1_epi32((int)(r >> 1)), w);
    q[r - 1] = (uint16_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(last));
  }
}

static inline __attribute__((always_inline)) void mha_narrow_avx512f(const int BT, size_t n,
                                                                     const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256((__m256i*)(y + i), mha_avx512f_narrow16(BT, _mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const size_t r = n - i;
    const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1u), x + i);
    mha_avx512f_store_u16_part(y + i, mha_avx512f_narrow16(BT, v), r);
  }
}

void mha_f16_narrow__avx512f(size_t n, const float* x, uint16_t* y) {
  mha_narrow_avx512f(MHA_KV_F16, n, x, y);
}

void mha_bf16_narrow__avx512f(size_t n, const float* x, uint16_t* y) {
  mha_narrow_avx512f(MHA_KV_BF16, n, x, y);
}
