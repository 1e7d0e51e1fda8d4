/* C (+)= alpha·A·Bᵀ on the x86 bf16 layout (bf16-gemm.h) with AMX-BF16: a
 * 32×32 fp32 tile in four accumulator tiles (tmm0..3: rows 0–15 and 16–31
 * × columns 0–15 and 16–31), A's two 16-row tiles (tmm4, tmm5: 16 k-pairs
 * of 16 rows, read in place at A's row stride) and B's two (tmm6, tmm7: 16
 * k-pairs of 16 columns, the panel's halves at a 128-byte stride), four
 * TDPBF16PS a step of 16 k-pairs — 32768 FLOPs against 4 KB of tile loads.
 *
 * The layout is avx512_bf16's, unchanged: a row's k-pairs are a tile row
 * as they lie, a panel's k-pair t is B's tile row t. Edges: a row tile with
 * fewer than 16 rows is copied into a zero-padded buffer step by step (a
 * tile load reads all 16 rows, and rows past m may lie past A); the last
 * step's k-pairs past 2·kq (k not a multiple of 32) come from zero-padded
 * copies of A's and B's tails, so every step is a whole TDPBF16PS and every
 * element of every call runs the same chain: 0, then one TDPBF16PS per step
 * in k order (the padding adds products of zeros). C's columns past n and
 * rows past m are computed and not stored.
 *
 * Each call loads its configuration and releases the tiles at the end: the
 * tiles are caller-saved in the psABI, so nothing is assumed of them between
 * calls (the cost of that per call is to be measured on an AMX CPU: the
 * configuration could move to the drivers' tasks). Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512bf16 (the epilogue is AVX-512;
 * every AMX CPU has those). */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/amx-ops.h"
#include "bf16-gemm/bf16-gemm.h"

/* every tile 16 rows of 64 bytes */
static const mha_amx_tilecfg mha_amx_cfg_32x32 = {
    .palette_id = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64}, .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

/* rows [0, m) (m <= 16) of a 16-row A tile at `a` (row stride lda values),
 * `pairs` k-pairs each (<= 16), into buf (16 rows of 32 values; the caller
 * zeroed what is not copied) */
static void mha_amx_copy_a(size_t m, size_t pairs, const uint16_t* a, size_t lda, uint16_t* buf) {
  for (size_t i = 0; i < m; i++) memcpy(buf + 32 * i, a + i * lda, 4 * pairs);
}

/* The accumulator tiles from, or to, a 32 × 32 (two: else 16 × 32) fp32
 * tile at c, rows ld floats apart */
static inline __attribute__((always_inline)) void mha_amx_load_acc(const float* c, size_t ld, int two) {
  MHA_AMX_TILELOADD(0, c, 4 * ld);
  MHA_AMX_TILELOADD(1, c + 16, 4 * ld);
  if (two) {
    MHA_AMX_TILELOADD(2, c + 16 * ld, 4 * ld);
    MHA_AMX_TILELOADD(3, c + 16 * ld + 16, 4 * ld);
  }
}

static inline __attribute__((always_inline)) void mha_amx_store_acc(float* c, size_t ld, int two) {
  MHA_AMX_TILESTORED(0, c, 4 * ld);
  MHA_AMX_TILESTORED(1, c + 16, 4 * ld);
  if (two) {
    MHA_AMX_TILESTORED(2, c + 16 * ld, 4 * ld);
    MHA_AMX_TILESTORED(3, c + 16 * ld + 16, 4 * ld);
  }
}

/* One step of 16 k-pairs: A's row tiles at a0 and a1 (row strides s0, s1
 * bytes; a1 read when two), B's panel step at b (its halves 32 values apart,
 * rows 128 bytes apart) */
static inline __attribute__((always_inline)) void mha_amx_step(const uint16_t* a0, size_t s0, const uint16_t* a1,
                                                               size_t s1, const uint16_t* b, int two) {
  MHA_AMX_TILELOADD(4, a0, s0);
  MHA_AMX_TILELOADD(6, b, 128);
  MHA_AMX_TILELOADD(7, b + 32, 128);
  MHA_AMX_TDPBF16PS(0, 4, 6);
  MHA_AMX_TDPBF16PS(1, 4, 7);
  if (two) {
    MHA_AMX_TILELOADD(5, a1, s1);
    MHA_AMX_TDPBF16PS(2, 5, 6);
    MHA_AMX_TDPBF16PS(3, 5, 7);
  }
}

