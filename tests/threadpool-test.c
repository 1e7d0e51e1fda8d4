/*
 * The caller's thread pool (mha.h, "Threads"): the core, a decode with split
 * key ranges, head-mean weights, a packed varlen batch and the layer run
 * through a pool give bitwise the OpenMP default's results, on every ISA,
 * with the reference pthread pool (examples/threadpool/pthread-pool.c) at
 * 1-3 threads and with pools that run the tasks one after another, forwards
 * and backwards, on the calling thread. Every pool sits behind a checker of
 * the contract: each index in [0, n) called exactly once per parallel_for,
 * 2 <= n <= the workers, called from the calling thread only, never from
 * inside a task. Also: a small call never calls the pool (the size rule), a
 * bad pool is INVALID_ARGUMENT before anything is written or called.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention-problem.h"
#include "layer-problem.h"
#include "mha.h"
#include "tester.h"
#include "threadpool/pthread-pool.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- pools ---- */

typedef enum pool_kind { POOL_PTHREAD1, POOL_PTHREAD2, POOL_PTHREAD3, POOL_SERIAL, POOL_REVERSE, POOL_COUNT } pool_kind;
static const char* const kPoolNames[POOL_COUNT] = {"pthread pool, 1 thread", "pthread pool, 2 threads",
                                                   "pthread pool, 3 threads", "serial on the caller",
                                                   "serial, last task first"};

static void serial_for(void* pool, mha_task_fn task, void* task_context, size_t n) {
  (void)pool;
  for (size_t i = 0; i < n; i++) task(task_context, i);
}

static void reverse_for(void* pool, mha_task_fn task, void* task_context, size_t n) {
  (void)pool;
  for (size_t i = n; i-- > 0;) task(task_context, i);
}

/* The checker between mha and a pool. */
enum { CHECK_MAX_N = 64 };
typedef struct checked_pool {
  mha_threadpool inner;
  int limit;                  /* the call's workers: num_threads, or the pool's */
  pthread_t caller;
  atomic_int depth;           /* tasks running now (a parallel_for from inside one is nested) */
  int calls;                  /* parallel_for calls */
  size_t max_n;
  int bad_n, bad_thread, nested, bad_count;
  atomic_int seen[CHECK_MAX_N];
  mha_task_fn task;           /* the current call's */
  void* task_context;
} checked_pool;

static void checked_task(void* ctx, size_t i) {
  checked_pool* c = ctx;
  atomic_fetch_add(&c->depth, 1);
  if (i < CHECK_MAX_N) atomic_fetch_add(&c->seen[i], 1);
  c->task(c->task_context, i);
  atomic_fetch_sub(&c->depth, 1);
}

static void checked_for(void* ctx, mha_task_fn task, void* task_context, size_t n) {
  checked_pool* c = ctx;
  c->calls++;
  if (n > c->max_n) c->max_n = n;
  if (n < 2 || n > (size_t)c->limit || n > CHECK_MAX_N) c->bad_n++;
  if (!pthread_equal(pthread_self(), c->caller)) c->bad_thread++;
  if (atomic_load(&c->depth) != 0) c->nested++;
  for (size_t i = 0; i < CHECK_MAX_N; i++) atomic_store(&c->seen[i], 0);
  c->task = task;
  c->task_context = task_context;
  c->inner.parallel_for(c->inner.context, checked_task, c, n);
  for (size_t i = 0; i < n && i < CHECK_MAX_N; i++) c->bad_count += atomic_load(&c->seen[i]) != 1;
}

typedef struct test_pool {
  tpool* pthreads;
  checked_pool check;
  mha_threadpool outer; /* what mha gets */
} test_pool;

static int test_pool_open(tester* t, test_pool* p, pool_kind kind) {
  memset(p, 0, sizeof *p);
  if (kind <= POOL_PTHREAD3) {
    p->pthreads = tpool_create(1 + (int)kind);
    if (!tester_check(t, p->pthreads != NULL, "tpool_create failed")) return 0;
    p->check.inner = tpool_threadpool(p->pthreads);
  } else {
    p->check.inner = (mha_threadpool){kind == POOL_SERIAL ? serial_for : reverse_for, NULL, 3};
  }
  p->check.caller = pthread_self();
  p->check.limit = p->check.inner.num_threads;
  p->outer = (mha_threadpool){checked_for, &p->check, p->check.inner.num_threads};
  return 1;
}

