/*
 * Properties of the attention core (mha_attention_f32) that any correct
 * evaluation has, whatever its rounding, checked on every kernel set this
 * CPU runs (desc.isa per call) at 1 and 2 threads, on odd shapes (rows and
 * widths 1, 7, 63, 65, 129, 137, Dv 61), grouped- and multi-query heads,
 * prefill (Tq = Tk, causal) and decode (Tq = 1, Tk up to 2100: the decode
 * path splits such keys into ranges):
 *
 *   1. Key permutation: permuting the keys together with their values (the
 *      same permutation on the K rows, the V rows and the additive mask's key
 *      columns) leaves out unchanged within tolerance, and permutes the
 *      weights the same way. No causal mask and no kv_len: they are
 *      positional.
 *   2. Weights: in [0, 1]; each row sums to 1 within tolerance, and is all
 *      exact zeros when the masks leave the row no key; out = weights·V
 *      (in double) within tolerance; out with weights requested is bitwise
 *      the out without.
 *   3. Isolation: new Q for one head, new K/V for one kv head, or new
 *      inputs for one batch entry change only that head / the query heads of
 *      that group / that entry: every other output row is bitwise unchanged.
 *   4. Shift invariance: a finite constant added to a whole additive-mask
 *      row (one (b, h, i)) leaves that row's output unchanged within
 *      tolerance and every other row bitwise unchanged.
 *   5. Hidden keys stay hidden (mha.h: "K/V rows hidden from a query row
 *      ... never reach it, whatever they hold"): NaN, ±1e30 or ±inf in K or
 *      V at keys that kv_len hides, that an additive -inf hides from every
 *      query row of a kv head's group, that an additive -inf hides from a
 *      random half of those rows, or that the causal mask hides from the
 *      first rows. Every row that sees none of them is finite and bitwise
 *      its value with clean K/V; a row that sees a NaN is all NaN.
 *   6. Agreement: every kernel set within tolerance of the oracle (out and
 *      weights) and of the scalar kernel set.
 *
 * Tolerances. tolerance_attention() (tolerance.c) bounds, per element, the
 * distance of any correct float evaluation from the exact result (the
 * oracle): |out − exact| <= tol with tol = max_j |v_jc| · r_i + FLT_MIN,
 * where r_i = expm1(2·e_s) + 2·(Tk + 4)·eps is the relative error bound of
 * the row's probabilities (e_s the logit error bound). Two float results of
 * the same exact value (two kernel sets, a permuted and an unpermuted run,
 * out and weights·V) are then within tol_a + tol_b of each other by the
 * triangle inequality, and that is the bound used wherever two library
 * results are compared: 2·tol when the exact values are the same problem's,
 * tol_base + tol_shifted for the mask shift (whose exact logits differ by
 * the constant, so its e_s term is derived from the shifted problem).
 * For out = weights·V: out is within tol of the exact Σ p_j v_j and the
 * stored weights within p_j·r_i of p_j, so Σ w_j v_j is within
 * Σ p_j·r_i·|v_j| <= r_i·max|v| of it: again 2·tol. A weight row sums to 1
 * within Σ_j p_j·r_i = r_i (the sum of the weights' tolerances). Nothing
 * is a picked constant: a result off by a dropped key or a wrong scale
 * fails (attention-test's tolerance self-test).
 *
 * Bitwise claims (3, 4, 5 and the weights/no-weights pair of 2) compare
 * runs of the same kernel set and thread count with the same shape: mha.h
 * makes an entry's bits a function of its own inputs, the shape and the
 * kernel set, not of weights being requested. A self-test shows the derived
 * bounds catch broken properties (K permuted without V, half a mask row
 * shifted, a weight row off by 1%).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention-problem.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const int kThreads[] = {1, 2};

/* The shapes: sizes, whether the base masks include causal, and layouts. */
typedef struct shape {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal;
  layout_kind q, k, v, out;
} shape;

static const shape kShapes[] = {
    /* prefill, grouped-query, strided q and out */
    {2, 8, 2, 65, 65, 64, 61, 1, LAYOUT_BTHD, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD_PADDED},
    /* decode, grouped-query: 33 key blocks, split into ranges (SIMD sets) */
    {3, 8, 2, 1, 2100, 64, 61, 0, LAYOUT_BHTD, LAYOUT_BTHD, LAYOUT_BTHD, LAYOUT_BHTD},
    /* decode, 2 query heads per kv head: split on every set, scalar included */
    {2, 6, 3, 1, 1031, 137, 16, 1, LAYOUT_BHTD, LAYOUT_BHTD_PADDED, LAYOUT_BTHD_PADDED,
     LAYOUT_BHTD},
    {2, 3, 3, 63, 129, 7, 61, 1, LAYOUT_BHTD_PADDED, LAYOUT_BHTD, LAYOUT_BHTD_PADDED,
     LAYOUT_BTHD},
    /* Tq > Tk with causal: rows 0..121 see no key */
    {1, 2, 1, 129, 7, 1, 64, 1, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD},
    /* a single key and a single query row */
    {2, 2, 1, 1, 1, 1, 1, 0, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD},
    /* decode, one query head per kv head, D = 1: split on every set */
    {3, 4, 4, 1, 2049, 1, 7, 0, LAYOUT_BHTD, LAYOUT_BTHD, LAYOUT_BHTD, LAYOUT_BHTD},
    /* Tq = Tk + 2, causal: the first two rows see no key */
    {1, 12, 4, 65, 63, 137, 61, 1, LAYOUT_BTHD, LAYOUT_BTHD, LAYOUT_BTHD, LAYOUT_BTHD},
    {1, 2, 2, 7, 63, 137, 1, 0, LAYOUT_BTHD, LAYOUT_BTHD, LAYOUT_BTHD, LAYOUT_BTHD},
    {2, 4, 2, 129, 129, 7, 7, 1, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD},
    /* multi-query, a few rows */
    {1, 8, 1, 7, 65, 64, 61, 0, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD, LAYOUT_BHTD_PADDED},
};

