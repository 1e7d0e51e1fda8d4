/*
 * White-box test of the K/V cache kernels of every available kernel table
 * (config/kernels.h, kernels/kv-gemm/): each must give BITWISE the result of
 * its ISA's f32 kernel run on the widened values (memcmp, no tolerance).
 *  (1) gemm_nt_{f16,bf16} against gemm_nt on the widened B, m 1..13, n 1..19
 *      and 64, k from 1 to 129 around every vector width, tight and padded
 *      strides;
 *  (2) gemm_pv_{f32,f16,bf16} against gemm (accumulate = 1) on the widened
 *      rows packed together, from the same random C: m 1..MR+1 and 2·MR+3,
 *      n 1..NR+1, 64, 100, 128, 200, 273, k 1..127; through row pointers,
 *      the rows come from a shuffled pool of separately mapped rows (not in
 *      order, not contiguous); strided (brows NULL), the same rows copied to
 *      b + p·ldb, ldb tight or padded;
 *  (3) widen_{f16,bf16} against kv-convert.h's scalar conversion for all
 *      65536 patterns, at several n and misalignments;
 *  (4) nothing outside the operands is touched: A and every B row end at a
 *      PROT_NONE page (guarded-buffer.h: an over-read faults), and C (and
 *      widen's y) sits between guard zones whose poison must survive;
 *      outputs are poisoned with NaN before each run, so an element never
 *      written is caught;
 *  (5) narrow_{f16,bf16} against kv-convert.h's mha_f32_to_f16 /
 *      mha_f32_to_bf16 bit for bit: every fp32 upper half (all signs and
 *      exponents: ±0, ±inf, signaling and quiet NaNs, fp32 and f16
 *      subnormals, 65504 and 65520, bf16 ties) with 48 lower halves that put
 *      the f16 rounding bits (13 dropped bits: 0, 1, half − 1, half,
 *      half + 1, all; the kept last bit and its neighbours 0 or 1) and the
 *      bf16 ones (0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff) on every
 *      case, the lower half equal to the upper one, and a random one: 3.3
 *      million patterns, in calls of 5, 17, 63 and 4096 values; every
 *      length 0..70 with y misaligned by 0..3 values, each twice under two
 *      poisons; y between poisoned guard zones, x ending at a PROT_NONE page
 *      (n = 0 gets the page itself); and once more under the floating-point
 *      modes a caller may set for speed (x86: MXCSR DAZ, FTZ and round
 *      toward zero; AArch64: FPCR.FZ), which must not change a bit.
 * B is random finite 16-bit patterns (subnormals and zeros included; bf16
 * exponents kept below 2^9 so that sums do not overflow), and a second pass
 * puts infinities and NaNs (random sign and payload, signaling ones
 * included) in B. Each output then meets at most one such value (one per key
 * row in (1), one per column in (2)): which NaN an addition returns when
 * both operands are NaN depends on the operand order the compiler picks (it
 * commutes additions freely, even in the f32 kernels), so no two NaNs may
 * meet for the result to be defined bit for bit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "config/kernels.h"
#include "guarded-buffer.h"
#include "kv-gemm/kv-convert.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define GUARD 16 /* poisoned floats before and after C */

enum { T_F32 = 0, T_F16 = 1, T_BF16 = 2 };
static const char* const kTypeName[] = {"f32", "f16", "bf16"};

static const size_t kNtDepths[] = {1,  2,  3,  7,  8,  15,  16,  17, 31,
                                   32, 33, 63, 64, 65, 127, 128, 129};
static const size_t kPvDepths[] = {1, 2, 3, 7, 16, 17, 64, 65, 127};

/* ---- values ---- */

static float widen1(int type, uint16_t h) {
  return type == T_F16 ? mha_f16_to_f32(h) : mha_bf16_to_f32(h);
}

