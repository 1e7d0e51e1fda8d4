/*
 * The attention variants of mha_attention_f32 (include/mha.h, "Masks"):
 * causal alignment (bottom-right, top-left, any offset, per-entry kv end),
 * the sliding window, ALiBi, the logit soft-cap, attention sinks and the lse
 * output, composed with causal, kv_len and the additive mask, against the
 * naive oracle on every ISA this CPU runs and at 1, 2 and 3 threads.
 *
 * The sweep. The axes (the variants, and the shape, layout, logit and
 * output axes) are far too many for a cartesian product, so the cases form a
 * pairwise covering array: every pair of values of every two axes occurs
 * together in some case (greedy, AETG-style: each new case fixes one pair not
 * yet covered and draws the other axes, best of a few candidates; a fixed
 * seed, so the same cases every run unless MHA_TEST_SEED says otherwise).
 * Each case runs on every ISA at 1, 2 and 3 threads: the 1-thread result
 * against the oracle (out, weights, lse, with the derived tolerances of
 * variant-tolerance.c; outputs poisoned with NaN first, and nothing written
 * outside the out view), the others bitwise equal to it; the weights rows
 * sum to 1 − the sink's weight; with B > 1 every batch entry run alone
 * gives the same bits.
 *
 * The window sizes come from the kernel tables (white box): nk − 1, nk and
 * nk + 1 keys around every key block size attn_nk, so windows end on both
 * sides of a block edge. Tq 1 and 7 with Tk 600 take the decode path (keys
 * split into ranges merged by log-sum-exp).
 *
 * Targeted tests come first: ALiBi against its closed form (Q = 0: every
 * logit is its bias, the weights a geometric sequence), rows that see only
 * the sink (zeros, zero weights, lse = the sink exactly), a -inf sink is no
 * sink (bitwise), NaN in K/V rows hidden by the window, the causal alignment
 * or kv_len never reaches the rows that cannot see them, nor does a NaN or
 * +inf additive entry on a hidden key, extreme offsets and windows
 * (±(2^60 − 1), INT64_MAX), many decode ranges, the soft-cap saturating
 * logits that overflow float (scale 3e38).
 *
 * Run it with OMP_WAIT_POLICY=passive (CTest does): its many small calls at
 * 3 threads on 2 shared cores otherwise spend most of their time spinning.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention-problem.h"
#include "config/kernels.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "variant-tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Cases above this many multiply-adds (B·H·Tq·Tk·(D + Dv)) are redrawn. */
#define COST_CAP 8.0e6
/* Candidates drawn for each case of the covering array. */
#define CANDIDATES 24
/* Fully random cases after the covering array. */
#define RANDOM_CASES 200

static const int kThreads[] = {1, 2, 3};

/* ------------------------------------------------------------------------ */
/* Axes and their values                                                    */
/* ------------------------------------------------------------------------ */

typedef enum align_value {
  AL_BOTTOM_RIGHT, AL_TOP_LEFT, AL_OFF_NEG, AL_OFF_ZERO, AL_OFF_POS, AL_OFF_BEYOND,
  AL_OFF_FAR_NEG, AL_KV_END, AL_COUNT
} align_value;

static const char* const kAlignNames[AL_COUNT] = {
    "bottom-right", "top-left", "offset -7", "offset 0", "offset +5", "offset Tk+3",
    "offset -(Tq+2)", "kv-end"};

/* The alignment mode and offset of an align value for a shape. */
static void align_of(align_value a, int64_t Tq, int64_t Tk, mha_align* mode, int64_t* offset) {
  *offset = 0;
  switch (a) {
    case AL_TOP_LEFT: *mode = MHA_ALIGN_TOP_LEFT; break;
    case AL_OFF_NEG: *mode = MHA_ALIGN_OFFSET, *offset = -7; break;
    case AL_OFF_ZERO: *mode = MHA_ALIGN_OFFSET; break;
    case AL_OFF_POS: *mode = MHA_ALIGN_OFFSET, *offset = 5; break;
    case AL_OFF_BEYOND: *mode = MHA_ALIGN_OFFSET, *offset = Tk + 3; break;
    case AL_OFF_FAR_NEG: *mode = MHA_ALIGN_OFFSET, *offset = -(Tq + 2); break;
    case AL_KV_END: *mode = MHA_ALIGN_KV_END; break;
    case AL_BOTTOM_RIGHT:
    default: *mode = MHA_ALIGN_BOTTOM_RIGHT; break;
  }
}

/* Windows: built at start from the key block sizes of the kernel tables. */
typedef struct window_value {
  char name[48];
  int on;
  int64_t left, right;
} window_value;

#define MAX_WINDOWS 24
static window_value g_windows[MAX_WINDOWS];
static int g_window_count;

static void add_window(int on, int64_t left, int64_t right, const char* name) {
  window_value* w = &g_windows[g_window_count++];
  w->on = on;
  w->left = left;
  w->right = right;
  snprintf(w->name, sizeof w->name, "%s", name);
}

/* off; the diagonal (0, 0); nk − 1, nk, nk + 1 on the left and on the right
 * for every key block size nk of the ISAs; a wide asymmetric one; Mistral's
 * (W − 1, 0) with W = 100; and (INT64_MAX, INT64_MAX), which must clamp. */
static void build_windows(const isa_list* isas) {
  add_window(0, 0, 0, "off");
  add_window(1, 0, 0, "(0,0)");
  int64_t seen[MHA_ISA_COUNT];
  int nseen = 0;
  for (int i = 0; i < isas->count; i++) {
    const int64_t nk = (int64_t)mha_kernels_for(isas->isa[i])->attn_nk;
    int dup = 0;
    for (int s = 0; s < nseen; s++) dup |= seen[s] == nk;
    if (dup) continue;
    seen[nseen++] = nk;
    char name[48];
    snprintf(name, sizeof name, "(%lld,0)", (long long)(nk - 1));
    add_window(1, nk - 1, 0, name);
    snprintf(name, sizeof name, "(%lld,%lld)", (long long)nk, (long long)nk);
    add_window(1, nk, nk, name);
    snprintf(name, sizeof name, "(%lld,1)", (long long)(nk + 1));
    add_window(1, nk + 1, 1, name);
    snprintf(name, sizeof name, "(2,%lld)", (long long)(nk + 1));
    add_window(1, 2, nk + 1, name);
  }
  add_window(1, 5, 37, "(5,37)");
  add_window(1, 99, 0, "(99,0)");
  add_window(1, INT64_MAX, INT64_MAX, "(max,max)");
}

typedef enum sinks_value { SK_OFF, SK_RANDOM, SK_SOME_NEG_INF, SK_LARGE, SK_ALL_NEG_INF, SK_COUNT } sinks_value;
static const char* const kSinkNames[SK_COUNT] = {"off", "random", "some -inf", "large", "all -inf"};

static const float kSoftcap[] = {0.0f, 5.0f, 50.0f};

typedef struct additive_value {
  additive_kind kind;
  int minus_inf;
} additive_value;
static const additive_value kAdditive[] = {
    {ADDITIVE_NONE, 0}, {ADDITIVE_FULL, 1}, {ADDITIVE_BROADCAST, 2}, {ADDITIVE_PADDED, 0}};

static const int64_t kHeads[][2] = {{3, 3}, {8, 2}, {4, 1}}; /* H = Hkv, H = 4·Hkv, Hkv = 1 */
static const int64_t kBatch[] = {1, 2, 3};
static const int64_t kTq[] = {1, 7, 63, 65, 130};
static const int64_t kTk[] = {1, 7, 63, 65, 130, 600};
static const int64_t kD[] = {1, 7, 33, 65};
static const int64_t kDv[] = {3, 5, 17, 61}; /* odd, never equal to a D */

typedef enum axis {
  AX_CAUSAL, AX_ALIGN, AX_WINDOW, AX_ALIBI, AX_SOFTCAP, AX_SINKS, AX_ADDITIVE, AX_KV_LEN,
  AX_HEADS, AX_B, AX_TQ, AX_TK, AX_D, AX_DV, AX_WEIGHTS, AX_LSE, AX_LOGITS, AX_LAYOUT, AX_NAN_Q,
  AX_COUNT
} axis;