/* One (kernel set, thread count) pair a property runs on. */
typedef struct slot {
  mha_isa isa;
  int threads;
} slot;

/* A shape's problem, pristine copies of its inputs, and scratch. */
typedef struct fixture {
  attention_problem p;
  slot slots[MHA_ISA_COUNT * COUNT(kThreads)];
  int nslots;
  size_t n_out, n_w, n_rows; /* B·H·Tq·Dv, B·H·Tq·Tk, B·H·Tq */
  float *q0, *k0, *v0, *add0;
  int32_t* kv_len0;
  float* base_out; /* nslots × n_out: the unmodified runs */
  float* base_w;   /* nslots × n_w */
  float *got, *got_w, *tmp_w;
  double *want, *want_w, *tol, *tol_w, *tol2, *tol_w2, *expect;
  double worst_sum; /* largest |Σ weights − 1| / (Tk·eps) seen */
} fixture;

/* ------------------------------------------------------------------------ */
/* Buffers, masks, runs                                                     */
/* ------------------------------------------------------------------------ */

static float* row_of(float* base, mha_strides s, int64_t b, int64_t h, int64_t t) {
  return base + b * s.batch + h * s.head + t * s.row;
}

static float* copy_of(const float* x, size_t n) {
  float* c = tester_alloc(n * sizeof(float));
  memcpy(c, x, n * sizeof(float));
  return c;
}

static double* doubles(size_t n) { return tester_alloc(n * sizeof(double)); }

/* The oracle reads widened copies of q, k and v: refresh them after a change. */
static void refresh_oracle(attention_problem* p) {
  const attention_case* c = &p->c;
  const mha_attention_desc* d = &p->desc;
  oracle_gather(c->B, c->H, c->Tq, c->D, p->q, (oracle_strides){d->q.batch, d->q.head, d->q.row},
                p->qd);
  oracle_gather(c->B, c->Hkv, c->Tk, c->D, p->k,
                (oracle_strides){d->k.batch, d->k.head, d->k.row}, p->kd);
  oracle_gather(c->B, c->Hkv, c->Tk, c->Dv, p->v,
                (oracle_strides){d->v.batch, d->v.head, d->v.row}, p->vd);
}

/* Puts every input back as built. */
static void restore(fixture* f) {
  attention_problem* p = &f->p;
  memcpy(p->q, f->q0, p->q_size * sizeof(float));
  memcpy(p->k, f->k0, p->k_size * sizeof(float));
  memcpy(p->v, f->v0, p->v_size * sizeof(float));
  memcpy(p->additive, f->add0, p->additive_size * sizeof(float));
  memcpy(p->kv_len, f->kv_len0, (size_t)p->c.B * sizeof(int32_t));
  refresh_oracle(p);
}

/* Turns masks on or off, in the descriptor and in the oracle's problem. */
static void set_masks(attention_problem* p, int causal, int kv_len, int additive) {
  p->desc.mask.causal = causal;
  p->desc.mask.kv_len = kv_len ? p->kv_len : NULL;
  p->desc.mask.additive = additive ? p->additive : NULL;
  p->oracle.causal = causal;
  p->oracle.kv_len = p->desc.mask.kv_len;
  p->oracle.additive = p->desc.mask.additive;
}

static void describe(tester* t, const attention_problem* p, slot s, const char* what) {
  attention_case c = p->c;
  c.threads = s.threads;
  c.causal = p->desc.mask.causal;
  c.kv_len = p->desc.mask.kv_len != NULL;
  c.additive = p->desc.mask.additive != NULL ? ADDITIVE_FULL : ADDITIVE_NONE;
  attention_case_describe(t, &c, mha_isa_name(s.isa));
  const size_t n = strlen(t->context);
  snprintf(t->context + n, sizeof t->context - n, "; %s", what);
}

/* One call on slot s, out poisoned first and gathered into dst [B, H, Tq, Dv]
 * afterwards; weights is p->weights or NULL. Returns 1 on success. */
static int run(tester* t, fixture* f, slot s, const char* what, float* weights, float* dst) {
  attention_problem* p = &f->p;
  describe(t, p, s, what);
  mha_attention_desc d = p->desc;
  d.isa = s.isa;
  d.num_threads = s.threads;
  attention_problem_poison(p);
  const mha_status st = mha_attention_f32(&d, p->q, p->k, p->v, p->out, weights);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32 returned %s: %s",
                    mha_status_string(st), mha_last_error())) {
    tester_poison(dst, f->n_out);
    return 0;
  }
  attention_problem_gather_out(p, dst);
  const size_t gaps = attention_problem_gap_writes(p);
  tester_check(t, gaps == 0, "%zu elements written outside the out view", gaps);
  return 1;
}

/* Runs every slot, keeping out (and weights) in f->base_out / f->base_w. */
static void run_base(tester* t, fixture* f, const char* what, int with_weights) {
  for (int s = 0; s < f->nslots; s++) {
    run(t, f, f->slots[s], what, with_weights ? f->p.weights : NULL,
        f->base_out + (size_t)s * f->n_out);
    if (with_weights) memcpy(f->base_w + (size_t)s * f->n_w, f->p.weights, f->n_w * sizeof(float));
  }
}

/* actual within tol of the float reference ref (widened into f->expect). */
static int check_close_to(tester* t, fixture* f, const char* what, size_t n, const float* actual,
                          const float* ref, const double* tol) {
  for (size_t i = 0; i < n; i++) f->expect[i] = (double)ref[i];
  return tester_check_close(t, what, n, actual, f->expect, tol);
}

/* The oracle's out and tolerance (and the weights' with with_weights), masks as set now. */
static void oracle_now(fixture* f, int with_weights) {
  attention_problem* p = &f->p;
  oracle_attention(&p->oracle, f->want, with_weights ? f->want_w : NULL);
  tolerance_attention(&p->oracle, NULL, with_weights ? f->want_w : NULL, f->tol,
                      with_weights ? f->tol_w : NULL);
  for (size_t i = 0; i < f->n_out; i++) f->tol2[i] = 2.0 * f->tol[i];
  if (with_weights) {
    for (size_t i = 0; i < f->n_w; i++) f->tol_w2[i] = 2.0 * f->tol_w[i];
  }
}

