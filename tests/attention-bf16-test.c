/*
 * The BF16 form of bf16 attention (include/mha.h, mha_attention: Q, K, V
 * and out bf16 on a set with a BF16 unit; kernels/mha/attention-bf16.c,
 * kernels/bf16-gemm/), on every such set this build and CPU run (neon_bf16:
 * AArch64 with FEAT_BF16, CI runs it under qemu; avx512_bf16: x86-64 with
 * AVX512-BF16, where the CPU has it). Elsewhere the test is skipped (exit
 * 77), saying why.
 *
 *   1. The table: every field but the BF16 form's is the widening set's
 *      (neon, avx512f: so the rest of the suite, run there, covers the
 *      set's fp32 and f16 paths).
 *   2. The kernels: the packings (A, A from fp32, B, B from its columns)
 *      against each layout's definition (odd rows, k tails, k across the
 *      packers' blocks, zero rows; P rounded as mha_f32_to_bf16, special
 *      values included: a subnormal may become a zero of its sign);
 *      the gemm exact on small integers for every m, n of the tile, kq
 *      1..5, alpha, accumulate, nothing written outside m×n; a row's bits
 *      the same alone and inside a full tile (random values).
 *   3. Accuracy: |out − oracle| (double, on the bf16 inputs) within the fp32
 *      core's derived tolerance, plus 2^-8·max|v| (P rounded to bf16: each
 *      weight within 2^-8 of itself, the weights summing to 1) and half an
 *      ulp of bf16 for the output's rounding; the weights and lse (untouched
 *      by P's rounding) within the fp32 core's bounds; every mask kind, GQA,
 *      odd sizes.
 *   4. Bits: identical for 1-3 threads; an entry alone and inside a batch;
 *      a row by a decode call (Tq 1, one key range) and inside a causal prefill; out with
 *      and without weights; a NaN in the V rows of keys an additive -inf
 *      hides from every row (inside visited key blocks) changes no row; a
 *      paged bf16 cache (mha_attention_kv) and the contiguous views; a
 *      packed serving step (mha_attention_varlen_kv, rotary) and each
 *      sequence's own call; packed sequences (mha_attention_varlen) and
 *      each sequence's own mha_attention call.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16-gemm/bf16-gemm.h"
#include "bf16-layout.h"
#include "config/kernels.h"
#include "kv-gemm/kv-convert.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"
#include "variant-tolerance.h"

enum { GUARD = 16 };

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

/* Random bf16 values in about ±[2^-6, 2): never zero. */
static void fill_bf16(tester* t, uint16_t* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = (uint16_t)((tester_bits(t) & 0x807f) | (uint16_t)((121 + tester_below(t, 7)) << 7));
}

/* bf16 small integers in [-8, 8] (products and sums of a few exact in fp32) */
static uint16_t int_bf16(tester* t) { return mha_f32_to_bf16((float)(tester_below(t, 17) - 8)); }

static uint16_t poison16(void) { return 0x7fa5; }

/* ---- 1. the table ---- */

static void check_table(tester* t, const mha_kernels* kb) {
  tester_context(t, "table %s", kb->name);
  const mha_isa wide = tester_widening_isa(kb->isa);
  const mha_kernels* kn = mha_kernels_for(wide);
  if (!tester_check(t, kn != NULL, "the %s set is available beside %s", mha_isa_name(wide), kb->name)) return;
  mha_kernels a = *kb, b = *kn;
  tester_check(t, a.bf16_gemm && a.bf16_pack_a && a.bf16_pack_a_f32 && a.bf16_pack_b && a.bf16_pack_b_cols,
               "the BF16 form's kernels are set");
  tester_check(t, a.bf16_mr >= 2 && a.bf16_mr % 2 == 0 && a.bf16_mr <= 32 && a.bf16_nr >= 8 && a.bf16_nr % 8 == 0,
               "the tile (%d × %d): even rows, at most 32 (the layer GEMM's fp32 tile), columns a multiple of 8",
               a.bf16_mr, a.bf16_nr);
  /* the layer GEMM's K chunk: B's k-range from k0 at + k0·NR holds in the
   * x86 layout (panels of k-pairs), not in Arm's pairs of quads; at most
   * 768 values and 12·768 of a block (gemm-bf16.c's stack buffer: a larger
   * chunk would be ignored there, K taken whole); whole steps of the kernel
   * (amx_bf16: 16 k-pairs, 32 values) */
  tester_check(t,
               a.bf16_kc == 0 || (a.bf16_kc > 0 && a.bf16_kc % (int)(4 * bf16_step_quads(kb)) == 0 &&
                                  a.bf16_kc <= 768 && a.bf16_mr * a.bf16_kc <= 12 * 768 && a.bf16_a_rows),
               "the K chunk (%d): none, or whole steps up to 768 values, 12·768 a block, on the x86 layout",
               a.bf16_kc);
  tester_check(t, !b.bf16_gemm && !b.bf16_pack_a && !b.bf16_pack_a_f32 && !b.bf16_pack_b && !b.bf16_pack_b_cols &&
                      !b.bf16_softmax_tile_pack,
               "the %s set has no BF16 form", b.name);
  a.isa = b.isa;
  a.name = b.name;
  a.bf16_gemm = NULL, a.bf16_pack_a = NULL, a.bf16_pack_a_f32 = NULL, a.bf16_pack_b = NULL, a.bf16_pack_b_cols = NULL;
  a.bf16_softmax_tile_pack = NULL;
  a.bf16_mr = b.bf16_mr, a.bf16_nr = b.bf16_nr, a.bf16_a_rows = b.bf16_a_rows, a.bf16_nk = b.bf16_nk;
  a.bf16_kc = b.bf16_kc;
  tester_check(t, memcmp(&a, &b, sizeof a) == 0, "every other field is the %s set's", b.name);
}

/* ---- 2. the kernels ---- */

/* pack_a_f32's contract (config/kernels.h): x rounded to nearest even, as
 * mha_f32_to_bf16; an fp32 subnormal may become a zero of its sign, a NaN any NaN */
static int p_rounded(uint16_t got, float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if (isnan(x)) return (got & 0x7f80u) == 0x7f80u && (got & 0x7fu) != 0;
  if ((u & 0x7f800000u) == 0 && (u & 0x7fffffu) != 0 && got == (uint16_t)(u >> 16 & 0x8000u)) return 1;
  return got == mha_f32_to_bf16(x);
}

/* Special values among P's random ones: subnormals, NaN, infinities, the
 * largest float (rounds to inf), ties to even, 0 */
static void add_specials(float* x, size_t n) {
  static const uint32_t bits[] = {0x00000001u, 0x807fffffu, 0x00400000u, 0x7fc00001u, 0x7f800000u, 0xff800000u,
                                  0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x00000000u, 0x80000000u};
  for (size_t i = 0; i < sizeof bits / sizeof bits[0] && 3 * i < n; i++) memcpy(&x[3 * i], &bits[i], sizeof(float));
}

