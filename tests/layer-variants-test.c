/*
 * The attention variants through the layer: mha_layer_forward passes
 * args->mask to the core, so the window, the alignment, ALiBi, the soft-cap
 * and the sinks apply there too. Against the layer oracle
 * (oracle_layer_forward_variants) with the derived bounds of
 * variant-tolerance.c, on every ISA and at 1 and 3 threads (the same bits):
 * self-attention prefill with causal + window + ALiBi + soft-cap + sinks, and
 * cross-attention with GQA, kv_len and the kv-end alignment (a decode-like
 * Tq of 2 against 300 keys, the split path). Then the layer refuses bad
 * variant values (INVALID_ARGUMENT) and an out that overlaps the slopes or
 * the sinks (INVALID_STRIDE: they are inputs of the call, mha.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer-problem.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "variant-tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct variant_layer_case {
  const char* name;
  layer_case c;
  mha_align align;
  int64_t offset;
  int window;
  int64_t left, right;
  int alibi, sinks;
  float softcap;
} variant_layer_case;

static double g_worst[MHA_ISA_COUNT];

static void check_same_bits(tester* t, const char* what, const float* a, const float* b, size_t n) {
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && diff++ == 0) first = i;
  }
  tester_check(t, diff == 0, "%s: %zu of %zu values differ; first at [%zu]", what, diff, n, first);
}

static void run_case(tester* t, const isa_list* isas, const variant_layer_case* vc) {
  layer_problem p;
  layer_problem_build(t, &vc->c, &p);
  const int64_t H = p.c.H;
  float* slopes = tester_alloc((size_t)H * sizeof(float));
  float* sinks = tester_alloc((size_t)H * sizeof(float));
  for (int64_t h = 0; h < H; h++) {
    slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)H);
    sinks[h] = (float)tester_uniform(t, -2.0, 2.0);
  }
  if (H > 1) sinks[1] = -INFINITY;
  mha_mask* m = &p.args.mask;
  m->align = vc->align, m->offset = vc->offset;
  m->window = vc->window, m->window_left = vc->left, m->window_right = vc->right;
  m->alibi_slopes = vc->alibi ? slopes : NULL;
  m->softcap = vc->softcap;
  m->sinks = vc->sinks ? sinks : NULL;
  oracle_variants ov;
  memset(&ov, 0, sizeof ov);
  ov.align = (int)vc->align, ov.offset = vc->offset;
  ov.window = vc->window, ov.window_left = vc->left, ov.window_right = vc->right;
  ov.alibi_slopes = m->alibi_slopes;
  ov.softcap = (double)vc->softcap;
  ov.sinks = m->sinks;

  /* the oracle, with the layer's intermediates for the bounds */
  double* want = tester_alloc(p.out_size * sizeof(double));
  double* tol = tester_alloc(p.out_size * sizeof(double));
  double* want_w = p.weights != NULL ? tester_alloc(p.weights_size * sizeof(double)) : NULL;
  double* tol_w = p.weights != NULL ? tester_alloc(p.weights_size * sizeof(double)) : NULL;
  const double scale = p.c.scale != 0.0f ? (double)p.c.scale : 1.0 / sqrt((double)p.D);
  const mha_strides s = m->additive_strides;
  oracle_layer_trace trace;
  oracle_layer_forward_variants(&p.oracle, p.c.B, p.c.Tq, p.Tk, p.x_q, p.x_k, p.x_v, scale,
                                p.c.causal, p.kv_len, p.additive,
                                (oracle_strides){s.batch, s.head, s.row}, &ov, want, want_w, &trace);
  variant_tolerance_layer(&p.oracle, &trace, want_w, tol, tol_w);
  oracle_layer_trace_free(&trace);

  float* first = tester_alloc(p.out_size * sizeof(float));
  float* first_w = p.weights != NULL ? tester_alloc(p.weights_size * sizeof(float)) : NULL;
  for (int n = 0; n < isas->count; n++) {
    const mha_isa isa = isas->isa[n];
    p.desc.isa = isa;
    mha_layer* plan = NULL;
    char label[160];
    snprintf(label, sizeof label, "%s, isa=%s, align=%d offset=%lld window=%d (%lld,%lld) alibi=%d "
             "softcap=%g sinks=%d", vc->name, mha_isa_name(isa), (int)vc->align,
             (long long)vc->offset, vc->window, (long long)vc->left, (long long)vc->right,
             vc->alibi, (double)vc->softcap, vc->sinks);
    layer_case_describe(t, &p.c, label);
    mha_status st = mha_layer_create(&p.desc, &plan);
    if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_create: %s", mha_last_error())) continue;
    for (int threads = 1; threads <= 3; threads += 2) {
      p.args.num_threads = threads;
      tester_poison(p.out, p.out_size);
      if (p.weights != NULL) tester_poison(p.weights, p.weights_size);
      st = mha_layer_forward(plan, &p.args);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_forward (%d threads): %s: %s", threads,
                        mha_status_string(st), mha_last_error())) {
        continue;
      }
      if (threads == 1) {
        const double before = t->worst_ratio;
        t->worst_ratio = 0.0;
        tester_check_close(t, "layer out", p.out_size, p.out, want, tol);
        if (p.weights != NULL) tester_check_close(t, "layer weights", p.weights_size, p.weights, want_w, tol_w);
        if (t->worst_ratio > g_worst[isa]) g_worst[isa] = t->worst_ratio;
        if (before > t->worst_ratio) t->worst_ratio = before;
        memcpy(first, p.out, p.out_size * sizeof(float));
        if (first_w != NULL) memcpy(first_w, p.weights, p.weights_size * sizeof(float));
      } else {
        check_same_bits(t, "layer out, 3 threads vs 1", p.out, first, p.out_size);
        if (first_w != NULL) check_same_bits(t, "layer weights, 3 threads vs 1", p.weights, first_w, p.weights_size);
      }
    }
    mha_layer_destroy(plan);
  }
  free(first);
  free(first_w);
  free(want);
  free(tol);
  free(want_w);
  free(tol_w);
  free(slopes);
  free(sinks);
  layer_problem_free(&p);
}

