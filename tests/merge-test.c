/*
 * mha_merge_f32: partial attention results of disjoint key ranges, merged by
 * their log-sum-exp, equal the result over the union.
 *
 * Key ranges from the core: Tk is cut into 2 to 4 disjoint ranges at random
 * points (and at key block edges); each range runs as its own call on a
 * view of K, V, the additive mask and kv_len, its rows aligned by an offset
 * (i' − start of the range) so that causal, the window and ALiBi see the
 * same positions as in the full call; the sinks go with the first range
 * only. The merge of the ranges' (out, lse) is checked against the oracle
 * (tolerance derived from the ranges' own bounds, below), against the
 * one-call result (the sum of both bounds), in place (out == outs[0], the
 * same bits) and twice (the same bits). The oracle's merge of the oracle's
 * ranges must give the oracle's one-call answer (to double rounding), which
 * checks the range construction itself. On every ISA, prefill and decode.
 *
 * Synthetic parts: rows where some parts have lse −inf (their out rows hold
 * NaN, which must not be read), rows no part sees (zeros, lse −inf), a NaN
 * lse (the row is NaN), a NaN in an out row of a part that counts. Error
 * statuses: NULL pointers, sizes < 1, rows·Dv overflowing.
 *
 * Tolerance of a merge of parts p with oracle values (out_p, lse_p) and
 * bounds (t_p, s_p) (variant-tolerance.c), L the merged lse, w_p = e^{lse_p
 * − L}: each w_p is off by a relative e^{2·max_p s_p} − 1 from the parts'
 * lse errors plus eps·(|lse_p| + |M| + P + 3) from float's subtraction, exp
 * (1 ulp), the sum of P terms and the division; the weighted sum of P rows
 * adds P·u. So
 *   |Δout| <= Σ_p w_p·(t_p + |out_p|·(expm1(2·max s) + eps·(2·max|lse| + 2P + 6)))
 *   |ΔL|   <= max s + eps·(|L| + max|lse| + P + 2).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention-problem.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "variant-tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PARTS 4

static double g_worst[MHA_ISA_COUNT + 1]; /* error/tolerance per ISA; [MHA_ISA_COUNT]: synthetic */

static int check_close(tester* t, int slot, const char* what, size_t n, const float* got,
                       const double* want, const double* tol) {
  const double before = t->worst_ratio;
  t->worst_ratio = 0.0;
  const int ok = tester_check_close(t, what, n, got, want, tol);
  if (t->worst_ratio > g_worst[slot]) g_worst[slot] = t->worst_ratio;
  if (before > t->worst_ratio) t->worst_ratio = before;
  return ok;
}

/* Equal bits, a NaN matching any NaN. */
static void check_same_bits(tester* t, const char* what, const float* a, const float* b, size_t n) {
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && diff++ == 0) first = i;
  }
  tester_check(t, diff == 0, "%s: %zu of %zu values differ; first at [%zu]: %.9g vs %.9g", what,
               diff, n, first, diff ? (double)a[first] : 0.0, diff ? (double)b[first] : 0.0);
}

/* The merge tolerance (header comment) of parts with oracle values and bounds. */
static void merge_tolerance(int parts, int64_t rows, int64_t Dv, double* const* outs,
                            double* const* lses, double* const* out_tol, double* const* lse_tol,
                            const double* L, double* tol, double* tol_lse) {
  const double eps = TOLERANCE_EPS;
  for (int64_t r = 0; r < rows; r++) {
    double smax = 0.0, lmax = 0.0;
    for (int p = 0; p < parts; p++) {
      if (!isfinite(lses[p][r])) continue;
      smax = fmax(smax, lse_tol[p][r]);
      lmax = fmax(lmax, fabs(lses[p][r]));
    }
    const int finite = isfinite(L[r]);
    const double rel = expm1(2.0 * smax) + eps * (2.0 * lmax + 2.0 * parts + 6.0);
    for (int64_t c = 0; c < Dv; c++) {
      double e = 0.0;
      for (int p = 0; p < parts && finite; p++) {
        if (!isfinite(lses[p][r])) continue;
        const double w = exp(lses[p][r] - L[r]);
        e += w * (out_tol[p][r * Dv + c] + fabs(outs[p][r * Dv + c]) * rel);
      }
      tol[r * Dv + c] = finite ? e + FLT_MIN : 0.0;
    }
    tol_lse[r] = finite ? smax + eps * (fabs(L[r]) + lmax + parts + 2.0) : 0.0;
  }
}