/* A's elements for `rows` rows (padded as the set packs them) */
static size_t a_elems(const mha_kernels* kr, size_t rows, size_t k) {
  const size_t kq = (k + 3) / 4;
  return (bf16_x86_layout(kr) ? rows : (rows + 1) / 2 * 2) * 4 * kq;
}

static void check_packing(tester* t, const mha_kernels* kr) {
  tester_context(t, "%s: packing", kr->name);
  const size_t NR = (size_t)kr->bf16_nr;
  static const size_t ks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 21, 31, 32, 33, 64, 67, 100};
  for (size_t rows = 1; rows <= 2 * NR + 1; rows += (rows < 13 ? 1 : NR - 1)) {
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
      const size_t k = ks[ki], kq = (k + 3) / 4, n = a_elems(kr, rows, k);
      const size_t brows = (rows + NR - 1) / NR * NR, nb = brows * 4 * kq;
      uint16_t* src = tester_alloc(brows * k * 2);
      float* srcf = tester_alloc(rows * k * sizeof(float));
      const uint16_t** p16 = tester_alloc(brows * sizeof(uint16_t*));
      const float** p32 = tester_alloc(rows * sizeof(float*));
      fill_bf16(t, src, rows * k);
      memset(src + rows * k, 0, (brows - rows) * k * 2); /* B's padding rows: zero rows */
      tester_fill(t, srcf, rows * k);
      add_specials(srcf, rows * k);
      for (size_t i = 0; i < brows; i++) p16[i] = src + i * k;
      for (size_t i = 0; i < rows; i++) p32[i] = srcf + i * k;
      uint16_t* dst = tester_alloc((n + GUARD) * 2);
      uint16_t* dstf = tester_alloc((n + GUARD) * 2);
      uint16_t* dstb = tester_alloc((nb + GUARD) * 2);
      for (size_t i = 0; i < n + GUARD; i++) dst[i] = dstf[i] = poison16();
      for (size_t i = 0; i < nb + GUARD; i++) dstb[i] = poison16();
      kr->bf16_pack_a(rows, k, p16, dst);
      kr->bf16_pack_a_f32(rows, k, p32, dstf);
      kr->bf16_pack_b(brows, k, p16, dstb);
      int ok = 1, okf = 1, okb = 1, guard = 1;
      for (size_t i = 0; i < n / (4 * kq); i++) {
        for (size_t p = 0; p < 4 * kq; p++) {
          const int in = i < rows && p < k;
          ok &= dst[bf16_a_index(kr, k, i, p)] == (in ? src[i * k + p] : 0);
          okf &= in ? p_rounded(dstf[bf16_a_index(kr, k, i, p)], srcf[i * k + p]) : dstf[bf16_a_index(kr, k, i, p)] == 0;
        }
      }
      for (size_t j = 0; j < brows; j++) {
        for (size_t p = 0; p < 4 * kq; p++) okb &= dstb[bf16_b_index(kr, k, j, p)] == (p < k ? src[j * k + p] : 0);
      }
      for (size_t i = n; i < n + GUARD; i++) guard &= dst[i] == poison16() && dstf[i] == poison16();
      for (size_t i = nb; i < nb + GUARD; i++) guard &= dstb[i] == poison16();
      tester_check(t, ok, "pack_a: rows %zu, k %zu: the layout, zeros past the rows and k", rows, k);
      tester_check(t, okf, "pack_a_f32: rows %zu, k %zu: rounded to nearest even (special values too)", rows, k);
      tester_check(t, okb, "pack_b: rows %zu, k %zu: the layout, zeros past k", brows, k);
      tester_check(t, guard, "rows %zu, k %zu: nothing written past the packed rows", rows, k);
      free(src), free(srcf), free(p16), free(p32), free(dst), free(dstf), free(dstb);
    }
  }
  for (size_t k = 4; k <= 12; k += 4) {
    for (size_t n = 1; n <= 2 * NR + 3; n += (n < 19 ? 1 : 7)) {
      const size_t nr = (n + NR - 1) / NR * NR, size = nr * k;
      uint16_t* src = tester_alloc(k * n * 2);
      fill_bf16(t, src, k * n);
      const uint16_t* rows[12];
      for (size_t p = 0; p < k; p++) rows[p] = src + p * n;
      uint16_t* dst = tester_alloc((size + GUARD) * 2);
      for (size_t i = 0; i < size + GUARD; i++) dst[i] = poison16();
      kr->bf16_pack_b_cols(k, n, rows, dst);
      int ok = 1, guard = 1;
      for (size_t c = 0; c < nr; c++) {
        for (size_t p = 0; p < k; p++) ok &= dst[bf16_b_index(kr, k, c, p)] == (c < n ? src[p * n + c] : 0);
      }
      for (size_t i = size; i < size + GUARD; i++) guard &= dst[i] == poison16();
      tester_check(t, ok, "pack_b_cols: k %zu, n %zu: the transpose's layout, zero rows to %zu", k, n, NR);
      tester_check(t, guard, "pack_b_cols: nothing written past the packed rows");
      free(src), free(dst);
    }
  }
}

