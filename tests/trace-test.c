/*
 * The trace of a call's work units (mha.h, "Threads"): with OpenMP and with
 * the reference pthread pool, for a causal prefill (Kᵀ packing and attention
 * units), a decode with split key ranges, head-mean weights, a varlen batch
 * and a layer (GEMM tiles too):
 *   - every unit once: the attention events tile each batch entry's
 *     (query head, query row) grid exactly once per key range, and each
 *     (entry, head, row)'s key ranges tile [0, Tk) — computed from the
 *     events, not from the library's internals; total = count = the events;
 *   - times: 0 <= start <= end, within the call's wall time; workers in
 *     [0, workers);
 *   - a buffer too small keeps the first `capacity` events and counts the
 *     rest (total > count); capacity 0 writes none; a bad trace is
 *     INVALID_ARGUMENT; the results' bits do not change with a trace.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention-problem.h"
#include "layer-problem.h"
#include "mha.h"
#include "tester.h"
#include "threadpool/pthread-pool.h"

enum { CAP = 1 << 16 };

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Times and workers of every event. */
static void check_events(tester* t, const mha_trace* tr, int64_t wall_ns, int workers) {
  int bad_time = 0, bad_worker = 0;
  for (int64_t e = 0; e < tr->count; e++) {
    const mha_trace_event* ev = &tr->events[e];
    bad_time += !(ev->start_ns >= 0 && ev->start_ns <= ev->end_ns && ev->end_ns <= wall_ns);
    bad_worker += !(ev->worker >= 0 && ev->worker < workers);
  }
  tester_check(t, tr->count == tr->total, "count %lld, total %lld: want equal (the buffer is large enough)",
               (long long)tr->count, (long long)tr->total);
  tester_check(t, bad_time == 0, "%d events outside 0 <= start <= end <= the call's %lld ns", bad_time,
               (long long)wall_ns);
  tester_check(t, bad_worker == 0, "%d events with a worker outside [0, %d)", bad_worker, workers);
}

/* The attention events cover every (b, h, i) and, for each, [0, Tk) once.
 * cover[b][h][i] counts keys seen; a row covered twice counts past Tk. */
static void check_attention_cover(tester* t, const mha_trace* tr, int64_t B, int64_t H, const int64_t* tq,
                                  const int64_t* tk) {
  int64_t rows = 0, *first = tester_alloc((size_t)(B + 1) * sizeof(int64_t));
  for (int64_t b = 0; b < B; b++) first[b] = rows, rows += H * tq[b];
  first[B] = rows;
  int64_t* keys = calloc((size_t)rows + 1, sizeof(int64_t));
  int outside = 0, wrong_heads = 0;
  for (int64_t e = 0; e < tr->count; e++) {
    const mha_trace_event* ev = &tr->events[e];
    if (ev->stage != MHA_TRACE_ATTENTION) continue;
    if (ev->batch < 0 || ev->batch >= B || ev->head < 0 || ev->head + ev->heads > H || ev->q_begin < 0 ||
        ev->q_end > tq[ev->batch] || ev->k_begin < 0 || ev->k_end > tk[ev->batch] || ev->k_begin > ev->k_end) {
      outside++;
      continue;
    }
    wrong_heads += ev->heads < 1;
    for (int32_t h = ev->head; h < ev->head + ev->heads; h++) {
      for (int32_t i = ev->q_begin; i < ev->q_end; i++) keys[first[ev->batch] + h * tq[ev->batch] + i] += ev->k_end - ev->k_begin;
    }
  }
  int64_t bad = 0;
  for (int64_t b = 0; b < B; b++) {
    for (int64_t r = first[b]; r < first[b + 1]; r++) bad += keys[r] != tk[b];
  }
  tester_check(t, outside == 0 && wrong_heads == 0, "%d attention events outside the call's shape, %d without heads",
               outside, wrong_heads);
  tester_check(t, bad == 0, "%lld (entry, head, row) whose key ranges do not tile [0, Tk) once", (long long)bad);
  free(keys);
  free(first);
}

static int count_stage(const mha_trace* tr, int stage) {
  int n = 0;
  for (int64_t e = 0; e < tr->count; e++) n += tr->events[e].stage == stage;
  return n;
}