/* ------------------------------------------------------------------------ */
/* Key ranges from the core                                                 */
/* ------------------------------------------------------------------------ */

typedef struct merge_case {
  const char* name;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive;
  mha_align align;
  int64_t offset;
  int window;
  int64_t left, right;
  int alibi, sinks;
  float softcap;
  int parts;
  int64_t cut; /* > 0: one cut at this key (a block edge); the others random */
} merge_case;

/* The shift i' − i of the full call for batch entry 0 (KV_END cases have B 1). */
static int64_t full_shift(const merge_case* c, const int32_t* kv_len) {
  switch (c->align) {
    case MHA_ALIGN_TOP_LEFT: return 0;
    case MHA_ALIGN_OFFSET: return c->offset;
    case MHA_ALIGN_KV_END: return (kv_len != NULL ? kv_len[0] : c->Tk) - c->Tq;
    default: return c->Tk - c->Tq;
  }
}

static void describe(tester* t, const merge_case* c, const char* isa, const int64_t* cuts) {
  tester_context(t,
                 "%s: isa=%s B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld causal=%d "
                 "kv_len=%d additive=%d align=%d offset=%lld window=%d (%lld,%lld) alibi=%d "
                 "sinks=%d softcap=%g parts=%d cuts %lld %lld %lld %lld %lld",
                 c->name, isa, (long long)c->B, (long long)c->H, (long long)c->Hkv,
                 (long long)c->Tq, (long long)c->Tk, (long long)c->D, (long long)c->Dv, c->causal,
                 c->kv_len, c->additive, (int)c->align, (long long)c->offset, c->window,
                 (long long)c->left, (long long)c->right, c->alibi, c->sinks, (double)c->softcap,
                 c->parts, (long long)cuts[0], (long long)cuts[1], (long long)cuts[2],
                 (long long)cuts[3], (long long)cuts[4]);
}

/* cuts[0] = 0 < cuts[1] < … < cuts[parts] = Tk. */
static void draw_cuts(tester* t, const merge_case* c, int64_t* cuts) {
  for (;;) {
    cuts[0] = 0;
    cuts[c->parts] = c->Tk;
    for (int p = 1; p < c->parts; p++) cuts[p] = 1 + tester_below(t, c->Tk - 1);
    if (c->cut > 0) cuts[1] = c->cut;
    /* sort and require distinct cuts */
    for (int i = 1; i < c->parts; i++) {
      for (int j = i; j > 1 && cuts[j] < cuts[j - 1]; j--) {
        const int64_t x = cuts[j];
        cuts[j] = cuts[j - 1];
        cuts[j - 1] = x;
      }
    }
    int ok = 1;
    for (int p = 0; p < c->parts; p++) ok &= cuts[p] < cuts[p + 1];
    if (ok) return;
  }
}

