/*
 * The full layer (mha_layer_create / mha_layer_forward / mha_layer_forward_once)
 * against the naive layer oracle, on every ISA this CPU runs: self- and
 * cross-attention, separate x_v, both weight layouts, PyTorch's packed
 * in_proj_weight, biases, no output projection, GQA and MQA, explicit D and
 * Dv, masks, weights, plan reuse across shapes and after the caller's
 * weights are gone.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer-problem.h"
#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The oracle's answer for a problem, kept beside it. */
typedef struct expectation {
  double *want, *tol, *want_w, *tol_w;
} expectation;

static expectation expect(const layer_problem* p) {
  expectation e;
  e.want = tester_alloc(p->out_size * sizeof(double));
  e.tol = tester_alloc(p->out_size * sizeof(double));
  e.want_w = p->weights != NULL ? tester_alloc(p->weights_size * sizeof(double)) : NULL;
  e.tol_w = p->weights != NULL ? tester_alloc(p->weights_size * sizeof(double)) : NULL;
  layer_problem_expect(p, e.want, e.tol, e.want_w, e.tol_w);
  return e;
}

static void expectation_free(expectation* e) {
  free(e->want);
  free(e->tol);
  free(e->want_w);
  free(e->tol_w);
}

/* Poisons the outputs, runs a forward with plan (or forward_once when plan
 * is NULL) and compares. */
static void forward_and_check(tester* t, const mha_layer* plan, layer_problem* p,
                              const expectation* e) {
  tester_poison(p->out, p->out_size);
  if (p->weights != NULL) tester_poison(p->weights, p->weights_size);
  const mha_status st = plan != NULL ? mha_layer_forward(plan, &p->args)
                                     : mha_layer_forward_once(&p->desc, &p->args);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "%s returned %s: %s",
                    plan != NULL ? "mha_layer_forward" : "mha_layer_forward_once",
                    mha_status_string(st), mha_last_error())) {
    return;
  }
  tester_check_close(t, "out", p->out_size, p->out, e->want, e->tol);
  if (p->weights != NULL) {
    tester_check_close(t, "weights", p->weights_size, p->weights, e->want_w, e->tol_w);
  }
}

static mha_layer* create_checked(tester* t, const layer_problem* p) {
  mha_layer* plan = NULL;
  const mha_status st = mha_layer_create(&p->desc, &plan);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS && plan != NULL,
                    "mha_layer_create returned %s: %s", mha_status_string(st),
                    mha_last_error())) {
    return NULL;
  }
  const int64_t width = mha_layer_output_width(plan);
  tester_check(t, width == p->width, "mha_layer_output_width = %lld, want %lld",
               (long long)width, (long long)p->width);
  return plan;
}

/* One case on every ISA (a plan per ISA), then forward_once. */
static void run_layer_case(tester* t, const isa_list* isas, const layer_case* c,
                           const char* what) {
  layer_problem p;
  layer_problem_build(t, c, &p);
  expectation e = expect(&p);
  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    char label[96];
    snprintf(label, sizeof label, "%s, isa=%s", what, mha_isa_name(isas->isa[i]));
    layer_case_describe(t, c, label);
    mha_layer* plan = create_checked(t, &p);
    if (plan == NULL) continue;
    forward_and_check(t, plan, &p, &e);
    mha_layer_destroy(plan);
    if (i == isas->count - 1) {
      snprintf(label, sizeof label, "%s, forward_once, isa=%s", what,
               mha_isa_name(isas->isa[i]));
      layer_case_describe(t, c, label);
      forward_and_check(t, NULL, &p, &e);
    }
  }
  expectation_free(&e);
  layer_problem_free(&p);
}

static layer_case base_case(void) {
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 2;
  c.Tq = 9;
  c.Tk = 0; /* ignored for self-attention */
  c.d_model = 32;
  c.H = 4;
  c.layout = MHA_WEIGHTS_IN_OUT;
  c.threads = 2;
  return c;
}