/* The contract held over every call so far; returns the calls. */
static int test_pool_verify(tester* t, test_pool* p) {
  checked_pool* c = &p->check;
  tester_check(t, c->bad_n == 0, "%d parallel_for calls with n outside [2, workers %d] (max n %zu)", c->bad_n,
               c->limit, c->max_n);
  tester_check(t, c->bad_thread == 0, "%d parallel_for calls from another thread than the caller's", c->bad_thread);
  tester_check(t, c->nested == 0, "%d parallel_for calls from inside a task", c->nested);
  tester_check(t, c->bad_count == 0, "%d task indices not run exactly once", c->bad_count);
  const int calls = c->calls;
  c->calls = 0;
  c->max_n = 0;
  return calls;
}

static void test_pool_close(test_pool* p) {
  if (p->pthreads != NULL) tpool_destroy(p->pthreads);
}

/* ---- the core ---- */

static attention_case core_case(int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int causal,
                                int weights) {
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.Hkv = Hkv, c.Tq = Tq, c.Tk = Tk, c.D = D, c.Dv = D;
  c.causal = causal;
  c.weights = weights;
  c.layout_q = LAYOUT_BTHD;
  c.layout_out = LAYOUT_BHTD_PADDED;
  return c;
}

static mha_status run_core(attention_problem* p, const mha_threadpool* pool, int threads) {
  attention_problem_poison(p);
  p->desc.threadpool = pool;
  p->desc.num_threads = threads;
  return mha_attention_f32(&p->desc, p->q, p->k, p->v, p->out, p->weights);
}

static void test_core(tester* t, const isa_list* isas) {
  const struct {
    attention_case c;
    mha_weights_mode mode;
    const char* what;
  } cases[] = {
      {core_case(2, 8, 2, 190, 190, 64, 1, 1), MHA_WEIGHTS_PER_HEAD, "causal prefill, GQA, weights"},
      {core_case(3, 6, 6, 65, 129, 32, 0, 1), MHA_WEIGHTS_HEAD_MEAN, "cross, head-mean weights"},
      {core_case(1, 16, 4, 1, 3000, 64, 0, 0), MHA_WEIGHTS_PER_HEAD, "decode, split key ranges"},
      {core_case(2, 4, 4, 300, 300, 128, 1, 0), MHA_WEIGHTS_PER_HEAD, "prefill D 128"},
  };
  for (size_t n = 0; n < COUNT(cases); n++) {
    attention_problem p;
    attention_case c = cases[n].c;
    attention_problem_build(t, &c, &p);
    p.desc.weights_mode = cases[n].mode;
    const size_t n_w = p.weights != NULL ? (size_t)(p.c.B * p.c.H * p.c.Tq * p.c.Tk) : 0;
    float* ref_out = tester_alloc(p.out_size * sizeof(float));
    float* ref_w = tester_alloc((n_w + 1) * sizeof(float));
    for (int i = 0; i < isas->count; i++) {
      if (!tester_set_isa(t, isas->isa[i])) continue;
      tester_context(t, "%s, isa=%s, OpenMP at 3 threads", cases[n].what, mha_isa_name(isas->isa[i]));
      mha_status st = run_core(&p, NULL, 3);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "OpenMP run: %s", mha_last_error())) continue;
      memcpy(ref_out, p.out, p.out_size * sizeof(float));
      if (n_w) memcpy(ref_w, p.weights, n_w * sizeof(float));
      for (int k = 0; k < POOL_COUNT; k++) {
        for (int threads = 0; threads <= 3; threads += 3) {
          tester_context(t, "%s, isa=%s, %s, num_threads %d", cases[n].what, mha_isa_name(isas->isa[i]),
                         kPoolNames[k], threads);
          test_pool tp;
          if (!test_pool_open(t, &tp, (pool_kind)k)) continue;
          if (threads > 0) tp.check.limit = threads;
          st = run_core(&p, &tp.outer, threads);
          const int calls = test_pool_verify(t, &tp);
          test_pool_close(&tp);
          if (!tester_check(t, st == MHA_STATUS_SUCCESS, "pool run: %s", mha_last_error())) continue;
          /* the pool was used, so the comparison below can fail */
          if (tp.outer.num_threads > 1 || threads > 1) {
            tester_check(t, calls >= 1, "the pool was never called");
          }
          tester_check(t, memcmp(ref_out, p.out, p.out_size * sizeof(float)) == 0, "out differs from OpenMP's");
          if (n_w) tester_check(t, memcmp(ref_w, p.weights, n_w * sizeof(float)) == 0, "weights differ from OpenMP's");
        }
      }
    }
    free(ref_w);
    free(ref_out);
    attention_problem_free(&p);
  }
}