static void check_gemm(tester* t, const mha_kernels* kr) {
  tester_context(t, "%s: gemm", kr->name);
  const size_t MR = (size_t)kr->bf16_mr, NR = (size_t)kr->bf16_nr, LDC = NR + 3, CR = MR + 1;
  float* c = tester_alloc(CR * LDC * sizeof(float));
  float* c0 = tester_alloc(CR * LDC * sizeof(float));
  float* full = tester_alloc(MR * NR * sizeof(float));
  float* one = tester_alloc(NR * sizeof(float));
  /* kq 1..5; and across the AMX set's steps of 8 quads (every set runs them) */
  static const size_t kqs[] = {1, 2, 3, 4, 5, 8, 9, 17, 24};
  for (size_t kqi = 0; kqi < sizeof kqs / sizeof kqs[0]; kqi++) {
    const size_t kq = kqs[kqi], k = 4 * kq, na = a_elems(kr, MR, k), nb = NR * k;
    uint16_t* a = tester_alloc(na * 2);
    uint16_t* b = tester_alloc(nb * 2);
    for (size_t i = 0; i < na; i++) a[i] = int_bf16(t);
    for (size_t i = 0; i < nb; i++) b[i] = int_bf16(t);
    for (size_t m = 1; m <= MR; m++) {
      for (size_t n = 1; n <= NR; n++) {
        /* accumulate 2 (continue from C's values): the sets that take the
         * layer GEMM's K in chunks (bf16_kc) */
        for (int acc = 0; acc <= (kr->bf16_kc > 0 ? 2 : 1); acc++) {
          const float alpha = acc == 1 ? 1.0f : 0.5f;
          for (size_t i = 0; i < CR * LDC; i++) c0[i] = (float)(tester_below(t, 9) - 4);
          memcpy(c, c0, CR * LDC * sizeof(float));
          kr->bf16_gemm(m, n, kq, a, b, alpha, c, LDC, acc);
          int ok = 1, untouched = 1;
          for (size_t i = 0; i < CR; i++) {
            for (size_t j = 0; j < LDC; j++) {
              if (i >= m || j >= n) {
                untouched &= memcmp(&c[i * LDC + j], &c0[i * LDC + j], sizeof(float)) == 0;
                continue;
              }
              double s = 0.0;
              for (size_t p = 0; p < k; p++) {
                s += (double)mha_bf16_to_f32(a[bf16_a_index(kr, k, i, p)]) * mha_bf16_to_f32(b[bf16_b_index(kr, k, j, p)]);
              }
              const double want = acc == 2 ? alpha * (c0[i * LDC + j] + s) : alpha * s + (acc ? c0[i * LDC + j] : 0.0);
              ok &= c[i * LDC + j] == (float)want;
            }
          }
          tester_check(t, ok, "m %zu, n %zu, kq %zu, accumulate %d: exact on small integers", m, n, kq, acc);
          tester_check(t, untouched, "m %zu, n %zu, kq %zu: nothing written outside m×n", m, n, kq);
        }
      }
    }
    /* random values: each row the same bits alone (m = 1, as row 0; a pair's
     * other row 0) and in a full tile */
    fill_bf16(t, a, na);
    fill_bf16(t, b, nb);
    kr->bf16_gemm(MR, NR, kq, a, b, 0.75f, full, NR, 0);
    int same = 1;
    uint16_t* alone = tester_alloc(a_elems(kr, 2, k) * 2);
    for (size_t i = 0; i < MR; i++) {
      memset(alone, 0, a_elems(kr, 2, k) * 2);
      for (size_t p = 0; p < k; p++) alone[bf16_a_index(kr, k, 0, p)] = a[bf16_a_index(kr, k, i, p)];
      kr->bf16_gemm(1, NR, kq, alone, b, 0.75f, one, NR, 0);
      same &= memcmp(one, full + NR * i, NR * sizeof(float)) == 0;
    }
    tester_check(t, same, "kq %zu: a row's bits alone and in a full tile", kq);
    /* the first chunk whole steps of the kernel (amx_bf16: 8 quads) */
    const size_t kq1 = kq / 2 / bf16_step_quads(kr) * bf16_step_quads(kr);
    if (kr->bf16_kc > 0 && kq1 > 0) {
      /* K in two chunks, the second continuing the first's stored chain:
       * bitwise one call over K (kernels/mha/gemm-bf16.c) */
      const size_t k1 = 4 * kq1, k2 = k - k1;
      uint16_t* a1 = tester_alloc(a_elems(kr, MR, k1) * 2);
      uint16_t* a2 = tester_alloc(a_elems(kr, MR, k2) * 2);
      uint16_t* b1 = tester_alloc(NR * k1 * 2);
      uint16_t* b2 = tester_alloc(NR * k2 * 2);
      for (size_t i = 0; i < MR; i++) {
        for (size_t p = 0; p < k; p++) {
          const uint16_t v = a[bf16_a_index(kr, k, i, p)];
          if (p < k1) a1[bf16_a_index(kr, k1, i, p)] = v;
          else a2[bf16_a_index(kr, k2, i, p - k1)] = v;
        }
      }
      for (size_t j = 0; j < NR; j++) {
        for (size_t p = 0; p < k; p++) {
          const uint16_t v = b[bf16_b_index(kr, k, j, p)];
          if (p < k1) b1[bf16_b_index(kr, k1, j, p)] = v;
          else b2[bf16_b_index(kr, k2, j, p - k1)] = v;
        }
      }
      kr->bf16_gemm(MR, NR, kq, a, b, 1.0f, full, NR, 0);
      tester_poison(c, CR * LDC);
      kr->bf16_gemm(MR, NR, kq1, a1, b1, 1.0f, c, LDC, 0);
      kr->bf16_gemm(MR, NR, kq - kq1, a2, b2, 1.0f, c, LDC, 2);
      int chained = 1;
      for (size_t i = 0; i < MR; i++) chained &= memcmp(c + i * LDC, full + i * NR, NR * sizeof(float)) == 0;
      tester_check(t, chained, "kq %zu: two chunks (%zu + %zu quads, the second continuing) = one call, bit for bit",
                   kq, kq1, kq - kq1);
      free(a1), free(a2), free(b1), free(b2);
    }
    free(a), free(b), free(alone);
  }
  free(c), free(c0), free(full), free(one);
}

/* ---- 3 and 4. the attention calls ---- */

typedef struct caseb {
  const char* name;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive, variants;
} caseb;