static attention_case core_case(int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int causal) {
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.Hkv = Hkv, c.Tq = Tq, c.Tk = Tk, c.D = D, c.Dv = D;
  c.causal = causal;
  c.layout_q = LAYOUT_BHTD;
  c.layout_out = LAYOUT_BHTD;
  return c;
}

static void test_core(tester* t, mha_trace* tr, tpool* pool) {
  const struct {
    attention_case c;
    int weights_mean;
    const char* what;
  } cases[] = {
      {core_case(2, 8, 2, 190, 190, 64, 1), 0, "causal prefill GQA"},
      {core_case(1, 16, 4, 1, 3000, 64, 0), 0, "decode, split key ranges"},
      {core_case(2, 6, 6, 65, 129, 32, 0), 1, "cross, head-mean weights"},
  };
  mha_threadpool tp = tpool_threadpool(pool);
  for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
    attention_case c = cases[n].c;
    c.weights = cases[n].weights_mean;
    attention_problem p;
    attention_problem_build(t, &c, &p);
    if (cases[n].weights_mean) p.desc.weights_mode = MHA_WEIGHTS_HEAD_MEAN;
    float* ref = tester_alloc(p.out_size * sizeof(float));
    p.desc.num_threads = 3;
    tester_context(t, "%s without a trace", cases[n].what);
    attention_problem_poison(&p);
    tester_check(t, mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, p.weights) == MHA_STATUS_SUCCESS, "%s",
                 mha_last_error());
    memcpy(ref, p.out, p.out_size * sizeof(float));
    for (int with_pool = 0; with_pool < 2; with_pool++) {
      tester_context(t, "%s, trace, %s", cases[n].what, with_pool ? "pthread pool of 3" : "OpenMP at 3 threads");
      p.desc.threadpool = with_pool ? &tp : NULL;
      p.desc.trace = tr;
      tr->capacity = CAP;
      tr->count = tr->total = -7;
      attention_problem_poison(&p);
      const int64_t t0 = now_ns();
      const mha_status st = mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, p.weights);
      const int64_t wall = now_ns() - t0;
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "%s", mha_last_error())) continue;
      tester_check(t, memcmp(ref, p.out, p.out_size * sizeof(float)) == 0, "out changed with a trace");
      check_events(t, tr, wall, 3);
      int64_t tq[2] = {c.Tq, c.Tq}, tk[2] = {c.Tk, c.Tk};
      check_attention_cover(t, tr, c.B, c.H, tq, tk);
      if (n == 0) tester_check(t, count_stage(tr, MHA_TRACE_PACK_KT) > 0, "no Kᵀ packing events in a prefill");
      if (cases[n].weights_mean) {
        tester_check(t, count_stage(tr, MHA_TRACE_WEIGHTS_MEAN) > 0, "no head-mean events with head-mean weights");
      }
      /* a buffer too small: the first events kept, the rest counted */
      const int64_t full = tr->total;
      tr->capacity = full / 2;
      tr->count = tr->total = -7;
      tester_check(t, mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, p.weights) == MHA_STATUS_SUCCESS, "%s",
                   mha_last_error());
      tester_check(t, tr->count == full / 2 && tr->total == full, "capacity %lld: count %lld total %lld, want %lld, %lld",
                   (long long)(full / 2), (long long)tr->count, (long long)tr->total, (long long)(full / 2),
                   (long long)full);
      p.desc.threadpool = NULL;
      p.desc.trace = NULL;
    }
    free(ref);
    attention_problem_free(&p);
  }
}