/* a random finite 16-bit value: any finite f16; a bf16 below 2^9 in magnitude */
static uint16_t random_x16(tester* t, int type) {
  const uint16_t r = (uint16_t)tester_bits(t);
  if (type == T_F16) return (r & 0x7c00u) == 0x7c00u ? (uint16_t)(r & ~0x4000u) : r;
  const uint16_t exp = (uint16_t)tester_below(t, 127 + 9); /* 0 (zeros, subnormals) .. 2^8 */
  return (uint16_t)((r & 0x807fu) | (exp << 7));
}

/* ±inf or a NaN with a random sign and payload (quiet or signaling) */
static uint16_t special_x16(tester* t, int type) {
  const uint16_t sign = (uint16_t)(tester_below(t, 2) << 15);
  const uint16_t exp = type == T_F16 ? 0x7c00u : 0x7f80u;
  const uint16_t man_mask = type == T_F16 ? 0x03ffu : 0x007fu;
  if (tester_below(t, 3) == 0) return (uint16_t)(sign | exp);
  uint16_t man = (uint16_t)(tester_bits(t) & man_mask);
  if (man == 0) man = 1;
  return (uint16_t)(sign | exp | man);
}

static float special_f32(tester* t) {
  const uint32_t sign = (uint32_t)tester_below(t, 2) << 31;
  if (tester_below(t, 3) == 0) return mha_bits_to_f32(sign | 0x7f800000u);
  uint32_t man = (uint32_t)tester_bits(t) & 0x7fffffu;
  if (man == 0) man = 1;
  return mha_bits_to_f32(sign | 0x7f800000u | man);
}

/* ---- buffers ---- */

/* count 16-bit values ending exactly at a PROT_NONE page */
static uint16_t* guarded_u16(guarded_buffer* g, size_t count) {
  const size_t floats = (count + 1) / 2;
  *g = guarded_alloc(floats);
  return (uint16_t*)(g->data + floats) - count;
}

/* a C of m rows of stride ldc between guard zones, all poisoned; returns the view */
static float* c_alloc(size_t m, size_t n, size_t ldc, float** buf, size_t* total) {
  *total = (m - 1) * ldc + n + 2 * GUARD;
  *buf = tester_alloc(*total * sizeof(float));
  tester_poison(*buf, *total);
  return *buf + GUARD;
}

/* got against want (both views of C, m×n, stride ldc) bit for bit; the
 * poison must survive in got's buffer outside the view and nowhere inside */
static void compare_c(tester* t, const char* what, size_t m, size_t n, size_t ldc,
                      const float* want, const float* got_buf, size_t total) {
  const float* got = got_buf + GUARD;
  size_t diff = 0, unwritten = 0, first_i = 0, first_j = 0;
  for (size_t i = 0; i < m; i++) {
    for (size_t j = 0; j < n; j++) {
      const float g = got[i * ldc + j], w = want[i * ldc + j];
      if (tester_is_poison(g)) unwritten++;
      if (mha_f32_to_bits(g) != mha_f32_to_bits(w) && diff++ == 0) first_i = i, first_j = j;
    }
  }
  if (!tester_check(t, diff == 0,
                    "%s: %zu of %zu elements differ from the f32 kernel's; first C[%zu][%zu] = "
                    "%.9g (0x%08x), want %.9g (0x%08x)",
                    what, diff, m * n, first_i, first_j, got[first_i * ldc + first_j],
                    (unsigned)mha_f32_to_bits(got[first_i * ldc + first_j]),
                    want[first_i * ldc + first_j],
                    (unsigned)mha_f32_to_bits(want[first_i * ldc + first_j]))) {
    if (t->failures > 40) t->quiet = 1; /* count the rest, print no more */
  }
  tester_check(t, unwritten == 0, "%s: %zu elements of C[0..m)[0..n) not written", what, unwritten);
  size_t stray = 0;
  const size_t extent = (m - 1) * ldc + n;
  for (size_t idx = 0; idx < total; idx++) {
    const ptrdiff_t off = (ptrdiff_t)idx - GUARD;
    const int inside = off >= 0 && (size_t)off < extent && (size_t)off % ldc < n;
    if (!inside && !tester_is_poison(got_buf[idx])) stray++;
  }
  tester_check(t, stray == 0, "%s: %zu elements written outside C[0..m)[0..n)", what, stray);
}

