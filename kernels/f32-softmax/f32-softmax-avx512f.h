/*
 * The horizontal reductions of the AVX-512F softmax steps, written out so
 * that their order is the library's, not the compiler's: the row step, the
 * tile step and the transposed tile step (where each lane is a query row and
 * the same tree runs over 16 vectors, one per lane of the row form) give the
 * same bits under any compiler. The tree is the one GCC's
 * _mm512_reduce_{max,add}_ps used before: lanes (i, i+8), then (i, i+4),
 * (i, i+2), (i, i+1), each max as max_ps(a, b) = a > b ? a : b. Included by
 * files compiled with -mavx512f.
 */
#ifndef MHA_KERNELS_F32_SOFTMAX_AVX512F_H
#define MHA_KERNELS_F32_SOFTMAX_AVX512F_H

#include <immintrin.h>

static inline __m256 mha_avx512f_hi256(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* max over the 16 lanes of v (no NaN lane: the steps' maxima skip NaNs) */
static inline float mha_avx512f_hmax(__m512 v) {
  const __m256 t3 = _mm256_max_ps(mha_avx512f_hi256(v), _mm512_castps512_ps256(v));
  const __m128 t6 = _mm_max_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  const __m128 t8 = _mm_max_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m128 t10 = _mm_max_ss(t8, _mm_shuffle_ps(t8, t8, _MM_SHUFFLE(0, 1, 0, 1)));
  return _mm_cvtss_f32(t10);
}

/* sum of the 16 lanes of v */
static inline float mha_avx512f_hadd(__m512 v) {
  const __m256 t3 = _mm256_add_ps(mha_avx512f_hi256(v), _mm512_castps512_ps256(v));
  const __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  const __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m128 t10 = _mm_add_ss(t8, _mm_shuffle_ps(t8, t8, _MM_SHUFFLE(0, 1, 0, 1)));
  return _mm_cvtss_f32(t10);
}

/* lane r: the hmax tree over (v[0][r], ..., v[15][r]) */
static inline __m512 mha_avx512f_vmax16(const __m512 v[16]) {
  __m512 t[8];
  for (int i = 0; i < 8; i++) t[i] = _mm512_max_ps(v[i + 8], v[i]);
  for (int i = 0; i < 4; i++) t[i] = _mm512_max_ps(t[i + 4], t[i]);
  const __m512 t0 = _mm512_max_ps(t[0], t[2]), t1 = _mm512_max_ps(t[1], t[3]);
  return _mm512_max_ps(t0, t1);
}

/* lane r: the hadd tree over (v[0][r], ..., v[15][r]) */
static inline __m512 mha_avx512f_vadd16(const __m512 v[16]) {
  __m512 t[8];
  for (int i = 0; i < 8; i++) t[i] = _mm512_add_ps(v[i + 8], v[i]);
  for (int i = 0; i < 4; i++) t[i] = _mm512_add_ps(t[i + 4], t[i]);
  const __m512 t0 = _mm512_add_ps(t[0], t[2]), t1 = _mm512_add_ps(t[1], t[3]);
  return _mm512_add_ps(t0, t1);
}

#endif