/* ---- a packed varlen batch ---- */

static void test_varlen(tester* t, const isa_list* isas) {
  enum { B = 4, H = 4, HKV = 2, D = 64 };
  const int32_t cu[B + 1] = {0, 130, 131, 400, 470};
  const int64_t total = cu[B];
  const size_t nq = (size_t)total * H * D, nk = (size_t)total * HKV * D;
  float *q = tester_alloc(nq * sizeof(float)), *k = tester_alloc(nk * sizeof(float));
  float *v = tester_alloc(nk * sizeof(float)), *out = tester_alloc(nq * sizeof(float));
  float* ref = tester_alloc(nq * sizeof(float));
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nk);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, 270, 270, D, D);
  d.q = (mha_strides){0, D, H * D};
  d.out = d.q;
  d.k = (mha_strides){0, D, HKV * D};
  d.v = d.k;
  d.mask.causal = 1;
  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    tester_context(t, "varlen B=%d, isa=%s, OpenMP at 3 threads", B, mha_isa_name(isas->isa[i]));
    d.threadpool = NULL;
    d.num_threads = 3;
    tester_poison(out, nq);
    if (!tester_check(t, mha_attention_varlen_f32(&d, cu, cu, q, k, v, out) == MHA_STATUS_SUCCESS, "OpenMP: %s",
                      mha_last_error())) {
      continue;
    }
    memcpy(ref, out, nq * sizeof(float));
    for (int kind = 0; kind < POOL_COUNT; kind++) {
      tester_context(t, "varlen B=%d, isa=%s, %s", B, mha_isa_name(isas->isa[i]), kPoolNames[kind]);
      test_pool tp;
      if (!test_pool_open(t, &tp, (pool_kind)kind)) continue;
      d.threadpool = &tp.outer;
      d.num_threads = 0;
      tester_poison(out, nq);
      const mha_status st = mha_attention_varlen_f32(&d, cu, cu, q, k, v, out);
      const int calls = test_pool_verify(t, &tp);
      test_pool_close(&tp);
      if (!tester_check(t, st == MHA_STATUS_SUCCESS, "pool: %s", mha_last_error())) continue;
      if (tp.outer.num_threads > 1) tester_check(t, calls >= 1, "the pool was never called");
      tester_check(t, memcmp(ref, out, nq * sizeof(float)) == 0, "varlen out differs from OpenMP's");
    }
  }
  free(ref), free(out), free(v), free(k), free(q);
}

/* ---- the layer ---- */