static const char* const kAxisNames[AX_COUNT] = {
    "causal", "align", "window", "alibi", "softcap", "sinks", "additive", "kv_len", "heads",
    "B", "Tq", "Tk", "D", "Dv", "weights", "lse", "logits", "layout", "nan_q"};

static int axis_size(axis a) {
  switch (a) {
    case AX_CAUSAL: return 2;
    case AX_ALIGN: return AL_COUNT;
    case AX_WINDOW: return g_window_count;
    case AX_ALIBI: return 2;
    case AX_SOFTCAP: return (int)COUNT(kSoftcap);
    case AX_SINKS: return SK_COUNT;
    case AX_ADDITIVE: return (int)COUNT(kAdditive);
    case AX_KV_LEN: return 2;
    case AX_HEADS: return (int)COUNT(kHeads);
    case AX_B: return (int)COUNT(kBatch);
    case AX_TQ: return (int)COUNT(kTq);
    case AX_TK: return (int)COUNT(kTk);
    case AX_D: return (int)COUNT(kD);
    case AX_DV: return (int)COUNT(kDv);
    case AX_WEIGHTS: return 2;
    case AX_LSE: return 2;
    case AX_LOGITS: return LOGITS_COUNT;
    case AX_LAYOUT: return LAYOUT_COUNT + 1; /* each layout for all four views, or mixed */
    case AX_NAN_Q: return 2; /* a NaN in the last query row of the last (b, h) */
    default: return 1;
  }
}

/* One case: a value index per axis (and the mixed layouts, when drawn). */
typedef struct variant_case {
  int v[AX_COUNT];
  layout_kind mixed[4];
} variant_case;

static double case_cost(const variant_case* c) {
  return (double)kBatch[c->v[AX_B]] * (double)kHeads[c->v[AX_HEADS]][0] *
         (double)kTq[c->v[AX_TQ]] * (double)kTk[c->v[AX_TK]] *
         (double)(kD[c->v[AX_D]] + kDv[c->v[AX_DV]]);
}

/* ------------------------------------------------------------------------ */
/* The pairwise covering array                                              */
/* ------------------------------------------------------------------------ */

#define MAX_VALUES 24
typedef struct coverage {
  unsigned char covered[AX_COUNT][AX_COUNT][MAX_VALUES][MAX_VALUES];
  long total, done, infeasible;
} coverage;

static void coverage_init(coverage* cv) {
  memset(cv, 0, sizeof *cv);
  for (int a = 0; a < AX_COUNT; a++) {
    for (int b = a + 1; b < AX_COUNT; b++) cv->total += (long)axis_size((axis)a) * axis_size((axis)b);
  }
}

static int coverage_gain(const coverage* cv, const variant_case* c) {
  int n = 0;
  for (int a = 0; a < AX_COUNT; a++) {
    for (int b = a + 1; b < AX_COUNT; b++) n += !cv->covered[a][b][c->v[a]][c->v[b]];
  }
  return n;
}

static void coverage_add(coverage* cv, const variant_case* c) {
  for (int a = 0; a < AX_COUNT; a++) {
    for (int b = a + 1; b < AX_COUNT; b++) {
      unsigned char* x = &cv->covered[a][b][c->v[a]][c->v[b]];
      if (*x == 0) {
        *x = 1;
        cv->done++;
      }
    }
  }
}

/* The first pair not yet covered (nor found infeasible): 1 if any. */
static int coverage_next(const coverage* cv, int* a, int* va, int* b, int* vb) {
  for (int x = 0; x < AX_COUNT; x++) {
    for (int y = x + 1; y < AX_COUNT; y++) {
      for (int i = 0; i < axis_size((axis)x); i++) {
        for (int j = 0; j < axis_size((axis)y); j++) {
          if (cv->covered[x][y][i][j] == 0) {
            *a = x, *va = i, *b = y, *vb = j;
            return 1;
          }
        }
      }
    }
  }
  return 0;
}

static void draw_case(tester* t, variant_case* c) {
  for (int a = 0; a < AX_COUNT; a++) c->v[a] = (int)tester_below(t, axis_size((axis)a));
  for (int k = 0; k < 4; k++) c->mixed[k] = (layout_kind)tester_below(t, LAYOUT_COUNT);
}

/* A case under the cost cap with axis a = va and b = vb (a < 0: no pair):
 * the best of CANDIDATES draws by new pairs covered. 0 if none fits. */
static int next_case(tester* t, const coverage* cv, int a, int va, int b, int vb,
                     variant_case* best) {
  int best_gain = -1;
  for (int n = 0, tries = 0; n < CANDIDATES && tries < 50 * CANDIDATES; tries++) {
    variant_case c;
    draw_case(t, &c);
    if (a >= 0) {
      c.v[a] = va;
      c.v[b] = vb;
    }
    if (case_cost(&c) > COST_CAP) continue;
    n++;
    const int gain = coverage_gain(cv, &c);
    if (gain > best_gain) {
      best_gain = gain;
      *best = c;
    }
  }
  return best_gain >= 0;
}

/* ------------------------------------------------------------------------ */
/* Building and running a case                                              */
/* ------------------------------------------------------------------------ */

/* A built case: the attention problem with the variants applied. */
typedef struct variant_problem {
  attention_problem p;
  float* slopes;  /* [H] or NULL */
  float* sinks;   /* [H] or NULL */
  float* lse;     /* [B, H, Tq] or NULL */
  size_t n_out, n_w, n_lse;
} variant_problem;

static attention_case base_of(const variant_case* c) {
  attention_case a;
  memset(&a, 0, sizeof a);
  a.B = kBatch[c->v[AX_B]];
  a.H = kHeads[c->v[AX_HEADS]][0];
  a.Hkv = kHeads[c->v[AX_HEADS]][1];
  a.Tq = kTq[c->v[AX_TQ]];
  a.Tk = kTk[c->v[AX_TK]];
  a.D = kD[c->v[AX_D]];
  a.Dv = kDv[c->v[AX_DV]];
  if (c->v[AX_LAYOUT] < LAYOUT_COUNT) {
    a.layout_q = a.layout_k = a.layout_v = a.layout_out = (layout_kind)c->v[AX_LAYOUT];
  } else {
    a.layout_q = c->mixed[0], a.layout_k = c->mixed[1];
    a.layout_v = c->mixed[2], a.layout_out = c->mixed[3];
  }
  a.causal = c->v[AX_CAUSAL];
  a.kv_len = c->v[AX_KV_LEN];
  a.additive = kAdditive[c->v[AX_ADDITIVE]].kind;
  a.minus_inf = kAdditive[c->v[AX_ADDITIVE]].minus_inf;
  a.weights = c->v[AX_WEIGHTS];
  a.threads = 1;
  a.logits = (logits_kind)c->v[AX_LOGITS];
  a.nan_q = c->v[AX_NAN_Q];
  return a;
}

/* ALiBi slopes: the usual 2^(−8(h+1)/H), each times a factor in [0.5, 2);
 * head 1 gets 0 and head 2 a negative slope (both legal floats). */
static float* make_slopes(tester* t, int64_t H) {
  float* s = tester_alloc((size_t)H * sizeof(float));
  for (int64_t h = 0; h < H; h++) {
    s[h] = (float)(exp2(-8.0 * (double)(h + 1) / (double)H) * tester_uniform(t, 0.5, 2.0));
  }
  if (H > 1) s[1] = 0.0f;
  if (H > 2) s[2] = -0.25f;
  return s;
}

static float* make_sinks(tester* t, sinks_value k, int64_t H) {
  if (k == SK_OFF) return NULL;
  float* s = tester_alloc((size_t)H * sizeof(float));
  for (int64_t h = 0; h < H; h++) {
    switch (k) {
      case SK_LARGE: s[h] = (float)tester_uniform(t, 20.0, 25.0); break;
      case SK_ALL_NEG_INF: s[h] = -INFINITY; break;
      default: s[h] = (float)tester_uniform(t, -3.0, 3.0); break;
    }
  }
  if (k == SK_SOME_NEG_INF) {
    s[0] = -INFINITY;
    if (H > 3) s[H - 1] = -INFINITY;
  }
  return s;
}

