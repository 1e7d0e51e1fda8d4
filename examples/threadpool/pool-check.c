/* A pool's bits against OpenMP's, and proof that the pool ran (pool-check.h). */
#include "pool-check.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The three calls' shapes. The size rule (mha.h, num_threads) gives a call
 * one worker per 4·10^6 units of work (a FLOP counts 1, a byte moved 2); each
 * call here has 4 or more workers' worth, so it asks the pool for several
 * tasks:
 *   prefill  QKᵀ and PV under the causal mask: 4·B·H·T²·D/2 ≈ 41 MFLOP
 *   decode   4·B·H·Tk·D ≈ 8.4 MFLOP plus 4.2 MB of K and V (≈ 17 M units)
 *   layer    the four projections, 2·B·T·(d_model·(H·D + 2·Hkv·D) + H·D·d_model)
 *            ≈ 42 MFLOP, plus the attention */
enum {
  B = 2,
  PF_H = 4, PF_HKV = 2, PF_T = 200, PF_D = 64,
  DC_H = 8, DC_HKV = 2, DC_TK = 2048, DC_D = 64,
  LY_T = 64, LY_DM = 256, LY_H = 8, LY_HKV = 2, LY_D = LY_DM / LY_H
};
enum {
  PF_Q = B * PF_H * PF_T * PF_D, PF_KV = B * PF_HKV * PF_T * PF_D, PF_OUT = PF_Q,
  DC_Q = B * DC_H * DC_D, DC_KV = B * DC_HKV * DC_TK * DC_D, DC_OUT = DC_Q,
  LY_X = B * LY_T * LY_DM, LY_WQ = LY_DM * LY_H * LY_D, LY_WKV = LY_DM * LY_HKV * LY_D,
  LY_WO = LY_H * LY_D * LY_DM, LY_OUT = LY_X
};
enum { MAX_OUT = PF_OUT > LY_OUT ? PF_OUT : LY_OUT, MAX_TASKS = 64 };

/* ---- inputs ---- */

typedef struct inputs {
  float *pf_q, *pf_k, *pf_v;
  float *dc_q, *dc_k, *dc_v; /* the decode step's query and its cache [B, Hkv, Tk, D] */
  float *ly_x, *ly_wq, *ly_wk, *ly_wv, *ly_wo;
} inputs;

/* A fixed-seed LCG: (k + 0.5)/2^22 − 1 for a 23-bit k, in (−1, 1) and never
 * 0, so that no output can match by being zeros on both sides. */
static float lcg_value(uint32_t* s) {
  *s = *s * 1664525u + 1013904223u;
  return ((float)(*s >> 9) + 0.5f) / 4194304.0f - 1.0f;
}

static void inputs_free(inputs* in) {
  float** all[] = {&in->pf_q, &in->pf_k, &in->pf_v, &in->dc_q, &in->dc_k, &in->dc_v,
                   &in->ly_x, &in->ly_wq, &in->ly_wk, &in->ly_wv, &in->ly_wo};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    free(*all[i]);
    *all[i] = NULL;
  }
}

/* Allocates and fills every input; 0 when out of memory. */
static int inputs_make(inputs* in) {
  /* weights scaled down so the layer's activations stay near 1 */
  const struct { float** p; size_t n; float scale; } all[] = {
      {&in->pf_q, PF_Q, 1.0f},     {&in->pf_k, PF_KV, 1.0f},    {&in->pf_v, PF_KV, 1.0f},
      {&in->dc_q, DC_Q, 1.0f},     {&in->dc_k, DC_KV, 1.0f},    {&in->dc_v, DC_KV, 1.0f},
      {&in->ly_x, LY_X, 1.0f},     {&in->ly_wq, LY_WQ, 0.1f},   {&in->ly_wk, LY_WKV, 0.1f},
      {&in->ly_wv, LY_WKV, 0.1f},  {&in->ly_wo, LY_WO, 0.1f}};
  memset(in, 0, sizeof *in);
  uint32_t seed = 20240921u;
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    float* p = malloc(all[i].n * sizeof *p);
    if (p == NULL) {
      inputs_free(in);
      return 0;
    }
    for (size_t j = 0; j < all[i].n; j++) p[j] = all[i].scale * lcg_value(&seed);
    *all[i].p = p;
  }
  return 1;
}

/* ---- the calls: pool NULL and num_threads > 0 is OpenMP; a pool and 0 is
 * the pool at its own num_threads ---- */