static void test_layer_cases(tester* t, const isa_list* isas) {
  layer_case c = base_case();
  run_layer_case(t, isas, &c, "self-attention, IN_OUT");

  c = base_case();
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.biases = 1;
  c.Tk = 999; /* ignored for self-attention */
  c.threads = 3;
  run_layer_case(t, isas, &c, "self-attention, OUT_IN (nn.Linear), all biases");

  c = base_case();
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.packed = 1;
  c.biases = 1;
  run_layer_case(t, isas, &c, "packed in_proj_weight + in_proj_bias (nn.MultiheadAttention)");

  c = base_case();
  c.packed = 1;
  c.layout = MHA_WEIGHTS_IN_OUT; /* in_proj is always OUT_IN; w_o follows layout */
  c.threads = 1;
  run_layer_case(t, isas, &c, "packed in_proj_weight, no bias, w_o IN_OUT");

  c = base_case();
  c.cross = 1;
  c.Tq = 5;
  c.Tk = 13;
  c.d_kv = 24;
  run_layer_case(t, isas, &c, "cross-attention, d_kv != d_model, x_v NULL");

  c = base_case();
  c.cross = 1;
  c.separate_v = 1;
  c.Tq = 17;
  c.Tk = 3;
  c.d_kv = 40;
  c.biases = 1;
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.threads = 7;
  run_layer_case(t, isas, &c, "cross-attention, separate x_v, OUT_IN, biases");

  c = base_case();
  c.no_w_o = 1;
  c.d_model = 20;
  c.H = 3;
  c.D = 6;
  c.Dv = 10;
  run_layer_case(t, isas, &c, "w_o NULL (concatenated heads), explicit D and Dv");

  c = base_case();
  c.d_model = 20;
  c.H = 3;
  c.D = 6;
  c.Dv = 10; /* H·Dv = 30 != d_model: w_o is [20, 30] in OUT_IN */
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.biases = 1;
  run_layer_case(t, isas, &c, "OUT_IN, explicit D and Dv, H*Dv != d_model, w_o");

  c = base_case();
  c.d_model = 24;
  c.H = 4;
  c.Hkv = 2;
  c.D = 5;
  c.Dv = 3;
  c.cross = 1;
  c.separate_v = 1;
  c.d_kv = 7;
  c.Tk = 10;
  c.layout = MHA_WEIGHTS_OUT_IN;
  run_layer_case(t, isas, &c, "OUT_IN, GQA, cross, d_kv 7, D 5, Dv 3");

  c = base_case();
  c.no_w_o = 1;
  c.biases = 1;
  c.cross = 1;
  c.separate_v = 1;
  c.Tk = 7;
  c.layout = MHA_WEIGHTS_OUT_IN;
  run_layer_case(t, isas, &c, "w_o NULL, cross, OUT_IN, biases");

  c = base_case();
  c.d_model = 64;
  c.H = 8;
  c.Hkv = 2;
  c.biases = 1;
  run_layer_case(t, isas, &c, "grouped-query (H 8, Hkv 2)");

  c = base_case();
  c.d_model = 48;
  c.H = 6;
  c.Hkv = 1;
  c.cross = 1;
  c.Tk = 20;
  c.d_kv = 16;
  c.D = 5;
  c.Dv = 7;
  run_layer_case(t, isas, &c, "multi-query (Hkv 1), cross, explicit D, Dv");

  c = base_case();
  c.causal = 1;
  c.weights = 1;
  run_layer_case(t, isas, &c, "causal mask, weights");

  c = base_case();
  c.B = 3;
  c.kv_len = 1;
  c.weights = 1;
  run_layer_case(t, isas, &c, "kv_len mask (one batch entry empty), weights");

  c = base_case();
  c.additive = 1;
  c.weights = 1;
  c.scale = 0.3f;
  run_layer_case(t, isas, &c, "additive mask with -inf, explicit scale, weights");

  c = base_case();
  c.B = 3;
  c.cross = 1;
  c.Tq = 4;
  c.Tk = 11;
  c.causal = 1;
  c.kv_len = 1;
  c.additive = 1;
  c.weights = 1;
  c.Hkv = 2;
  c.biases = 1;
  run_layer_case(t, isas, &c, "cross, all masks (causal bottom-right), GQA, weights");

  c = base_case();
  c.B = 1;
  c.Tq = 65;
  c.d_model = 128;
  c.H = 2; /* D = 64 */
  c.biases = 1;
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.causal = 1;
  run_layer_case(t, isas, &c, "D 64 (d_model 128, H 2), Tq 65");

  c = base_case();
  c.B = 1;
  c.Tq = 1;
  c.d_model = 1;
  c.H = 1;
  run_layer_case(t, isas, &c, "a single token, d_model 1");

  /* projections larger than every cache block of every ISA (MC <= 192,
   * KC = 256, NC <= 384): rows, inner size and columns all cross a block */
  c = base_case();
  c.B = 2;
  c.Tq = 100;
  c.d_model = 520;
  c.H = 8; /* D = 65 */
  c.causal = 1;
  c.threads = 3;
  run_layer_case(t, isas, &c, "projections past the cache blocks, IN_OUT, self");
  c.biases = 1;
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.cross = 1;
  c.separate_v = 1;
  c.Tq = 70;
  c.Tk = 130;
  c.d_kv = 300;
  c.Hkv = 2;
  c.threads = 2;
  run_layer_case(t, isas, &c, "projections past the cache blocks, OUT_IN, cross");
}