/* Applies the variants to both the descriptor and the oracle problem. */
static void apply_variants(tester* t, const variant_case* c, variant_problem* vp) {
  attention_problem* p = &vp->p;
  const attention_case* a = &p->c;
  mha_mask* m = &p->desc.mask;
  oracle_variants* o = &p->oracle.var;
  mha_align mode;
  int64_t offset;
  align_of((align_value)c->v[AX_ALIGN], a->Tq, a->Tk, &mode, &offset);
  m->align = mode;
  m->offset = offset;
  o->align = (int)mode;
  o->offset = offset;
  const window_value* w = &g_windows[c->v[AX_WINDOW]];
  m->window = o->window = w->on;
  m->window_left = o->window_left = w->left;
  m->window_right = o->window_right = w->right;
  if (c->v[AX_ALIBI]) vp->slopes = make_slopes(t, a->H);
  m->alibi_slopes = o->alibi_slopes = vp->slopes;
  m->softcap = kSoftcap[c->v[AX_SOFTCAP]];
  o->softcap = (double)m->softcap;
  vp->sinks = make_sinks(t, (sinks_value)c->v[AX_SINKS], a->H);
  m->sinks = o->sinks = vp->sinks;
  vp->n_out = (size_t)(a->B * a->H * a->Tq * a->Dv);
  vp->n_w = (size_t)(a->B * a->H * a->Tq * a->Tk);
  vp->n_lse = (size_t)(a->B * a->H * a->Tq);
  if (c->v[AX_LSE]) vp->lse = tester_alloc(vp->n_lse * sizeof(float));
  p->desc.lse = vp->lse;
}

static void variant_problem_free(variant_problem* vp) {
  free(vp->slopes);
  free(vp->sinks);
  free(vp->lse);
  attention_problem_free(&vp->p);
  memset(vp, 0, sizeof *vp);
}

static void describe(tester* t, const variant_case* c, const attention_case* a, const char* isa,
                     int threads, const char* what) {
  const window_value* w = &g_windows[c->v[AX_WINDOW]];
  tester_context(t,
                 "%s: isa=%s threads=%d B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld "
                 "layout q/k/v/out=%s/%s/%s/%s causal=%d align=%s window=%s alibi=%d softcap=%g "
                 "sinks=%s additive=%s minus_inf=%d kv_len=%d weights=%d lse=%d logits=%d nan_q=%d",
                 what, isa, threads, (long long)a->B, (long long)a->H, (long long)a->Hkv,
                 (long long)a->Tq, (long long)a->Tk, (long long)a->D, (long long)a->Dv,
                 layout_name(a->layout_q), layout_name(a->layout_k), layout_name(a->layout_v),
                 layout_name(a->layout_out), c->v[AX_CAUSAL], kAlignNames[c->v[AX_ALIGN]], w->name,
                 c->v[AX_ALIBI], (double)kSoftcap[c->v[AX_SOFTCAP]], kSinkNames[c->v[AX_SINKS]],
                 additive_name(a->additive), a->minus_inf, c->v[AX_KV_LEN], c->v[AX_WEIGHTS],
                 c->v[AX_LSE], c->v[AX_LOGITS], c->v[AX_NAN_Q]);
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

typedef struct stats {
  long cases, runs, decode_cases, batch_checks;
  long rows, empty_rows, sink_only_rows, nan_rows;
  double worst[MHA_ISA_COUNT]; /* largest error / tolerance per ISA */
} stats;

static stats g_stats;

/* tester_check_close, with the worst error/tolerance kept per ISA. */
static int check_close(tester* t, mha_isa isa, const char* what, size_t n, const float* got,
                       const double* want, const double* tol) {
  const double before = t->worst_ratio;
  t->worst_ratio = 0.0;
  const int ok = tester_check_close(t, what, n, got, want, tol);
  if (t->worst_ratio > g_stats.worst[isa]) g_stats.worst[isa] = t->worst_ratio;
  if (before > t->worst_ratio) t->worst_ratio = before;
  return ok;
}

/* Equal bits, a NaN matching any NaN (mha.h: payloads are not guaranteed). */
static size_t bit_differences(const float* a, const float* b, size_t n, size_t* first) {
  size_t diff = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && diff++ == 0) *first = i;
  }
  return diff;
}

static void check_same_bits(tester* t, const char* what, const float* got, const float* want,
                            size_t n) {
  size_t first = 0;
  const size_t diff = bit_differences(got, want, n, &first);
  tester_check(t, diff == 0, "%s: %zu of %zu values differ; first at [%zu]: %.9g vs %.9g", what,
               diff, n, first, diff ? (double)got[first] : 0.0, diff ? (double)want[first] : 0.0);
}

/* Would this shape take the decode path on this ISA (one query block per
 * head, the keys split into ranges)? Mirrors the plan, for the counts only. */
static int is_decode(const mha_kernels* kr, const attention_case* a) {
  int64_t mq0 = (int64_t)kr->attn_mq / (a->H / a->Hkv);
  if (mq0 < 1) mq0 = 1;
  const int64_t nk = (int64_t)kr->attn_nk, nkb = (a->Tk + nk - 1) / nk;
  return a->Tq <= mq0 && nkb > 2;
}

/* The oracle's answer of a problem, with its tolerances. */
typedef variant_expected expected;

static expected expect(const variant_problem* vp) {
  const attention_problem* p = &vp->p;
  /* the weights only where the case asks for them */
  return variant_expected_compute(&p->oracle, NULL, vp->n_out, p->weights != NULL ? vp->n_w : 0, vp->n_lse);
}

static void count_rows(const variant_problem* vp, const expected* e) {
  const attention_problem* p = &vp->p;
  const attention_case* a = &p->c;
  for (int64_t b = 0; b < a->B; b++) {
    for (int64_t h = 0; h < a->H; h++) {
      for (int64_t i = 0; i < a->Tq; i++) {
        const size_t r = (size_t)((b * a->H + h) * a->Tq + i);
        int any = 0;
        for (int64_t j = 0; j < a->Tk && !any; j++) any = oracle_key_visible(&p->oracle, b, h, i, j);
        g_stats.rows++;
        if (!any && vp->sinks != NULL && isfinite(vp->sinks[h])) g_stats.sink_only_rows++;
        else if (!any) g_stats.empty_rows++;
        if (isnan(e->lse[r])) g_stats.nan_rows++;
      }
    }
  }
}

/* Rows of the weights sum to 1 − the sink's weight exp(σ − lse) (0 for a
 * row with no visible key), within the sum of the elements' tolerances. */
static void check_row_sums(tester* t, const variant_problem* vp, const expected* e) {
  const attention_case* a = &vp->p.c;
  long bad = 0;
  double worst = 0.0;
  for (int64_t b = 0; b < a->B; b++) {
    for (int64_t h = 0; h < a->H; h++) {
      const double sink = vp->sinks != NULL ? (double)vp->sinks[h] : -INFINITY;
      for (int64_t i = 0; i < a->Tq; i++) {
        const size_t r = (size_t)((b * a->H + h) * a->Tq + i);
        if (!isfinite(e->lse[r]) && !(e->lse[r] == -INFINITY)) continue; /* NaN row */
        /* the expected value 1 − exp(σ − lse) is good to a few double ulps of
         * lse (the rounding of σ − lse) */
        double sum = 0.0, tol = 4.0 * DBL_EPSILON * (1.0 + fabs(e->lse[r]));
        int any = 0;
        for (int64_t j = 0; j < a->Tk; j++) {
          sum += (double)vp->p.weights[r * (size_t)a->Tk + (size_t)j];
          tol += e->w_tol[r * (size_t)a->Tk + (size_t)j];
          any |= e->w_tol[r * (size_t)a->Tk + (size_t)j] > 0.0;
        }
        const double want = any ? 1.0 - (sink == -INFINITY ? 0.0 : exp(sink - e->lse[r])) : 0.0;
        const double err = fabs(sum - want);
        if (!(err <= tol)) bad++;
        if (err / tol > worst) worst = err / tol;
      }
    }
  }
  tester_check(t, bad == 0, "weights: %ld rows do not sum to 1 - sink weight (worst error/tol %.3g)",
               bad, worst);
}

/* Each batch entry run alone (B = 1 views into the same buffers) gives the
 * bits it has in the batch. */