static void test_ranges(tester* t, const isa_list* isas, const merge_case* c) {
  attention_case a;
  memset(&a, 0, sizeof a);
  a.B = c->B, a.H = c->H, a.Hkv = c->Hkv, a.Tq = c->Tq, a.Tk = c->Tk, a.D = c->D, a.Dv = c->Dv;
  a.causal = c->causal;
  a.kv_len = c->kv_len;
  a.additive = c->additive ? ADDITIVE_FULL : ADDITIVE_NONE;
  a.minus_inf = c->additive;
  a.threads = 2;
  attention_problem p;
  attention_problem_build(t, &a, &p); /* contiguous BHTD views */
  const int64_t H = c->H, Tq = c->Tq, Dv = c->Dv, B = c->B;
  const int64_t rows = B * H * Tq;
  const size_t n_out = (size_t)(rows * Dv);
  float* slopes = tester_alloc((size_t)H * sizeof(float));
  float* sinks = tester_alloc((size_t)H * sizeof(float));
  for (int64_t h = 0; h < H; h++) {
    slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)H);
    sinks[h] = (float)tester_uniform(t, -2.0, 2.0);
  }
  mha_mask* m = &p.desc.mask;
  m->align = c->align, m->offset = c->offset;
  m->window = c->window, m->window_left = c->left, m->window_right = c->right;
  m->alibi_slopes = c->alibi ? slopes : NULL;
  m->softcap = c->softcap;
  m->sinks = c->sinks ? sinks : NULL;
  oracle_variants* ov = &p.oracle.var;
  ov->align = (int)c->align, ov->offset = c->offset;
  ov->window = c->window, ov->window_left = c->left, ov->window_right = c->right;
  ov->alibi_slopes = m->alibi_slopes;
  ov->softcap = (double)c->softcap;
  ov->sinks = m->sinks;

  /* the oracle and bounds of the full call */
  double* want = tester_alloc(n_out * sizeof(double));
  double* want_lse = tester_alloc((size_t)rows * sizeof(double));
  double* tol_full = tester_alloc(n_out * sizeof(double));
  double* tol_full_lse = tester_alloc((size_t)rows * sizeof(double));
  oracle_attention_lse(&p.oracle, want, NULL, want_lse);
  variant_tolerance_attention(&p.oracle, NULL, NULL, want_lse, tol_full, NULL, tol_full_lse);

  /* the ranges: views of K, V, the mask and kv_len; the oracle's likewise */
  int64_t cuts[MAX_PARTS + 1] = {0, 0, 0, 0, 0};
  draw_cuts(t, c, cuts);
  const int P = c->parts;
  const int64_t shift = full_shift(c, p.kv_len);
  mha_attention_desc dp[MAX_PARTS];
  oracle_attention_problem op[MAX_PARTS];
  int32_t* lens[MAX_PARTS];
  double *po[MAX_PARTS], *pl[MAX_PARTS], *pt[MAX_PARTS], *ps[MAX_PARTS];
  float *outs[MAX_PARTS], *lses[MAX_PARTS];
  for (int k = 0; k < P; k++) {
    const int64_t j0 = cuts[k], len = cuts[k + 1] - cuts[k];
    lens[k] = NULL;
    if (p.kv_len != NULL) {
      lens[k] = tester_alloc((size_t)B * sizeof(int32_t));
      for (int64_t b = 0; b < B; b++) {
        const int64_t l = (int64_t)p.kv_len[b] - j0;
        lens[k][b] = (int32_t)(l < 0 ? 0 : l > len ? len : l);
      }
    }
    dp[k] = p.desc;
    dp[k].Tk = len;
    dp[k].k = mha_strides_bhtd(c->Hkv, c->Tk, c->D); /* the full tensors' strides */
    dp[k].v = mha_strides_bhtd(c->Hkv, c->Tk, c->Dv);
    dp[k].mask.align = MHA_ALIGN_OFFSET;
    dp[k].mask.offset = shift - j0;
    dp[k].mask.kv_len = lens[k];
    if (p.additive != NULL) dp[k].mask.additive = p.additive + j0;
    dp[k].mask.sinks = k == 0 ? m->sinks : NULL;
    op[k] = p.oracle;
    op[k].Tk = len;
    op[k].k = p.kd + j0 * c->D;
    op[k].v = p.vd + j0 * c->Dv;
    op[k].kv_len = lens[k];
    if (p.additive != NULL) op[k].additive = p.additive + j0;
    op[k].var.align = 2;
    op[k].var.offset = shift - j0;
    op[k].var.sinks = dp[k].mask.sinks;
    po[k] = tester_alloc(n_out * sizeof(double));
    pl[k] = tester_alloc((size_t)rows * sizeof(double));
    pt[k] = tester_alloc(n_out * sizeof(double));
    ps[k] = tester_alloc((size_t)rows * sizeof(double));
    oracle_attention_lse(&op[k], po[k], NULL, pl[k]);
    variant_tolerance_attention(&op[k], NULL, NULL, pl[k], pt[k], NULL, ps[k]);
    outs[k] = tester_alloc(n_out * sizeof(float));
    lses[k] = tester_alloc((size_t)rows * sizeof(float));
  }

  /* the oracle's ranges merge into the oracle's full answer */
  describe(t, c, "oracle", cuts);
  double* om = tester_alloc(n_out * sizeof(double));
  double* oml = tester_alloc((size_t)rows * sizeof(double));
  oracle_merge(P, rows, Dv, (const double* const*)po, (const double* const*)pl, om, oml);
  double worst = 0.0;
  for (size_t i = 0; i < n_out; i++) worst = fmax(worst, fabs(om[i] - want[i]));
  for (int64_t r = 0; r < rows; r++) {
    if (isfinite(want_lse[r])) worst = fmax(worst, fabs(oml[r] - want_lse[r]) / (1.0 + fabs(want_lse[r])));
    else if (!(oml[r] == want_lse[r] || (isnan(oml[r]) && isnan(want_lse[r])))) worst = INFINITY;
  }
  tester_check(t, worst < 1e-10, "the oracle's merged ranges are %.3g away from its full answer", worst);

  double* tol = tester_alloc(n_out * sizeof(double));
  double* tol_lse = tester_alloc((size_t)rows * sizeof(double));
  double* tol_both = tester_alloc(n_out * sizeof(double));
  double* tol_both_lse = tester_alloc((size_t)rows * sizeof(double));
  merge_tolerance(P, rows, Dv, po, pl, pt, ps, want_lse, tol, tol_lse);
  for (size_t i = 0; i < n_out; i++) tol_both[i] = tol[i] + tol_full[i];
  for (int64_t r = 0; r < rows; r++) tol_both_lse[r] = tol_lse[r] + tol_full_lse[r];

  float* full = tester_alloc(n_out * sizeof(float));
  float* full_lse = tester_alloc((size_t)rows * sizeof(float));
  float* merged = tester_alloc(n_out * sizeof(float));
  float* merged_lse = tester_alloc((size_t)rows * sizeof(float));
  float* again = tester_alloc(n_out * sizeof(float));
  float* again_lse = tester_alloc((size_t)rows * sizeof(float));
  double* full_d = tester_alloc(n_out * sizeof(double));
  double* full_lse_d = tester_alloc((size_t)rows * sizeof(double));
  for (int n = 0; n < isas->count; n++) {
    const mha_isa isa = isas->isa[n];
    describe(t, c, mha_isa_name(isa), cuts);
    mha_attention_desc d = p.desc;
    d.isa = isa;
    d.lse = full_lse;
    tester_poison(full, n_out);
    tester_poison(full_lse, (size_t)rows);
    mha_status st = mha_attention_f32(&d, p.q, p.k, p.v, full, NULL);
    tester_check(t, st == MHA_STATUS_SUCCESS, "full call: %s: %s", mha_status_string(st), mha_last_error());
    for (int k = 0; k < P && st == MHA_STATUS_SUCCESS; k++) {
      dp[k].isa = isa;
      dp[k].lse = lses[k];
      tester_poison(outs[k], n_out);
      tester_poison(lses[k], (size_t)rows);
      st = mha_attention_f32(&dp[k], p.q, p.k + cuts[k] * c->D, p.v + cuts[k] * c->Dv, outs[k], NULL);
      tester_check(t, st == MHA_STATUS_SUCCESS, "range %d: %s: %s", k, mha_status_string(st),
                   mha_last_error());
      /* each range alone against the oracle */
      char what[32];
      snprintf(what, sizeof what, "range %d out", k);
      check_close(t, isa, what, n_out, outs[k], po[k], pt[k]);
      snprintf(what, sizeof what, "range %d lse", k);
      check_close(t, isa, what, (size_t)rows, lses[k], pl[k], ps[k]);
    }
    if (st != MHA_STATUS_SUCCESS) continue;
    tester_poison(merged, n_out);
    tester_poison(merged_lse, (size_t)rows);
    st = mha_merge_f32(P, rows, Dv, (const float* const*)outs, (const float* const*)lses, merged,
                       merged_lse);
    if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_merge_f32: %s: %s", mha_status_string(st),
                      mha_last_error())) {
      continue;
    }
    check_close(t, isa, "merged out vs oracle", n_out, merged, want, tol);
    check_close(t, isa, "merged lse vs oracle", (size_t)rows, merged_lse, want_lse, tol_lse);
    for (size_t i = 0; i < n_out; i++) full_d[i] = (double)full[i];
    for (int64_t r = 0; r < rows; r++) full_lse_d[r] = (double)full_lse[r];
    check_close(t, isa, "merged out vs one call", n_out, merged, full_d, tol_both);
    check_close(t, isa, "merged lse vs one call", (size_t)rows, merged_lse, full_lse_d, tol_both_lse);
    /* the same bits again, and in place (out == outs[0]) */
    tester_poison(again, n_out);
    tester_poison(again_lse, (size_t)rows);
    mha_merge_f32(P, rows, Dv, (const float* const*)outs, (const float* const*)lses, again, again_lse);
    check_same_bits(t, "merge repeated: out", again, merged, n_out);
    check_same_bits(t, "merge repeated: lse", again_lse, merged_lse, (size_t)rows);
    memcpy(again, outs[0], n_out * sizeof(float));
    float* in_place[MAX_PARTS];
    for (int k = 0; k < P; k++) in_place[k] = k == 0 ? again : outs[k];
    tester_poison(again_lse, (size_t)rows);
    st = mha_merge_f32(P, rows, Dv, (const float* const*)in_place, (const float* const*)lses, again,
                       again_lse);
    tester_check(t, st == MHA_STATUS_SUCCESS, "in-place merge: %s", mha_status_string(st));
    check_same_bits(t, "merge in place: out", again, merged, n_out);
    check_same_bits(t, "merge in place: lse", again_lse, merged_lse, (size_t)rows);
    /* lse NULL: the same out */
    tester_poison(again, n_out);
    mha_merge_f32(P, rows, Dv, (const float* const*)outs, (const float* const*)lses, again, NULL);
    check_same_bits(t, "merge without lse: out", again, merged, n_out);
  }
  free(full_d);
  free(full_lse_d);
  free(again);
  free(again_lse);
  free(merged);
  free(merged_lse);
  free(full);
  free(full_lse);
  free(tol);
  free(tol_lse);
  free(tol_both);
  free(tol_both_lse);
  free(om);
  free(oml);
  for (int k = 0; k < P; k++) {
    free(lens[k]);
    free(po[k]);
    free(pl[k]);
    free(pt[k]);
    free(ps[k]);
    free(outs[k]);
    free(lses[k]);
  }
  free(want);
  free(want_lse);
  free(tol_full);
  free(tol_full_lse);
  free(slopes);
  free(sinks);
  attention_problem_free(&p);
}

