/* C (+)= alpha·A·Bᵀ on the x86 bf16 layout (bf16-gemm.h): a 12×32 fp32 tile
 * of 24 zmm accumulators, one k-pair per step: B's two 16-row halves of the
 * panel in two registers, each row of A's k-pair a 32-bit broadcast folded
 * into vdpbf16ps ({1to16}), 24 vdpbf16ps per step — 1536 FLOPs against 2
 * vector loads and 12 broadcast ones (26 of the 32 registers).
 *
 * vdpbf16ps adds to each fp32 lane the two products of its lane's bf16
 * pair, each product exact, the sums rounded to nearest even, subnormal
 * inputs and outputs flushed to zero, MXCSR not consulted. Every element runs
 * the same chain whatever m, n and its place in the tile, so the bits of a
 * row do not depend on the rows computed beside it. Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512bf16. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/mca-markers.h"

static inline __attribute__((always_inline)) __m512bh mha_bcast_pair(const uint16_t* p) {
  int32_t w;
  memcpy(&w, p, sizeof w);
  return (__m512bh)_mm512_set1_epi32(w);
}

/* The tile with M rows of A (M = 1..12): rows 0 .. M of c (row stride ldc),
 * columns [0, n) (n <= 32; a partial half loaded and stored masked).
 * accumulate: 0 C = alpha·acc, 1 C += alpha·acc, 2 (continue) the
 * accumulators start from C's values instead of 0, then C = alpha·acc. */
static inline __attribute__((always_inline)) void mha_dp_tile(const int M, size_t n, size_t kq, const uint16_t* a,
                                                              const uint16_t* b, float alpha, float* c, size_t ldc,
                                                              int accumulate) {
  const size_t lda = 4 * kq, kp = 2 * kq;
  const __mmask16 k0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
  const __mmask16 k1 = n > 16 ? (__mmask16)((1u << (n - 16)) - 1u) : (__mmask16)0;
  __m512 acc[12][2];
  if (accumulate == 2) {
#pragma GCC unroll 12
    for (int i = 0; i < M; i++) {
      acc[i][0] = _mm512_maskz_loadu_ps(k0, c + (size_t)i * ldc);
      acc[i][1] = _mm512_maskz_loadu_ps(k1, c + (size_t)i * ldc + 16);
    }
  } else {
#pragma GCC unroll 12
    for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  }
  for (size_t t = 0; t < kp; t++) {
    if (M == 12) MHA_MCA_BEGIN("bf16_gemm_dp_12x32__avx512bf16.kstep"); /* the full tile's */
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + 64 * t);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 64 * t + 32);
#pragma GCC unroll 12
    for (int i = 0; i < M; i++) {
      const __m512bh ai = mha_bcast_pair(a + (size_t)i * lda + 2 * t);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    if (M == 12) MHA_MCA_END("bf16_gemm_dp_12x32__avx512bf16.kstep");
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (n == 32) {
#pragma GCC unroll 12
    for (int i = 0; i < M; i++) {
      float* r = c + (size_t)i * ldc;
      __m512 y0 = _mm512_mul_ps(acc[i][0], va), y1 = _mm512_mul_ps(acc[i][1], va);
      if (accumulate == 1) {
        y0 = _mm512_add_ps(y0, _mm512_loadu_ps(r));
        y1 = _mm512_add_ps(y1, _mm512_loadu_ps(r + 16));
      }
      _mm512_storeu_ps(r, y0);
      _mm512_storeu_ps(r + 16, y1);
    }
    return;
  }
#pragma GCC unroll 12
  for (int i = 0; i < M; i++) {
    float* r = c + (size_t)i * ldc;
    __m512 y0 = _mm512_mul_ps(acc[i][0], va), y1 = _mm512_mul_ps(acc[i][1], va);
    if (accumulate == 1) {
      y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(k0, r));
      y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(k1, r + 16));
    }
    _mm512_mask_storeu_ps(r, k0, y0);
    _mm512_mask_storeu_ps(r + 16, k1, y1);
  }
}

void mha_bf16_gemm_dp_ukernel_12x32__avx512bf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                                const uint16_t* b, float alpha, float* c, size_t ldc,
                                                int accumulate) {
  switch (m) {
    case 12: mha_dp_tile(12, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 11: mha_dp_tile(11, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 10: mha_dp_tile(10, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 9: mha_dp_tile(9, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 8: mha_dp_tile(8, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 7: mha_dp_tile(7, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 6: mha_dp_tile(6, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 5: mha_dp_tile(5, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 4: mha_dp_tile(4, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 3: mha_dp_tile(3, n, kq, a, b, alpha, c, ldc, accumulate); break;
    case 2: mha_dp_tile(2, n, kq, a, b, alpha, c, ldc, accumulate); break;
    default: mha_dp_tile(1, n, kq, a, b, alpha, c, ldc, accumulate); break;
  }
}
