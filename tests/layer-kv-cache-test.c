/*
 * The layer's K/V cache output (mha_layer_args.kv_cache, kv_pos): a forward
 * stores its K and V projections into a cache, as a prefill fills it.
 *
 * For self- and cross-attention, GQA, biases, B 1 and 3 (several chunks),
 * each kernel set and thread counts 1 and 2, into fp32, f16 and bf16 caches,
 * contiguous and paged (head-major and token-major blocks, shuffled), at
 * positions 0 and mixed:
 *  - out is bitwise the out of the same call without a cache;
 *  - an fp32 cache holds the projections: within the fp32 GEMM bound of a
 *    double projection computed here (a wrong row, head or entry is far off);
 *  - a 16-bit cache holds exactly the fp32 cache's values rounded to nearest
 *    even (kv-gemm/kv-convert.h);
 *  - every element outside the written tokens keeps its sentinel.
 * And the failures (a position past the cache, a bad table slot, a cache
 * over out or x_q) return their status and write nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "layer-problem.h"
#include "tester.h"

enum { SENTINEL = 0x7e55 }; /* a NaN in f16 and bf16; fp32 sentinel below */

typedef struct cache_store {
  mha_kv_cache c;
  void *k, *v;
  size_t k_n, v_n; /* elements */
  int32_t* table;
} cache_store;

static size_t esz(mha_dtype t) { return t == MHA_DTYPE_F32 ? 4 : 2; }

static void fill_sentinel(void* p, mha_dtype t, size_t n) {
  if (t == MHA_DTYPE_F32) {
    for (size_t i = 0; i < n; i++) ((float*)p)[i] = tester_poison_value();
  } else {
    for (size_t i = 0; i < n; i++) ((uint16_t*)p)[i] = SENTINEL;
  }
}

/* kind 0: contiguous [B, Hkv, cap, D]; 1: paged head-major bs 16; 2: paged
 * token-major bs 32. Blocks shuffled; unused slots -1. */