/* ---- (1) gemm_nt_{f16,bf16} ---- */

static void check_nt(tester* t, const mha_kernels* kr, int type, size_t m, size_t n, size_t k,
                     int padded, int specials) {
  const mha_x16_gemm_nt_fn fn = type == T_F16 ? kr->gemm_nt_f16 : kr->gemm_nt_bf16;
  const size_t lda = padded ? k + 3 : k, ldb = padded ? k + 5 : k, ldc = padded ? n + 2 : n;
  tester_context(t, "isa=%s gemm_nt_%s m=%zu n=%zu k=%zu lda=%zu ldb=%zu ldc=%zu specials=%d",
                 kr->name, kTypeName[type], m, n, k, lda, ldb, ldc, specials);
  const size_t a_size = (m - 1) * lda + k, b_size = (n - 1) * ldb + k;
  guarded_buffer ga, gb;
  ga = guarded_alloc(a_size);
  uint16_t* b = guarded_u16(&gb, b_size);
  tester_fill(t, ga.data, a_size);
  for (size_t i = 0; i < b_size; i++) b[i] = random_x16(t, type);
  if (specials) { /* at most one per key row: each dot product meets at most one */
    for (size_t j = 0; j < n; j++) {
      if (tester_below(t, 2))
        b[j * ldb + (size_t)tester_below(t, (int64_t)k)] = special_x16(t, type);
    }
  }
  float* bw = tester_alloc(b_size * sizeof(float));
  for (size_t i = 0; i < b_size; i++) bw[i] = widen1(type, b[i]);

  float *ref_buf, *got_buf;
  size_t total;
  float* ref = c_alloc(m, n, ldc, &ref_buf, &total);
  float* got = c_alloc(m, n, ldc, &got_buf, &total);
  kr->gemm_nt(m, n, k, ga.data, lda, bw, ldb, ref, ldc);
  fn(m, n, k, ga.data, lda, b, ldb, got, ldc);
  compare_c(t, "gemm_nt", m, n, ldc, ref, got_buf, total);

  free(got_buf);
  free(ref_buf);
  free(bw);
  guarded_free(&gb);
  guarded_free(&ga);
}

static void test_nt(tester* t, const mha_kernels* kr) {
  static const size_t special_m[] = {1, 3, 4, 5, 13};
  static const size_t special_n[] = {1, 2, 3, 4, 5, 19, 64};
  static const size_t special_k[] = {1, 3, 7, 8, 16, 17, 33, 64, 129};
  for (int type = T_F16; type <= T_BF16; type++) {
    for (size_t m = 1; m <= 13; m++) {
      for (size_t n = 1; n <= 20; n++) {
        const size_t nn = n == 20 ? 64 : n;
        for (size_t ki = 0; ki < COUNT(kNtDepths); ki++) {
          for (int padded = 0; padded < 2; padded++)
            check_nt(t, kr, type, m, nn, kNtDepths[ki], padded, 0);
        }
      }
    }
    for (size_t mi = 0; mi < COUNT(special_m); mi++) {
      for (size_t ni = 0; ni < COUNT(special_n); ni++) {
        for (size_t ki = 0; ki < COUNT(special_k); ki++) {
          check_nt(t, kr, type, special_m[mi], special_n[ni], special_k[ki], (int)(ki & 1), 1);
        }
      }
    }
  }
}

/* ---- (2) gemm_pv_{f32,f16,bf16} ---- */

#define POOL 160 /* rows of B to draw from, each mapped on its own */

typedef struct row_pool {
  guarded_buffer g[POOL];
  void* row[POOL]; /* n values of the type, ending at a PROT_NONE page */
} row_pool;

static void pool_alloc(row_pool* pool, int type, size_t n) {
  for (size_t r = 0; r < POOL; r++) {
    if (type == T_F32) {
      pool->g[r] = guarded_alloc(n);
      pool->row[r] = pool->g[r].data;
    } else {
      pool->row[r] = guarded_u16(&pool->g[r], n);
    }
  }
}