static void test_cases(tester* t, const isa_list* isas) {
  variant_layer_case cases[3];
  memset(cases, 0, sizeof cases);
  /* self-attention prefill, everything on */
  cases[0].name = "self-attention: causal, window (20,0), ALiBi, soft-cap 5, sinks";
  cases[0].c.B = 2, cases[0].c.Tq = 70, cases[0].c.d_model = 48, cases[0].c.H = 4;
  cases[0].c.Hkv = 2, cases[0].c.layout = MHA_WEIGHTS_OUT_IN, cases[0].c.biases = 1;
  cases[0].c.causal = 1, cases[0].c.weights = 1;
  cases[0].window = 1, cases[0].left = 20, cases[0].alibi = 1, cases[0].softcap = 5.0f;
  cases[0].sinks = 1;
  /* cross-attention, few query rows against many keys: the split path */
  cases[1].name = "cross-attention: kv_len, kv-end, causal, window (64,0), ALiBi, soft-cap 50, sinks";
  cases[1].c.B = 3, cases[1].c.Tq = 2, cases[1].c.Tk = 300, cases[1].c.d_model = 32;
  cases[1].c.d_kv = 24, cases[1].c.H = 8, cases[1].c.Hkv = 2, cases[1].c.D = 7, cases[1].c.Dv = 5;
  cases[1].c.cross = 1, cases[1].c.separate_v = 1, cases[1].c.kv_len = 1, cases[1].c.causal = 1;
  cases[1].c.weights = 1;
  cases[1].align = MHA_ALIGN_KV_END, cases[1].window = 1, cases[1].left = 64;
  cases[1].alibi = 1, cases[1].softcap = 50.0f, cases[1].sinks = 1;
  /* a chunk of queries at an offset (chunked prefill), additive mask, w_o NULL */
  cases[2].name = "offset chunk: causal, window (5,2), additive, w_o NULL";
  cases[2].c.B = 2, cases[2].c.Tq = 9, cases[2].c.Tk = 40, cases[2].c.d_model = 24;
  cases[2].c.H = 3, cases[2].c.cross = 1, cases[2].c.causal = 1, cases[2].c.additive = 1;
  cases[2].c.no_w_o = 1;
  cases[2].align = MHA_ALIGN_OFFSET, cases[2].offset = 25, cases[2].window = 1;
  cases[2].left = 5, cases[2].right = 2, cases[2].sinks = 1;
  for (size_t n = 0; n < COUNT(cases); n++) run_case(t, isas, &cases[n]);
}

