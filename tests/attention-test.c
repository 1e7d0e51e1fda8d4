/*
 * The attention core (mha_attention_f32) against the naive oracle, on every
 * ISA this CPU runs.
 *
 * The shape, mask, layout, thread and logit axes are not swept as a full
 * cartesian product (far too slow): every value of every axis is run in
 * several cases whose other axes are drawn at random (a cost cap keeps each
 * case small), then a bounded number of fully random cases follow. Targeted
 * tests cover what random draws would hit rarely: rows that the masks leave
 * empty, logits in [90, 100) and [-100, -90), NaN propagation, masks that
 * broadcast over rows, the stride helpers.
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

/* Cases above this many multiply-adds (B·H·Tq·Tk·(D + Dv)) are redrawn. */
#define COST_CAP 3.0e7
/* Cases per value of each axis, and fully random cases after those. */
#define CASES_PER_VALUE 3
#define RANDOM_CASES 500

static const int64_t kBatch[] = {1, 3};
static const int64_t kHeads[] = {1, 2, 12};
static const int64_t kRows[] = {1, 2, 7, 63, 64, 65, 127, 200};
static const int64_t kWidth[] = {1, 8, 64, 65, 128, 137};
static const int64_t kValueWidth[] = {0 /* = D */, 61, 1, 16};
static const int64_t kThreads[] = {1, 2, 3, 7};
static const float kScale[] = {0.0f, 0.37f, -0.5f};

/* Mask combinations: causal, kv_len, additive kind. */
typedef struct mask_combo {
  int causal, kv_len;
  additive_kind additive;
} mask_combo;

