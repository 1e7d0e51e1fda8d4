/* Packing into the x86 bf16 layout (bf16-gemm.h): A's rows (bf16 copied,
 * fp32 rounded to nearest even by vcvtne2ps2bf16), B's rows into panels of
 * k-pairs (a 32-bit transpose: 16 rows × 16 k-pairs at a time by unpacks
 * and 128-bit shuffles), and B from its columns (V: two rows' values
 * interleaved by 16 bits with vpermt2w). Tails value by value or masked:
 * nothing is read past a row's k (or n) values. The one BF16 instruction
 * is the fp32 rounding's. Compiled with the AVX512-BF16 set's flags
 * (-mavx512f -mavx512bw -mavx512bf16 ...). */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/bf16-gemm.h"

enum { MHA_BF16_X86_NR = 32 };

void mha_bf16_pack_a__avx512bw(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst) {
  const size_t ld = (k + 3) / 4 * 4;
  for (size_t r = 0; r < rows; r++) {
    memcpy(dst + r * ld, src[r], k * sizeof(uint16_t));
    memset(dst + r * ld + k, 0, (ld - k) * sizeof(uint16_t));
  }
}

/* P's rows: vcvtne2ps2bf16 (AVX512-BF16) rounds 32 values to nearest even
 * in one instruction; it reads an fp32 subnormal as a zero of its sign —
 * the value vdpbf16ps itself reads a bf16 subnormal as, so the products are
 * the integer rounding's (config/kernels.h) */
void mha_bf16_pack_a_f32__avx512bf16(size_t rows, size_t k, const float* const* src, uint16_t* dst) {
  const size_t ld = (k + 3) / 4 * 4;
  for (size_t r = 0; r < rows; r++) {
    const float* x = src[r];
    uint16_t* y = dst + r * ld;
    size_t c = 0;
    for (; c + 32 <= k; c += 32) {
      const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
      _mm512_storeu_si512(y + c, (__m512i)h);
    }
    for (; c < ld; c += 32) { /* the tail: values past k loaded as 0, stored up to ld */
      const size_t nk = k > c ? k - c : 0, nl = ld - c < 32 ? ld - c : 32;
      const __mmask16 lo = (__mmask16)(nk >= 16 ? 0xffffu : (1u << nk) - 1u);
      const __mmask16 hi = (__mmask16)(nk >= 32 ? 0xffffu : nk > 16 ? (1u << (nk - 16)) - 1u : 0u);
      const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + c + 16), _mm512_maskz_loadu_ps(lo, x + c));
      _mm512_mask_storeu_epi16(y + c, (__mmask32)(nl == 32 ? 0xffffffffu : (1u << nl) - 1u), (__m512i)h);
    }
  }
}

/* r[i] ← column i of the 16×16 matrix of 32-bit words whose row i was r[i] */
static inline __attribute__((always_inline)) void mha_transpose16x16_epi32(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  /* u[4g + c], 128-bit lane L: rows 4g .. 4g+3 of column 4L + c */
  for (int g = 0; g < 4; g++) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; c++) {
    const __m512i xlo = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i xhi = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i ylo = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i yhi = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
    r[c] = _mm512_shuffle_i32x4(xlo, ylo, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + c] = _mm512_shuffle_i32x4(xlo, ylo, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + c] = _mm512_shuffle_i32x4(xhi, yhi, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + c] = _mm512_shuffle_i32x4(xhi, yhi, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

/* row x's k-pair t as one 32-bit word (values past k are 0) */
static inline uint32_t mha_pair_word(const uint16_t* x, size_t k, size_t t) {
  const uint32_t lo = 2 * t < k ? x[2 * t] : 0u, hi = 2 * t + 1 < k ? x[2 * t + 1] : 0u;
  return lo | hi << 16;
}

void mha_bf16_pack_b__avx512bw(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst) {
  const size_t kp = (k + 3) / 4 * 2; /* k-pairs per row, padded */
  const size_t full = k / 32 * 16;   /* k-pairs in whole 16-pair blocks */
  for (size_t j0 = 0; j0 < rows; j0 += MHA_BF16_X86_NR) {
    uint32_t* panel = (uint32_t*)(void*)(dst + j0 * 2 * kp);
    for (size_t h = 0; h < 2; h++) { /* the panel's 16-row halves */
      const uint16_t* const* x = src + j0 + 16 * h;
      for (size_t t0 = 0; t0 < full; t0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(x[i] + 2 * t0);
        mha_transpose16x16_epi32(r);
        for (int i = 0; i < 16; i++) _mm512_storeu_si512(panel + 32 * (t0 + (size_t)i) + 16 * h, r[i]);
      }
      for (size_t t = full; t < kp; t++) {
        for (size_t i = 0; i < 16; i++) panel[32 * t + 16 * h + i] = mha_pair_word(x[i], k, t);
      }
    }
  }
}

void mha_bf16_pack_b_cols__avx512bw(size_t k, size_t n, const uint16_t* const* src, uint16_t* dst) {
  const size_t kp = k / 2;
  /* output value 2i: column i of the first row, 2i + 1: of the second */
  __m512i lo_idx, hi_idx;
  {
    uint16_t lo[32], hi[32];
    for (int i = 0; i < 16; i++) {
      lo[2 * i] = (uint16_t)i, lo[2 * i + 1] = (uint16_t)(32 + i);
      hi[2 * i] = (uint16_t)(16 + i), hi[2 * i + 1] = (uint16_t)(48 + i);
    }
    lo_idx = _mm512_loadu_si512(lo);
    hi_idx = _mm512_loadu_si512(hi);
  }
  for (size_t c0 = 0; c0 < n; c0 += MHA_BF16_X86_NR) {
    const size_t w = n - c0 < MHA_BF16_X86_NR ? n - c0 : MHA_BF16_X86_NR;
    const __mmask32 mask = w == 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << w) - 1u);
    uint16_t* panel = dst + c0 * 2 * kp;
    for (size_t t = 0; t < kp; t++) {
      const __m512i v0 = _mm512_maskz_loadu_epi16(mask, src[2 * t] + c0);
      const __m512i v1 = _mm512_maskz_loadu_epi16(mask, src[2 * t + 1] + c0);
      _mm512_storeu_si512(panel + 64 * t, _mm512_permutex2var_epi16(v0, lo_idx, v1));
      _mm512_storeu_si512(panel + 64 * t + 32, _mm512_permutex2var_epi16(v0, hi_idx, v1));
    }
  }
}