/* Bad variant values through the layer, and an out that overlaps the slopes
 * or the sinks. */
static void test_errors(tester* t) {
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 2, c.Tq = 5, c.d_model = 16, c.H = 2;
  layer_problem p;
  layer_problem_build(t, &c, &p);
  mha_layer* plan = NULL;
  if (!tester_check(t, mha_layer_create(&p.desc, &plan) == MHA_STATUS_SUCCESS, "create: %s",
                    mha_last_error())) {
    layer_problem_free(&p);
    return;
  }
  float* before = tester_alloc(p.out_size * sizeof(float));
  tester_fill(t, before, p.out_size);
  struct {
    const char* what;
    const char* arg;
    int field;
  } bad[] = {
      {"mask.align = 9", "align", 0},        {"mask.offset = 2^60", "offset", 1},
      {"mask.window = 2", "window", 2},      {"mask.window_left = -1", "window_left", 3},
      {"mask.softcap = NaN", "softcap", 4},  {"mask.softcap = -2", "softcap", 5},
  };
  for (size_t i = 0; i < COUNT(bad); i++) {
    mha_layer_args a = p.args;
    switch (bad[i].field) {
      case 0: a.mask.align = (mha_align)9; break;
      case 1: a.mask.align = MHA_ALIGN_OFFSET, a.mask.offset = (int64_t)1 << 60; break;
      case 2: a.mask.window = 2; break;
      case 3: a.mask.window = 1, a.mask.window_left = -1; break;
      case 4: a.mask.softcap = NAN; break;
      default: a.mask.softcap = -2.0f; break;
    }
    tester_context(t, "layer error: %s", bad[i].what);
    memcpy(p.out, before, p.out_size * sizeof(float));
    tester_stale_error();
    tester_check_failure(t, bad[i].what, mha_layer_forward(plan, &a), MHA_STATUS_INVALID_ARGUMENT,
                         bad[i].arg);
    tester_check(t, memcmp(p.out, before, p.out_size * sizeof(float)) == 0, "%s: out was written",
                 bad[i].what);
    size_t bytes = 0;
    tester_stale_error();
    tester_check_failure(t, "layer workspace query", mha_layer_workspace_size(plan, &a, &bytes),
                         MHA_STATUS_INVALID_ARGUMENT, bad[i].arg);
  }
  /* the slopes and the sinks are inputs: out must not overlap them */
  for (int which = 0; which < 2; which++) {
    mha_layer_args a = p.args;
    if (which == 0) a.mask.alibi_slopes = p.out + 3;
    else a.mask.sinks = p.out + p.out_size - 2;
    const char* what = which == 0 ? "layer out overlapping mask.alibi_slopes"
                                  : "layer out overlapping mask.sinks";
    tester_context(t, "layer error: %s", what);
    memcpy(p.out, before, p.out_size * sizeof(float));
    tester_stale_error();
    tester_check_failure(t, what, mha_layer_forward(plan, &a), MHA_STATUS_INVALID_STRIDE,
                         which == 0 ? "alibi_slopes" : "sinks");
    tester_check(t, memcmp(p.out, before, p.out_size * sizeof(float)) == 0, "%s: out was written",
                 what);
  }
  free(before);
  mha_layer_destroy(plan);
  layer_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-variants-test");
  const isa_list isas = tester_available_isas(&t);
  test_cases(&t, &isas);
  test_errors(&t);
  for (int n = 0; n < isas.count; n++) {
    printf("layer-variants-test: %-8s worst error/tolerance %.3g\n", mha_isa_name(isas.isa[n]),
           g_worst[isas.isa[n]]);
  }
  return tester_finish(&t);
}