static void pool_free(row_pool* pool) {
  for (size_t r = 0; r < POOL; r++) guarded_free(&pool->g[r]);
}

static void check_pv(tester* t, const mha_kernels* kr, int type, row_pool* pool, size_t m, size_t n,
                     size_t k, int padded, int specials) {
  const size_t lda = padded ? k + 3 : k, ldc = padded ? n + 5 : n;
  tester_context(t, "isa=%s gemm_pv_%s m=%zu n=%zu k=%zu lda=%zu ldc=%zu specials=%d", kr->name,
                 kTypeName[type], m, n, k, lda, ldc, specials);
  /* k distinct rows of the pool in a shuffled order */
  size_t pick[POOL];
  for (size_t r = 0; r < POOL; r++) pick[r] = r;
  for (size_t r = 0; r < k; r++) {
    const size_t s = r + (size_t)tester_below(t, (int64_t)(POOL - r));
    const size_t x = pick[r];
    pick[r] = pick[s];
    pick[s] = x;
  }
  const float* frows[POOL];
  const uint16_t* hrows[POOL];
  float* bw = tester_alloc(k * n * sizeof(float)); /* the widened rows, packed */
  for (size_t p = 0; p < k; p++) {
    void* row = pool->row[pick[p]];
    if (type == T_F32) {
      float* fr = row;
      tester_fill(t, fr, n);
      memcpy(bw + p * n, fr, n * sizeof(float));
      frows[p] = fr;
    } else {
      uint16_t* hr = row;
      for (size_t j = 0; j < n; j++) hr[j] = random_x16(t, type);
      hrows[p] = hr;
    }
  }
  if (specials) { /* at most one per column: each output meets at most one */
    for (size_t j = 0; j < n; j++) {
      if (!tester_below(t, 2)) continue;
      const size_t p = (size_t)tester_below(t, (int64_t)k);
      if (type == T_F32) {
        const float s = special_f32(t);
        ((float*)pool->row[pick[p]])[j] = s;
        bw[p * n + j] = s;
      } else {
        ((uint16_t*)pool->row[pick[p]])[j] = special_x16(t, type);
      }
    }
  }
  if (type != T_F32) {
    for (size_t p = 0; p < k; p++) {
      for (size_t j = 0; j < n; j++) bw[p * n + j] = widen1(type, hrows[p][j]);
    }
  }

  const size_t a_size = (m - 1) * lda + k;
  guarded_buffer ga = guarded_alloc(a_size);
  tester_fill(t, ga.data, a_size);
  float* c0 = tester_alloc(m * n * sizeof(float));
  tester_fill(t, c0, m * n);
  float *ref_buf, *got_buf;
  size_t total;
  float* ref = c_alloc(m, n, ldc, &ref_buf, &total);
  float* got = c_alloc(m, n, ldc, &got_buf, &total);
  for (size_t i = 0; i < m; i++) {
    memcpy(ref + i * ldc, c0 + i * n, n * sizeof(float));
    memcpy(got + i * ldc, c0 + i * n, n * sizeof(float));
  }

  const size_t mr = kr->gemm_mr, nr = kr->gemm_nr;
  for (size_t i0 = 0; i0 < m; i0 += mr) {
    for (size_t j0 = 0; j0 < n; j0 += nr) {
      kr->gemm(m - i0 < mr ? m - i0 : mr, n - j0 < nr ? n - j0 : nr, k, ga.data + i0 * lda, lda,
               bw + j0, n, ref + i0 * ldc + j0, ldc, 1);
    }
  }
  switch (type) {
    case T_F32:
      kr->gemm_pv_f32(m, n, k, ga.data, lda, NULL, 0, frows, got, ldc);
      break;
    case T_F16:
      kr->gemm_pv_f16(m, n, k, ga.data, lda, NULL, 0, hrows, got, ldc);
      break;
    default:
      kr->gemm_pv_bf16(m, n, k, ga.data, lda, NULL, 0, hrows, got, ldc);
      break;
  }
  compare_c(t, "gemm_pv (row pointers)", m, n, ldc, ref, got_buf, total);

  /* the strided form (brows NULL): the same rows at b + p·ldb, tight or
   * padded, the last one ending at a PROT_NONE page */
  const size_t ldb = padded ? n + 7 : n, b_size = (k - 1) * ldb + n;
  guarded_buffer gb;
  void* b;
  if (type == T_F32) {
    gb = guarded_alloc(b_size);
    b = gb.data;
  } else {
    b = guarded_u16(&gb, b_size);
  }
  for (size_t p = 0; p < k; p++) {
    const size_t esz = type == T_F32 ? sizeof(float) : sizeof(uint16_t);
    memcpy((char*)b + p * ldb * esz, pool->row[pick[p]], n * esz);
  }
  tester_poison(got_buf, total); /* guards and gaps poisoned again, C from c0 */
  for (size_t i = 0; i < m; i++) memcpy(got + i * ldc, c0 + i * n, n * sizeof(float));
  switch (type) {
    case T_F32:
      kr->gemm_pv_f32(m, n, k, ga.data, lda, b, ldb, NULL, got, ldc);
      break;
    case T_F16:
      kr->gemm_pv_f16(m, n, k, ga.data, lda, b, ldb, NULL, got, ldc);
      break;
    default:
      kr->gemm_pv_bf16(m, n, k, ga.data, lda, b, ldb, NULL, got, ldc);
      break;
  }
  compare_c(t, "gemm_pv (strided rows)", m, n, ldc, ref, got_buf, total);
  guarded_free(&gb);

  free(got_buf);
  free(ref_buf);
  free(c0);
  guarded_free(&ga);
  free(bw);
}