void mha_bf16_gemm_amx_ukernel_32x32__amxbf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                              const uint16_t* b, float alpha, float* c, size_t ldc,
                                              int accumulate) {
  const size_t kp = 2 * kq, steps = kp / 16, rem = kp % 16, lda = 4 * kq;
  const int two = m > 16; /* the second row tile */
  const size_t m0 = m < 16 ? m : 16, m1 = m - m0;
  /* C's 32 × 32 (or 16 × 32) tile lies in C whole */
  const int whole = m == (two ? 32u : 16u) && n == 32;
  _Alignas(64) uint16_t abuf[2][16 * 32];
  _Alignas(64) uint16_t bbuf[16 * 64];
  _Alignas(64) float cbuf[32 * 32];
  const __mmask16 k0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
  const __mmask16 k1 = n > 16 ? (__mmask16)((1u << (n - 16)) - 1u) : (__mmask16)0;

  MHA_AMX_LDTILECFG(&mha_amx_cfg_32x32);
  if (accumulate == 2) { /* continue: the chains start from C */
    if (whole) {
      mha_amx_load_acc(c, ldc, two);
    } else {
      memset(cbuf, 0, sizeof cbuf);
      for (size_t i = 0; i < m; i++) {
        _mm512_store_ps(cbuf + 32 * i, _mm512_maskz_loadu_ps(k0, c + i * ldc));
        _mm512_store_ps(cbuf + 32 * i + 16, _mm512_maskz_loadu_ps(k1, c + i * ldc + 16));
      }
      mha_amx_load_acc(cbuf, 32, two);
    }
  } else {
    MHA_AMX_TILEZERO(0);
    MHA_AMX_TILEZERO(1);
    MHA_AMX_TILEZERO(2);
    MHA_AMX_TILEZERO(3);
  }

  /* a row tile of 16 rows read in place (2·lda bytes a row), a partial one
   * from its zero-padded copy */
  const int copy0 = m0 < 16, copy1 = two && m1 < 16;
  const uint16_t* a1 = two ? a + 16 * lda : a;
  if (copy0) memset(abuf[0], 0, sizeof abuf[0]);
  if (copy1) memset(abuf[1], 0, sizeof abuf[1]);
  for (size_t s = 0; s < steps; s++) {
    const uint16_t *as0 = a + 32 * s, *as1 = a1 + 32 * s;
    if (copy0) mha_amx_copy_a(m0, 16, as0, lda, abuf[0]);
    if (copy1) mha_amx_copy_a(m1, 16, as1, lda, abuf[1]);
    mha_amx_step(copy0 ? abuf[0] : as0, copy0 ? 64 : 2 * lda, copy1 ? abuf[1] : as1, copy1 ? 64 : 2 * lda,
                 b + 1024 * s, two);
  }
  if (rem > 0) { /* the last k-pairs, zero-padded to a whole step */
    memset(abuf, 0, sizeof abuf);
    memset(bbuf, 0, sizeof bbuf);
    mha_amx_copy_a(m0, rem, a + 32 * steps, lda, abuf[0]);
    if (two) mha_amx_copy_a(m1, rem, a1 + 32 * steps, lda, abuf[1]);
    memcpy(bbuf, b + 1024 * steps, 128 * rem);
    mha_amx_step(abuf[0], 64, abuf[1], 64, bbuf, two);
  }

  const __m512 va = _mm512_set1_ps(alpha);
  if (whole && accumulate != 1) { /* C = alpha·acc: the tiles straight to C */
    mha_amx_store_acc(c, ldc, two);
    MHA_AMX_TILERELEASE();
    if (alpha != 1.0f) { /* 1·acc is acc: the same bits as the product */
      for (size_t i = 0; i < m; i++) {
        float* r = c + i * ldc;
        _mm512_storeu_ps(r, _mm512_mul_ps(_mm512_loadu_ps(r), va));
        _mm512_storeu_ps(r + 16, _mm512_mul_ps(_mm512_loadu_ps(r + 16), va));
      }
    }
    return;
  }
  mha_amx_store_acc(cbuf, 32, two);
  MHA_AMX_TILERELEASE();
  for (size_t i = 0; i < m; i++) {
    float* r = c + i * ldc;
    __m512 y0 = _mm512_mul_ps(_mm512_load_ps(cbuf + 32 * i), va);
    __m512 y1 = _mm512_mul_ps(_mm512_load_ps(cbuf + 32 * i + 16), va);
    if (accumulate == 1) {
      y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(k0, r));
      y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(k1, r + 16));
    }
    _mm512_mask_storeu_ps(r, k0, y0);
    _mm512_mask_storeu_ps(r + 16, k1, y1);
  }
}