static void check_batch_invariance(tester* t, variant_problem* vp, mha_isa isa,
                                   const float* out_batch, const float* w_batch,
                                   const float* lse_batch) {
  attention_problem* p = &vp->p;
  const attention_case* a = &p->c;
  if (a->B == 1) return;
  const size_t e_out = (size_t)(a->H * a->Tq * a->Dv), e_w = (size_t)(a->H * a->Tq * a->Tk);
  const size_t e_lse = (size_t)(a->H * a->Tq);
  float* out = tester_alloc(p->out_size * sizeof(float));
  float* got = tester_alloc(vp->n_out * sizeof(float));
  float* w = p->weights != NULL ? tester_alloc(e_w * sizeof(float)) : NULL;
  float* lse = vp->lse != NULL ? tester_alloc(e_lse * sizeof(float)) : NULL;
  for (int64_t b = 0; b < a->B; b++) {
    mha_attention_desc d = p->desc;
    d.B = 1;
    d.isa = isa;
    d.num_threads = 2;
    d.lse = lse;
    if (d.mask.kv_len != NULL) d.mask.kv_len += b;
    if (d.mask.additive != NULL) d.mask.additive += b * d.mask.additive_strides.batch;
    tester_poison(out, p->out_size);
    if (w != NULL) tester_poison(w, e_w);
    if (lse != NULL) tester_poison(lse, e_lse);
    const mha_status st = mha_attention_f32(&d, p->q + b * p->desc.q.batch, p->k + b * p->desc.k.batch,
                                            p->v + b * p->desc.v.batch, out, w);
    if (!tester_check(t, st == MHA_STATUS_SUCCESS, "entry %lld alone: %s: %s", (long long)b,
                      mha_status_string(st), mha_last_error())) {
      continue;
    }
    /* gather the entry's rows from the B = 1 view */
    const mha_strides s = p->desc.out;
    for (int64_t h = 0; h < a->H; h++) {
      for (int64_t i = 0; i < a->Tq; i++) {
        memcpy(got + (size_t)((h * a->Tq + i) * a->Dv), out + h * s.head + i * s.row,
               (size_t)a->Dv * sizeof(float));
      }
    }
    char what[64];
    snprintf(what, sizeof what, "batch entry %lld alone: out", (long long)b);
    check_same_bits(t, what, got, out_batch + (size_t)b * e_out, e_out);
    if (w != NULL) {
      snprintf(what, sizeof what, "batch entry %lld alone: weights", (long long)b);
      check_same_bits(t, what, w, w_batch + (size_t)b * e_w, e_w);
    }
    if (lse != NULL) {
      snprintf(what, sizeof what, "batch entry %lld alone: lse", (long long)b);
      check_same_bits(t, what, lse, lse_batch + (size_t)b * e_lse, e_lse);
    }
    g_stats.batch_checks++;
  }
  free(out);
  free(got);
  free(w);
  free(lse);
}

/* Runs a built problem on every ISA and thread count and checks it all. */
static void run_problem(tester* t, const isa_list* isas, const variant_case* c, variant_problem* vp,
                        const expected* e) {
  attention_problem* p = &vp->p;
  const attention_case* a = &p->c;
  float* got = tester_alloc(vp->n_out * sizeof(float));
  float* first_out = tester_alloc(vp->n_out * sizeof(float));
  float* first_w = p->weights != NULL ? tester_alloc(vp->n_w * sizeof(float)) : NULL;
  float* first_lse = vp->lse != NULL ? tester_alloc(vp->n_lse * sizeof(float)) : NULL;
  int decode = 0;
  for (int n = 0; n < isas->count; n++) {
    const mha_isa isa = isas->isa[n];
    decode |= is_decode(mha_kernels_for(isa), a);
    for (size_t k = 0; k < COUNT(kThreads); k++) {
      describe(t, c, a, mha_isa_name(isa), kThreads[k], "sweep");
      attention_problem_poison(p);
      if (vp->lse != NULL) tester_poison(vp->lse, vp->n_lse);
      p->desc.isa = isa;
      p->desc.num_threads = kThreads[k];
      const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      g_stats.runs++;
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32 returned %s: %s",
                        mha_status_string(st), mha_last_error())) {
        continue;
      }
      attention_problem_gather_out(p, got);
      const size_t gaps = attention_problem_gap_writes(p);
      tester_check(t, gaps == 0, "%zu elements written outside the out view", gaps);
      if (k == 0) {
        check_close(t, isa, "out", vp->n_out, got, e->out, e->out_tol);
        if (p->weights != NULL) {
          check_close(t, isa, "weights", vp->n_w, p->weights, e->w, e->w_tol);
          check_row_sums(t, vp, e);
        }
        if (vp->lse != NULL) check_close(t, isa, "lse", vp->n_lse, vp->lse, e->lse, e->lse_tol);
        memcpy(first_out, got, vp->n_out * sizeof(float));
        if (first_w != NULL) memcpy(first_w, p->weights, vp->n_w * sizeof(float));
        if (first_lse != NULL) memcpy(first_lse, vp->lse, vp->n_lse * sizeof(float));
      } else {
        check_same_bits(t, "out vs 1 thread", got, first_out, vp->n_out);
        if (first_w != NULL) check_same_bits(t, "weights vs 1 thread", p->weights, first_w, vp->n_w);
        if (first_lse != NULL) check_same_bits(t, "lse vs 1 thread", vp->lse, first_lse, vp->n_lse);
      }
    }
    describe(t, c, a, mha_isa_name(isa), 2, "batch invariance");
    check_batch_invariance(t, vp, isa, first_out, first_w, first_lse);
  }
  g_stats.decode_cases += decode;
  free(got);
  free(first_out);
  free(first_w);
  free(first_lse);
}

static void run_case(tester* t, const isa_list* isas, const variant_case* c) {
  const attention_case a = base_of(c);
  variant_problem vp;
  memset(&vp, 0, sizeof vp);
  attention_problem_build(t, &a, &vp.p);
  apply_variants(t, c, &vp);
  expected e = expect(&vp);
  count_rows(&vp, &e);
  run_problem(t, isas, c, &vp, &e);
  variant_expected_free(&e);
  variant_problem_free(&vp);
  g_stats.cases++;
}

/* The covering array, then fully random cases. */
static void test_sweep(tester* t, const isa_list* isas) {
  static coverage cv;
  coverage_init(&cv);
  long array_cases = 0;
  int a, va, b, vb;
  while (coverage_next(&cv, &a, &va, &b, &vb)) {
    variant_case c;
    if (!next_case(t, &cv, a, va, b, vb, &c)) {
      /* no shape under the cost cap has this pair: mark it and go on */
      cv.covered[a][b][va][vb] = 2;
      cv.infeasible++;
      printf("variants-test: pair %s=%d, %s=%d does not fit the cost cap\n", kAxisNames[a], va,
             kAxisNames[b], vb);
      continue;
    }
    coverage_add(&cv, &c);
    run_case(t, isas, &c);
    array_cases++;
  }
  for (int n = 0; n < RANDOM_CASES; n++) {
    variant_case c;
    next_case(t, &cv, -1, 0, -1, 0, &c);
    run_case(t, isas, &c);
  }
  /* every pair of the variant axes (causal … kv_len) must be covered */
  long variant_missing = 0;
  for (int x = AX_CAUSAL; x <= AX_KV_LEN; x++) {
    for (int y = x + 1; y < AX_COUNT; y++) {
      for (int i = 0; i < axis_size((axis)x); i++) {
        for (int j = 0; j < axis_size((axis)y); j++) variant_missing += cv.covered[x][y][i][j] != 1;
      }
    }
  }
  tester_context(t, "covering array");
  tester_check(t, variant_missing == 0, "%ld pairs with a variant axis are not covered", variant_missing);
  printf("variants-test: covering array of %ld cases covers %ld of %ld value pairs (%ld do not fit "
         "the cost cap), then %d random cases\n",
         array_cases, cv.done, cv.total, cv.infeasible, RANDOM_CASES);
}

/* ------------------------------------------------------------------------ */
/* Targeted tests                                                           */
/* ------------------------------------------------------------------------ */