static mha_status run_prefill(const inputs* in, const mha_threadpool* pool, int num_threads, float* out) {
  mha_attention_desc desc;
  mha_attention_desc_init(&desc, B, PF_H, PF_HKV, PF_T, PF_T, PF_D, PF_D);
  desc.mask.causal = 1;
  desc.num_threads = num_threads;
  desc.threadpool = pool;
  return mha_attention_f32(&desc, in->pf_q, in->pf_k, in->pf_v, out, NULL);
}

static mha_status run_decode(const inputs* in, const mha_threadpool* pool, int num_threads, float* out) {
  mha_kv_cache cache;
  mha_kv_cache_init(&cache, MHA_DTYPE_F32, in->dc_k, in->dc_v, DC_HKV, DC_TK, DC_D, DC_D);
  mha_attention_desc desc;
  mha_attention_desc_init(&desc, B, DC_H, DC_HKV, /*Tq=*/1, /*Tk=*/DC_TK, DC_D, DC_D);
  desc.num_threads = num_threads;
  desc.threadpool = pool;
  return mha_attention_kv_f32(&desc, in->dc_q, &cache, out, NULL);
}

static mha_status run_layer(const inputs* in, const mha_threadpool* pool, int num_threads, float* out) {
  mha_layer_desc layer;
  mha_layer_desc_init(&layer);
  layer.d_model = LY_DM;
  layer.H = LY_H;
  layer.Hkv = LY_HKV; /* D = d_model / H */
  layer.w_q = in->ly_wq;
  layer.w_k = in->ly_wk;
  layer.w_v = in->ly_wv;
  layer.w_o = in->ly_wo;
  mha_layer_args args;
  mha_layer_args_init(&args);
  args.B = B;
  args.Tq = LY_T; /* x_k NULL: self-attention */
  args.x_q = in->ly_x;
  args.out = out;
  args.mask.causal = 1;
  args.num_threads = num_threads;
  args.threadpool = pool;
  return mha_layer_forward_once(&layer, &args);
}

typedef struct check_case {
  const char* name;
  mha_status (*run)(const inputs* in, const mha_threadpool* pool, int num_threads, float* out);
  size_t out_count;
} check_case;

static const check_case kCases[] = {
    {"prefill", run_prefill, PF_OUT},
    {"decode", run_decode, DC_OUT},
    {"layer", run_layer, LY_OUT},
};

/* ---- the counting wrapper between mha and the pool under test ---- */

typedef struct counting_pool {
  mha_threadpool inner;
  pthread_t caller;
  int calls;    /* parallel_for calls */
  size_t max_n; /* the most tasks one call asked for */
  int broken;   /* calls that broke the contract: n outside [2, num_threads],
                   another thread than the caller's, an index not run once */
  mha_task_fn task; /* the current call's task and its context */
  void* task_context;
  atomic_int ran[MAX_TASKS]; /* how often each index ran in the current call */
} counting_pool;

static void counting_task(void* context, size_t index) {
  counting_pool* c = context;
  atomic_fetch_add_explicit(&c->ran[index], 1, memory_order_relaxed);
  c->task(c->task_context, index);
}

static void counting_parallel_for(void* context, mha_task_fn task, void* task_context, size_t n) {
  counting_pool* c = context;
  c->calls++; /* only the caller's thread calls (checked just below) */
  if (n > c->max_n) c->max_n = n;
  if (!pthread_equal(pthread_self(), c->caller)) c->broken++;
  if (n < 2 || n > (size_t)c->inner.num_threads || n > MAX_TASKS) {
    c->broken++;
    c->inner.parallel_for(c->inner.context, task, task_context, n); /* too many to count */
    return;
  }
  for (size_t i = 0; i < n; i++) atomic_store_explicit(&c->ran[i], 0, memory_order_relaxed);
  c->task = task;
  c->task_context = task_context;
  c->inner.parallel_for(c->inner.context, counting_task, c, n);
  /* the pool's return orders its tasks' writes before this read */
  for (size_t i = 0; i < n; i++) {
    if (atomic_load_explicit(&c->ran[i], memory_order_relaxed) != 1) {
      c->broken++;
      break;
    }
  }
}

/* ---- the checks ---- */

static void poison(float* out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = NAN;
}

static int all_finite(const float* out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i])) return 0;
  }
  return 1;
}

/* The first element where the bits differ, or n. */
static size_t first_difference(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) return i;
  }
  return n;
}

