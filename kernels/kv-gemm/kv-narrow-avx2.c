/* y[0..n) = x[0..n) rounded to f16 or bf16, bitwise kv-convert.h's
 * mha_f32_to_f16 / mha_f32_to_bf16: 8 values per step, the tail (1-7 values)
 * loaded masked and stored as 32-bit pairs plus an odd last value, so nothing
 * past x[n-1] is read or past y[n-1] written. Compiled with -mavx2 -mfma -mf16c.
 *
 * f16: F16C vcvtps2ph with the rounding in the immediate (nearest even),
 * so MXCSR.RC does not apply; MXCSR.FTZ is ignored by the instruction (f16
 * subnormal results stay subnormal, Intel SDM), and MXCSR.DAZ, which it
 * honours, turns an fp32 subnormal input into a zero of its sign: that
 * input rounds to the same ±0 anyway. A NaN comes out as
 * sign | 0x7e00 | mantissa >> 13, as in mha_f32_to_f16. So the result does
 * not depend on the caller's MXCSR (kv-gemm-ukernel-test checks it under
 * DAZ | FTZ and round-toward-zero).
 * bf16: integer operations (as the scalar), not AVX512-BF16's vcvtneps2bf16,
 * which flushes fp32 subnormal inputs to zero. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load.h"

/* 8 values rounded to 16 bits, in the low..high halves of the result */
static inline __attribute__((always_inline)) __m128i mha_avx2_narrow8(const int BT, __m256 v) {
  if (BT == MHA_KV_F16) return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  /* bf16: u + 0x7fff + ((u >> 16) & 1), the upper half; a NaN: (u >> 16) | 0x40 */
  const __m256i u = _mm256_castps_si256(v);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  /* every lane is in [0, 0xffff]: the unsigned saturating pack keeps it */
  const __m256i h = _mm256_blendv_epi8(rounded, quiet, nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* the low r 16-bit values of h (r = 1..7) to q[0..r); writes nothing past
 * q[r-1]: the r/2 whole pairs by one masked store of 32-bit lanes, an odd
 * last value (the low half of lane r/2) on its own */
static inline __attribute__((always_inline)) void mha_avx2_store_u16_part(uint16_t* q, __m128i h,
                                                                          size_t r) {
  const __m128i pairs = _mm_set1_epi32((int)(r >> 1));
  _mm_maskstore_epi32((int*)q, _mm_cmpgt_epi32(pairs, _mm_setr_epi32(0, 1, 2, 3)), h);
  if (r & 1) {
    const __m128 last = _mm_permutevar_ps(_mm_castsi128_ps(h), pairs);
    q[r - 1] = (uint16_t)_mm_cvtsi128_si32(_mm_castps_si128(last));
  }
}

static inline __attribute__((always_inline)) void mha_narrow_avx2(const int BT, size_t n,
                                                                  const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128((__m128i*)(y + i), mha_avx2_narrow8(BT, _mm256_loadu_ps(x + i)));
  }
  if (i < n) {
    const size_t r = n - i;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), lanes);
    mha_avx2_store_u16_part(y + i, mha_avx2_narrow8(BT, _mm256_maskload_ps(x + i, mask)), r);
  }
}

void mha_f16_narrow__avx2(size_t n, const float* x, uint16_t* y) {
  mha_narrow_avx2(MHA_KV_F16, n, x, y);
}

void mha_bf16_narrow__avx2(size_t n, const float* x, uint16_t* y) {
  mha_narrow_avx2(MHA_KV_BF16, n, x, y);
}