/* A variant problem from explicit settings (contiguous layouts). */
typedef struct explicit_case {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, weights, lse;
  mha_align align;
  int64_t offset;
  int window;
  int64_t left, right;
  int alibi;
  float softcap;
  sinks_value sinks;
  additive_kind additive;
} explicit_case;

static void build_explicit(tester* t, const explicit_case* x, variant_problem* vp) {
  attention_case a;
  memset(&a, 0, sizeof a);
  a.B = x->B, a.H = x->H, a.Hkv = x->Hkv, a.Tq = x->Tq, a.Tk = x->Tk, a.D = x->D, a.Dv = x->Dv;
  a.causal = x->causal;
  a.kv_len = x->kv_len;
  a.weights = x->weights;
  a.additive = x->additive;
  a.minus_inf = x->additive != ADDITIVE_NONE; /* some -inf keys */
  a.threads = 1;
  memset(vp, 0, sizeof *vp);
  attention_problem_build(t, &a, &vp->p);
  mha_mask* m = &vp->p.desc.mask;
  oracle_variants* o = &vp->p.oracle.var;
  m->align = x->align;
  o->align = (int)x->align;
  m->offset = o->offset = x->offset;
  m->window = o->window = x->window;
  m->window_left = o->window_left = x->left;
  m->window_right = o->window_right = x->right;
  if (x->alibi) vp->slopes = make_slopes(t, x->H);
  m->alibi_slopes = o->alibi_slopes = vp->slopes;
  m->softcap = x->softcap;
  o->softcap = (double)x->softcap;
  vp->sinks = make_sinks(t, x->sinks, x->H);
  m->sinks = o->sinks = vp->sinks;
  vp->n_out = (size_t)(a.B * a.H * a.Tq * a.Dv);
  vp->n_w = (size_t)(a.B * a.H * a.Tq * a.Tk);
  vp->n_lse = (size_t)(a.B * a.H * a.Tq);
  if (x->lse) vp->lse = tester_alloc(vp->n_lse * sizeof(float));
  vp->p.desc.lse = vp->lse;
}

static void describe_explicit(tester* t, const explicit_case* x, const char* what, mha_isa isa,
                              int threads) {
  tester_context(t,
                 "%s: isa=%s threads=%d B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld "
                 "causal=%d kv_len=%d align=%d offset=%lld window=%d (%lld,%lld) alibi=%d "
                 "softcap=%g sinks=%s additive=%s",
                 what, mha_isa_name(isa), threads, (long long)x->B, (long long)x->H,
                 (long long)x->Hkv, (long long)x->Tq, (long long)x->Tk, (long long)x->D,
                 (long long)x->Dv, x->causal, x->kv_len, (int)x->align, (long long)x->offset,
                 x->window, (long long)x->left, (long long)x->right, x->alibi,
                 (double)x->softcap, kSinkNames[x->sinks], additive_name(x->additive));
}

/* Runs an explicit problem on every ISA at 1 and 2 threads against the
 * oracle (already holding the problem's inputs, possibly edited). */
static void run_explicit(tester* t, const isa_list* isas, const explicit_case* x,
                         variant_problem* vp, const char* what) {
  attention_problem* p = &vp->p;
  expected e = expect(vp);
  float* got = tester_alloc(vp->n_out * sizeof(float));
  for (int n = 0; n < isas->count; n++) {
    for (int threads = 1; threads <= 2; threads++) {
      const mha_isa isa = isas->isa[n];
      describe_explicit(t, x, what, isa, threads);
      attention_problem_poison(p);
      if (vp->lse != NULL) tester_poison(vp->lse, vp->n_lse);
      p->desc.isa = isa;
      p->desc.num_threads = threads;
      const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32 returned %s: %s",
                        mha_status_string(st), mha_last_error())) {
        continue;
      }
      attention_problem_gather_out(p, got);
      check_close(t, isa, "out", vp->n_out, got, e.out, e.out_tol);
      if (p->weights != NULL) check_close(t, isa, "weights", vp->n_w, p->weights, e.w, e.w_tol);
      if (vp->lse != NULL) check_close(t, isa, "lse", vp->n_lse, vp->lse, e.lse, e.lse_tol);
    }
  }
  free(got);
  variant_expected_free(&e);
}

static explicit_case explicit_base(int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                                   int64_t D, int64_t Dv) {
  explicit_case x;
  memset(&x, 0, sizeof x);
  x.B = B, x.H = H, x.Hkv = Hkv, x.Tq = Tq, x.Tk = Tk, x.D = D, x.Dv = Dv;
  x.weights = 1;
  x.lse = 1;
  return x;
}

/* ALiBi in closed form: with Q = 0 every logit is its bias −slope·(i' − j),
 * so over a row's visible keys [lo, hi) (no additive mask: an interval) the
 * weights are p_j = e^{slope·(j − hi + 1)} / Σ_{n < hi − lo} e^{−slope·n}
 * and lse = −slope·(i' − hi + 1) + log Σ_{n < hi − lo} e^{−slope·n}; out is
 * Σ p_j v_j. The soft-cap leaves a 0 logit 0. Checked on every ISA, and the
 * oracle is checked against the same formulas. */
static void test_alibi_closed_form(tester* t, const isa_list* isas) {
  explicit_case cases[6];
  cases[0] = explicit_base(2, 4, 2, 7, 130, 9, 5);
  cases[0].causal = 1;
  cases[1] = explicit_base(1, 3, 3, 65, 65, 8, 17);
  cases[1].window = 1, cases[1].left = 63, cases[1].right = 2;
  cases[1].align = MHA_ALIGN_TOP_LEFT;
  cases[2] = explicit_base(1, 8, 2, 1, 600, 16, 3); /* decode: split ranges */
  cases[2].softcap = 5.0f;
  cases[2].window = 1, cases[2].left = 300, cases[2].right = 0;
  cases[3] = explicit_base(2, 4, 1, 7, 600, 7, 7);
  cases[3].causal = 1, cases[3].kv_len = 1, cases[3].align = MHA_ALIGN_KV_END;
  cases[4] = explicit_base(1, 2, 2, 63, 130, 5, 61);
  cases[4].align = MHA_ALIGN_OFFSET, cases[4].offset = 40, cases[4].causal = 1;
  cases[4].sinks = SK_RANDOM;
  cases[5] = explicit_base(1, 4, 4, 1, 1031, 3, 9); /* decode, many ranges, a sink */
  cases[5].sinks = SK_RANDOM;
  for (size_t n = 0; n < COUNT(cases); n++) {
    explicit_case* x = &cases[n];
    x->alibi = 1;
    variant_problem vp;
    build_explicit(t, x, &vp);
    attention_problem* p = &vp.p;
    /* Q = 0: the inputs and the oracle's copy */
    memset(p->q, 0, p->q_size * sizeof(float));
    memset(p->qd, 0, (size_t)(x->B * x->H * x->Tq * x->D) * sizeof(double));
    /* the closed form */
    double* cw = tester_alloc(vp.n_w * sizeof(double));
    double* clse = tester_alloc(vp.n_lse * sizeof(double));
    double* cout = tester_alloc(vp.n_out * sizeof(double));
    memset(cw, 0, vp.n_w * sizeof(double));
    memset(cout, 0, vp.n_out * sizeof(double));
    for (int64_t b = 0; b < x->B; b++) {
      for (int64_t h = 0; h < x->H; h++) {
        const double slope = (double)vp.slopes[h];
        const double sink = vp.sinks != NULL ? (double)vp.sinks[h] : -INFINITY;
        const int64_t g = h / (x->H / x->Hkv);
        for (int64_t i = 0; i < x->Tq; i++) {
          const size_t r = (size_t)((b * x->H + h) * x->Tq + i);
          int64_t lo = -1, hi = -1;
          for (int64_t j = 0; j < x->Tk; j++) {
            if (!oracle_key_visible(&p->oracle, b, h, i, j)) continue;
            if (lo < 0) lo = j;
            hi = j + 1;
          }
          if (lo < 0) {
            clse[r] = sink;
            continue;
          }
          const int64_t ip = oracle_aligned_position(&p->oracle, b, i);
          const double n = (double)(hi - lo);
          /* Σ_{n < N} e^{−slope·n} (N for slope 0) */
          const double geo = slope == 0.0 ? n : -expm1(-slope * n) / -expm1(-slope);
          const double top = -slope * (double)(ip - (hi - 1)); /* the logit of key hi − 1 */
          double lse = top + log(geo);
          if (sink != -INFINITY) lse = fmax(lse, sink) + log1p(exp(-fabs(lse - sink)));
          clse[r] = lse;
          for (int64_t j = lo; j < hi; j++) {
            const double pj = exp(-slope * (double)(ip - j) - lse);
            cw[r * (size_t)x->Tk + (size_t)j] = pj;
            const float* vj = p->v + b * p->desc.v.batch + g * p->desc.v.head + j * p->desc.v.row;
            for (int64_t cc = 0; cc < x->Dv; cc++) cout[r * (size_t)x->Dv + (size_t)cc] += pj * (double)vj[cc];
          }
        }
      }
    }
    /* the oracle agrees with the closed form (to double rounding) */
    expected e = expect(&vp);
    double worst = 0.0;
    for (size_t r = 0; r < vp.n_lse; r++) {
      if (isfinite(clse[r])) worst = fmax(worst, fabs(clse[r] - e.lse[r]) / (1.0 + fabs(clse[r])));
      else if (clse[r] != e.lse[r]) worst = INFINITY;
    }
    for (size_t k = 0; k < vp.n_w; k++) worst = fmax(worst, fabs(cw[k] - e.w[k]));
    for (size_t k = 0; k < vp.n_out; k++) worst = fmax(worst, fabs(cout[k] - e.out[k]));
    describe_explicit(t, x, "ALiBi closed form, oracle", MHA_ISA_DEFAULT, 0);
    tester_check(t, worst < 1e-12, "the oracle is %.3g away from the closed form", worst);
    /* the library against the closed form, with the oracle's tolerances */
    float* got = tester_alloc(vp.n_out * sizeof(float));
    for (int k = 0; k < isas->count; k++) {
      const mha_isa isa = isas->isa[k];
      describe_explicit(t, x, "ALiBi closed form", isa, 2);
      attention_problem_poison(p);
      tester_poison(vp.lse, vp.n_lse);
      p->desc.isa = isa;
      p->desc.num_threads = 2;
      const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "returned %s: %s", mha_status_string(st),
                        mha_last_error())) {
        continue;
      }
      attention_problem_gather_out(p, got);
      check_close(t, isa, "out (closed form)", vp.n_out, got, cout, e.out_tol);
      check_close(t, isa, "weights (closed form)", vp.n_w, p->weights, cw, e.w_tol);
      check_close(t, isa, "lse (closed form)", vp.n_lse, vp.lse, clse, e.lse_tol);
    }
    free(got);
    variant_expected_free(&e);
    free(cw);
    free(clse);
    free(cout);
    variant_problem_free(&vp);
  }
}