static const mask_combo kMasks[] = {
    {0, 0, ADDITIVE_NONE},      {1, 0, ADDITIVE_NONE},      {0, 1, ADDITIVE_NONE},
    {0, 0, ADDITIVE_BROADCAST}, {0, 0, ADDITIVE_FULL},      {0, 0, ADDITIVE_PADDED},
    {0, 0, ADDITIVE_PER_BATCH}, {1, 1, ADDITIVE_NONE},      {1, 0, ADDITIVE_FULL},
    {0, 1, ADDITIVE_BROADCAST}, {1, 1, ADDITIVE_PADDED},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef enum axis {
  AXIS_B, AXIS_H, AXIS_HKV, AXIS_TQ, AXIS_TK, AXIS_D, AXIS_DV, AXIS_MASK, AXIS_LAYOUT,
  AXIS_WEIGHTS, AXIS_THREADS, AXIS_SCALE, AXIS_LOGITS, AXIS_MINUS_INF, AXIS_NAN_Q, AXIS_COUNT
} axis;

static size_t axis_size(axis a) {
  switch (a) {
    case AXIS_B: return COUNT(kBatch);
    case AXIS_H: return COUNT(kHeads);
    case AXIS_HKV: return 3; /* H, a proper divisor, 1 */
    case AXIS_TQ:
    case AXIS_TK: return COUNT(kRows);
    case AXIS_D: return COUNT(kWidth);
    case AXIS_DV: return COUNT(kValueWidth);
    case AXIS_MASK: return COUNT(kMasks);
    case AXIS_LAYOUT: return LAYOUT_COUNT + 1; /* each layout for all four, or mixed */
    case AXIS_WEIGHTS: return 2;
    case AXIS_THREADS: return COUNT(kThreads);
    case AXIS_SCALE: return COUNT(kScale);
    case AXIS_LOGITS: return LOGITS_COUNT;
    case AXIS_MINUS_INF: return 3;
    case AXIS_NAN_Q: return 2;
    default: return 1;
  }
}

/* Kv heads for H by choice 0 (= H), 1 (a proper divisor, if any), 2 (= 1). */
static int64_t kv_heads(tester* t, int64_t H, size_t choice) {
  if (choice == 0) return H;
  if (choice == 2) return 1;
  int64_t divisors[16];
  size_t n = 0;
  for (int64_t d = 2; d < H && n < COUNT(divisors); d++) {
    if (H % d == 0) divisors[n++] = d;
  }
  return n == 0 ? 1 : divisors[tester_below(t, (int64_t)n)];
}

/* Index choices of every axis; fixed_axis keeps fixed_value. */
static void draw_choices(tester* t, size_t* choice, int fixed_axis, size_t fixed_value) {
  for (int a = 0; a < AXIS_COUNT; a++) {
    choice[a] = (size_t)tester_below(t, (int64_t)axis_size((axis)a));
  }
  /* the rare-event axes mostly take their plain value */
  if (tester_below(t, 3) != 0) choice[AXIS_LOGITS] = LOGITS_RANDOM;
  if (tester_below(t, 4) != 0) choice[AXIS_NAN_Q] = 0;
  if (fixed_axis >= 0) choice[fixed_axis] = fixed_value;
  /* NaN against -inf-hidden keys is its own test (test_nan_with_hidden_keys) */
  if (choice[AXIS_NAN_Q] && choice[AXIS_MINUS_INF]) {
    if (fixed_axis == AXIS_NAN_Q) choice[AXIS_MINUS_INF] = 0;
    else choice[AXIS_NAN_Q] = 0;
  }
}

static attention_case case_from_choices(tester* t, const size_t* choice) {
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = kBatch[choice[AXIS_B]];
  c.H = kHeads[choice[AXIS_H]];
  c.Hkv = kv_heads(t, c.H, choice[AXIS_HKV]);
  c.Tq = kRows[choice[AXIS_TQ]];
  c.Tk = kRows[choice[AXIS_TK]];
  c.D = kWidth[choice[AXIS_D]];
  c.Dv = kValueWidth[choice[AXIS_DV]] == 0 ? c.D : kValueWidth[choice[AXIS_DV]];
  const mask_combo m = kMasks[choice[AXIS_MASK]];
  c.causal = m.causal;
  c.kv_len = m.kv_len;
  c.additive = m.additive;
  c.minus_inf = (int)choice[AXIS_MINUS_INF];
  if (c.minus_inf > 0 && c.additive == ADDITIVE_NONE) c.additive = ADDITIVE_FULL;
  if (choice[AXIS_LAYOUT] < LAYOUT_COUNT) {
    c.layout_q = c.layout_k = c.layout_v = c.layout_out = (layout_kind)choice[AXIS_LAYOUT];
  } else {
    c.layout_q = (layout_kind)tester_below(t, LAYOUT_COUNT);
    c.layout_k = (layout_kind)tester_below(t, LAYOUT_COUNT);
    c.layout_v = (layout_kind)tester_below(t, LAYOUT_COUNT);
    c.layout_out = (layout_kind)tester_below(t, LAYOUT_COUNT);
  }
  c.weights = (int)choice[AXIS_WEIGHTS];
  c.threads = (int)kThreads[choice[AXIS_THREADS]];
  c.scale = kScale[choice[AXIS_SCALE]];
  c.logits = (logits_kind)choice[AXIS_LOGITS];
  c.nan_q = (int)choice[AXIS_NAN_Q];
  return c;
}

/* A random case under the cost cap, with one axis fixed (or none: -1). */
static attention_case draw_case(tester* t, int fixed_axis, size_t fixed_value) {
  size_t choice[AXIS_COUNT];
  attention_case c;
  do {
    draw_choices(t, choice, fixed_axis, fixed_value);
    c = case_from_choices(t, choice);
  } while (attention_case_cost(&c) > COST_CAP);
  return c;
}

/* Runs a built problem on every ISA and compares with the oracle. */
static void run_problem(tester* t, const isa_list* isas, attention_problem* p) {
  const attention_case* c = &p->c;
  const size_t n_out = (size_t)(c->B * c->H * c->Tq * c->Dv);
  const size_t n_w = (size_t)(c->B * c->H * c->Tq * c->Tk);
  double* want = tester_alloc(n_out * sizeof(double));
  double* tol = tester_alloc(n_out * sizeof(double));
  double* want_w = c->weights ? tester_alloc(n_w * sizeof(double)) : NULL;
  double* tol_w = c->weights ? tester_alloc(n_w * sizeof(double)) : NULL;
  float* got = tester_alloc(n_out * sizeof(float));
  oracle_attention(&p->oracle, want, want_w);
  tolerance_attention(&p->oracle, NULL, want_w, tol, tol_w);

  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    attention_case_describe(t, c, mha_isa_name(isas->isa[i]));
    attention_problem_poison(p);
    const mha_status st = mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
    if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32 returned %s: %s",
                      mha_status_string(st), mha_last_error())) {
      continue;
    }
    attention_problem_gather_out(p, got);
    tester_check_close(t, "out", n_out, got, want, tol);
    const size_t gaps = attention_problem_gap_writes(p);
    tester_check(t, gaps == 0, "%zu elements written outside the out view", gaps);
    if (c->weights) tester_check_close(t, "weights", n_w, p->weights, want_w, tol_w);
  }
  free(got);
  free(tol_w);
  free(want_w);
  free(tol);
  free(want);
}