static void store_build(tester* t, cache_store* s, int kind, mha_dtype dt, int64_t B, int64_t Hkv, int64_t cap,
                        int64_t D, int64_t Dv) {
  memset(s, 0, sizeof *s);
  if (kind == 0) {
    s->k_n = (size_t)(B * Hkv * cap * D);
    s->v_n = (size_t)(B * Hkv * cap * Dv);
    s->k = tester_alloc(s->k_n * esz(dt));
    s->v = tester_alloc(s->v_n * esz(dt));
    mha_kv_cache_init(&s->c, dt, s->k, s->v, Hkv, cap, D, Dv);
  } else {
    const int64_t bs = kind == 1 ? 16 : 32, per = (cap + bs - 1) / bs, nblocks = B * per + 3;
    s->table = tester_alloc((size_t)(B * (per + 1)) * sizeof(int32_t));
    int32_t* perm = tester_alloc((size_t)nblocks * sizeof(int32_t));
    for (int64_t i = 0; i < nblocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = nblocks - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    for (int64_t b = 0; b < B; b++) {
      for (int64_t s2 = 0; s2 <= per; s2++) s->table[b * (per + 1) + s2] = s2 < per ? perm[b * per + s2] : -1;
    }
    free(perm);
    s->k_n = (size_t)(nblocks * bs * Hkv * D);
    s->v_n = (size_t)(nblocks * bs * Hkv * Dv);
    s->k = tester_alloc(s->k_n * esz(dt));
    s->v = tester_alloc(s->v_n * esz(dt));
    mha_kv_cache_init_paged(&s->c, dt, s->k, s->v, nblocks, bs, Hkv, D, Dv, s->table, per + 1);
    if (kind == 2) {
      s->c.k_strides = mha_strides_bthd(Hkv, bs, D);
      s->c.v_strides = mha_strides_bthd(Hkv, bs, Dv);
    }
  }
  fill_sentinel(s->k, dt, s->k_n);
  fill_sentinel(s->v, dt, s->v_n);
}

static void store_free(cache_store* s) {
  free(s->k);
  free(s->v);
  free(s->table);
}

/* element offset of (b, g, token, d) in K (is_v 0) or V */
static size_t at(const mha_kv_cache* c, int is_v, int64_t b, int64_t g, int64_t tok) {
  const mha_strides* s = is_v ? &c->v_strides : &c->k_strides;
  if (c->block_size == 0) return (size_t)(b * s->batch + g * s->head + tok * s->row);
  const int64_t blk = c->block_table[b * c->max_blocks + tok / c->block_size];
  return (size_t)(blk * s->batch + g * s->head + (tok % c->block_size) * s->row);
}

static float widened(const cache_store* s, int is_v, size_t i) {
  const void* p = is_v ? s->v : s->k;
  switch (s->c.dtype) {
    case MHA_DTYPE_F16: return mha_f16_to_f32(((const uint16_t*)p)[i]);
    case MHA_DTYPE_BF16: return mha_bf16_to_f32(((const uint16_t*)p)[i]);
    default: return ((const float*)p)[i];
  }
}

static uint32_t raw(const cache_store* s, int is_v, size_t i) {
  const void* p = is_v ? s->v : s->k;
  if (s->c.dtype == MHA_DTYPE_F32) return mha_f32_to_bits(((const float*)p)[i]);
  return ((const uint16_t*)p)[i];
}

/* the double projection of K (is_v 0) or V: entry b, key row tok, column col
 * of [Hkv·D] (IN_OUT weights [d_kv, Hkv·D]); *mag = Σ|x||w| + |bias| */
static double project(const layer_problem* p, int is_v, int64_t b, int64_t tok, int64_t col, double* mag) {
  const layer_case* c = &p->c;
  const float* x = !c->cross ? p->x_q : is_v && c->separate_v ? p->x_v : p->x_k;
  const float* w = is_v ? p->w_v : p->w_k;
  const float* bias = is_v ? p->b_v : p->b_k;
  const int64_t din = c->cross ? p->d_kv : c->d_model, T = c->cross ? p->Tk : c->Tq;
  const int64_t width = is_v ? p->Hkv * p->Dv : p->Hkv * p->D;
  double sum = bias ? bias[col] : 0.0, m = bias ? fabs(bias[col]) : 0.0;
  for (int64_t i = 0; i < din; i++) {
    const double xi = x[(b * T + tok) * din + i], wi = w[i * width + col];
    sum += xi * wi;
    m += fabs(xi * wi);
  }
  *mag = m;
  return sum;
}

static void check_case(tester* t, const layer_case* lc, mha_isa isa, int kind, mha_dtype dt, int mixed_pos) {
  layer_problem p;
  layer_problem_build(t, lc, &p);
  p.desc.isa = isa;
  mha_layer* L = NULL;
  if (!tester_check(t, mha_layer_create(&p.desc, &L) == MHA_STATUS_SUCCESS, "mha_layer_create: %s",
                    mha_last_error())) {
    layer_problem_free(&p);
    return;
  }
  const int64_t B = lc->B, Hkv = p.Hkv, D = p.D, Dv = p.Dv, Tk = lc->cross ? p.Tk : lc->Tq;
  int32_t* pos = tester_alloc((size_t)B * sizeof(int32_t));
  for (int64_t b = 0; b < B; b++) pos[b] = mixed_pos ? (int32_t)(b * 7 + 3) : 0;
  const int64_t cap = Tk + 3 * 7 + 5;
  cache_store s, s32;
  store_build(t, &s, kind, dt, B, Hkv, cap, D, Dv);
  store_build(t, &s32, 0, MHA_DTYPE_F32, B, Hkv, cap, D, Dv);
  tester_context(t, "isa=%s cache kind %d dtype %d mixed_pos %d B=%lld Tq=%lld Tk=%lld H=%lld Hkv=%lld D=%lld "
                 "cross %d threads %d", mha_isa_name(isa), kind, (int)dt, mixed_pos, (long long)B,
                 (long long)lc->Tq, (long long)Tk, (long long)lc->H, (long long)Hkv, (long long)D, lc->cross,
                 lc->threads);

  /* out without a cache, then with the fp32 and the typed cache */
  const size_t nout = p.out_size;
  float* ref = tester_alloc(nout * sizeof(float));
  mha_layer_args a = p.args;
  tester_poison(p.out, nout);
  mha_status st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS, "forward without a cache: %s", mha_last_error());
  memcpy(ref, p.out, nout * sizeof(float));
  a.kv_pos = pos;
  a.kv_cache = &s32.c;
  tester_poison(p.out, nout);
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS && memcmp(ref, p.out, nout * sizeof(float)) == 0,
               "out with an fp32 cache differs from out without one (status %d)", (int)st);
  a.kv_cache = &s.c;
  tester_poison(p.out, nout);
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS && memcmp(ref, p.out, nout * sizeof(float)) == 0,
               "out with the cache differs from out without one (status %d)", (int)st);

  /* the fp32 cache against the double projections; the typed cache the rounding of it */
  long bad_proj = 0, bad_round = 0, bad_other = 0;
  const double u = ldexp(1.0, -24);
  for (int is_v = 0; is_v < 2; is_v++) {
    const int64_t w = is_v ? Dv : D;
    for (int64_t b = 0; b < B; b++)
      for (int64_t g = 0; g < Hkv; g++)
        for (int64_t tok = 0; tok < Tk; tok++)
          for (int64_t d = 0; d < w; d++) {
            double mag;
            const double want = project(&p, is_v, b, tok, g * w + d, &mag);
            const size_t i32 = at(&s32.c, is_v, b, g, pos[b] + tok) + (size_t)d;
            const float got = ((const float*)(is_v ? s32.v : s32.k))[i32];
            const double din = (double)(lc->cross ? p.d_kv : lc->d_model);
            if (!(fabs(got - want) <= 2.0 * (din + 2.0) * u * mag + 1e-30)) bad_proj++;
            const size_t it = at(&s.c, is_v, b, g, pos[b] + tok) + (size_t)d;
            const uint32_t want_bits = dt == MHA_DTYPE_F16    ? mha_f32_to_f16(got)
                                       : dt == MHA_DTYPE_BF16 ? mha_f32_to_bf16(got)
                                                              : mha_f32_to_bits(got);
            if (raw(&s, is_v, it) != want_bits) bad_round++;
          }
    /* every element of the typed store outside the written rows keeps its sentinel */
    size_t written = 0, kept = 0, n = is_v ? s.v_n : s.k_n;
    for (size_t i = 0; i < n; i++) {
      const uint32_t r = raw(&s, is_v, i);
      const int sentinel = dt == MHA_DTYPE_F32 ? tester_is_poison(widened(&s, is_v, i)) : r == SENTINEL;
      kept += (size_t)sentinel;
    }
    written = (size_t)(B * Hkv * Tk * w);
    if (n - kept != written) bad_other++;
  }
  tester_check(t, bad_proj == 0, "%ld fp32 cache elements are not the K/V projections", bad_proj);
  tester_check(t, bad_round == 0, "%ld cache elements are not the rounded fp32 projections", bad_round);
  tester_check(t, bad_other == 0, "the cache was written outside the tokens [pos, pos + Tk)");
  free(ref);
  free(pos);
  store_free(&s);
  store_free(&s32);
  mha_layer_destroy(L);
  layer_problem_free(&p);
}