static const caseb cases[] = {
    {"prefill GQA", 2, 4, 2, 65, 65, 64, 64, 0, 0, 0, 0},
    {"causal cross, odd D", 1, 3, 1, 63, 130, 7, 9, 1, 0, 0, 0},
    {"decode split", 2, 8, 2, 1, 300, 128, 128, 0, 0, 0, 0},
    {"kv_len + additive", 3, 2, 2, 17, 33, 16, 16, 0, 1, 1, 0},
    {"window, ALiBi, soft-cap, sinks", 1, 2, 1, 40, 40, 32, 32, 1, 0, 0, 1},
    {"ones", 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
    /* several of x86's 256-key blocks: the pre-packed K and V, a partial last block */
    {"unmasked, 3 key blocks", 1, 2, 2, 100, 523, 64, 64, 0, 0, 0, 0},
    {"causal, 3 key blocks, GQA", 1, 4, 2, 97, 521, 32, 48, 1, 0, 0, 0},
    /* a window of 10 keys far into the keys: items start past the first block */
    {"window etc., 3 key blocks", 1, 2, 1, 600, 600, 32, 32, 1, 0, 0, 1},
    /* entry 1's kv_len ends in the first block: the pre-pass's blocks past
     * it hold no key (a negative count read as a size ran past K, stop 38) */
    {"kv_len short of 2 key blocks", 3, 2, 1, 100, 523, 3, 9, 0, 1, 0, 0},
};

typedef struct problemb {
  const caseb* cs;
  mha_attention_desc d;
  size_t nq, nk, nv, nout, nw;
  uint16_t *q, *k, *v;
  float *add, *slopes, *sinks;
  int32_t* kv_len;
} problemb;

static void problem_make(tester* t, const caseb* cs, mha_isa isa, problemb* p) {
  memset(p, 0, sizeof *p);
  p->cs = cs;
  mha_attention_desc_init(&p->d, cs->B, cs->H, cs->Hkv, cs->Tq, cs->Tk, cs->D, cs->Dv);
  p->d.isa = isa;
  p->nq = (size_t)(cs->B * cs->H * cs->Tq * cs->D);
  p->nk = (size_t)(cs->B * cs->Hkv * cs->Tk * cs->D);
  p->nv = (size_t)(cs->B * cs->Hkv * cs->Tk * cs->Dv);
  p->nout = (size_t)(cs->B * cs->H * cs->Tq * cs->Dv);
  p->nw = (size_t)(cs->B * cs->H * cs->Tq * cs->Tk);
  p->q = tester_alloc(p->nq * 2), p->k = tester_alloc(p->nk * 2), p->v = tester_alloc(p->nv * 2);
  fill_bf16(t, p->q, p->nq);
  fill_bf16(t, p->k, p->nk);
  fill_bf16(t, p->v, p->nv);
  p->d.mask.causal = cs->causal;
  if (cs->kv_len) {
    p->kv_len = tester_alloc((size_t)cs->B * sizeof(int32_t));
    /* entry 0 all keys, entry 1 at most a quarter of them, the others any */
    for (int64_t b = 0; b < cs->B; b++) {
      const int64_t most = b == 1 ? (cs->Tk + 3) / 4 : cs->Tk;
      p->kv_len[b] = (int32_t)(b == 0 ? cs->Tk : 1 + tester_below(t, most));
    }
    p->d.mask.kv_len = p->kv_len;
  }
  if (cs->additive) {
    p->add = tester_alloc(p->nw * sizeof(float));
    tester_fill(t, p->add, p->nw);
    for (size_t i = 0; i < p->nw; i += 5) p->add[i] = -INFINITY;
    for (size_t r = 0; r < p->nw / (size_t)cs->Tk; r++) p->add[r * (size_t)cs->Tk] = 0.5f;
    p->d.mask.additive = p->add;
    p->d.mask.additive_strides = mha_strides_bhtd(cs->H, cs->Tq, cs->Tk);
  }
  if (cs->variants) {
    p->slopes = tester_alloc((size_t)cs->H * sizeof(float));
    p->sinks = tester_alloc((size_t)cs->H * sizeof(float));
    for (int64_t h = 0; h < cs->H; h++) {
      p->slopes[h] = 0.0625f * (float)(h + 1);
      p->sinks[h] = 0.25f - 0.5f * (float)h;
    }
    p->d.mask.window = 1;
    p->d.mask.window_left = 9;
    p->d.mask.alibi_slopes = p->slopes;
    p->d.mask.softcap = 30.0f;
    p->d.mask.sinks = p->sinks;
  }
}

static void problem_free(problemb* p) {
  free(p->q), free(p->k), free(p->v), free(p->add), free(p->slopes), free(p->sinks), free(p->kv_len);
}

/* out of one call (over the problem's views, or K and V from cache),
 * poisoned first and guarded; NULL on failure */
static uint16_t* run_on(tester* t, const problemb* p, const mha_attention_desc* d, const mha_kv_cache* cache,
                        float* w, const char* what) {
  uint16_t* out = tester_alloc((p->nout + GUARD) * 2);
  for (size_t i = 0; i < p->nout + GUARD; i++) out[i] = poison16();
  const mha_status st = cache != NULL ? mha_attention_kv(d, MHA_DTYPE_BF16, p->q, cache, out, w)
                                      : mha_attention(d, MHA_DTYPE_BF16, p->q, p->k, p->v, out, w);
  if (!check_ok(t, st, what)) {
    free(out);
    return NULL;
  }
  int guard = 1;
  for (size_t i = p->nout; i < p->nout + GUARD; i++) guard &= out[i] == poison16();
  tester_check(t, guard, "%s: nothing written past out", what);
  return out;
}

static uint16_t* run(tester* t, const problemb* p, const mha_attention_desc* d, float* w, const char* what) {
  return run_on(t, p, d, NULL, w, what);
}

static void check_accuracy(tester* t, const problemb* p) {
  const caseb* cs = p->cs;
  double* qd = tolerance_alloc(p->nq);
  double* kd = tolerance_alloc(p->nk);
  double* vd = tolerance_alloc(p->nv);
  double vmax = 0.0;
  for (size_t i = 0; i < p->nq; i++) qd[i] = mha_bf16_to_f32(p->q[i]);
  for (size_t i = 0; i < p->nk; i++) kd[i] = mha_bf16_to_f32(p->k[i]);
  for (size_t i = 0; i < p->nv; i++) vd[i] = mha_bf16_to_f32(p->v[i]);
  for (size_t i = 0; i < p->nv; i++) {
    if (fabs(vd[i]) > vmax) vmax = fabs(vd[i]);
  }
  oracle_attention_problem op;
  memset(&op, 0, sizeof op);
  op.B = cs->B, op.H = cs->H, op.Hkv = cs->Hkv, op.Tq = cs->Tq, op.Tk = cs->Tk, op.D = cs->D, op.Dv = cs->Dv;
  op.q = qd, op.k = kd, op.v = vd;
  op.q_strides = (oracle_strides){p->d.q.batch, p->d.q.head, p->d.q.row};
  op.k_strides = (oracle_strides){p->d.k.batch, p->d.k.head, p->d.k.row};
  op.v_strides = (oracle_strides){p->d.v.batch, p->d.v.head, p->d.v.row};
  op.scale = 1.0 / sqrt((double)cs->D);
  op.causal = cs->causal;
  op.kv_len = p->kv_len;
  op.additive = p->add;
  op.additive_strides = (oracle_strides){p->d.mask.additive_strides.batch, p->d.mask.additive_strides.head,
                                         p->d.mask.additive_strides.row};
  if (cs->variants) {
    op.var.window = 1;
    op.var.window_left = p->d.mask.window_left;
    op.var.window_right = 0;
    op.var.alibi_slopes = p->slopes;
    op.var.softcap = p->d.mask.softcap;
    op.var.sinks = p->sinks;
  }
  const size_t nlse = (size_t)(cs->B * cs->H * cs->Tq);
  variant_expected e = variant_expected_compute(&op, NULL, p->nout, p->nw, nlse);
  float* w = tester_alloc(p->nw * sizeof(float));
  float* lse = tester_alloc(nlse * sizeof(float));
  tester_poison(w, p->nw);
  tester_poison(lse, nlse);
  mha_attention_desc d = p->d;
  d.lse = lse;
  uint16_t* out = run(t, p, &d, w, "bf16 call");
  if (out != NULL) {
    float* got = tester_alloc(p->nout * sizeof(float));
    double* tol = tolerance_alloc(p->nout);
    for (size_t i = 0; i < p->nout; i++) {
      got[i] = mha_bf16_to_f32(out[i]);
      /* the fp32 core's bound, P's rounding (each weight within 2^-8 of
       * itself, the weights summing to at most 1), out's rounding */
      tol[i] = e.out_tol[i] + 0x1p-8 * vmax + 0x1p-8 * (fabs(e.out[i]) + e.out_tol[i]);
    }
    tester_check_close(t, "out against the oracle", p->nout, got, e.out, tol);
    /* the scores are the fp32 core's sums of exact products (the unit rounds
     * each sum to odd: within the fp32 bound's ulp per operation), so the
     * weights and lse, which P's rounding does not touch, meet the fp32
     * core's own bounds */
    tester_check_close(t, "weights against the oracle (fp32 bound)", p->nw, w, e.w, e.w_tol);
    tester_check_close(t, "lse against the oracle (fp32 bound)", nlse, lse, e.lse, e.lse_tol);
    free(got), free(tol);
  }
  free(w), free(lse);
  variant_expected_free(&e);
  free(out), free(qd), free(kd), free(vd);
}

static void check_bits(tester* t, const problemb* p) {
  const caseb* cs = p->cs;
  uint16_t* ref = run(t, p, &p->d, NULL, "1 thread");
  if (ref == NULL) return;
  for (int threads = 2; threads <= 3; threads++) {
    mha_attention_desc d = p->d;
    d.num_threads = threads;
    uint16_t* out = run(t, p, &d, NULL, "threads");
    if (out) tester_check(t, memcmp(out, ref, p->nout * 2) == 0, "%d threads: bitwise 1 thread's", threads);
    free(out);
  }
  /* with weights: the same out */
  if (cs->variants == 0) {
    float* w = tester_alloc(p->nw * sizeof(float));
    tester_poison(w, p->nw);
    uint16_t* out = run(t, p, &p->d, w, "with weights");
    if (out) tester_check(t, memcmp(out, ref, p->nout * 2) == 0, "out with weights bitwise out without");
    int finite = 1;
    for (size_t i = 0; i < p->nw; i++) finite &= isfinite(w[i]);
    tester_check(t, finite, "every weight written");
    free(out), free(w);
  }
  /* the last entry alone */
  if (cs->B > 1) {
    problemb one = *p;
    const int64_t b = cs->B - 1;
    mha_attention_desc_init(&one.d, 1, cs->H, cs->Hkv, cs->Tq, cs->Tk, cs->D, cs->Dv);
    one.d.isa = p->d.isa;
    one.d.mask = p->d.mask;
    if (p->kv_len) one.d.mask.kv_len = p->kv_len + b;
    if (p->add) one.d.mask.additive = p->add + (size_t)b * p->nw / (size_t)cs->B;
    one.q = p->q + (size_t)b * p->nq / (size_t)cs->B;
    one.k = p->k + (size_t)b * p->nk / (size_t)cs->B;
    one.v = p->v + (size_t)b * p->nv / (size_t)cs->B;
    one.nout = p->nout / (size_t)cs->B;
    uint16_t* out = run(t, &one, &one.d, NULL, "one entry");
    if (out) tester_check(t, memcmp(out, ref + (size_t)b * one.nout, one.nout * 2) == 0, "entry %lld alone: bitwise", (long long)b);
    free(out);
  }
  /* a NaN in the V rows of keys the additive mask hides from every row
   * (inside the key blocks the rows visit): every row's bits unchanged */
  if (p->add != NULL && cs->Tk > 3) {
    enum { HIDDEN = 3 };
    problemb bad = *p;
    bad.add = tester_alloc(p->nw * sizeof(float));
    memcpy(bad.add, p->add, p->nw * sizeof(float));
    for (size_t r = 0; r < p->nw / (size_t)cs->Tk; r++) bad.add[r * (size_t)cs->Tk + HIDDEN] = -INFINITY;
    bad.d.mask.additive = bad.add;
    uint16_t* clean = run(t, &bad, &bad.d, NULL, "key 3 hidden");
    bad.v = tester_alloc(p->nv * 2);
    memcpy(bad.v, p->v, p->nv * 2);
    for (int64_t b = 0; b < cs->B; b++) {
      for (int64_t g = 0; g < cs->Hkv; g++) bad.v[(size_t)(((b * cs->Hkv + g) * cs->Tk + HIDDEN) * cs->Dv + (cs->Dv > 1))] = 0x7fc0; /* inside key 3's row */
    }
    uint16_t* out = run(t, &bad, &bad.d, NULL, "key 3 hidden, its V rows NaN");
    if (out && clean) tester_check(t, memcmp(out, clean, p->nout * 2) == 0, "a NaN in V rows no row sees: bitwise");
    free(out), free(clean), free(bad.v), free(bad.add);
  }
  free(ref);
}

/* The problem's K and V in a paged bf16 cache (a drawn page size, the
 * blocks in a drawn order): the cache call bitwise the views' call. */
static void check_paged(tester* t, const problemb* p) {
  const caseb* cs = p->cs;
  const int64_t page = (int64_t)16 << tester_below(t, 5); /* 16 .. 256 */
  const int64_t nb = (cs->Tk + page - 1) / page, blocks = cs->B * nb;
  int32_t* table = tester_alloc((size_t)blocks * sizeof(int32_t));
  for (int64_t i = 0; i < blocks; i++) table[i] = (int32_t)i;
  for (int64_t i = blocks - 1; i > 0; i--) { /* Fisher-Yates */
    const int64_t j = tester_below(t, i + 1);
    const int32_t x = table[i];
    table[i] = table[j], table[j] = x;
  }
  const size_t pool_k = (size_t)(blocks * cs->Hkv * page * cs->D), pool_v = (size_t)(blocks * cs->Hkv * page * cs->Dv);
  uint16_t* kc = tester_alloc(pool_k * 2);
  uint16_t* vc = tester_alloc(pool_v * 2);
  for (size_t i = 0; i < pool_k; i++) kc[i] = poison16();
  for (size_t i = 0; i < pool_v; i++) vc[i] = poison16();
  for (int64_t b = 0; b < cs->B; b++) {
    for (int64_t g = 0; g < cs->Hkv; g++) {
      for (int64_t j = 0; j < cs->Tk; j++) {
        const int64_t blk = table[b * nb + j / page], at = (blk * cs->Hkv + g) * page + j % page;
        const int64_t src = (b * cs->Hkv + g) * cs->Tk + j;
        memcpy(kc + at * cs->D, p->k + src * cs->D, (size_t)cs->D * 2);
        memcpy(vc + at * cs->Dv, p->v + src * cs->Dv, (size_t)cs->Dv * 2);
      }
    }
  }
  mha_kv_cache c;
  mha_kv_cache_init_paged(&c, MHA_DTYPE_BF16, kc, vc, blocks, page, cs->Hkv, cs->D, cs->Dv, table, nb);
  uint16_t* ref = run(t, p, &p->d, NULL, "views");
  uint16_t* out = run_on(t, p, &p->d, &c, NULL, "paged cache");
  if (ref != NULL && out != NULL) {
    tester_check(t, memcmp(out, ref, p->nout * 2) == 0, "a paged cache (page %lld): bitwise the views' call",
                 (long long)page);
  }
  free(table), free(kc), free(vc), free(ref), free(out);
}

/* Random shapes (drawn from the test's seed): sizes 1 up to past two of the
 * BF16 form's key blocks and past one item's rows, odd widths, GQA, every
 * mask kind and the variants in any combination, each case through the
 * oracle and the bits checks above. The fixed cases pin the paths; this
 * sweep finds the combinations nobody listed (a kv_len that ends blocks
 * before Tk under a multi-item prefill ran past K until stop 38). Each case
 * also through a paged cache of a drawn page size. */
static void check_sweep(tester* t, mha_isa isa) {
  enum { CASES = 40 };
  for (int n = 0; n < CASES; n++) {
    caseb cs;
    char name[96];
    for (;;) {
      cs.Hkv = 1 + tester_below(t, 2);
      cs.H = cs.Hkv * (1 + tester_below(t, 3));
      cs.B = 1 + tester_below(t, 3);
      cs.Tq = 1 + tester_below(t, tester_below(t, 2) ? 16 : 200);
      cs.Tk = 1 + tester_below(t, tester_below(t, 2) ? 40 : 700);
      cs.D = 1 + tester_below(t, 80);
      cs.Dv = tester_below(t, 2) ? cs.D : 1 + tester_below(t, 80);
      /* the oracle in double: at most 2^25 multiply-adds a case */
      if (cs.B * cs.H * cs.Tq * cs.Tk * (cs.D + cs.Dv) <= ((int64_t)1 << 25)) break;
    }
    cs.causal = (int)tester_below(t, 2);
    cs.kv_len = tester_below(t, 2) == 0;
    cs.additive = tester_below(t, 4) == 0;
    cs.variants = tester_below(t, 4) == 0;
    snprintf(name, sizeof name, "sweep %d: B %lld H %lld/%lld Tq %lld Tk %lld D %lld/%lld%s%s%s%s", n,
             (long long)cs.B, (long long)cs.H, (long long)cs.Hkv, (long long)cs.Tq, (long long)cs.Tk,
             (long long)cs.D, (long long)cs.Dv, cs.causal ? " causal" : "", cs.kv_len ? " kv_len" : "",
             cs.additive ? " additive" : "", cs.variants ? " variants" : "");
    cs.name = name;
    problemb p;
    problem_make(t, &cs, isa, &p);
    tester_context(t, "%s: %s", mha_isa_name(isa), name);
    check_accuracy(t, &p);
    check_bits(t, &p);
    check_paged(t, &p);
    problem_free(&p);
  }
}

/* Rows of a causal self-attention prefill (the tiled form) against decode
 * calls (Tq 1: dot products with K and V in place) over the same keys:
 * bitwise. T 128, and T just under two of the BF16 form's key blocks (the
 * set's bf16_nk or attn_nk: x86 475, Arm 91), where a decode call is still
 * one key range (a longer one splits its keys and merges the ranges, on
 * every set) over two blocks, the last partial. */
static void check_forms_at(tester* t, mha_isa isa, int64_t T) {
  enum { H = 4, HKV = 2, D = 64 };
  tester_context(t, "%s: the decode and prefill forms, T %lld", mha_isa_name(isa), (long long)T);
  uint16_t* q = tester_alloc((size_t)(H * T * D) * 2);
  uint16_t* k = tester_alloc((size_t)(HKV * T * D) * 2);
  uint16_t* v = tester_alloc((size_t)(HKV * T * D) * 2);
  fill_bf16(t, q, (size_t)(H * T * D));
  fill_bf16(t, k, (size_t)(HKV * T * D));
  fill_bf16(t, v, (size_t)(HKV * T * D));
  uint16_t* pre = tester_alloc((size_t)(H * T * D) * 2);
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, H, HKV, T, T, D, D);
  d.isa = isa;
  d.mask.causal = 1;
  d.num_threads = 2;
  if (!check_ok(t, mha_attention(&d, MHA_DTYPE_BF16, q, k, v, pre, NULL), "prefill")) goto done;
  const int64_t rows[] = {0, 1, 63, 64, T / 2 + 3, T - 1};
  for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
    const int64_t i = rows[ri];
    mha_attention_desc dd;
    mha_attention_desc_init(&dd, 1, H, HKV, 1, i + 1, D, D);
    dd.isa = isa;
    dd.q = mha_strides_bhtd(H, T, D);
    dd.out = mha_strides_bhtd(H, T, D);
    dd.k = dd.v = mha_strides_bhtd(HKV, T, D);
    uint16_t* out = tester_alloc((size_t)(H * T * D) * 2);
    for (size_t c = 0; c < (size_t)(H * T * D); c++) out[c] = poison16();
    if (check_ok(t, mha_attention(&dd, MHA_DTYPE_BF16, q + i * D, k, v, out, NULL), "decode")) {
      int same = 1;
      for (int64_t h = 0; h < H; h++) same &= memcmp(out + h * T * D, pre + (h * T + i) * D, D * 2) == 0;
      tester_check(t, same, "row %lld: the decode call bitwise the prefill's row", (long long)i);
    }
    free(out);
  }