/* Random layers: every option drawn independently (within what the API
 * allows), small sizes. */
static void test_random_layers(tester* t, const isa_list* isas) {
  static const int64_t kModel[] = {1, 8, 12, 20, 32, 64, 96};
  static const int64_t kRows[] = {1, 2, 7, 17, 64, 65};
  static const int64_t kWidths[] = {1, 3, 8, 16, 33};
  for (int n = 0; n < 40; n++) {
    layer_case c;
    memset(&c, 0, sizeof c);
    c.d_model = kModel[tester_below(t, (int64_t)COUNT(kModel))];
    /* H: a divisor of d_model (D derived) or anything with D explicit */
    int64_t divisors[16], nd = 0;
    for (int64_t h = 1; h <= c.d_model && nd < 16; h++) {
      if (c.d_model % h == 0) divisors[nd++] = h;
    }
    const int explicit_width = (int)tester_below(t, 3) == 0;
    c.H = explicit_width ? 1 + tester_below(t, 12) : divisors[tester_below(t, nd)];
    if (explicit_width) {
      c.D = kWidths[tester_below(t, (int64_t)COUNT(kWidths))];
      c.Dv = tester_below(t, 2) ? kWidths[tester_below(t, (int64_t)COUNT(kWidths))] : 0;
    }
    int64_t kv_divisors[16], nk = 0;
    for (int64_t g = 1; g <= c.H && nk < 16; g++) {
      if (c.H % g == 0) kv_divisors[nk++] = g;
    }
    c.Hkv = tester_below(t, 2) ? kv_divisors[tester_below(t, nk)] : 0;
    c.layout = tester_below(t, 2) ? MHA_WEIGHTS_OUT_IN : MHA_WEIGHTS_IN_OUT;
    c.cross = (int)tester_below(t, 2);
    c.separate_v = c.cross && tester_below(t, 2);
    c.d_kv = c.cross && tester_below(t, 2) ? kModel[tester_below(t, (int64_t)COUNT(kModel))] : 0;
    c.packed = !explicit_width && (c.Hkv == 0 || c.Hkv == c.H) && c.d_kv == 0 && tester_below(t, 3) == 0;
    c.biases = (int)tester_below(t, 2);
    c.no_w_o = tester_below(t, 4) == 0;
    c.B = 1 + tester_below(t, 3);
    c.Tq = kRows[tester_below(t, (int64_t)COUNT(kRows))];
    c.Tk = kRows[tester_below(t, (int64_t)COUNT(kRows))];
    c.causal = (int)tester_below(t, 2);
    c.kv_len = tester_below(t, 3) == 0;
    c.additive = tester_below(t, 3) == 0;
    c.weights = (int)tester_below(t, 2);
    c.threads = (int)(1 + tester_below(t, 4));
    c.scale = tester_below(t, 3) == 0 ? 0.2f : 0.0f;
    run_layer_case(t, isas, &c, "random layer");
  }
}

/* One plan, many forwards with different B and Tq; each checked, and the
 * first one run again must give the same bits (the plan is read-only). */