/* Failures write nothing: not to the cache, not to out. */
static void check_errors(tester* t) {
  const layer_case lc = {.B = 2, .Tq = 9, .Tk = 9, .d_model = 32, .H = 4, .Hkv = 2, .threads = 1};
  layer_problem p;
  layer_problem_build(t, &lc, &p);
  mha_layer* L = NULL;
  if (!tester_check(t, mha_layer_create(&p.desc, &L) == MHA_STATUS_SUCCESS, "create")) {
    layer_problem_free(&p);
    return;
  }
  tester_context(t, "layer kv_cache errors");
  cache_store s;
  store_build(t, &s, 1, MHA_DTYPE_F16, 2, p.Hkv, 20, p.D, p.Dv);
  uint16_t* k0 = tester_alloc(s.k_n * 2);
  memcpy(k0, s.k, s.k_n * 2);
  mha_layer_args a = p.args;
  a.kv_cache = &s.c;
  struct { const char* what; int32_t pos1; int32_t slot; mha_status want; } cases[] = {
      {"a position past the table's tokens", 40, -2, MHA_STATUS_INVALID_ARGUMENT},
      {"a negative position", -1, -2, MHA_STATUS_INVALID_ARGUMENT},
      {"a table slot outside the pool", 0, 999, MHA_STATUS_INVALID_ARGUMENT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int32_t pos[2] = {0, cases[i].pos1};
    const int32_t saved = s.table[s.c.max_blocks]; /* entry 1's first slot */
    if (cases[i].slot != -2) s.table[s.c.max_blocks] = cases[i].slot;
    a.kv_pos = pos;
    tester_poison(p.out, p.out_size);
    const mha_status st = mha_layer_forward(L, &a);
    s.table[s.c.max_blocks] = saved;
    int out_kept = 1;
    for (size_t j = 0; j < p.out_size; j++) out_kept &= tester_is_poison(p.out[j]);
    tester_check(t, st == cases[i].want && out_kept && memcmp(k0, s.k, s.k_n * 2) == 0,
                 "%s: status %d (want %d), out untouched %d, cache untouched %d", cases[i].what, (int)st,
                 (int)cases[i].want, out_kept, memcmp(k0, s.k, s.k_n * 2) == 0);
  }
  /* a cache over out, or over x_q: refused */
  mha_kv_cache over = s.c;
  over.k = p.out;
  a.kv_pos = NULL;
  a.kv_cache = &over;
  tester_check(t, mha_layer_forward(L, &a) == MHA_STATUS_INVALID_STRIDE, "a cache over out: %s", mha_last_error());
  over.k = s.k;
  over.v = (void*)p.x_q;
  tester_check(t, mha_layer_forward(L, &a) == MHA_STATUS_INVALID_STRIDE, "a cache over x_q: %s", mha_last_error());
  free(k0);
  store_free(&s);
  mha_layer_destroy(L);
  layer_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-kv-cache-test");
  const isa_list isas = tester_available_isas(&t);
  const layer_case cases[] = {
      /* self, MHA, one entry */
      {.B = 1, .Tq = 17, .Tk = 17, .d_model = 48, .H = 4, .threads = 1},
      /* self, GQA, biases, three entries, causal */
      {.B = 3, .Tq = 33, .Tk = 33, .d_model = 64, .H = 8, .Hkv = 2, .biases = 1, .causal = 1, .threads = 2},
      /* cross, separate V, Dv != D */
      {.B = 2, .Tq = 5, .Tk = 41, .d_model = 32, .d_kv = 24, .H = 4, .Hkv = 2, .D = 8, .Dv = 12, .biases = 1,
       .cross = 1, .separate_v = 1, .threads = 2},
  };
  for (int n = 0; n < isas.count; n++) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
      for (int kind = 0; kind < 3; kind++) {
        for (int dt = MHA_DTYPE_F32; dt <= MHA_DTYPE_BF16; dt++) {
          check_case(&t, &cases[ci], isas.isa[n], kind, (mha_dtype)dt, (int)((ci + (size_t)kind) & 1));
        }
      }
    }
  }
  check_errors(&t);
  return tester_finish(&t);
}