/* Rows that see no key but have a sink: exact zeros, all weights exactly 0,
 * lse exactly the sink (the prefill and the decode paths). A sink of −inf
 * is no sink: the same bits as without sinks. */
static void test_sink_only_rows(tester* t, const isa_list* isas) {
  explicit_case cases[5];
  cases[0] = explicit_base(3, 2, 1, 7, 65, 8, 5); /* kv_len[2] = 0: entry 2 all empty */
  cases[0].kv_len = 1;
  cases[1] = explicit_base(1, 4, 2, 65, 130, 7, 3); /* causal far before the keys */
  cases[1].causal = 1, cases[1].align = MHA_ALIGN_OFFSET, cases[1].offset = -80;
  cases[2] = explicit_base(2, 4, 4, 1, 600, 16, 9); /* decode: the window past the keys */
  cases[2].window = 1, cases[2].align = MHA_ALIGN_OFFSET, cases[2].offset = 700;
  cases[2].left = 50, cases[2].right = 0;
  cases[3] = explicit_base(2, 8, 2, 3, 1031, 5, 5); /* decode, kv_len[1] = 0 */
  cases[3].kv_len = 1, cases[3].alibi = 1, cases[3].softcap = 5.0f;
  cases[4] = explicit_base(1, 3, 3, 130, 63, 9, 9); /* top-left, Tq > Tk, window (0, 0) */
  cases[4].align = MHA_ALIGN_TOP_LEFT, cases[4].window = 1;
  for (size_t n = 0; n < COUNT(cases); n++) {
    explicit_case* x = &cases[n];
    x->sinks = SK_RANDOM;
    variant_problem vp;
    build_explicit(t, x, &vp);
    attention_problem* p = &vp.p;
    run_explicit(t, isas, x, &vp, "sink-only rows vs oracle");
    /* the exact values of the rows that see nothing */
    float* got = tester_alloc(vp.n_out * sizeof(float));
    long rows = 0;
    for (int k = 0; k < isas->count; k++) {
      const mha_isa isa = isas->isa[k];
      describe_explicit(t, x, "sink-only rows, exact", isa, 3);
      attention_problem_poison(p);
      tester_poison(vp.lse, vp.n_lse);
      p->desc.isa = isa;
      p->desc.num_threads = 3;
      const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "returned %s", mha_status_string(st))) continue;
      attention_problem_gather_out(p, got);
      long bad = 0;
      rows = 0;
      for (int64_t b = 0; b < x->B; b++) {
        for (int64_t h = 0; h < x->H; h++) {
          for (int64_t i = 0; i < x->Tq; i++) {
            int any = 0;
            for (int64_t j = 0; j < x->Tk && !any; j++) any = oracle_key_visible(&p->oracle, b, h, i, j);
            if (any) continue;
            rows++;
            const size_t r = (size_t)((b * x->H + h) * x->Tq + i);
            for (int64_t c = 0; c < x->Dv; c++) bad += got[r * (size_t)x->Dv + (size_t)c] != 0.0f;
            for (int64_t j = 0; j < x->Tk; j++) bad += p->weights[r * (size_t)x->Tk + (size_t)j] != 0.0f;
            bad += memcmp(&vp.lse[r], &vp.sinks[h], sizeof(float)) != 0;
          }
        }
      }
      tester_check(t, rows > 0, "the case has no row without a visible key");
      tester_check(t, bad == 0, "%ld values of the %ld sink-only rows are not exact zeros / the sink",
                   bad, rows);
    }
    free(got);

    /* sinks all −inf: bitwise the call without sinks */
    float* none_out = tester_alloc(p->out_size * sizeof(float));
    float* none_w = tester_alloc(vp.n_w * sizeof(float));
    float* none_lse = tester_alloc(vp.n_lse * sizeof(float));
    float* inf_sinks = tester_alloc((size_t)x->H * sizeof(float));
    for (int64_t h = 0; h < x->H; h++) inf_sinks[h] = -INFINITY;
    for (int k = 0; k < isas->count; k++) {
      const mha_isa isa = isas->isa[k];
      describe_explicit(t, x, "sinks -inf vs none", isa, 2);
      p->desc.isa = isa;
      p->desc.num_threads = 2;
      p->desc.mask.sinks = NULL;
      attention_problem_poison(p);
      tester_poison(vp.lse, vp.n_lse);
      mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      memcpy(none_out, p->out, p->out_size * sizeof(float));
      memcpy(none_w, p->weights, vp.n_w * sizeof(float));
      memcpy(none_lse, vp.lse, vp.n_lse * sizeof(float));
      p->desc.mask.sinks = inf_sinks;
      attention_problem_poison(p);
      tester_poison(vp.lse, vp.n_lse);
      if (st == MHA_STATUS_SUCCESS) {
        st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      }
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "returned %s", mha_status_string(st))) continue;
      check_same_bits(t, "out: sinks -inf vs none", p->out, none_out, p->out_size);
      check_same_bits(t, "weights: sinks -inf vs none", p->weights, none_w, vp.n_w);
      check_same_bits(t, "lse: sinks -inf vs none", vp.lse, none_lse, vp.n_lse);
    }
    p->desc.mask.sinks = vp.sinks;
    free(inf_sinks);
    free(none_out);
    free(none_w);
    free(none_lse);
    variant_problem_free(&vp);
  }
}

/* NaN in the K and V rows of some keys (of batch entry 0, K/V head 0): the
 * rows that see such a key are NaN, every other row must match the oracle
 * (finite) — hidden keys' scores and values never reach them. Hidden by the
 * window on either side, by the causal alignment, by kv_len, by an additive
 * -inf; with and without the score modifiers (two code paths for the keys
 * before a window); prefill and decode (where the keys are hidden from the
 * one query row, so no row may be NaN). */