done:
  free(q), free(k), free(v), free(pre);
}

static void check_forms(tester* t, mha_isa isa) {
  const mha_kernels* kr = mha_kernels_for(isa);
  const int64_t nk = kr->bf16_nk > 0 ? kr->bf16_nk : (int64_t)kr->attn_nk;
  check_forms_at(t, isa, 128);
  if (2 * nk - 37 != 128) check_forms_at(t, isa, 2 * nk - 37);
}

/* The careful rerun: a NaN (then an infinity) in the V row of the last key,
 * which only the last query row sees (causal, T over two key blocks). Its
 * item runs again with the V guard, every key block by the step and P's
 * packing one after the other; the clean call took the fused step
 * (bf16_softmax_tile_pack, where the set has it) on the blocks its rows see
 * whole. Every other row: bitwise the clean call's; the last row's column
 * holding the value: NaN, or not finite for the infinity (p·inf). */
static void check_careful(tester* t, mha_isa isa) {
  enum { H = 4, HKV = 2, D = 64 };
  const mha_kernels* kr = mha_kernels_for(isa);
  const int64_t T = 2 * (kr->bf16_nk > 0 ? kr->bf16_nk : (int64_t)kr->attn_nk) - 37;
  const size_t nq = (size_t)(H * T * D), nkv = (size_t)(HKV * T * D);
  uint16_t *q = tester_alloc(nq * 2), *k = tester_alloc(nkv * 2), *v = tester_alloc(nkv * 2);
  uint16_t *ref = tester_alloc(nq * 2), *out = tester_alloc(nq * 2);
  fill_bf16(t, q, nq);
  fill_bf16(t, k, nkv);
  fill_bf16(t, v, nkv);
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, H, HKV, T, T, D, D);
  d.isa = isa;
  d.mask.causal = 1;
  static const uint16_t bad[] = {0x7fc0, 0x7f80}; /* NaN, +inf */
  for (int threads = 1; threads <= 2; threads++) {
    d.num_threads = threads;
    tester_context(t, "%s: the careful rerun, T %lld, %d thread(s)", mha_isa_name(isa), (long long)T, threads);
    if (!check_ok(t, mha_attention(&d, MHA_DTYPE_BF16, q, k, v, ref, NULL), "clean")) break;
    for (size_t bi = 0; bi < sizeof bad / sizeof bad[0]; bi++) {
      for (int64_t g = 0; g < HKV; g++) v[(size_t)((g * T + T - 1) * D + 5)] = bad[bi];
      for (size_t i = 0; i < nq; i++) out[i] = poison16();
      if (check_ok(t, mha_attention(&d, MHA_DTYPE_BF16, q, k, v, out, NULL), "a bad V row")) {
        int same = 1, last = 1;
        for (int64_t h = 0; h < H; h++) {
          same &= memcmp(out + h * T * D, ref + h * T * D, (size_t)((T - 1) * D) * 2) == 0;
          const float x = mha_bf16_to_f32(out[(size_t)((h * T + T - 1) * D + 5)]);
          last &= bi == 0 ? isnan(x) : !isfinite(x);
        }
        tester_check(t, same, "value %#x in key %lld's V row: every row that cannot see it bitwise the clean call",
                     bad[bi], (long long)(T - 1));
        tester_check(t, last, "value %#x: the last row's column 5 is %s", bad[bi], bi == 0 ? "NaN" : "not finite");
      }
      for (int64_t g = 0; g < HKV; g++) v[(size_t)((g * T + T - 1) * D + 5)] = int_bf16(t);
    }
  }
  free(q), free(k), free(v), free(ref), free(out);
}