static merge_case base(const char* name, int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                       int64_t D, int64_t Dv, int parts) {
  merge_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.B = B, c.H = H, c.Hkv = Hkv, c.Tq = Tq, c.Tk = Tk, c.D = D, c.Dv = Dv;
  c.parts = parts;
  return c;
}

static void test_core_ranges(tester* t, const isa_list* isas) {
  merge_case cases[12];
  int n = 0;
  cases[n++] = base("plain, 2 ranges", 2, 4, 2, 7, 130, 9, 5, 2);
  cases[n] = base("causal bottom-right, 3 ranges, a cut at a block edge", 1, 3, 3, 65, 130, 8, 17, 3);
  cases[n].causal = 1, cases[n++].cut = 64;
  cases[n] = base("causal top-left, window, ALiBi, sinks, 4 ranges", 2, 8, 2, 65, 200, 7, 3, 4);
  cases[n].causal = 1, cases[n].align = MHA_ALIGN_TOP_LEFT, cases[n].window = 1;
  cases[n].left = 70, cases[n].right = 0, cases[n].alibi = 1, cases[n++].sinks = 1;
  cases[n] = base("window both sides, soft-cap, additive, kv_len", 3, 4, 1, 33, 130, 16, 5, 3);
  cases[n].window = 1, cases[n].left = 20, cases[n].right = 9, cases[n].softcap = 5.0f;
  cases[n].additive = 1, cases[n++].kv_len = 1;
  cases[n] = base("decode, causal, sinks, ALiBi, 4 ranges", 2, 8, 2, 1, 600, 16, 9, 4);
  cases[n].causal = 1, cases[n].sinks = 1, cases[n++].alibi = 1;
  cases[n] = base("decode, Mistral window, soft-cap, 2 ranges", 1, 4, 4, 1, 1031, 8, 8, 2);
  cases[n].causal = 1, cases[n].window = 1, cases[n].left = 99, cases[n].softcap = 50.0f;
  cases[n++].cut = 640;
  cases[n] = base("kv-end with kv_len, causal, 3 ranges", 1, 4, 2, 9, 300, 5, 7, 3);
  cases[n].causal = 1, cases[n].kv_len = 1, cases[n].align = MHA_ALIGN_KV_END, cases[n++].sinks = 1;
  cases[n] = base("offset, causal, a range no row sees", 2, 2, 2, 7, 130, 7, 7, 3);
  cases[n].causal = 1, cases[n].align = MHA_ALIGN_OFFSET, cases[n].offset = 20, cases[n++].cut = 64;
  cases[n] = base("offset far before the keys: every row empty but the sink", 1, 3, 3, 7, 65, 5, 5, 2);
  cases[n].causal = 1, cases[n].align = MHA_ALIGN_OFFSET, cases[n].offset = -50, cases[n++].sinks = 1;
  cases[n] = base("everything, 4 ranges", 2, 4, 2, 17, 260, 11, 13, 4);
  cases[n].causal = 1, cases[n].kv_len = 1, cases[n].additive = 1, cases[n].window = 1;
  cases[n].left = 64, cases[n].right = 0, cases[n].alibi = 1, cases[n].sinks = 1;
  cases[n++].softcap = 5.0f;
  for (int k = 0; k < n; k++) test_ranges(t, isas, &cases[k]);
}