/* Number of visible keys of row (b, h, i), counting up to `enough`. */
static int64_t visible_keys(const attention_problem* p, int64_t b, int64_t h, int64_t i,
                            int64_t enough) {
  int64_t n = 0;
  for (int64_t j = 0; j < p->c.Tk && n < enough; j++) {
    n += oracle_key_visible(&p->oracle, b, h, i, j);
  }
  return n;
}

/* Compares two gathered outputs [B, H, Tq, Dv] (b, h) block by block: blocks
 * with changed[b·H + h] = 0 must be bitwise equal; *moved receives how many
 * of the others differ in some element. Returns the number of equal-required
 * blocks that differ, and the first one in *first. */
static long compare_blocks(const fixture* f, const float* a, const float* b,
                           const unsigned char* changed, long* moved, int64_t* first) {
  const attention_case* c = &f->p.c;
  const size_t block = (size_t)(c->Tq * c->Dv);
  long bad = 0;
  *moved = 0;
  *first = -1;
  for (int64_t bh = 0; bh < c->B * c->H; bh++) {
    const int differ = memcmp(a + (size_t)bh * block, b + (size_t)bh * block,
                              block * sizeof(float)) != 0;
    if (changed[bh]) {
      *moved += differ;
    } else if (differ) {
      if (bad++ == 0) *first = bh;
    }
  }
  return bad;
}

/* ------------------------------------------------------------------------ */
/* 6 and 2: the oracle, the scalar set, and the weights                     */
/* ------------------------------------------------------------------------ */

/* The weights of one run: range, empty rows, row sums. */
static void check_weight_rows(tester* t, fixture* f, const float* w, const unsigned char* empty) {
  const int64_t Tk = f->p.c.Tk;
  long out_of_range = 0, bad_empty = 0, bad_sum = 0;
  size_t range_at = 0, empty_at = 0, sum_at = 0;
  double sum_bad = 0.0, sum_tol = 0.0;
  for (size_t r = 0; r < f->n_rows; r++) {
    const float* wr = w + r * (size_t)Tk;
    const double* tr = f->tol_w + r * (size_t)Tk;
    double sum = 0.0, tol = 0.0;
    for (int64_t j = 0; j < Tk; j++) {
      if (!(wr[j] >= 0.0f && wr[j] <= 1.0f) && out_of_range++ == 0) {
        range_at = r * (size_t)Tk + (size_t)j;
      }
      if (empty[r] && wr[j] != 0.0f && bad_empty++ == 0) empty_at = r * (size_t)Tk + (size_t)j;
      sum += (double)wr[j];
      tol += tr[j];
    }
    if (empty[r]) continue;
    const double dev = fabs(sum - 1.0);
    if (dev / ((double)Tk * TOLERANCE_EPS) > f->worst_sum) {
      f->worst_sum = dev / ((double)Tk * TOLERANCE_EPS);
    }
    if (!(dev <= tol) && bad_sum++ == 0) {
      sum_at = r;
      sum_bad = sum;
      sum_tol = tol;
    }
  }
  tester_check(t, out_of_range == 0, "%ld weights outside [0, 1]; first [%zu] = %.9g",
               out_of_range, range_at, out_of_range ? (double)w[range_at] : 0.0);
  tester_check(t, bad_empty == 0,
               "%ld weights nonzero in rows with no visible key; first [%zu] = %.9g", bad_empty,
               empty_at, bad_empty ? (double)w[empty_at] : 0.0);
  tester_check(t, bad_sum == 0,
               "%ld weight rows do not sum to 1; first row %zu sums to %.17g (|sum - 1| = %.3g, "
               "tol %.3g)",
               bad_sum, sum_at, sum_bad, fabs(sum_bad - 1.0), sum_tol);
}

/* f->expect ← weights · V in double, [B, H, Tq, Dv]. */
static void weights_times_v(fixture* f, const float* w) {
  const attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      const int64_t g = oracle_kv_head(&p->oracle, h);
      const double* vbase = p->vd + (b * c->Hkv + g) * c->Tk * c->Dv;
      for (int64_t i = 0; i < c->Tq; i++) {
        const size_t r = (size_t)((b * c->H + h) * c->Tq + i);
        const float* wr = w + r * (size_t)c->Tk;
        double* o = f->expect + r * (size_t)c->Dv;
        for (int64_t x = 0; x < c->Dv; x++) o[x] = 0.0;
        for (int64_t j = 0; j < c->Tk; j++) {
          const double pj = (double)wr[j];
          if (pj == 0.0) continue; /* also skips 0·NaN: NaN weights fail elsewhere */
          const double* vj = vbase + j * c->Dv;
          for (int64_t x = 0; x < c->Dv; x++) o[x] += pj * vj[x];
        }
      }
    }
  }
}

/* empty[r] ← 1 where row r sees no key under the masks set now; returns their count. */
static long empty_rows(const fixture* f, unsigned char* empty) {
  const attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  long n = 0;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      for (int64_t i = 0; i < c->Tq; i++) {
        const size_t r = (size_t)((b * c->H + h) * c->Tq + i);
        empty[r] = visible_keys(p, b, h, i, 1) == 0;
        n += empty[r];
      }
    }
  }
  return n;
}