static void test_plan_reuse(tester* t, const isa_list* isas) {
  layer_case c = base_case();
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.biases = 1;
  c.Hkv = 2;
  const int64_t shapes[][2] = {{1, 1}, {3, 17}, {2, 64}, {1, 65}, {4, 2}};
  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    layer_problem owner; /* holds the weights the plan was made from */
    c.B = shapes[0][0];
    c.Tq = shapes[0][1];
    layer_problem_build(t, &c, &owner);
    layer_case_describe(t, &c, "plan reuse: create");
    mha_layer* plan = create_checked(t, &owner);
    if (plan == NULL) {
      layer_problem_free(&owner);
      continue;
    }
    expectation first = expect(&owner);
    forward_and_check(t, plan, &owner, &first);
    float* first_out = tester_alloc(owner.out_size * sizeof(float));
    memcpy(first_out, owner.out, owner.out_size * sizeof(float));
    for (size_t s = 1; s < COUNT(shapes); s++) {
      layer_case cs = c;
      cs.B = shapes[s][0];
      cs.Tq = shapes[s][1];
      cs.threads = 1 + (int)s;
      layer_problem p;
      layer_problem_build(t, &cs, &p);
      p.oracle = owner.oracle; /* the plan's weights */
      char label[64];
      snprintf(label, sizeof label, "plan reuse, isa=%s", mha_isa_name(isas->isa[i]));
      layer_case_describe(t, &cs, label);
      expectation e = expect(&p);
      forward_and_check(t, plan, &p, &e);
      expectation_free(&e);
      layer_problem_free(&p);
    }
    layer_case_describe(t, &c, "plan reuse: the first shape again");
    forward_and_check(t, plan, &owner, &first);
    tester_check(t, memcmp(first_out, owner.out, owner.out_size * sizeof(float)) == 0,
                 "a reused plan gives different bits for the same input");
    free(first_out);
    expectation_free(&first);
    mha_layer_destroy(plan);
    layer_problem_free(&owner);
  }
}

/* The plan keeps packed copies: the caller's weights may be overwritten or
 * freed after create. A plan made under one ISA still answers correctly
 * after mha_set_isa picks another. */
static void test_plan_owns_weights(tester* t, const isa_list* isas) {
  layer_case c = base_case();
  c.biases = 1;
  c.cross = 1;
  c.separate_v = 1;
  c.Tk = 6;
  c.d_kv = 12;
  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    layer_problem p;
    layer_problem_build(t, &c, &p);
    expectation e = expect(&p);
    char label[96];
    snprintf(label, sizeof label, "weights overwritten after create, isa=%s",
             mha_isa_name(isas->isa[i]));
    layer_case_describe(t, &c, label);
    mha_layer* plan = create_checked(t, &p);
    if (plan == NULL) {
      expectation_free(&e);
      layer_problem_free(&p);
      continue;
    }
    const int64_t dm = c.d_model, H = c.H, D = p.D, Dv = p.Dv, dkv = p.d_kv;
    tester_poison(p.w_q, (size_t)(dm * H * D));
    tester_poison(p.w_k, (size_t)(dkv * H * D));
    tester_poison(p.w_v, (size_t)(dkv * H * Dv));
    tester_poison(p.w_o, (size_t)(H * Dv * dm));
    tester_poison(p.b_q, (size_t)(H * D));
    tester_poison(p.b_o, (size_t)dm);
    forward_and_check(t, plan, &p, &e); /* e was computed before the poison */
    const mha_isa other = isas->isa[(i + 1) % isas->count];
    if (other != isas->isa[i] && tester_set_isa(t, other)) {
      snprintf(label, sizeof label, "plan from isa=%s run under isa=%s",
               mha_isa_name(isas->isa[i]), mha_isa_name(other));
      layer_case_describe(t, &c, label);
      forward_and_check(t, plan, &p, &e);
    }
    mha_layer_destroy(plan);
    expectation_free(&e);
    layer_problem_free(&p);
  }
  mha_layer_destroy(NULL); /* allowed */
}

int main(void) {
  tester t;
  tester_init(&t, "layer-test");
  const isa_list isas = tester_available_isas(&t);
  test_layer_cases(&t, &isas);
  test_random_layers(&t, &isas);
  test_plan_reuse(&t, &isas);
  test_plan_owns_weights(&t, &isas);
  return tester_finish(&t);
}