/* ------------------------------------------------------------------------ */
/* Synthetic parts                                                          */
/* ------------------------------------------------------------------------ */

/* Random parts with the special rows listed in the header; against the
 * oracle's merge. */
static void test_synthetic(tester* t) {
  enum { P = 4, ROWS = 40, DV = 7 };
  float outs_f[P][ROWS * DV], lses_f[P][ROWS];
  double outs_d[P][ROWS * DV], lses_d[P][ROWS];
  for (int p = 0; p < P; p++) {
    tester_fill_range(t, outs_f[p], ROWS * DV, -3.0f, 3.0f);
    tester_fill_range(t, lses_f[p], ROWS, -20.0f, 20.0f);
  }
  /* rows 0-9: one or more parts −inf, their out rows NaN (not to be read) */
  for (int r = 0; r < 10; r++) {
    for (int p = 0; p < P; p++) {
      if (p <= r % P) {
        lses_f[p][r] = -INFINITY;
        for (int c = 0; c < DV; c++) outs_f[p][r * DV + c] = NAN;
      }
    }
  }
  /* rows 10-13: every part −inf */
  for (int r = 10; r < 14; r++) {
    for (int p = 0; p < P; p++) {
      lses_f[p][r] = -INFINITY;
      for (int c = 0; c < DV; c++) outs_f[p][r * DV + c] = NAN;
    }
  }
  /* rows 14-17: a NaN lse in part r − 14 */
  for (int r = 14; r < 18; r++) lses_f[r - 14][r] = NAN;
  /* row 18: a NaN in one out element of a counting part; row 19: lse far
   * apart (one part dominates, the others underflow) */
  outs_f[2][18 * DV + 3] = NAN;
  lses_f[0][19] = 80.0f;
  lses_f[1][19] = -80.0f;
  for (int p = 0; p < P; p++) {
    for (int i = 0; i < ROWS * DV; i++) outs_d[p][i] = (double)outs_f[p][i];
    for (int r = 0; r < ROWS; r++) lses_d[p][r] = (double)lses_f[p][r];
  }
  const float* outs[P];
  const float* lses[P];
  const double* outs_dp[P];
  const double* lses_dp[P];
  double* pt[P];
  double* ps[P];
  static double zeros[ROWS * DV];
  for (int p = 0; p < P; p++) {
    outs[p] = outs_f[p], lses[p] = lses_f[p];
    outs_dp[p] = outs_d[p], lses_dp[p] = lses_d[p];
    pt[p] = ps[p] = zeros; /* exact parts */
  }
  double want[ROWS * DV], want_lse[ROWS], tol[ROWS * DV], tol_lse[ROWS];
  oracle_merge(P, ROWS, DV, outs_dp, lses_dp, want, want_lse);
  merge_tolerance(P, ROWS, DV, (double* const*)outs_dp, (double* const*)lses_dp, pt, ps, want_lse,
                  tol, tol_lse);
  for (int parts = 1; parts <= P; parts++) {
    tester_context(t, "synthetic parts: %d parts, %d rows, Dv %d", parts, ROWS, DV);
    double w[ROWS * DV], wl[ROWS];
    oracle_merge(parts, ROWS, DV, outs_dp, lses_dp, w, wl);
    merge_tolerance(parts, ROWS, DV, (double* const*)outs_dp, (double* const*)lses_dp, pt, ps, wl,
                    tol, tol_lse);
    float got[ROWS * DV], got_lse[ROWS];
    tester_poison(got, ROWS * DV);
    tester_poison(got_lse, ROWS);
    const mha_status st = mha_merge_f32(parts, ROWS, DV, outs, lses, got, got_lse);
    if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_merge_f32: %s: %s", mha_status_string(st),
                      mha_last_error())) {
      continue;
    }
    check_close(t, MHA_ISA_COUNT, "synthetic out", ROWS * DV, got, w, tol);
    check_close(t, MHA_ISA_COUNT, "synthetic lse", ROWS, got_lse, wl, tol_lse);
    /* what the rows must be, stated directly */
    long bad = 0;
    for (int r = 10; r < 14; r++) {
      for (int c = 0; c < DV; c++) bad += got[r * DV + c] != 0.0f;
      bad += got_lse[r] != -INFINITY;
    }
    for (int r = 14; r < 18; r++) {
      if (r - 14 >= parts) continue;
      for (int c = 0; c < DV; c++) bad += !isnan(got[r * DV + c]);
      bad += !isnan(got_lse[r]);
    }
    for (int r = 0; r < 10; r++) {
      for (int c = 0; c < DV; c++) bad += isnan(got[r * DV + c]) != 0;
    }
    tester_check(t, bad == 0, "%ld values of the special rows are wrong (zeros/-inf for rows no "
                 "part sees, NaN for a NaN lse, NaN out rows of -inf parts unread)", bad);
  }
  (void)want;
  (void)want_lse;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void expect_merge_error(tester* t, const char* what, mha_status got, mha_status want,
                               const char* arg, const float* out, const float* before, size_t n) {
  tester_context(t, "merge error: %s", what);
  tester_check_failure(t, what, got, want, arg);
  tester_check(t, memcmp(out, before, n * sizeof(float)) == 0, "%s: out was written", what);
}