static void check_oracle_scalar_weights(tester* t, fixture* f) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  set_masks(p, c->causal, 1, 1);
  oracle_now(f, 1);
  unsigned char* empty = tester_alloc(f->n_rows);
  const long n_empty = empty_rows(f, empty);
  tester_context(t, "shape B=%lld Tq=%lld Tk=%lld: kv_len[B-1] = 0 or the all -inf row",
                 (long long)c->B, (long long)c->Tq, (long long)c->Tk);
  tester_check(t, n_empty > 0, "the masks leave no row empty: the empty-row check tests nothing");

  /* the scalar kernel set at one thread, the reference of the others */
  float* scalar_out = tester_alloc(f->n_out * sizeof(float));
  const slot scalar = {MHA_ISA_SCALAR, 1};
  run(t, f, scalar, "scalar reference", p->weights, scalar_out);

  for (int s = 0; s < f->nslots; s++) {
    const slot sl = f->slots[s];
    if (!run(t, f, sl, "oracle, scalar, weights", p->weights, f->got_w)) continue;
    tester_check_close(t, "out vs oracle", f->n_out, f->got_w, f->want, f->tol);
    tester_check_close(t, "weights vs oracle", f->n_w, p->weights, f->want_w, f->tol_w);
    check_close_to(t, f, "out vs the scalar set", f->n_out, f->got_w, scalar_out, f->tol2);
    check_weight_rows(t, f, p->weights, empty);
    weights_times_v(f, p->weights);
    tester_check_close(t, "out vs weights·V", f->n_out, f->got_w, f->expect, f->tol2);

    if (!run(t, f, sl, "out without weights", NULL, f->got)) continue;
    size_t first = f->n_out;
    for (size_t i = 0; i < f->n_out && first == f->n_out; i++) {
      if (memcmp(&f->got[i], &f->got_w[i], sizeof(float)) != 0) first = i;
    }
    tester_check(t, first == f->n_out,
                 "out without weights is not bitwise the out with weights; first [%zu]: %.9g "
                 "without, %.9g with",
                 first, first < f->n_out ? (double)f->got[first] : 0.0,
                 first < f->n_out ? (double)f->got_w[first] : 0.0);
  }
  free(scalar_out);
  free(empty);
}

/* ------------------------------------------------------------------------ */
/* 1: key permutation                                                       */
/* ------------------------------------------------------------------------ */

static void check_key_permutation(tester* t, fixture* f, int with_additive) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const mha_attention_desc* d = &p->desc;
  set_masks(p, 0, 0, with_additive);
  oracle_now(f, with_additive);
  const char* base_what = with_additive ? "keys in order, additive mask" : "keys in order";
  float* w = with_additive ? p->weights : NULL;
  for (int s = 0; s < f->nslots; s++) {
    float* out = f->base_out + (size_t)s * f->n_out;
    if (!run(t, f, f->slots[s], base_what, w, out)) continue;
    tester_check_close(t, "out vs oracle", f->n_out, out, f->want, f->tol);
    if (w != NULL) {
      memcpy(f->base_w + (size_t)s * f->n_w, w, f->n_w * sizeof(float));
      tester_check_close(t, "weights vs oracle", f->n_w, w, f->want_w, f->tol_w);
    }
  }

  /* perm[(b·Hkv + g)·Tk + j]: the original key at position j of (b, g) */
  int64_t* perm = tester_alloc((size_t)(c->B * c->Hkv * c->Tk) * sizeof(int64_t));
  for (int64_t bg = 0; bg < c->B * c->Hkv; bg++) {
    int64_t* pi = perm + bg * c->Tk;
    for (int64_t j = 0; j < c->Tk; j++) pi[j] = j;
    for (int64_t j = c->Tk - 1; j > 0; j--) {
      const int64_t r = tester_below(t, j + 1);
      const int64_t x = pi[j];
      pi[j] = pi[r];
      pi[r] = x;
    }
  }
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t g = 0; g < c->Hkv; g++) {
      const int64_t* pi = perm + (b * c->Hkv + g) * c->Tk;
      for (int64_t j = 0; j < c->Tk; j++) {
        memcpy(row_of(p->k, d->k, b, g, j), row_of(f->k0, d->k, b, g, pi[j]),
               (size_t)c->D * sizeof(float));
        memcpy(row_of(p->v, d->v, b, g, j), row_of(f->v0, d->v, b, g, pi[j]),
               (size_t)c->Dv * sizeof(float));
      }
    }
    for (int64_t h = 0; h < c->H; h++) {
      const int64_t* pi = perm + (b * c->Hkv + oracle_kv_head(&p->oracle, h)) * c->Tk;
      for (int64_t i = 0; i < c->Tq; i++) {
        float* dst = row_of(p->additive, d->mask.additive_strides, b, h, i);
        const float* src = row_of(f->add0, d->mask.additive_strides, b, h, i);
        for (int64_t j = 0; j < c->Tk; j++) dst[j] = src[pi[j]];
      }
    }
  }

  const char* what = with_additive ? "keys, values and additive columns permuted"
                                   : "keys and values permuted";
  for (int s = 0; s < f->nslots; s++) {
    if (!run(t, f, f->slots[s], what, w, f->got)) continue;
    check_close_to(t, f, "permuted out vs in-order out", f->n_out, f->got,
                   f->base_out + (size_t)s * f->n_out, f->tol2);
    if (w == NULL) continue;
    /* position j of row r holds the weight of original key pi[j] */
    for (int64_t b = 0; b < c->B; b++) {
      for (int64_t h = 0; h < c->H; h++) {
        const int64_t* pi = perm + (b * c->Hkv + oracle_kv_head(&p->oracle, h)) * c->Tk;
        for (int64_t i = 0; i < c->Tq; i++) {
          const size_t r = (size_t)(((b * c->H + h) * c->Tq + i) * c->Tk);
          for (int64_t j = 0; j < c->Tk; j++) f->tmp_w[r + (size_t)pi[j]] = w[r + (size_t)j];
        }
      }
    }
    check_close_to(t, f, "permuted weights, unpermuted, vs in-order weights", f->n_w, f->tmp_w,
                   f->base_w + (size_t)s * f->n_w, f->tol_w2);
  }
  free(perm);
  restore(f);
}

/* ------------------------------------------------------------------------ */
/* 3: heads, kv heads and batch entries are independent                     */
/* ------------------------------------------------------------------------ */

typedef enum change_kind { CHANGE_Q_HEAD, CHANGE_KV_HEAD, CHANGE_BATCH } change_kind;

