/*
 * 16 lanes of B for the AVX-512F cores: fp32, or 16 bits widened exactly in
 * registers (f16 by vcvtph2ps, bf16 by zero extension and a shift left by
 * 16). AVX-512F only: no AVX512BW (no 16-bit masked loads), so a partial
 * vector of 16-bit values is loaded as 32-bit pairs. Files that include it
 * are compiled with -mavx512f -mfma.
 */
#ifndef MHA_KERNELS_KV_LOAD_AVX512F_H
#define MHA_KERNELS_KV_LOAD_AVX512F_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-load.h"

/* 16 widened values from 16 16-bit ones */
static inline __attribute__((always_inline)) __m512 mha_avx512f_widen16(const int BT, __m256i h) {
  if (BT == MHA_KV_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* p[0..16) */
static inline __attribute__((always_inline)) __m512 mha_avx512f_load16(const int BT,
                                                                       const void* p) {
  if (BT == MHA_KV_F32) return _mm512_loadu_ps((const float*)p);
  return mha_avx512f_widen16(BT, _mm256_loadu_si256((const __m256i*)p));
}

/* q[0..r) (16-bit, r = 0..15) in lanes 0..r-1, zeros above; reads nothing
 * past q[r-1]: the r/2 whole pairs by one masked load of 32-bit lanes, an
 * odd last value put in the low half of the next 32-bit lane. */
static inline __attribute__((always_inline)) __m256i mha_avx512f_load_u16_part(const uint16_t* q,
                                                                               size_t r) {
  __m512i w = _mm512_maskz_loadu_epi32((__mmask16)((1u << (r >> 1)) - 1u), q);
  if (r & 1) w = _mm512_mask_set1_epi32(w, (__mmask16)(1u << (r >> 1)), (int)q[r - 1]);
  return _mm512_castsi512_si256(w);
}

/* The lanes of mask (its first r, r = 0..16) of p, zeros elsewhere: fp32 by
 * a masked load, 16 bits by a plain load when r = 16 and pairs otherwise.
 * Reads nothing past p[r-1]. */
static inline __attribute__((always_inline)) __m512 mha_avx512f_load_part(const int BT,
                                                                          const void* p, size_t r,
                                                                          __mmask16 mask) {
  if (BT == MHA_KV_F32) return _mm512_maskz_loadu_ps(mask, (const float*)p);
  if (r >= 16) return mha_avx512f_load16(BT, p);
  if (r == 0) return _mm512_setzero_ps();
  return mha_avx512f_widen16(BT, mha_avx512f_load_u16_part((const uint16_t*)p, r));
}

#endif