/* Builds a case, runs it on every ISA, frees it. */
static void run_case(tester* t, const isa_list* isas, const attention_case* c) {
  attention_problem p;
  attention_problem_build(t, c, &p);
  run_problem(t, isas, &p);
  attention_problem_free(&p);
}

static attention_case plain_case(int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                                 int64_t D, int64_t Dv) {
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.Hkv = Hkv, c.Tq = Tq, c.Tk = Tk, c.D = D, c.Dv = Dv;
  c.threads = 2;
  c.weights = 1;
  return c;
}

/* The stride helpers and desc_init against their documented formulas. */
static void test_stride_helpers(tester* t) {
  tester_context(t, "stride helpers");
  const int64_t shapes[][3] = {{1, 1, 1}, {2, 7, 64}, {12, 200, 137}, {3, 1, 61}};
  for (size_t i = 0; i < COUNT(shapes); i++) {
    const int64_t H = shapes[i][0], T = shapes[i][1], W = shapes[i][2];
    const mha_strides a = mha_strides_bhtd(H, T, W);
    tester_check(t, a.batch == H * T * W && a.head == T * W && a.row == W,
                 "mha_strides_bhtd(%lld, %lld, %lld) = {%lld, %lld, %lld}", (long long)H,
                 (long long)T, (long long)W, (long long)a.batch, (long long)a.head,
                 (long long)a.row);
    const mha_strides b = mha_strides_bthd(H, T, W);
    tester_check(t, b.batch == T * H * W && b.head == W && b.row == H * W,
                 "mha_strides_bthd(%lld, %lld, %lld) = {%lld, %lld, %lld}", (long long)H,
                 (long long)T, (long long)W, (long long)b.batch, (long long)b.head,
                 (long long)b.row);
  }
  mha_attention_desc d;
  memset(&d, 0x5a, sizeof d);
  mha_attention_desc_init(&d, 3, 12, 4, 7, 65, 137, 61);
  tester_check(t,
               d.B == 3 && d.H == 12 && d.Hkv == 4 && d.Tq == 7 && d.Tk == 65 && d.D == 137 &&
                   d.Dv == 61,
               "mha_attention_desc_init: sizes");
  tester_check(t,
               d.q.batch == 12 * 7 * 137 && d.q.head == 7 * 137 && d.q.row == 137 &&
                   d.k.batch == 4 * 65 * 137 && d.k.head == 65 * 137 && d.k.row == 137 &&
                   d.v.batch == 4 * 65 * 61 && d.v.head == 65 * 61 && d.v.row == 61 &&
                   d.out.batch == 12 * 7 * 61 && d.out.head == 7 * 61 && d.out.row == 61,
               "mha_attention_desc_init: contiguous BHTD strides");
  tester_check(t,
               d.scale == 0.0f && d.mask.causal == 0 && d.mask.kv_len == NULL &&
                   d.mask.additive == NULL && d.num_threads == 0,
               "mha_attention_desc_init: scale 0, no mask, num_threads 0");
}