static void check_isolation(tester* t, fixture* f, change_kind kind) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const mha_attention_desc* d = &p->desc;
  if (kind == CHANGE_BATCH && c->B == 1) return;
  set_masks(p, c->causal, 1, 1);
  run_base(t, f, "isolation: before the change", 0);

  const int64_t G = c->H / c->Hkv;
  /* not the last batch entry: its kv_len is 0 (fixture_build), it sees nothing */
  const int64_t which = tester_below(t, kind == CHANGE_Q_HEAD    ? c->H
                                        : kind == CHANGE_KV_HEAD ? c->Hkv
                                                                 : c->B - 1);
  unsigned char* changed = tester_alloc((size_t)(c->B * c->H));
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      changed[b * c->H + h] = kind == CHANGE_Q_HEAD    ? h == which
                              : kind == CHANGE_KV_HEAD ? h / G == which
                                                       : b == which;
    }
  }
  /* new inputs; a block must then move if one of its rows sees 2 keys (Q
   * only reweights the keys) or 1 key (new V, new K and V) */
  const int64_t need = kind == CHANGE_Q_HEAD ? 2 : 1;
  long expect_moved = 0;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      if (!changed[b * c->H + h]) continue;
      int moves = 0;
      for (int64_t i = 0; i < c->Tq && !moves; i++) moves = visible_keys(p, b, h, i, need) >= need;
      expect_moved += moves;
    }
  }
  for (int64_t b = 0; b < c->B; b++) {
    if (kind == CHANGE_BATCH && b != which) continue;
    for (int64_t h = 0; h < c->H; h++) {
      if (kind == CHANGE_KV_HEAD || (kind == CHANGE_Q_HEAD && h != which)) continue;
      for (int64_t i = 0; i < c->Tq; i++) tester_fill(t, row_of(p->q, d->q, b, h, i), (size_t)c->D);
    }
    for (int64_t g = 0; g < c->Hkv; g++) {
      if (kind == CHANGE_Q_HEAD || (kind == CHANGE_KV_HEAD && g != which)) continue;
      for (int64_t j = 0; j < c->Tk; j++) {
        tester_fill(t, row_of(p->k, d->k, b, g, j), (size_t)c->D);
        tester_fill(t, row_of(p->v, d->v, b, g, j), (size_t)c->Dv);
      }
    }
  }

  char what[96];
  snprintf(what, sizeof what, "isolation: new %s %lld",
           kind == CHANGE_Q_HEAD    ? "Q of head"
           : kind == CHANGE_KV_HEAD ? "K and V of kv head"
                                    : "Q, K and V of batch entry",
           (long long)which);
  for (int s = 0; s < f->nslots; s++) {
    if (!run(t, f, f->slots[s], what, NULL, f->got)) continue;
    long moved = 0;
    int64_t first = -1;
    const long bad = compare_blocks(f, f->base_out + (size_t)s * f->n_out, f->got, changed,
                                    &moved, &first);
    tester_check(t, bad == 0,
                 "%ld (batch, head) outputs that should not change did; first b=%lld h=%lld",
                 bad, (long long)(first / c->H), (long long)(first % c->H));
    tester_check(t, moved >= expect_moved,
                 "only %ld of the changed (batch, head) outputs moved, want at least %ld", moved,
                 expect_moved);
  }
  free(changed);
  restore(f);
}

/* ------------------------------------------------------------------------ */
/* 4: softmax shift invariance along an additive-mask row                   */
/* ------------------------------------------------------------------------ */

static void check_mask_shift(tester* t, fixture* f) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const mha_strides as = p->desc.mask.additive_strides;
  set_masks(p, c->causal, 1, 1);
  oracle_now(f, 0);
  run_base(t, f, "mask shift: before", 0);

  /* up to 4 distinct rows (b, h, i) */
  unsigned char* touched = tester_alloc(f->n_rows);
  memset(touched, 0, f->n_rows);
  const size_t n_touch = f->n_rows < 4 ? f->n_rows : 4;
  size_t rows[4];
  for (size_t n = 0; n < n_touch; n++) {
    size_t r;
    do r = (size_t)tester_below(t, (int64_t)f->n_rows);
    while (touched[r]);
    touched[r] = 1;
    rows[n] = r;
  }
  double* tol_shift = doubles(f->n_out);
  double* tol_sum = doubles(n_touch * (size_t)c->Dv);
  float* got_rows = tester_alloc(n_touch * (size_t)c->Dv * sizeof(float));
  float* base_rows = tester_alloc(n_touch * (size_t)c->Dv * sizeof(float));
  const float shifts[] = {3.5f, -20.0f};
  for (size_t k = 0; k < COUNT(shifts); k++) {
    for (size_t n = 0; n < n_touch; n++) {
      const int64_t r = (int64_t)rows[n];
      const int64_t b = r / (c->H * c->Tq), h = r / c->Tq % c->H, i = r % c->Tq;
      float* row = row_of(p->additive, as, b, h, i);
      for (int64_t j = 0; j < c->Tk; j++) row[j] += shifts[k]; /* -inf stays -inf */
    }
    tolerance_attention(&p->oracle, NULL, NULL, tol_shift, NULL);
    for (size_t n = 0; n < n_touch; n++) {
      for (int64_t x = 0; x < c->Dv; x++) {
        const size_t e = rows[n] * (size_t)c->Dv + (size_t)x;
        tol_sum[n * (size_t)c->Dv + (size_t)x] = f->tol[e] + tol_shift[e];
      }
    }
    char what[64];
    snprintf(what, sizeof what, "mask shift: %g added to %zu mask rows", (double)shifts[k],
             n_touch);
    for (int s = 0; s < f->nslots; s++) {
      if (!run(t, f, f->slots[s], what, NULL, f->got)) continue;
      const float* base = f->base_out + (size_t)s * f->n_out;
      long bad = 0;
      size_t first = 0;
      for (size_t r = 0; r < f->n_rows; r++) {
        if (touched[r]) continue;
        const size_t e = r * (size_t)c->Dv;
        if (memcmp(base + e, f->got + e, (size_t)c->Dv * sizeof(float)) != 0 && bad++ == 0) {
          first = r;
        }
      }
      tester_check(t, bad == 0, "%ld rows whose mask did not change changed; first row %zu",
                   bad, first);
      for (size_t n = 0; n < n_touch; n++) {
        memcpy(got_rows + n * (size_t)c->Dv, f->got + rows[n] * (size_t)c->Dv,
               (size_t)c->Dv * sizeof(float));
        memcpy(base_rows + n * (size_t)c->Dv, base + rows[n] * (size_t)c->Dv,
               (size_t)c->Dv * sizeof(float));
      }
      check_close_to(t, f, "shifted mask rows vs unshifted", n_touch * (size_t)c->Dv, got_rows,
                     base_rows, tol_sum);
    }
    memcpy(p->additive, f->add0, p->additive_size * sizeof(float));
  }
  free(base_rows);
  free(got_rows);
  free(tol_sum);
  free(tol_shift);
  free(touched);
  restore(f);
}