static void test_errors(tester* t) {
  enum { ROWS = 3, DV = 4 };
  float a[ROWS * DV], b[ROWS * DV], la[ROWS], lb[ROWS], out[ROWS * DV], before[ROWS * DV], lse[ROWS];
  tester_fill(t, a, ROWS * DV);
  tester_fill(t, b, ROWS * DV);
  tester_fill(t, la, ROWS);
  tester_fill(t, lb, ROWS);
  tester_fill(t, before, ROWS * DV);
  const float* outs[2] = {a, b};
  const float* lses[2] = {la, lb};
  const float* outs_null[2] = {a, NULL};
  const float* lses_null[2] = {NULL, lb};
#define RESET() (memcpy(out, before, sizeof out), tester_stale_error())
  RESET();
  expect_merge_error(t, "outs NULL", mha_merge_f32(2, ROWS, DV, NULL, lses, out, lse),
                     MHA_STATUS_NULL_POINTER, "outs", out, before, ROWS * DV);
  RESET();
  expect_merge_error(t, "lses NULL", mha_merge_f32(2, ROWS, DV, outs, NULL, out, lse),
                     MHA_STATUS_NULL_POINTER, "lses", out, before, ROWS * DV);
  RESET();
  expect_merge_error(t, "out NULL", mha_merge_f32(2, ROWS, DV, outs, lses, NULL, lse),
                     MHA_STATUS_NULL_POINTER, "out", out, before, ROWS * DV);
  RESET();
  expect_merge_error(t, "outs[1] NULL", mha_merge_f32(2, ROWS, DV, outs_null, lses, out, lse),
                     MHA_STATUS_NULL_POINTER, "outs", out, before, ROWS * DV);
  RESET();
  expect_merge_error(t, "lses[0] NULL", mha_merge_f32(2, ROWS, DV, outs, lses_null, out, lse),
                     MHA_STATUS_NULL_POINTER, "lses", out, before, ROWS * DV);
  const int64_t bad[] = {0, -1, INT64_MIN};
  for (size_t i = 0; i < COUNT(bad); i++) {
    char what[64];
    snprintf(what, sizeof what, "parts = %lld", (long long)bad[i]);
    RESET();
    expect_merge_error(t, what, mha_merge_f32(bad[i], ROWS, DV, outs, lses, out, lse),
                       MHA_STATUS_INVALID_SIZE, "parts", out, before, ROWS * DV);
    snprintf(what, sizeof what, "rows = %lld", (long long)bad[i]);
    RESET();
    expect_merge_error(t, what, mha_merge_f32(2, bad[i], DV, outs, lses, out, lse),
                       MHA_STATUS_INVALID_SIZE, "rows", out, before, ROWS * DV);
    snprintf(what, sizeof what, "Dv = %lld", (long long)bad[i]);
    RESET();
    expect_merge_error(t, what, mha_merge_f32(2, ROWS, bad[i], outs, lses, out, lse),
                       MHA_STATUS_INVALID_SIZE, "Dv", out, before, ROWS * DV);
  }
  RESET();
  expect_merge_error(t, "rows 2^40 x Dv 2^40",
                     mha_merge_f32(2, (int64_t)1 << 40, (int64_t)1 << 40, outs, lses, out, lse),
                     MHA_STATUS_SIZE_OVERFLOW, NULL, out, before, ROWS * DV);
  RESET();
  expect_merge_error(t, "rows·Dv·4 bytes overflow",
                     mha_merge_f32(2, (int64_t)1 << 31, (int64_t)1 << 31, outs, lses, out, lse),
                     MHA_STATUS_SIZE_OVERFLOW, NULL, out, before, ROWS * DV);
#undef RESET
  /* one part: the merge is that part (lse as is, out scaled by exp(0) = 1) */
  tester_context(t, "merge of one part");
  tester_poison(out, ROWS * DV);
  const mha_status st = mha_merge_f32(1, ROWS, DV, outs, lses, out, lse);
  tester_check(t, st == MHA_STATUS_SUCCESS, "one part: %s", mha_status_string(st));
  check_same_bits(t, "one part: out", out, a, ROWS * DV);
  check_same_bits(t, "one part: lse", lse, la, ROWS);
}

int main(void) {
  tester t;
  tester_init(&t, "merge-test");
  const isa_list isas = tester_available_isas(&t);
  test_errors(&t);
  test_synthetic(&t);
  test_core_ranges(&t, &isas);
  for (int n = 0; n < isas.count; n++) {
    printf("merge-test: %-8s worst error/tolerance %.3g\n", mha_isa_name(isas.isa[n]),
           g_worst[isas.isa[n]]);
  }
  printf("merge-test: synthetic parts: worst error/tolerance %.3g\n", g_worst[MHA_ISA_COUNT]);
  return tester_finish(&t);
}