/* mha_attention_kv over a paged bf16 cache (blocks reversed) against
 * mha_attention on the same values in contiguous views: bitwise. */
static void check_cache(tester* t, mha_isa isa) {
  enum { B = 2, H = 4, HKV = 2, TK = 70, TQ = 37, D = 32, PAGE = 16, NB = (TK + PAGE - 1) / PAGE };
  tester_context(t, "%s: a paged cache", mha_isa_name(isa));
  const size_t nkv = (size_t)(B * HKV * TK * D), nq = (size_t)(B * H * TQ * D);
  uint16_t *k = tester_alloc(nkv * 2), *v = tester_alloc(nkv * 2), *q = tester_alloc(nq * 2);
  fill_bf16(t, k, nkv);
  fill_bf16(t, v, nkv);
  fill_bf16(t, q, nq);
  float *kf = tester_alloc(nkv * sizeof(float)), *vf = tester_alloc(nkv * sizeof(float));
  for (size_t i = 0; i < nkv; i++) kf[i] = mha_bf16_to_f32(k[i]), vf[i] = mha_bf16_to_f32(v[i]);
  int32_t table[B * NB];
  for (int i = 0; i < B * NB; i++) table[i] = B * NB - 1 - i;
  uint16_t* kc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  uint16_t* vc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  mha_kv_cache c;
  mha_kv_cache_init_paged(&c, MHA_DTYPE_BF16, kc, vc, B * NB, PAGE, HKV, D, D, table, NB);
  const int32_t pos[B] = {0, 0};
  uint16_t *o1 = tester_alloc(nq * 2), *o2 = tester_alloc(nq * 2);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, TQ, TK, D, D);
  d.isa = isa;
  d.mask.causal = 1;
  if (check_ok(t, mha_kv_cache_write(&c, B, HKV, TK, D, D, pos, kf, mha_strides_bhtd(HKV, TK, D), vf,
                                     mha_strides_bhtd(HKV, TK, D)), "fill the cache") &&
      check_ok(t, mha_attention(&d, MHA_DTYPE_BF16, q, k, v, o1, NULL), "views") &&
      check_ok(t, mha_attention_kv(&d, MHA_DTYPE_BF16, q, &c, o2, NULL), "paged cache")) {
    tester_check(t, memcmp(o1, o2, nq * 2) == 0, "the paged cache call bitwise the views' call");
  }
  free(k), free(v), free(q), free(kf), free(vf), free(kc), free(vc), free(o1), free(o2);
}