/* ------------------------------------------------------------------------ */
/* 5: values at hidden keys never reach out                                 */
/* ------------------------------------------------------------------------ */

/* What goes into K and V at the poisoned keys (k_set / v_set 0: that one
 * stays clean); nan: a row that sees such a key must come out all NaN. */
typedef struct poison_kind {
  const char* name;
  int k_set, v_set;
  float k, v;
  int nan;
} poison_kind;

static const poison_kind kPoisons[] = {
    {"NaN in K", 1, 0, NAN, 0.0f, 1},
    {"NaN in V", 0, 1, 0.0f, NAN, 1},
    {"1e30 in K, -1e30 in V", 1, 1, 1e30f, -1e30f, 0},
    {"inf in K", 1, 0, INFINITY, 0.0f, 0},
    {"-inf in V", 0, 1, 0.0f, -INFINITY, 0},
};

/* Writes the poison into the K and V rows of the keys with
 * poisoned[(b·Hkv + g)·Tk + j] set. */
static void poison_keys(attention_problem* p, const poison_kind* pk,
                        const unsigned char* poisoned) {
  const attention_case* c = &p->c;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t g = 0; g < c->Hkv; g++) {
      for (int64_t j = 0; j < c->Tk; j++) {
        if (!poisoned[(b * c->Hkv + g) * c->Tk + j]) continue;
        if (pk->k_set) {
          float* kr = row_of(p->k, p->desc.k, b, g, j);
          for (int64_t x = 0; x < c->D; x++) kr[x] = pk->k;
        }
        if (pk->v_set) {
          float* vr = row_of(p->v, p->desc.v, b, g, j);
          for (int64_t x = 0; x < c->Dv; x++) vr[x] = pk->v;
        }
      }
    }
  }
}

/* With the masks set now: clean runs, then each poison at the keys marked in
 * poisoned, in every slot. A row that sees no poisoned key must be finite
 * and bitwise its clean value; a row that sees a NaN must be all NaN. */
static void check_poisons(tester* t, fixture* f, const char* where,
                          const unsigned char* poisoned) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const size_t Dv = (size_t)c->Dv;
  unsigned char* sees = tester_alloc(f->n_rows);
  long n_hidden = 0, n_keys = 0;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      const unsigned char* pb = poisoned + (b * c->Hkv + oracle_kv_head(&p->oracle, h)) * c->Tk;
      for (int64_t i = 0; i < c->Tq; i++) {
        const size_t r = (size_t)((b * c->H + h) * c->Tq + i);
        sees[r] = 0;
        for (int64_t j = 0; j < c->Tk && !sees[r]; j++) {
          sees[r] = pb[j] && oracle_key_visible(&p->oracle, b, h, i, j);
        }
        n_hidden += !sees[r];
      }
    }
  }
  for (size_t x = 0; x < (size_t)(c->B * c->Hkv * c->Tk); x++) n_keys += poisoned[x];
  char what[192];
  snprintf(what, sizeof what, "clean keys %s", where);
  run_base(t, f, what, 0);

  for (size_t k = 0; k < COUNT(kPoisons); k++) {
    const poison_kind* pk = &kPoisons[k];
    poison_keys(p, pk, poisoned);
    snprintf(what, sizeof what, "%s at %ld keys %s (%ld of %zu rows see none)", pk->name,
             n_keys, where, n_hidden, f->n_rows);
    for (int s = 0; s < f->nslots; s++) {
      if (!run(t, f, f->slots[s], what, NULL, f->got)) continue;
      const float* base = f->base_out + (size_t)s * f->n_out;
      long not_finite = 0, differ = 0, not_nan = 0;
      size_t nf_at = 0, diff_at = 0, nan_at = 0;
      for (size_t r = 0; r < f->n_rows; r++) {
        const float* g = f->got + r * Dv;
        for (size_t x = 0; x < Dv; x++) {
          if (sees[r]) {
            if (pk->nan && !isnan(g[x]) && not_nan++ == 0) nan_at = r * Dv + x;
          } else {
            if (!isfinite(g[x]) && not_finite++ == 0) nf_at = r * Dv + x;
            if (memcmp(&g[x], &base[r * Dv + x], sizeof(float)) != 0 && differ++ == 0) {
              diff_at = r * Dv + x;
            }
          }
        }
      }
      tester_check(t, not_finite == 0,
                   "%ld out elements of rows that see no poisoned key are not finite; first "
                   "[%zu] (row %zu) = %.9g",
                   not_finite, nf_at, nf_at / Dv, not_finite ? (double)f->got[nf_at] : 0.0);
      tester_check(t, differ == 0,
                   "%ld out elements of rows that see no poisoned key differ from the clean "
                   "run; first [%zu] (row %zu): %.9g, clean %.9g",
                   differ, diff_at, diff_at / Dv, differ ? (double)f->got[diff_at] : 0.0,
                   differ ? (double)base[diff_at] : 0.0);
      if (pk->nan && n_hidden < (long)f->n_rows) {
        tester_check(t, not_nan == 0,
                     "%ld out elements of rows that see a NaN key are not NaN; first [%zu] "
                     "(row %zu) = %.9g",
                     not_nan, nan_at, nan_at / Dv, not_nan ? (double)f->got[nan_at] : 0.0);
      }
    }
    memcpy(p->k, f->k0, p->k_size * sizeof(float));
    memcpy(p->v, f->v0, p->v_size * sizeof(float));
  }
  free(sees);
}