static void test_varlen(tester* t, mha_trace* tr) {
  enum { B = 3, H = 4, HKV = 2, D = 32 };
  const int32_t cu_q[B + 1] = {0, 70, 71, 171}, cu_k[B + 1] = {0, 70, 600, 700};
  const size_t nq = (size_t)cu_q[B] * H * D, nk = (size_t)cu_k[B] * HKV * D;
  float *q = tester_alloc(nq * 4), *k = tester_alloc(nk * 4), *v = tester_alloc(nk * 4), *out = tester_alloc(nq * 4);
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nk);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, 100, 530, D, D);
  d.q = d.out = (mha_strides){0, D, H * D};
  d.k = d.v = (mha_strides){0, D, HKV * D};
  d.num_threads = 2;
  d.trace = tr;
  tr->capacity = CAP;
  tester_context(t, "varlen, 3 sequences, trace");
  const int64_t t0 = now_ns();
  if (tester_check(t, mha_attention_varlen_f32(&d, cu_q, cu_k, q, k, v, out) == MHA_STATUS_SUCCESS, "%s",
                   mha_last_error())) {
    check_events(t, tr, now_ns() - t0, 2);
    int64_t tq[B], tk[B];
    for (int b = 0; b < B; b++) tq[b] = cu_q[b + 1] - cu_q[b], tk[b] = cu_k[b + 1] - cu_k[b];
    check_attention_cover(t, tr, B, H, tq, tk);
  }
  free(out), free(v), free(k), free(q);
}

static void test_layer(tester* t, mha_trace* tr) {
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 3, c.Tq = 100, c.d_model = 128, c.H = 4, c.Hkv = 2, c.causal = 1, c.biases = 1;
  c.layout = MHA_WEIGHTS_OUT_IN;
  layer_problem p;
  layer_problem_build(t, &c, &p);
  tester_context(t, "layer B 3, self causal, trace");
  float* ref = tester_alloc(p.out_size * sizeof(float));
  p.args.num_threads = 2;
  tester_check(t, mha_layer_forward_once(&p.desc, &p.args) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  memcpy(ref, p.out, p.out_size * sizeof(float));
  p.args.trace = tr;
  tr->capacity = CAP;
  tester_poison(p.out, p.out_size);
  const int64_t t0 = now_ns();
  if (tester_check(t, mha_layer_forward_once(&p.desc, &p.args) == MHA_STATUS_SUCCESS, "%s", mha_last_error())) {
    check_events(t, tr, now_ns() - t0, 2);
    tester_check(t, memcmp(ref, p.out, p.out_size * sizeof(float)) == 0, "layer out changed with a trace");
    tester_check(t, count_stage(tr, MHA_TRACE_GEMM) >= 2, "%d GEMM events, want >= 2 (QKV and output projections)",
                 count_stage(tr, MHA_TRACE_GEMM));
    int64_t tq[3] = {100, 100, 100};
    check_attention_cover(t, tr, 3, 4, tq, tq);
  }
  free(ref);
  layer_problem_free(&p);
}

static void test_bad(tester* t, mha_trace* tr) {
  attention_case c = core_case(1, 2, 2, 30, 30, 16, 0);
  attention_problem p;
  attention_problem_build(t, &c, &p);
  p.desc.trace = tr;
  tester_context(t, "trace capacity -1");
  tr->capacity = -1;
  tester_check(t, mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, NULL) == MHA_STATUS_INVALID_ARGUMENT,
               "want INVALID_ARGUMENT");
  tester_context(t, "trace events NULL, capacity 4");
  mha_trace nul = {NULL, 4, 0, 0};
  p.desc.trace = &nul;
  tester_check(t, mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, NULL) == MHA_STATUS_INVALID_ARGUMENT,
               "want INVALID_ARGUMENT");
  tester_context(t, "trace capacity 0, events NULL: counts only");
  nul.capacity = 0;
  tester_check(t, mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, NULL) == MHA_STATUS_SUCCESS, "%s",
               mha_last_error());
  tester_check(t, nul.count == 0 && nul.total > 0, "count %lld total %lld: want 0 and > 0", (long long)nul.count,
               (long long)nul.total);
  attention_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "trace-test");
  mha_trace tr = {tester_alloc(CAP * sizeof(mha_trace_event)), CAP, 0, 0};
  tpool* pool = tpool_create(3);
  if (tester_check(&t, pool != NULL, "tpool_create")) {
    test_core(&t, &tr, pool);
    tpool_destroy(pool);
  }
  test_varlen(&t, &tr);
  test_layer(&t, &tr);
  test_bad(&t, &tr);
  free(tr.events);
  return tester_finish(&t);
}