typedef struct nan_case {
  explicit_case x;
  int64_t keys[6];
  int nkeys;
  int want_nan; /* 1: some rows see a NaN key */
} nan_case;

static void test_nan_in_hidden_rows(tester* t, const isa_list* isas) {
  nan_case cases[9];
  memset(cases, 0, sizeof cases);
  /* prefill, window around i' = i + 65: keys 64, 65 seen by rows 0-10, key
   * 129 by rows 61-64, key 0 by none */
  cases[0].x = explicit_base(1, 2, 2, 65, 130, 8, 5);
  cases[0].x.window = 1, cases[0].x.left = 10, cases[0].x.right = 3;
  cases[0] = (nan_case){cases[0].x, {0, 129, 65, 64}, 4, 1};
  cases[1] = cases[0]; /* the same with ALiBi and the soft-cap */
  cases[1].x.alibi = 1, cases[1].x.softcap = 5.0f;
  /* causal, top-left, window (2, 0): key 0 seen by rows 0-2 only */
  cases[2].x = explicit_base(2, 4, 1, 7, 130, 7, 3);
  cases[2].x.causal = 1, cases[2].x.align = MHA_ALIGN_TOP_LEFT;
  cases[2].x.window = 1, cases[2].x.left = 2, cases[2].x.right = 0;
  cases[2] = (nan_case){cases[2].x, {0, 129, 64, 7}, 4, 1};
  /* decode, the window [230, 370] in the middle: NaN just outside it and at
   * block edges, hidden from the one row */
  cases[3].x = explicit_base(2, 8, 2, 1, 600, 16, 9);
  cases[3].x.window = 1, cases[3].x.align = MHA_ALIGN_OFFSET, cases[3].x.offset = 300;
  cases[3].x.left = 70, cases[3].x.right = 70;
  cases[3] = (nan_case){cases[3].x, {0, 599, 229, 371, 64, 128}, 6, 0};
  cases[4] = cases[3];
  cases[4].x.alibi = 1, cases[4].x.sinks = SK_RANDOM;
  /* decode, key 300 inside the window: the rows of K/V head 0 are NaN */
  cases[5] = cases[4];
  cases[5].keys[0] = 300, cases[5].want_nan = 1;
  /* kv_len and kv-end alignment: key 199 hidden from every entry shorter
   * than Tk, key 150 seen by entry 0's rows */
  cases[6].x = explicit_base(3, 2, 2, 9, 200, 5, 5);
  cases[6].x.kv_len = 1, cases[6].x.causal = 1, cases[6].x.align = MHA_ALIGN_KV_END;
  cases[6] = (nan_case){cases[6].x, {199, 150}, 2, 1};
  /* additive -inf keys and a window (5, 5) on the diagonal */
  cases[7].x = explicit_base(1, 3, 3, 63, 63, 7, 7);
  cases[7].x.additive = ADDITIVE_FULL, cases[7].x.window = 1;
  cases[7].x.left = 5, cases[7].x.right = 5, cases[7].x.softcap = 50.0f;
  cases[7] = (nan_case){cases[7].x, {0, 62, 31}, 3, 1};
  /* decode, Mistral's window (99, 0) with causal: the row sees [931, 1030] */
  cases[8].x = explicit_base(1, 2, 1, 1, 1031, 9, 9);
  cases[8].x.window = 1, cases[8].x.left = 99, cases[8].x.right = 0, cases[8].x.causal = 1;
  cases[8] = (nan_case){cases[8].x, {0, 930, 64, 640}, 4, 0};
  static const char* const names[3] = {"NaN K rows", "NaN V rows", "NaN K and V rows"};
  for (size_t n = 0; n < COUNT(cases); n++) {
    const nan_case* nc = &cases[n];
    const explicit_case* x = &nc->x;
    for (int which = 0; which < 3; which++) {
      variant_problem vp;
      build_explicit(t, x, &vp);
      attention_problem* p = &vp.p;
      for (int kk = 0; kk < nc->nkeys; kk++) {
        const int64_t j = nc->keys[kk];
        if (which != 1) {
          p->k[j * p->desc.k.row] = NAN;
          p->kd[j * x->D] = NAN;
        }
        if (which != 0) {
          for (int64_t c = 0; c < x->Dv; c++) {
            p->v[j * p->desc.v.row + c] = NAN;
            p->vd[j * x->Dv + c] = NAN;
          }
        }
      }
      /* the case must have the rows it is meant to have */
      expected e = expect(&vp);
      long nan_rows = 0, clean_rows = 0;
      for (size_t r = 0; r < vp.n_lse; r++) {
        if (isnan(e.out[r * (size_t)x->Dv])) nan_rows++;
        else clean_rows++;
      }
      variant_expected_free(&e);
      describe_explicit(t, x, names[which], MHA_ISA_DEFAULT, 0);
      tester_check(t, clean_rows > 0 && (nan_rows > 0) == nc->want_nan,
                   "the NaN case has %ld NaN rows and %ld clean rows", nan_rows, clean_rows);
      run_explicit(t, isas, x, &vp, names[which]);
      variant_problem_free(&vp);
    }
  }
}

/* A NaN or +inf additive mask entry at a key the row cannot see (left or
 * right of its window, after i' with causal, past kv_len) never reaches the
 * row: mha.h, a NaN in the mask propagates "to the rows that see it". Every
 * hidden entry gets NaN or +inf, the visible ones finite values. */
static void test_mask_values_on_hidden_keys(tester* t, const isa_list* isas) {
  explicit_case cases[5];
  cases[0] = explicit_base(1, 2, 2, 65, 130, 8, 5); /* window on both sides */
  cases[0].window = 1, cases[0].left = 10, cases[0].right = 3;
  cases[1] = cases[0]; /* with the modifiers */
  cases[1].alibi = 1, cases[1].softcap = 5.0f, cases[1].sinks = SK_RANDOM;
  cases[2] = explicit_base(2, 4, 2, 9, 200, 7, 3); /* causal, kv-end, kv_len, window */
  cases[2].causal = 1, cases[2].kv_len = 1, cases[2].align = MHA_ALIGN_KV_END;
  cases[2].window = 1, cases[2].left = 70, cases[2].right = 0;
  cases[3] = explicit_base(1, 8, 2, 1, 600, 16, 9); /* decode, window [230, 370] */
  cases[3].window = 1, cases[3].align = MHA_ALIGN_OFFSET, cases[3].offset = 300;
  cases[3].left = 70, cases[3].right = 70;
  cases[4] = cases[3];
  cases[4].softcap = 50.0f, cases[4].alibi = 1;
  for (size_t n = 0; n < COUNT(cases); n++) {
    explicit_case* x = &cases[n];
    x->additive = ADDITIVE_FULL;
    variant_problem vp;
    build_explicit(t, x, &vp);
    attention_problem* p = &vp.p;
    /* the full mask is [B, H, Tq, Tk] contiguous; visibility without it */
    const float* add = p->oracle.additive;
    p->oracle.additive = NULL;
    long hidden = 0;
    for (int64_t b = 0; b < x->B; b++) {
      for (int64_t h = 0; h < x->H; h++) {
        for (int64_t i = 0; i < x->Tq; i++) {
          for (int64_t j = 0; j < x->Tk; j++) {
            float* e = &p->additive[((b * x->H + h) * x->Tq + i) * x->Tk + j];
            if (oracle_key_visible(&p->oracle, b, h, i, j)) {
              if (*e == -INFINITY) *e = 0.5f; /* no -inf: every entry is one way or the other */
              continue;
            }
            *e = (j % 2) ? NAN : INFINITY;
            hidden++;
          }
        }
      }
    }
    p->oracle.additive = add;
    describe_explicit(t, x, "NaN/+inf mask on hidden keys", MHA_ISA_DEFAULT, 0);
    tester_check(t, hidden > 0, "no hidden key");
    run_explicit(t, isas, x, &vp, "NaN/+inf mask on hidden keys");
    variant_problem_free(&vp);
  }
}