static void test_pv(tester* t, const mha_kernels* kr) {
  const size_t mr = kr->gemm_mr, nr = kr->gemm_nr;
  row_pool* pool = tester_alloc(sizeof(row_pool));
  for (int type = T_F32; type <= T_BF16; type++) {
    /* n past NR: 64 and 100, and the decode tiles' widths (128 and 256
     * columns, with and without a tail: 128, 200, 256 + 17) */
    static const size_t wide[] = {64, 100, 128, 200, 273};
    for (size_t ni = 1; ni <= nr + 1 + COUNT(wide); ni++) {
      const size_t n = ni <= nr + 1 ? ni : wide[ni - nr - 2];
      pool_alloc(pool, type, n);
      for (size_t mi = 1; mi <= mr + 2; mi++) {
        const size_t m = mi <= mr + 1 ? mi : 2 * mr + 3;
        for (size_t ki = 0; ki < COUNT(kPvDepths); ki++) {
          check_pv(t, kr, type, pool, m, n, kPvDepths[ki], (int)((m + ki) & 1), 0);
        }
        check_pv(t, kr, type, pool, m, n, kPvDepths[(m + n) % COUNT(kPvDepths)], (int)(n & 1), 1);
      }
      pool_free(pool);
    }
  }
  free(pool);
}

/* ---- (3) widen_{f16,bf16} ---- */

/* widen(n, x, y) with y between guard zones: y bitwise the scalar
 * conversion, the guards still poisoned */
static void check_widen_call(mha_x16_widen_fn fn, int type, size_t n, const uint16_t* x,
                             size_t y_misalign, size_t* bad, size_t* first, float* got_first,
                             size_t* stray) {
  float ybuf[2 * GUARD + 64 + 4];
  const size_t total = 2 * GUARD + n + y_misalign;
  tester_poison(ybuf, total);
  float* y = ybuf + GUARD + y_misalign;
  fn(n, x, y);
  for (size_t i = 0; i < n; i++) {
    if (mha_f32_to_bits(y[i]) != mha_f32_to_bits(widen1(type, x[i])) && (*bad)++ == 0) {
      *first = x[i];
      *got_first = y[i];
    }
  }
  for (size_t idx = 0; idx < total; idx++) {
    const int inside = idx >= GUARD + y_misalign && idx < GUARD + y_misalign + n;
    if (!inside && !tester_is_poison(ybuf[idx])) (*stray)++;
  }
}