/* Rows that the masks leave with no visible key: exact zeros, zero weights. */
static void test_empty_rows(tester* t, const isa_list* isas) {
  attention_case cases[6];
  cases[0] = plain_case(3, 2, 1, 7, 65, 8, 8); /* kv_len[2] = 0 */
  cases[0].kv_len = 1;
  cases[1] = plain_case(1, 2, 2, 65, 7, 16, 16); /* causal, Tq > Tk: rows 0..57 empty */
  cases[1].causal = 1;
  cases[2] = plain_case(2, 12, 3, 200, 63, 8, 5);
  cases[2].causal = 1;
  cases[2].weights = 0;
  cases[3] = plain_case(2, 2, 1, 7, 65, 8, 8); /* an all -inf additive row */
  cases[3].additive = ADDITIVE_FULL;
  cases[3].minus_inf = 2;
  cases[4] = plain_case(3, 2, 2, 64, 64, 64, 61); /* the same, broadcast to every (b, h) */
  cases[4].additive = ADDITIVE_BROADCAST;
  cases[4].minus_inf = 2;
  cases[5] = plain_case(3, 4, 2, 9, 130, 8, 8); /* all of them at once */
  cases[5].causal = 1;
  cases[5].kv_len = 1;
  cases[5].additive = ADDITIVE_PADDED;
  cases[5].minus_inf = 2;
  for (size_t n = 0; n < COUNT(cases); n++) {
    const attention_case* c = &cases[n];
    /* the case must really have empty rows, or it tests nothing */
    attention_problem p;
    attention_problem_build(t, c, &p);
    long empty = 0;
    for (int64_t b = 0; b < c->B; b++) {
      for (int64_t h = 0; h < c->H; h++) {
        for (int64_t i = 0; i < c->Tq; i++) {
          int any = 0;
          for (int64_t j = 0; j < c->Tk && !any; j++) any = oracle_key_visible(&p.oracle, b, h, i, j);
          empty += !any;
        }
      }
    }
    attention_problem_free(&p);
    attention_case_describe(t, c, "-");
    tester_check(t, empty > 0, "empty-row case %zu has no empty row", n);
    run_case(t, isas, c);
  }
}

/* Logits in [90, 100) and [-100, -90): exp overflows or underflows unless
 * the row max is subtracted; results must be finite and correct. */
static void test_extreme_logits(tester* t, const isa_list* isas) {
  const attention_case shapes[] = {
      plain_case(1, 1, 1, 1, 1, 1, 1),      plain_case(1, 2, 1, 7, 65, 8, 8),
      plain_case(1, 2, 2, 63, 200, 64, 64), plain_case(2, 4, 2, 65, 127, 16, 61),
  };
  for (int logits = LOGITS_HIGH; logits <= LOGITS_LOW; logits++) {
    for (size_t n = 0; n < COUNT(shapes); n++) {
      attention_case c = shapes[n];
      c.logits = (logits_kind)logits;
      c.causal = (int)(n % 2);
      run_case(t, isas, &c);
    }
  }
}

/* A NaN in one query row makes that row NaN (where it sees a key) and no other. */
static void test_nan_propagation(tester* t, const isa_list* isas) {
  attention_case c = plain_case(2, 4, 2, 65, 63, 16, 16);
  c.nan_q = 1;
  run_case(t, isas, &c);
  c.causal = 1;
  c.additive = ADDITIVE_BROADCAST;
  run_case(t, isas, &c);
  c = plain_case(1, 1, 1, 1, 1, 1, 1);
  c.nan_q = 1;
  run_case(t, isas, &c);
}

/* mha.h: keys behind an additive -inf are hidden, P is 0 on hidden keys,
 * and a row with no visible key outputs zeros, "never NaN". So a NaN in a
 * query row must not reach the weights of its hidden keys, and a row whose
 * keys are all behind -inf outputs zeros even when its query holds a NaN. */