static void check_hidden_keys(tester* t, fixture* f) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const int64_t G = c->H / c->Hkv;
  const size_t n_keys = (size_t)(c->B * c->Hkv * c->Tk);
  unsigned char* poisoned = tester_alloc(n_keys);
  char where[128];

  /* kv_len below Tk in every batch entry, keys past it poisoned in every kv head */
  for (int64_t b = 0; b < c->B; b++) p->kv_len[b] = (int32_t)tester_below(t, c->Tk);
  if (c->B > 1 && c->Tk > 1) p->kv_len[0] = (int32_t)(1 + tester_below(t, c->Tk - 1));
  int n = snprintf(where, sizeof where, "past kv_len = {");
  for (int64_t b = 0; b < c->B && n < (int)sizeof where - 16; b++) {
    n += snprintf(where + n, sizeof where - (size_t)n, "%s%d", b ? ", " : "", (int)p->kv_len[b]);
  }
  snprintf(where + n, sizeof where - (size_t)n, "}");
  for (size_t x = 0; x < n_keys; x++) {
    poisoned[x] = (int64_t)(x % (size_t)c->Tk) >= p->kv_len[x / (size_t)(c->Hkv * c->Tk)];
  }
  set_masks(p, c->causal, 1, 1);
  check_poisons(t, f, where, poisoned);
  memcpy(p->kv_len, f->kv_len0, (size_t)c->B * sizeof(int32_t));

  /* keys that an additive -inf hides from every row of every query head of
   * one kv head's group: the first, a middle and the last key */
  const int64_t hb = tester_below(t, c->B), hg = tester_below(t, c->Hkv);
  const int64_t cols[3] = {0, c->Tk / 2, c->Tk - 1};
  memset(poisoned, 0, n_keys);
  for (int m = 0; m < 3; m++) {
    poisoned[(hb * c->Hkv + hg) * c->Tk + cols[m]] = 1;
    for (int64_t h = hg * G; h < (hg + 1) * G; h++) {
      for (int64_t i = 0; i < c->Tq; i++) {
        row_of(p->additive, p->desc.mask.additive_strides, hb, h, i)[cols[m]] = -INFINITY;
      }
    }
  }
  snprintf(where, sizeof where, "behind an additive -inf for all of b=%lld kv head %lld",
           (long long)hb, (long long)hg);
  set_masks(p, c->causal, 0, 1);
  check_poisons(t, f, where, poisoned);
  restore(f);

  /* the same, with the -inf in a random half of the rows only: the other
   * half sees the keys */
  memset(poisoned, 0, n_keys);
  for (int m = 0; m < 3; m++) {
    poisoned[(hb * c->Hkv + hg) * c->Tk + cols[m]] = 1;
    for (int64_t h = hg * G; h < (hg + 1) * G; h++) {
      for (int64_t i = 0; i < c->Tq; i++) {
        if (tester_below(t, 2) == 0) continue;
        row_of(p->additive, p->desc.mask.additive_strides, hb, h, i)[cols[m]] = -INFINITY;
      }
    }
  }
  snprintf(where, sizeof where, "behind an additive -inf for half the rows of b=%lld kv head %lld",
           (long long)hb, (long long)hg);
  set_masks(p, c->causal, 0, 1);
  check_poisons(t, f, where, poisoned);
  restore(f);

  /* keys the causal mask hides from the first rows: one per (b, kv head) in
   * [Tk - Tq + 1, Tk), which row 0 does not see, and the last key */
  if (c->causal && c->Tq > 1 && c->Tk > 1) {
    const int64_t lo = c->Tk - c->Tq + 1 > 0 ? c->Tk - c->Tq + 1 : 0;
    memset(poisoned, 0, n_keys);
    for (int64_t bg = 0; bg < c->B * c->Hkv; bg++) {
      poisoned[bg * c->Tk + lo + tester_below(t, c->Tk - lo)] = 1;
      poisoned[bg * c->Tk + c->Tk - 1] = 1;
    }
    set_masks(p, 1, 0, 1);
    check_poisons(t, f, "hidden by the causal mask from the first rows", poisoned);
  }
  free(poisoned);
  restore(f);
}

/* ------------------------------------------------------------------------ */
/* The checks can fail                                                      */
/* ------------------------------------------------------------------------ */

/* The derived bounds are tight enough to catch a broken property: K
 * permuted without V, a shift added to half a mask row, a weight row off by
 * 1%. Each must fail on a quiet copy of the tester. */