static void test_widen(tester* t, const mha_kernels* kr) {
  static const size_t lengths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64};
  for (int type = T_F16; type <= T_BF16; type++) {
    const mha_x16_widen_fn fn = type == T_F16 ? kr->widen_f16 : kr->widen_bf16;
    /* every pattern, in calls of each length, x and y misaligned by 0..3
     * values; the last call of each sweep ends at a PROT_NONE page */
    guarded_buffer gx;
    uint16_t* all = guarded_u16(&gx, 65536);
    for (size_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    for (size_t li = 0; li < COUNT(lengths); li++) {
      for (size_t mis = 0; mis < 4; mis++) {
        const size_t len = lengths[li];
        tester_context(t, "isa=%s widen_%s n=%zu x offset %zu y misalignment %zu", kr->name,
                       kTypeName[type], len, mis, (3 * mis) % 4);
        size_t bad = 0, first = 0, stray = 0;
        float got_first = 0.0f;
        for (size_t s = mis; s < 65536; s += len) {
          const size_t n = 65536 - s < len ? 65536 - s : len;
          check_widen_call(fn, type, n, all + s, (3 * mis) % 4, &bad, &first, &got_first, &stray);
        }
        tester_check(t, bad == 0,
                     "%zu values differ from the scalar conversion; first 0x%04zx -> 0x%08x, "
                     "want 0x%08x",
                     bad, first, (unsigned)mha_f32_to_bits(got_first),
                     (unsigned)mha_f32_to_bits(widen1(type, (uint16_t)first)));
        tester_check(t, stray == 0, "%zu values written outside y[0..n)", stray);
      }
    }
    /* single calls of each length: from pattern 0, and ending at the guard page */
    for (size_t n = 1; n <= 64; n++) {
      tester_context(t, "isa=%s widen_%s n=%zu from pattern 0", kr->name, kTypeName[type], n);
      size_t bad = 0, first = 0, stray = 0;
      float got_first = 0.0f;
      check_widen_call(fn, type, n, all, 0, &bad, &first, &got_first, &stray);
      check_widen_call(fn, type, n, all + 65536 - n, 1, &bad, &first, &got_first, &stray);
      tester_check(t, bad == 0 && stray == 0, "%zu values differ, %zu written outside y", bad,
                   stray);
    }
    guarded_free(&gx);
  }
}

/* ---- (5) narrow_{f16,bf16} ---- */

#define NARROW_LOWS 50 /* lower halves per upper half of the sweep */
#define NARROW_COUNT ((size_t)NARROW_LOWS << 16)

/* The sweep's fp32 patterns and their scalar roundings, built once. */
typedef struct narrow_data {
  guarded_buffer gx; /* the patterns, ending at a PROT_NONE page */
  const float* x;
  uint16_t* want[3]; /* [T_F16], [T_BF16]: mha_f32_to_f16 / mha_f32_to_bf16 of x */
} narrow_data;

static void narrow_data_make(tester* t, narrow_data* d) {
  /* lower halves: the kept f16 bits 13..15 in all 8 states × the 13 dropped
   * bits 0, 1, half − 1, half, half + 1, all; with them every bf16 case */
  static const uint32_t dropped[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff};
  uint32_t lows[48];
  for (uint32_t kept = 0; kept < 8; kept++) {
    for (size_t j = 0; j < COUNT(dropped); j++) {
      lows[kept * COUNT(dropped) + j] = kept << 13 | dropped[j];
    }
  }
  d->gx = guarded_alloc(NARROW_COUNT);
  float* x = d->gx.data;
  /* by memcpy: a signaling NaN keeps its bits */
  for (uint32_t hi = 0; hi < 65536; hi++) {
    uint32_t u[NARROW_LOWS];
    for (size_t j = 0; j < 48; j++) u[j] = hi << 16 | lows[j];
    u[48] = hi << 16 | hi; /* hi·65537 */
    u[49] = hi << 16 | (uint32_t)(tester_bits(t) & 0xffffu);
    for (size_t j = 0; j < NARROW_LOWS; j++) memcpy(&x[j * 65536 + hi], &u[j], sizeof(float));
  }
  d->x = x;
  d->want[T_F32] = NULL;
  for (int type = T_F16; type <= T_BF16; type++) {
    d->want[type] = tester_alloc(NARROW_COUNT * sizeof(uint16_t));
    for (size_t i = 0; i < NARROW_COUNT; i++) {
      d->want[type][i] = type == T_F16 ? mha_f32_to_f16(x[i]) : mha_f32_to_bf16(x[i]);
    }
  }
}

