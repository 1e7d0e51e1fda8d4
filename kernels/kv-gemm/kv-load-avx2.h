/*
 * 8 lanes of B for the AVX2 cores: fp32, or 16 bits widened exactly in
 * registers (f16 by F16C's vcvtph2ps, bf16 by zero extension and a shift
 * left by 16). Files that include it are compiled with -mavx2 -mfma -mf16c.
 */
#ifndef MHA_KERNELS_KV_LOAD_AVX2_H
#define MHA_KERNELS_KV_LOAD_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-load.h"

/* 8 widened values from 8 16-bit ones (in the low..high halves of h) */
static inline __attribute__((always_inline)) __m256 mha_avx2_widen8(const int BT, __m128i h) {
  if (BT == MHA_KV_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* p[0..8) */
static inline __attribute__((always_inline)) __m256 mha_avx2_load8(const int BT, const void* p) {
  if (BT == MHA_KV_F32) return _mm256_loadu_ps((const float*)p);
  return mha_avx2_widen8(BT, _mm_loadu_si128((const __m128i*)p));
}

/* q[0..r) (16-bit, r = 1..7) in lanes 0..r-1, zeros above; reads nothing
 * past q[r-1]: the r/2 whole pairs by one masked load of 32-bit lanes, an
 * odd last value blended into the low half of the next lane. */
static inline __attribute__((always_inline)) __m128i mha_avx2_load_u16_part(const uint16_t* q,
                                                                            size_t r) {
  const __m128i lanes = _mm_setr_epi32(0, 1, 2, 3);
  const __m128i pairs = _mm_set1_epi32((int)(r >> 1));
  const __m128i w = _mm_maskload_epi32((const int*)q, _mm_cmpgt_epi32(pairs, lanes));
  const __m128i odd = _mm_and_si128(_mm_cmpeq_epi32(pairs, lanes), _mm_set1_epi32(-(int)(r & 1)));
  return _mm_blendv_epi8(w, _mm_set1_epi32((int)q[r - 1]), odd);
}

/* p[0..r) (r = 1..7) in lanes 0..r-1, zeros above (fp32: what a
 * _mm256_maskload_ps with the first r lanes gives); reads nothing past p[r-1] */
static inline __attribute__((always_inline)) __m256 mha_avx2_load_part(const int BT, const void* p,
                                                                       size_t r, __m256i mask) {
  if (BT == MHA_KV_F32) return _mm256_maskload_ps((const float*)p, mask);
  return mha_avx2_widen8(BT, mha_avx2_load_u16_part((const uint16_t*)p, r));
}

#endif