static void test_layer(tester* t, const isa_list* isas) {
  layer_case cases[2];
  memset(cases, 0, sizeof cases);
  for (int n = 0; n < 2; n++) {
    layer_case* c = &cases[n];
    c->B = 2, c->Tq = 150, c->d_model = 256, c->H = 8, c->Hkv = n ? 8 : 4, c->cross = n;
    c->Tk = n ? 97 : 0;
    c->d_kv = n ? 128 : 0;
    c->biases = 1;
    c->layout = MHA_WEIGHTS_OUT_IN;
    c->causal = !n;
    c->weights = n;
  }
  for (int n = 0; n < 2; n++) {
    layer_problem p;
    layer_problem_build(t, &cases[n], &p);
    float* ref = tester_alloc(p.out_size * sizeof(float));
    float* ref_w = tester_alloc((p.weights_size + 1) * sizeof(float));
    for (int i = 0; i < isas->count; i++) {
      if (!tester_set_isa(t, isas->isa[i])) continue;
      mha_layer* plan = NULL;
      layer_case_describe(t, &p.c, mha_isa_name(isas->isa[i]));
      if (!tester_check(t, mha_layer_create(&p.desc, &plan) == MHA_STATUS_SUCCESS, "mha_layer_create: %s",
                        mha_last_error())) {
        continue;
      }
      p.args.threadpool = NULL;
      p.args.num_threads = 3;
      tester_poison(p.out, p.out_size);
      tester_poison(p.weights, p.weights_size);
      if (tester_check(t, mha_layer_forward(plan, &p.args) == MHA_STATUS_SUCCESS, "OpenMP: %s", mha_last_error())) {
        memcpy(ref, p.out, p.out_size * sizeof(float));
        if (p.weights_size) memcpy(ref_w, p.weights, p.weights_size * sizeof(float));
        for (int kind = 0; kind < POOL_COUNT; kind++) {
          tester_context(t, "layer %s, isa=%s, %s", n ? "cross" : "self causal GQA", mha_isa_name(isas->isa[i]),
                         kPoolNames[kind]);
          test_pool tp;
          if (!test_pool_open(t, &tp, (pool_kind)kind)) continue;
          p.args.threadpool = &tp.outer;
          p.args.num_threads = 0;
          tester_poison(p.out, p.out_size);
          tester_poison(p.weights, p.weights_size);
          const mha_status st = mha_layer_forward(plan, &p.args);
          const int calls = test_pool_verify(t, &tp);
          test_pool_close(&tp);
          if (!tester_check(t, st == MHA_STATUS_SUCCESS, "pool: %s", mha_last_error())) continue;
          if (tp.outer.num_threads > 1) tester_check(t, calls >= 2, "the pool ran %d stages, want >= 2", calls);
          tester_check(t, memcmp(ref, p.out, p.out_size * sizeof(float)) == 0, "layer out differs from OpenMP's");
          if (p.weights_size) {
            tester_check(t, memcmp(ref_w, p.weights, p.weights_size * sizeof(float)) == 0,
                         "layer weights differ from OpenMP's");
          }
        }
      }
      p.args.threadpool = NULL;
      mha_layer_destroy(plan);
    }
    free(ref_w);
    free(ref);
    layer_problem_free(&p);
  }
}

/* ---- the size rule and bad pools ---- */

static int all_poison(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!tester_is_poison(x[i])) return 0;
  }
  return 1;
}

static void test_small_and_bad(tester* t) {
  attention_case c = core_case(1, 2, 2, 3, 5, 8, 0, 0);
  attention_problem p;
  attention_problem_build(t, &c, &p);
  test_pool tp;
  if (test_pool_open(t, &tp, POOL_PTHREAD3)) {
    tester_context(t, "a small call (B 1, H 2, T 3x5, D 8) with a 3-thread pool");
    mha_status st = run_core(&p, &tp.outer, 0);
    tester_check(t, st == MHA_STATUS_SUCCESS, "small call: %s", mha_last_error());
    tester_check(t, test_pool_verify(t, &tp) == 0, "a small call called the pool (the size rule gives it one worker)");

    tester_context(t, "a pool without parallel_for");
    mha_threadpool bad = tp.outer;
    bad.parallel_for = NULL;
    st = run_core(&p, &bad, 0);
    tester_check(t, st == MHA_STATUS_INVALID_ARGUMENT, "got %s, want INVALID_ARGUMENT", mha_status_string(st));
    tester_check(t, all_poison(p.out, p.out_size), "a failed call wrote out");

    tester_context(t, "a pool with num_threads 0");
    bad = tp.outer;
    bad.num_threads = 0;
    st = run_core(&p, &bad, 0);
    tester_check(t, st == MHA_STATUS_INVALID_ARGUMENT, "got %s, want INVALID_ARGUMENT", mha_status_string(st));
    tester_check(t, all_poison(p.out, p.out_size), "a failed call wrote out");
    tester_check(t, test_pool_verify(t, &tp) == 0, "a failed call called the pool");
    test_pool_close(&tp);
  }
  attention_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "threadpool-test");
  const isa_list isas = tester_available_isas(&t);
  test_small_and_bad(&t);
  test_core(&t, &isas);
  test_varlen(&t, &isas);
  test_layer(&t, &isas);
  return tester_finish(&t);
}