static void narrow_data_free(narrow_data* d) {
  free(d->want[T_F16]);
  free(d->want[T_BF16]);
  guarded_free(&d->gx);
}

/* the first wrong value of a run of calls */
typedef struct narrow_miss {
  size_t bad, stray;
  uint32_t x;
  uint16_t got, want;
} narrow_miss;

/* narrow(n, x, y) with y between guard zones, all poisoned: y[0..n) bitwise
 * want[0..n), the guards still poisoned */
static void check_narrow_call(mha_x16_narrow_fn fn, size_t n, const float* x, const uint16_t* want,
                              size_t y_misalign, uint16_t poison, narrow_miss* miss) {
  uint16_t ybuf[2 * GUARD + 4096 + 4];
  const size_t total = 2 * GUARD + n + y_misalign;
  for (size_t i = 0; i < total; i++) ybuf[i] = poison;
  uint16_t* y = ybuf + GUARD + y_misalign;
  fn(n, x, y);
  for (size_t i = 0; i < n; i++) {
    if (y[i] != want[i] && miss->bad++ == 0) {
      miss->x = mha_f32_to_bits(x[i]);
      miss->got = y[i];
      miss->want = want[i];
    }
  }
  for (size_t i = 0; i < total; i++) {
    const int inside = i >= GUARD + y_misalign && i < GUARD + y_misalign + n;
    if (!inside && ybuf[i] != poison) miss->stray++;
  }
}

static void report_narrow(tester* t, const narrow_miss* miss) {
  tester_check(t, miss->bad == 0,
               "%zu values differ from the scalar rounding; first x 0x%08x -> 0x%04x, want 0x%04x",
               miss->bad, (unsigned)miss->x, (unsigned)miss->got, (unsigned)miss->want);
  tester_check(t, miss->stray == 0, "%zu values written outside y[0..n)", miss->stray);
}

/* every pattern of the sweep in calls of len values (the last one shorter,
 * ending at the PROT_NONE page), y misaligned by mis values */
static void narrow_sweep(const narrow_data* d, mha_x16_narrow_fn fn, int type, size_t len,
                         size_t mis, narrow_miss* miss) {
  for (size_t s = 0; s < NARROW_COUNT; s += len) {
    const size_t n = NARROW_COUNT - s < len ? NARROW_COUNT - s : len;
    check_narrow_call(fn, n, d->x + s, d->want[type] + s, mis, 0x7e5a, miss);
  }
}

/* The floating-point modes a caller may set for speed, in the calling
 * thread: x86 DAZ | FTZ and round toward zero; AArch64 FPCR.FZ. Returns 0
 * where there is no such mode to set. */
typedef struct fp_mode {
  unsigned long long saved;
} fp_mode;

static int fp_mode_set_fast(fp_mode* m) {
#if defined(__x86_64__) || defined(__i386__)
  m->saved = _mm_getcsr();
  _mm_setcsr((unsigned)m->saved | 0x0040u /* DAZ */ | 0x8000u /* FTZ */ | 0x6000u /* RC: zero */);
  return 1;
#elif defined(__aarch64__)
  unsigned long long fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  m->saved = fpcr;
  fpcr |= 1ull << 24; /* FZ */
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
  return 1;
#else
  (void)m;
  return 0;
#endif
}

static void fp_mode_restore(const fp_mode* m) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_setcsr((unsigned)m->saved);
#elif defined(__aarch64__)
  __asm__ volatile("msr fpcr, %0" : : "r"(m->saved));