static void test_nan_with_hidden_keys(tester* t, const isa_list* isas) {
  attention_case c = plain_case(1, 2, 2, 7, 65, 8, 8);
  c.additive = ADDITIVE_FULL;
  c.minus_inf = 2; /* row Tq / 2 of (b 0, h 0) all -inf, and -inf scattered */
  attention_problem p;
  attention_problem_build(t, &c, &p);
  p.c.nan_q = 1; /* for the case description */
  /* NaN in the all -inf row and in the last row of head 1 */
  const int64_t rows[2][2] = {{0, c.Tq / 2}, {1, c.Tq - 1}};
  for (int r = 0; r < 2; r++) {
    const int64_t h = rows[r][0], i = rows[r][1];
    p.q[h * p.desc.q.head + i * p.desc.q.row] = NAN;
    p.qd[(h * c.Tq + i) * c.D] = NAN;
  }
  run_problem(t, isas, &p);
  attention_problem_free(&p);
}

/* Decode shapes: one or a few query rows against many keys. Implementations
 * may split the keys of such rows into ranges and merge partial softmaxes
 * (log-sum-exp), a path that Tk <= 200 never reaches; with and without
 * weights, masks, and ranges that see no key at all. */
static void test_decode(tester* t, const isa_list* isas) {
  attention_case cases[7];
  cases[0] = plain_case(1, 8, 8, 1, 257, 64, 64);
  cases[1] = plain_case(2, 8, 2, 1, 1031, 64, 61);
  cases[2] = plain_case(1, 4, 1, 3, 600, 128, 128);
  cases[3] = plain_case(3, 2, 2, 2, 2049, 8, 8);
  cases[3].causal = 1;
  cases[3].kv_len = 1; /* one batch entry empty, the others random */
  cases[4] = plain_case(2, 1, 1, 1, 1500, 16, 16);
  cases[4].additive = ADDITIVE_FULL;
  cases[4].minus_inf = 2;
  cases[5] = plain_case(1, 12, 12, 1, 777, 65, 7);
  cases[5].logits = LOGITS_HIGH;
  cases[6] = plain_case(2, 2, 1, 1, 1300, 8, 8);
  cases[6].nan_q = 1;
  for (size_t n = 0; n < COUNT(cases); n++) {
    for (int weights = 0; weights <= 1; weights++) {
      attention_case c = cases[n];
      c.weights = weights;
      c.threads = (int)kThreads[n % COUNT(kThreads)];
      run_case(t, isas, &c);
    }
  }
}

/* One large case: many heads, rows and blocks at once. */
static void test_large(tester* t, const isa_list* isas) {
  attention_case c = plain_case(3, 12, 4, 200, 200, 64, 64);
  c.causal = 1;
  c.threads = 3;
  run_case(t, isas, &c);
}

/* Additive masks with a row stride of 0: one key-padding row per batch
 * ({Tk, 0, 0}, PyTorch's [B, 1, 1, Tk]) and one row for all ({0, 0, 0}).
 * mha.h allows a stride of 0 on masks wherever it broadcasts. */
static void test_row_broadcast_masks(tester* t, const isa_list* isas) {
  const attention_case shapes[] = {plain_case(3, 2, 1, 7, 65, 8, 8),
                                   plain_case(2, 12, 4, 1, 64, 64, 64),
                                   plain_case(1, 1, 1, 63, 2, 1, 1)};
  for (size_t n = 0; n < COUNT(shapes); n++) {
    for (int kind = ADDITIVE_KEY_PADDING; kind <= ADDITIVE_ONE_ROW; kind++) {
      attention_case c = shapes[n];
      c.additive = (additive_kind)kind;
      c.minus_inf = 1;
      run_case(t, isas, &c);
    }
  }
}

/* The harness itself: a wrong answer and an unwritten element must fail. */
static void test_harness_rejects_wrong_answers(tester* t) {
  tester_context(t, "harness self-test");
  const double want[3] = {0.5, -0.25, 0.0};
  const double tol[3] = {1e-6, 1e-6, 0.0};
  tester probe = *t;
  probe.quiet = 1;
  probe.failures = 0;
  const float right[3] = {0.5f, -0.25f, 0.0f};
  const float off[3] = {0.5f, -0.25f + 1e-5f, 0.0f};
  const float nonzero[3] = {0.5f, -0.25f, 1e-30f};
  float unwritten[3] = {0.5f, -0.25f, 0.0f};
  unwritten[1] = tester_poison_value();
  const int ok_right = tester_check_close(&probe, "right", 3, right, want, tol);
  const int ok_off = tester_check_close(&probe, "off", 3, off, want, tol);
  const int ok_nonzero = tester_check_close(&probe, "nonzero", 3, nonzero, want, tol);
  const int ok_unwritten = tester_check_close(&probe, "unwritten", 3, unwritten, want, tol);
  tester_check(t, ok_right && !ok_off && !ok_nonzero && !ok_unwritten,
               "tester_check_close: accepts %d (want 1), off by 10 tol %d, nonzero empty row "
               "%d, unwritten %d (want 0)",
               ok_right, ok_off, ok_nonzero, ok_unwritten);
}