/* The serving step (mha_attention_varlen_kv): four packed sequences (a
 * decode, a chunk, an empty one, a longer chunk) over a bf16 cache paged in
 * blocks of 16 (a permuted table), a GPT-J rotary: bits identical for 1-3
 * threads, and each sequence bitwise its own mha_attention_kv call. */
static void check_varlen(tester* t, mha_isa isa) {
  enum { B = 4, H = 4, HKV = 2, TK = 64, D = 16, PAGE = 16, NB = TK / PAGE };
  tester_context(t, "%s: varlen over a paged cache", mha_isa_name(isa));
  const int32_t cu[B + 1] = {0, 1, 8, 8, 21}, used[B] = {40, 64, 0, 13};
  const size_t total = 21, nq = total * H * D, nkv = (size_t)(B * HKV * TK * D);
  float *kx = tester_alloc(nkv * sizeof(float)), *vx = tester_alloc(nkv * sizeof(float));
  tester_fill(t, kx, nkv);
  tester_fill(t, vx, nkv);
  uint16_t* kc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  uint16_t* vc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  int32_t table[B * NB];
  for (int i = 0; i < B * NB; i++) table[i] = (i * 7) % (B * NB);
  mha_kv_cache c;
  mha_kv_cache_init_paged(&c, MHA_DTYPE_BF16, kc, vc, B * NB, PAGE, HKV, D, D, table, NB);
  const int32_t pos[B] = {0, 0, 0, 0};
  float *cosb = tester_alloc((size_t)(TK * D / 2) * sizeof(float)), *sinb = tester_alloc((size_t)(TK * D / 2) * sizeof(float));
  mha_rotary r;
  mha_rotary_init(&r, MHA_ROTARY_GPTJ, D, cosb, sinb, TK);
  uint16_t *q = tester_alloc(nq * 2), *ref = tester_alloc(nq * 2), *out = tester_alloc(nq * 2);
  fill_bf16(t, q, nq);
  if (!check_ok(t, mha_kv_cache_write(&c, B, HKV, TK, D, D, pos, kx, mha_strides_bhtd(HKV, TK, D), vx,
                                      mha_strides_bhtd(HKV, TK, D)), "fill the cache") ||
      !check_ok(t, mha_rotary_table_f32(D, TK, 10000.0, 1.0, NULL, 1.0, cosb, sinb), "rotary table")) {
    goto done;
  }
  for (int threads = 1; threads <= 3; threads++) {
    mha_attention_desc d;
    mha_attention_desc_init(&d, B, H, HKV, 13, TK, D, D);
    d.q = d.out = mha_strides_bthd(H, 13, D);
    d.mask.causal = 1;
    d.isa = isa;
    d.num_threads = threads;
    d.rotary = &r;
    for (size_t i = 0; i < nq; i++) out[i] = poison16();
    if (!check_ok(t, mha_attention_varlen_kv(&d, MHA_DTYPE_BF16, cu, used, q, &c, threads == 1 ? ref : out),
                  "varlen call")) {
      goto done;
    }
    if (threads > 1) tester_check(t, memcmp(out, ref, nq * 2) == 0, "%d threads: bitwise 1 thread's", threads);
  }
  for (int b = 0; b < B; b++) {
    const int64_t len = cu[b + 1] - cu[b];
    if (len == 0) continue;
    mha_kv_cache one;
    mha_kv_cache_init_paged(&one, MHA_DTYPE_BF16, kc, vc, B * NB, PAGE, HKV, D, D, table + b * NB, NB);
    mha_attention_desc d;
    mha_attention_desc_init(&d, 1, H, HKV, len, used[b], D, D);
    d.q = d.out = mha_strides_bthd(H, len, D);
    d.mask.causal = 1;
    d.isa = isa;
    d.rotary = &r;
    const size_t at = (size_t)cu[b] * H * D, n = (size_t)len * H * D;
    for (size_t i = 0; i < n; i++) out[i] = poison16();
    if (check_ok(t, mha_attention_kv(&d, MHA_DTYPE_BF16, q + at, &one, out, NULL), "the sequence's own call")) {
      tester_check(t, memcmp(out, ref + at, n * 2) == 0, "sequence %d: bitwise its own mha_attention_kv call", b);
    }
  }
done:
  free(kx), free(vx), free(kc), free(vc), free(cosb), free(sinb), free(q), free(ref), free(out);
}