/* One call through the pool and on OpenMP; returns its failed checks. */
static int check_one(const char* name, const check_case* k, const inputs* in, counting_pool* counter,
                     const mha_threadpool* counted, float* pool_out, float* omp_out) {
  counter->calls = 0;
  counter->max_n = 0;
  counter->broken = 0;
  poison(pool_out, k->out_count);
  poison(omp_out, k->out_count);
  mha_status st = k->run(in, counted, 0, pool_out);
  if (st == MHA_STATUS_SUCCESS) st = k->run(in, NULL, POOL_CHECK_THREADS, omp_out);
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "%s: %s: %s: %s\n", name, k->name, mha_status_string(st), mha_last_error());
    return 1;
  }
  int failed = 0;
  if (!all_finite(pool_out, k->out_count)) {
    fprintf(stderr, "%s: %s: the pool's output is not all written (NaN left)\n", name, k->name);
    failed++;
  }
  const size_t at = first_difference(pool_out, omp_out, k->out_count);
  if (at < k->out_count) {
    fprintf(stderr, "%s: %s: element %zu differs: %.9g through the pool, %.9g on OpenMP\n", name, k->name, at,
            pool_out[at], omp_out[at]);
    failed++;
  }
  if (counted->num_threads == 1 && counter->calls != 0) {
    /* one worker: the call runs on the caller's thread (mha.h, "Threads") */
    fprintf(stderr, "%s: %s: a 1-thread pool was called %d times\n", name, k->name, counter->calls);
    failed++;
  }
  if (counted->num_threads > 1 && (counter->calls == 0 || counter->max_n < 2)) {
    fprintf(stderr, "%s: %s: the pool ran nothing in parallel (%d parallel_for calls, at most %zu tasks)\n", name,
            k->name, counter->calls, counter->max_n);
    failed++;
  }
  if (counter->broken != 0) {
    fprintf(stderr, "%s: %s: %d parallel_for calls broke the contract (n, thread, or an index not run once)\n",
            name, k->name, counter->broken);
    failed++;
  }
  return failed;
}

int pool_check(const mha_threadpool* pool, const char* name) {
  if (pool == NULL || pool->num_threads < 1 || pool->num_threads > MAX_TASKS) {
    fprintf(stderr, "%s: pool_check needs a pool of 1 to %d threads\n", name, MAX_TASKS);
    return 1;
  }
  inputs in;
  float* pool_out = malloc(MAX_OUT * sizeof *pool_out);
  float* omp_out = malloc(MAX_OUT * sizeof *omp_out);
  if (pool_out == NULL || omp_out == NULL || !inputs_make(&in)) {
    fprintf(stderr, "%s: out of memory\n", name);
    free(pool_out);
    free(omp_out);
    return 1;
  }
  counting_pool counter = {.inner = *pool, .caller = pthread_self()};
  const mha_threadpool counted = {counting_parallel_for, &counter, pool->num_threads};

  int failed = 0;
  /* every kernel set this CPU runs: the pool must give each set's own bits */
  for (int isa = MHA_ISA_SCALAR; isa < MHA_ISA_COUNT; isa++) {
    if (!mha_isa_available((mha_isa)isa)) continue;
    if (mha_set_isa((mha_isa)isa) != MHA_STATUS_SUCCESS) {
      fprintf(stderr, "%s: mha_set_isa(%s): %s\n", name, mha_isa_name((mha_isa)isa), mha_last_error());
      failed++;
      continue;
    }
    char summary[256] = "";
    int failed_isa = 0;
    for (size_t i = 0; i < sizeof kCases / sizeof kCases[0]; i++) {
      failed_isa += check_one(name, &kCases[i], &in, &counter, &counted, pool_out, omp_out);
      const size_t used = strlen(summary);
      snprintf(summary + used, sizeof summary - used, "%s%s: %d pool call%s of <= %zu tasks", i ? ", " : "",
               kCases[i].name, counter.calls, counter.calls == 1 ? "" : "s", counter.max_n);
    }
    printf("%s: %s, %d-thread pool (%s) against OpenMP at %d threads, bitwise -> %s\n", name,
           mha_isa_name((mha_isa)isa), pool->num_threads, summary, POOL_CHECK_THREADS,
           failed_isa == 0 ? "OK" : "MISMATCH");
    failed += failed_isa;
  }
  (void)mha_set_isa(MHA_ISA_DEFAULT);
  inputs_free(&in);
  free(pool_out);
  free(omp_out);
  return failed;
}