/* The derived tolerance must be tight enough to catch a real mistake: an
 * output with one key dropped from a row, or with the scale off by 1%. */
static void test_tolerance_catches_mistakes(tester* t) {
  tester_context(t, "tolerance self-test");
  attention_case c = plain_case(1, 2, 1, 7, 65, 64, 61);
  attention_problem p;
  attention_problem_build(t, &c, &p);
  const size_t n_out = (size_t)(c.B * c.H * c.Tq * c.Dv);
  double* want = tester_alloc(n_out * sizeof(double));
  double* tol = tester_alloc(n_out * sizeof(double));
  double* wrong = tester_alloc(n_out * sizeof(double));
  float* wrong_f = tester_alloc(n_out * sizeof(float));
  oracle_attention(&p.oracle, want, NULL);
  tolerance_attention(&p.oracle, NULL, NULL, tol, NULL);
  tester probe = *t;
  probe.quiet = 1;

  p.oracle.scale *= 1.01;
  oracle_attention(&p.oracle, wrong, NULL);
  for (size_t i = 0; i < n_out; i++) wrong_f[i] = (float)wrong[i];
  const int scale_ok = tester_check_close(&probe, "scale off", n_out, wrong_f, want, tol);
  p.oracle.scale /= 1.01;
  p.oracle.Tk -= 1; /* the last key dropped: the same layout with one key less */
  oracle_attention(&p.oracle, wrong, NULL);
  for (size_t i = 0; i < n_out; i++) wrong_f[i] = (float)wrong[i];
  const int drop_ok = tester_check_close(&probe, "key dropped", n_out, wrong_f, want, tol);
  for (size_t i = 0; i < n_out; i++) wrong_f[i] = (float)want[i];
  const int right_ok = tester_check_close(&probe, "rounded oracle", n_out, wrong_f, want, tol);
  tester_check(t, right_ok && !scale_ok && !drop_ok,
               "derived tolerance: the rounded oracle passes (%d, want 1), a 1%% scale error "
               "passes (%d) and a dropped key passes (%d) (want 0)",
               right_ok, scale_ok, drop_ok);
  free(wrong_f);
  free(wrong);
  free(tol);
  free(want);
  attention_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "attention-test");
  const isa_list isas = tester_available_isas(&t);

  test_harness_rejects_wrong_answers(&t);
  test_tolerance_catches_mistakes(&t);
  test_stride_helpers(&t);
  test_empty_rows(&t, &isas);
  test_extreme_logits(&t, &isas);
  test_nan_propagation(&t, &isas);
  test_nan_with_hidden_keys(&t, &isas);
  test_row_broadcast_masks(&t, &isas);
  test_decode(&t, &isas);
  test_large(&t, &isas);

  long cases = 0;
  for (int a = 0; a < AXIS_COUNT; a++) {
    for (size_t v = 0; v < axis_size((axis)a); v++) {
      for (int rep = 0; rep < CASES_PER_VALUE; rep++) {
        const attention_case c = draw_case(&t, a, v);
        run_case(&t, &isas, &c);
        cases++;
      }
    }
  }
  for (int n = 0; n < RANDOM_CASES; n++) {
    const attention_case c = draw_case(&t, -1, 0);
    run_case(&t, &isas, &c);
    cases++;
  }
  printf("attention-test: %ld sampled cases on %d ISAs\n", cases, isas.count);
  return tester_finish(&t);
}