#else
  (void)m;
#endif
}

static void test_narrow(tester* t, const mha_kernels* kr, const narrow_data* d) {
  static const size_t lengths[] = {5, 17, 63, 4096};
  for (int type = T_F16; type <= T_BF16; type++) {
    const mha_x16_narrow_fn fn = type == T_F16 ? kr->narrow_f16 : kr->narrow_bf16;
    for (size_t li = 0; li < COUNT(lengths); li++) {
      const size_t mis = li % 4;
      tester_context(t, "isa=%s narrow_%s sweep of %zu patterns, n=%zu, y misalignment %zu",
                     kr->name, kTypeName[type], NARROW_COUNT, lengths[li], mis);
      narrow_miss miss = {0};
      narrow_sweep(d, fn, type, lengths[li], mis, &miss);
      report_narrow(t, &miss);
    }
    /* every length, from windows of the sweep: the upper halves 0x7f7c..
     * and 0xff7c.. with a zero lower half (±huge, ±inf, signaling NaNs),
     * 0x0000.. with the lower half equal (+0, fp32 subnormals), and the
     * last patterns, which end at the PROT_NONE page */
    static const size_t windows[] = {0x7f7c, 0xff7c, 48 * 65536};
    for (size_t n = 0; n <= 70; n++) {
      for (size_t mis = 0; mis < 4; mis++) {
        tester_context(t, "isa=%s narrow_%s n=%zu y misalignment %zu", kr->name, kTypeName[type],
                       n, mis);
        narrow_miss miss = {0};
        for (int p = 0; p < 2; p++) {
          const uint16_t poison = p ? 0xa5a5 : 0x5a5a;
          for (size_t w = 0; w <= COUNT(windows); w++) {
            const size_t at = w < COUNT(windows) ? windows[w] : NARROW_COUNT - n;
            check_narrow_call(fn, n, d->x + at, d->want[type] + at, mis, poison, &miss);
          }
        }
        report_narrow(t, &miss);
      }
    }
    /* the fast floating-point modes change nothing */
    fp_mode mode;
    narrow_miss miss = {0};
    if (fp_mode_set_fast(&mode)) {
      narrow_sweep(d, fn, type, 17, 1, &miss);
      fp_mode_restore(&mode);
      tester_context(t, "isa=%s narrow_%s sweep under DAZ/FTZ/round toward zero (FPCR.FZ)",
                     kr->name, kTypeName[type]);
      report_narrow(t, &miss);
    }
  }
}

int main(void) {
  tester t;
  tester_init(&t, "kv-gemm-ukernel-test");
  const isa_list isas = tester_available_isas(&t);
  narrow_data narrow;
  narrow_data_make(&t, &narrow);
  for (int i = 0; i < isas.count; i++) {
    const mha_kernels* kr = mha_kernels_for(isas.isa[i]);
    tester_context(&t, "mha_kernels_for(%s)", mha_isa_name(isas.isa[i]));
    if (!tester_check(&t, kr != NULL && kr->isa == isas.isa[i],
                      "no kernel table for an available ISA")) {
      continue;
    }
    if (!tester_check(&t,
                      kr->gemm != NULL && kr->gemm_nt != NULL && kr->gemm_nt_f16 != NULL &&
                          kr->gemm_nt_bf16 != NULL && kr->gemm_pv_f32 != NULL &&
                          kr->gemm_pv_f16 != NULL && kr->gemm_pv_bf16 != NULL &&
                          kr->widen_f16 != NULL && kr->widen_bf16 != NULL &&
                          kr->narrow_f16 != NULL && kr->narrow_bf16 != NULL,
                      "a K/V cache kernel is missing from the %s table", kr->name)) {
      continue;
    }
    const long before = t.checks;
    test_nt(&t, kr);
    test_pv(&t, kr);
    test_widen(&t, kr);
    test_narrow(&t, kr, &narrow);
    printf("%s: isa %s: %ld checks\n", t.name, kr->name, t.checks - before);
  }
  narrow_data_free(&narrow);
  return tester_finish(&t);
}