/* Packed sequences (mha_attention_varlen, packed bf16 K and V; a sequence
 * without keys): each sequence bitwise its own mha_attention call. */
static void check_varlen_packed(tester* t, mha_isa isa) {
  enum { B = 3, H = 4, HKV = 2, D = 24, DV = 40 };
  tester_context(t, "%s: packed sequences", mha_isa_name(isa));
  const int32_t cu_q[B + 1] = {0, 1, 18, 25}, cu_k[B + 1] = {0, 40, 70, 70};
  const size_t nq = 25 * H * D, nk = 70 * HKV * D, nv = 70 * HKV * DV, nout = 25 * H * DV;
  uint16_t *q = tester_alloc(nq * 2), *k = tester_alloc(nk * 2), *v = tester_alloc(nv * 2);
  uint16_t *all = tester_alloc(nout * 2), *one = tester_alloc(nout * 2);
  fill_bf16(t, q, nq);
  fill_bf16(t, k, nk);
  fill_bf16(t, v, nv);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, 17, 40, D, DV);
  d.q = mha_strides_bthd(H, 17, D);
  d.k = mha_strides_bthd(HKV, 40, D);
  d.v = mha_strides_bthd(HKV, 40, DV);
  d.out = mha_strides_bthd(H, 17, DV);
  d.mask.causal = 1;
  d.isa = isa;
  if (check_ok(t, mha_attention_varlen(&d, MHA_DTYPE_BF16, cu_q, cu_k, q, k, v, all), "varlen call")) {
    for (int b = 0; b < B; b++) {
      const int64_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
      const size_t at = (size_t)cu_q[b] * H * DV, n = (size_t)lq * H * DV;
      if (lk == 0) {
        int zeros = 1;
        for (size_t i = 0; i < n; i++) zeros &= all[at + i] == 0;
        tester_check(t, zeros, "sequence %d (no keys): zeros", b);
        continue;
      }
      mha_attention_desc s;
      mha_attention_desc_init(&s, 1, H, HKV, lq, lk, D, DV);
      s.q = mha_strides_bthd(H, lq, D);
      s.k = mha_strides_bthd(HKV, lk, D);
      s.v = mha_strides_bthd(HKV, lk, DV);
      s.out = mha_strides_bthd(H, lq, DV);
      s.mask.causal = 1;
      s.isa = isa;
      if (check_ok(t, mha_attention(&s, MHA_DTYPE_BF16, q + (size_t)cu_q[b] * H * D, k + (size_t)cu_k[b] * HKV * D,
                                    v + (size_t)cu_k[b] * HKV * DV, one, NULL), "its own call")) {
        tester_check(t, memcmp(one, all + at, n * 2) == 0, "sequence %d: bitwise its own mha_attention call", b);
      }
    }
  }
  free(q), free(k), free(v), free(all), free(one);
}

int main(void) {
  tester t;
  tester_init(&t, "attention-bf16-test");
  int sets = 0;
  for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
    const mha_kernels* kr = mha_kernels_for((mha_isa)i);
    if (kr == NULL || kr->bf16_gemm == NULL) continue;
    sets++;
    printf("%s: the BF16 form of the %s set\n", t.name, kr->name);
    check_table(&t, kr);
    check_packing(&t, kr);
    check_gemm(&t, kr);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
      problemb p;
      problem_make(&t, &cases[ci], (mha_isa)i, &p);
      tester_context(&t, "%s: %s", kr->name, cases[ci].name);
      check_accuracy(&t, &p);
      check_bits(&t, &p);
      problem_free(&p);
    }
    check_sweep(&t, (mha_isa)i);
    check_forms(&t, (mha_isa)i);
    check_careful(&t, (mha_isa)i);
    check_cache(&t, (mha_isa)i);
    check_varlen(&t, (mha_isa)i);
    check_varlen_packed(&t, (mha_isa)i);
  }
  if (sets == 0) {
    printf("attention-bf16-test: SKIPPED: no kernel set with a BF16 unit in this build on this CPU "
           "(neon_bf16: AArch64 with FEAT_BF16; avx512_bf16: x86-64 with AVX512-BF16; amx_bf16: a build with "
           "MHA_AMX on a CPU with AMX-BF16)\n");
    return 77;
  }
  return tester_finish(&t);
}