static void check_self_test(tester* t, fixture* f) {
  attention_problem* p = &f->p;
  const attention_case* c = &p->c;
  const mha_attention_desc* d = &p->desc;
  const slot s = {MHA_ISA_SCALAR, 1};
  tester probe = *t;
  probe.quiet = 1;

  /* K rows reversed, V rows left in place */
  set_masks(p, 0, 0, 0);
  oracle_now(f, 0);
  int ran = run(t, f, s, "self-test: keys in order", NULL, f->got_w);
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t g = 0; g < c->Hkv; g++) {
      for (int64_t j = 0; j < c->Tk; j++) {
        memcpy(row_of(p->k, d->k, b, g, j), row_of(f->k0, d->k, b, g, c->Tk - 1 - j),
               (size_t)c->D * sizeof(float));
      }
    }
  }
  ran &= run(t, f, s, "self-test: K reversed without V", NULL, f->got);
  const int perm_ok =
      check_close_to(&probe, f, "K permuted alone", f->n_out, f->got, f->got_w, f->tol2);
  restore(f);

  /* 3.5 added to the first half of the keys of the last row of (0, H - 1) */
  set_masks(p, c->causal, 1, 1);
  oracle_now(f, 1);
  ran &= run(t, f, s, "self-test: mask row", p->weights, f->got_w);
  memcpy(f->tmp_w, p->weights, f->n_w * sizeof(float));
  const size_t r = (size_t)(c->H * c->Tq - 1);
  float* row = row_of(p->additive, d->mask.additive_strides, 0, c->H - 1, c->Tq - 1);
  for (int64_t j = 0; j < c->Tk / 2; j++) row[j] += 3.5f;
  double* tol_shift = doubles(f->n_out);
  tolerance_attention(&p->oracle, NULL, NULL, tol_shift, NULL);
  for (size_t x = 0; x < f->n_out; x++) tol_shift[x] += f->tol[x];
  ran &= run(t, f, s, "self-test: half the mask row shifted", NULL, f->got);
  const size_t e = r * (size_t)c->Dv;
  const int shift_ok = check_close_to(&probe, f, "half a row shifted", (size_t)c->Dv,
                                      f->got + e, f->got_w + e, tol_shift + e);
  free(tol_shift);
  restore(f);

  /* the weights of that row scaled by 1.01; unscaled, every row passes */
  unsigned char* empty = tester_alloc(f->n_rows);
  empty_rows(f, empty);
  const double worst_sum = f->worst_sum;
  const long before = probe.failures;
  check_weight_rows(&probe, f, f->tmp_w, empty);
  ran &= probe.failures == before && !empty[r];
  for (int64_t j = 0; j < c->Tk; j++) f->tmp_w[r * (size_t)c->Tk + (size_t)j] *= 1.01f;
  const long failures = probe.failures;
  check_weight_rows(&probe, f, f->tmp_w, empty);
  const int sums_ok = probe.failures == failures;
  f->worst_sum = worst_sum;
  free(empty);

  tester_context(t, "self-test on B=%lld H=%lld Tq=%lld Tk=%lld", (long long)c->B,
                 (long long)c->H, (long long)c->Tq, (long long)c->Tk);
  tester_check(t, ran && !perm_ok && !shift_ok && !sums_ok,
               "the checks must catch broken properties: runs %d (want 1), K permuted alone "
               "passes %d, half a mask row shifted passes %d, a weight row off by 1%% passes "
               "%d (want 0)",
               ran, perm_ok, shift_ok, sums_ok);
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static void fixture_build(tester* t, fixture* f, const shape* sh, const isa_list* isas) {
  memset(f, 0, sizeof *f);
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = sh->B, c.H = sh->H, c.Hkv = sh->Hkv, c.Tq = sh->Tq, c.Tk = sh->Tk, c.D = sh->D;
  c.Dv = sh->Dv;
  c.layout_q = sh->q, c.layout_k = sh->k, c.layout_v = sh->v, c.layout_out = sh->out;
  c.causal = sh->causal;
  c.kv_len = 1;              /* kv_len[0] = Tk, kv_len[B-1] = 0 when B > 1 */
  c.additive = ADDITIVE_FULL;
  c.minus_inf = 2;           /* scattered -inf and one all -inf row */
  c.weights = 1;
  attention_problem* p = &f->p;
  attention_problem_build(t, &c, p);
  for (int i = 0; i < isas->count; i++) {
    for (size_t k = 0; k < COUNT(kThreads); k++) {
      f->slots[f->nslots++] = (slot){isas->isa[i], kThreads[k]};
    }
  }
  f->n_rows = (size_t)(c.B * c.H * c.Tq);
  f->n_out = f->n_rows * (size_t)c.Dv;
  f->n_w = f->n_rows * (size_t)c.Tk;
  f->q0 = copy_of(p->q, p->q_size);
  f->k0 = copy_of(p->k, p->k_size);
  f->v0 = copy_of(p->v, p->v_size);
  f->add0 = copy_of(p->additive, p->additive_size);
  f->kv_len0 = tester_alloc((size_t)c.B * sizeof(int32_t));
  memcpy(f->kv_len0, p->kv_len, (size_t)c.B * sizeof(int32_t));
  f->base_out = tester_alloc((size_t)f->nslots * f->n_out * sizeof(float));
  f->base_w = tester_alloc((size_t)f->nslots * f->n_w * sizeof(float));
  f->got = tester_alloc(f->n_out * sizeof(float));
  f->got_w = tester_alloc(f->n_out * sizeof(float));
  f->tmp_w = tester_alloc(f->n_w * sizeof(float));
  f->want = doubles(f->n_out);
  f->tol = doubles(f->n_out);
  f->tol2 = doubles(f->n_out);
  f->want_w = doubles(f->n_w);
  f->tol_w = doubles(f->n_w);
  f->tol_w2 = doubles(f->n_w);
  f->expect = doubles(f->n_w > f->n_out ? f->n_w : f->n_out);
}

static void fixture_free(fixture* f) {
  void* owned[] = {f->q0,     f->k0,  f->v0,    f->add0, f->kv_len0, f->base_out, f->base_w,
                   f->got,    f->got_w, f->tmp_w, f->want, f->tol,   f->tol2,     f->want_w,
                   f->tol_w,  f->tol_w2, f->expect};
  for (size_t i = 0; i < COUNT(owned); i++) free(owned[i]);
  attention_problem_free(&f->p);
}

int main(void) {
  tester t;
  tester_init(&t, "properties-test");
  const isa_list isas = tester_available_isas(&t);
  double worst_sum = 0.0;
  for (size_t n = 0; n < COUNT(kShapes); n++) {
    fixture f;
    fixture_build(&t, &f, &kShapes[n], &isas);
    if (n == 0) check_self_test(&t, &f);
    check_oracle_scalar_weights(&t, &f);  /* 6 and 2 */
    check_key_permutation(&t, &f, 0);     /* 1 */
    check_key_permutation(&t, &f, 1);
    check_isolation(&t, &f, CHANGE_Q_HEAD); /* 3 */
    check_isolation(&t, &f, CHANGE_KV_HEAD);
    check_isolation(&t, &f, CHANGE_BATCH);
    check_mask_shift(&t, &f);             /* 4 */
    check_hidden_keys(&t, &f);            /* 5 */
    if (f.worst_sum > worst_sum) worst_sum = f.worst_sum;
    fixture_free(&f);
  }
  printf("properties-test: largest |sum of a weight row - 1| = %.3g Tk·eps\n", worst_sum);
  return tester_finish(&t);
}