/* Extreme positions: offsets ±(2^60 − 1) (the documented limit), windows of
 * INT64_MAX on either side, which must clamp rather than overflow; with
 * causal, either every key or no key is visible. */
static void test_extreme_positions(tester* t, const isa_list* isas) {
  const int64_t big = ((int64_t)1 << 60) - 1;
  explicit_case cases[6];
  cases[0] = explicit_base(1, 2, 2, 7, 65, 8, 8);
  cases[0].causal = 1, cases[0].align = MHA_ALIGN_OFFSET, cases[0].offset = big; /* all visible */
  cases[1] = cases[0];
  cases[1].offset = -big; /* none visible */
  cases[1].sinks = SK_RANDOM;
  cases[2] = explicit_base(2, 4, 2, 65, 130, 7, 5);
  cases[2].window = 1, cases[2].left = INT64_MAX, cases[2].right = INT64_MAX;
  cases[2].align = MHA_ALIGN_OFFSET, cases[2].offset = -big;
  cases[3] = cases[2];
  cases[3].offset = big, cases[3].right = 0; /* left only: all visible */
  cases[4] = cases[2];
  cases[4].offset = big, cases[4].left = 0; /* right only: none visible */
  cases[5] = explicit_base(1, 8, 1, 1, 600, 9, 9); /* decode */
  cases[5].window = 1, cases[5].left = INT64_MAX, cases[5].right = 0;
  cases[5].align = MHA_ALIGN_OFFSET, cases[5].offset = big, cases[5].softcap = 5.0f;
  for (size_t n = 0; n < COUNT(cases); n++) {
    variant_problem vp;
    build_explicit(t, &cases[n], &vp);
    run_explicit(t, isas, &cases[n], &vp, "extreme positions");
    variant_problem_free(&vp);
  }
}

/* The soft-cap bounds the logits before anything overflows: with scale
 * 3e38 the scaled products overflow float (a NaN row without a cap, mha.h)
 * but cap·tanh(s/cap) is ±cap, as in exact arithmetic. With q = 2 and k =
 * ±1 the logits are +cap on odd keys and −cap on even ones: the oracle's
 * answer, within a bound derived for saturated logits (tanh' = 0 there, so
 * only the rounding of ±cap counts: e_s = 8·eps·cap, r = expm1(2·e_s) +
 * 2·(Tk + 5)·eps on every probability). Prefill and decode. */
static void test_softcap_saturation(tester* t, const isa_list* isas) {
  const int64_t shapes[][2] = {{5, 130}, {1, 600}};
  for (size_t n = 0; n < COUNT(shapes); n++) {
    explicit_case x = explicit_base(1, 2, 1, shapes[n][0], shapes[n][1], 1, 3);
    x.softcap = 10.0f;
    x.sinks = SK_RANDOM;
    variant_problem vp;
    build_explicit(t, &x, &vp);
    attention_problem* p = &vp.p;
    for (int64_t h = 0; h < x.H; h++) {
      for (int64_t i = 0; i < x.Tq; i++) p->q[h * p->desc.q.head + i] = 2.0f, p->qd[h * x.Tq + i] = 2.0;
    }
    for (int64_t j = 0; j < x.Tk; j++) p->k[j] = (j % 2) ? 1.0f : -1.0f, p->kd[j] = (j % 2) ? 1.0 : -1.0;
    p->desc.scale = 3e38f;
    p->oracle.scale = 3e38;
    expected e = expect(&vp);
    const double eps = 0x1.0p-23, cap = (double)x.softcap;
    const double e_s = 8.0 * eps * (cap + 3.0); /* the sinks are in [-3, 3] */
    const double r = expm1(2.0 * e_s) + 2.0 * (double)(x.Tk + 5) * eps;
    for (size_t k = 0; k < vp.n_out; k++) e.out_tol[k] = 1.0 * r + 1e-30; /* |v| < 1 */
    for (size_t k = 0; k < vp.n_w; k++) e.w_tol[k] = e.w_tol[k] > 0.0 ? fabs(e.w[k]) * r + 1e-30 : 0.0;
    for (size_t k = 0; k < vp.n_lse; k++) e.lse_tol[k] = e_s + r + 2.0 * eps * (fabs(e.lse[k]) + 8.0);
    float* got = tester_alloc(vp.n_out * sizeof(float));
    for (int k = 0; k < isas->count; k++) {
      const mha_isa isa = isas->isa[k];
      describe_explicit(t, &x, "soft-cap saturation, scale 3e38", isa, 2);
      attention_problem_poison(p);
      tester_poison(vp.lse, vp.n_lse);
      p->desc.isa = isa;
      p->desc.num_threads = 2;
      const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "returned %s", mha_status_string(st))) continue;
      attention_problem_gather_out(p, got);
      check_close(t, isa, "out", vp.n_out, got, e.out, e.out_tol);
      check_close(t, isa, "weights", vp.n_w, p->weights, e.w, e.w_tol);
      check_close(t, isa, "lse", vp.n_lse, vp.lse, e.lse, e.lse_tol);
    }
    free(got);
    variant_expected_free(&e);
    variant_problem_free(&vp);
  }
}

/* Decode with many key ranges and everything on at once; logits near 95. */
static void test_decode_many_ranges(tester* t, const isa_list* isas) {
  explicit_case cases[4];
  cases[0] = explicit_base(2, 8, 1, 1, 2049, 16, 9);
  cases[0].causal = 1, cases[0].kv_len = 1, cases[0].align = MHA_ALIGN_KV_END;
  cases[0].window = 1, cases[0].left = 700, cases[0].right = 0;
  cases[0].alibi = 1, cases[0].softcap = 50.0f, cases[0].sinks = SK_RANDOM;
  cases[1] = explicit_base(1, 4, 4, 2, 3000, 8, 5);
  cases[1].window = 1, cases[1].left = 129, cases[1].right = 129;
  cases[1].align = MHA_ALIGN_OFFSET, cases[1].offset = 1500, cases[1].sinks = SK_LARGE;
  cases[2] = explicit_base(1, 2, 2, 1, 4097, 5, 3);
  cases[2].additive = ADDITIVE_FULL, cases[2].alibi = 1, cases[2].sinks = SK_SOME_NEG_INF;
  cases[3] = explicit_base(3, 4, 2, 5, 1500, 7, 7);
  cases[3].causal = 1, cases[3].softcap = 5.0f, cases[3].kv_len = 1;
  for (size_t n = 0; n < COUNT(cases); n++) {
    variant_problem vp;
    build_explicit(t, &cases[n], &vp);
    run_explicit(t, isas, &cases[n], &vp, "decode, many ranges");
    variant_problem_free(&vp);
  }
}

int main(void) {
  tester t;
  tester_init(&t, "variants-test");
  const isa_list isas = tester_available_isas(&t);
  build_windows(&isas);

  test_alibi_closed_form(&t, &isas);
  test_sink_only_rows(&t, &isas);
  test_nan_in_hidden_rows(&t, &isas);
  test_mask_values_on_hidden_keys(&t, &isas);
  test_extreme_positions(&t, &isas);
  test_decode_many_ranges(&t, &isas);
  test_softcap_saturation(&t, &isas);
  test_sweep(&t, &isas);

  tester_context(&t, "sweep statistics");
  tester_check(&t, g_stats.empty_rows > 0 && g_stats.sink_only_rows > 0 && g_stats.nan_rows > 0 &&
                       g_stats.decode_cases > 0 && g_stats.batch_checks > 0,
               "the sweep missed a kind of row or path (see the counts)");
  printf("variants-test: %ld sweep cases, %ld calls checked (%d ISAs x %zu thread counts); "
         "%ld rows: %ld empty, %ld sink-only, %ld NaN; %ld decode cases; %ld batch entries "
         "run alone\n",
         g_stats.cases, g_stats.runs, isas.count, COUNT(kThreads), g_stats.rows,
         g_stats.empty_rows, g_stats.sink_only_rows, g_stats.nan_rows, g_stats.decode_cases,
         g_stats.batch_checks);
  for (int n = 0; n < isas.count; n++) {
    printf("variants-test: %-8s worst error/tolerance %.3g\n", mha_isa_name(isas.isa[n]),
           g_stats.worst[isas.isa[n]]);
  }
  return tester_finish(&t);
}
