/*
 * "Results are bitwise identical for any thread count" (mha.h): the core and
 * the layer, outputs and weights, compared with memcmp across num_threads
 * 1, 2, 3, 7 and 0 (OpenMP's default), on every ISA; and a plan used by two
 * caller threads at once gives the same bits as used by one.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention-problem.h"
#include "layer-problem.h"
#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const int kThreads[] = {1, 2, 3, 7, 0};

static attention_case core_case(int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                                int64_t D, int64_t Dv, int causal, int kv_len,
                                additive_kind additive) {
  attention_case c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.Hkv = Hkv, c.Tq = Tq, c.Tk = Tk, c.D = D, c.Dv = Dv;
  c.causal = causal;
  c.kv_len = kv_len;
  c.additive = additive;
  c.minus_inf = additive != ADDITIVE_NONE;
  c.weights = 1;
  c.layout_q = LAYOUT_BTHD;
  c.layout_out = LAYOUT_BHTD_PADDED;
  return c;
}

static void test_core(tester* t, const isa_list* isas) {
  const attention_case cases[] = {
      core_case(3, 12, 4, 65, 127, 64, 61, 1, 1, ADDITIVE_FULL), /* many work items */
      core_case(1, 2, 1, 7, 200, 137, 8, 0, 0, ADDITIVE_NONE),   /* fewer items than threads */
      core_case(2, 4, 4, 200, 7, 8, 8, 1, 0, ADDITIVE_BROADCAST),
      core_case(1, 1, 1, 1, 1, 1, 1, 0, 0, ADDITIVE_NONE),
      /* unmasked prefill: the transposed tiles at some thread counts (items
       * of 96 rows), the row form at others (48, 24, 12 rows) */
      core_case(1, 2, 2, 192, 200, 64, 64, 0, 0, ADDITIVE_NONE),
      core_case(1, 8, 2, 100, 150, 32, 40, 0, 0, ADDITIVE_NONE), /* GQA; a last key block of 22 */
      /* decode: few rows, many keys, no weights (key ranges may be split) */
      core_case(2, 8, 2, 1, 1031, 64, 61, 0, 1, ADDITIVE_NONE),
      core_case(1, 4, 4, 1, 2049, 16, 16, 1, 0, ADDITIVE_FULL),
  };
  for (size_t n = 0; n < COUNT(cases); n++) {
    attention_case c = cases[n];
    if (c.Tk > 1000) c.weights = 0; /* the decode cases */
    attention_problem p;
    attention_problem_build(t, &c, &p);
    const size_t n_w = (size_t)(p.c.B * p.c.H * p.c.Tq * p.c.Tk);
    float* ref_out = tester_alloc(p.out_size * sizeof(float));
    float* ref_w = tester_alloc(n_w * sizeof(float));
    for (int i = 0; i < isas->count; i++) {
      if (!tester_set_isa(t, isas->isa[i])) continue;
      for (size_t k = 0; k < COUNT(kThreads); k++) {
        p.c.threads = kThreads[k];
        p.desc.num_threads = kThreads[k];
        attention_case_describe(t, &p.c, mha_isa_name(isas->isa[i]));
        attention_problem_poison(&p);
        const mha_status st = mha_attention_f32(&p.desc, p.q, p.k, p.v, p.out, p.weights);
        if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32 returned %s: %s",
                          mha_status_string(st), mha_last_error())) {
          continue;
        }
        if (k == 0) {
          memcpy(ref_out, p.out, p.out_size * sizeof(float));
          if (p.weights != NULL) memcpy(ref_w, p.weights, n_w * sizeof(float));
          continue;
        }
        tester_check(t, memcmp(ref_out, p.out, p.out_size * sizeof(float)) == 0,
                     "out differs from the 1-thread run");
        if (p.weights != NULL) {
          tester_check(t, memcmp(ref_w, p.weights, n_w * sizeof(float)) == 0,
                       "weights differ from the 1-thread run");
        }
      }
    }
    free(ref_w);
    free(ref_out);
    attention_problem_free(&p);
  }
}

static layer_case layer_case_of(int64_t B, int64_t Tq, int64_t Tk, int64_t d_model, int64_t H,
                                int64_t Hkv, int cross) {
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = B, c.Tq = Tq, c.Tk = Tk, c.d_model = d_model, c.H = H, c.Hkv = Hkv, c.cross = cross;
  c.d_kv = cross ? d_model / 2 : 0;
  c.biases = 1;
  c.layout = MHA_WEIGHTS_OUT_IN;
  c.causal = 1;
  c.weights = 1;
  return c;
}

static void test_layer(tester* t, const isa_list* isas) {
  const layer_case cases[] = {
      layer_case_of(3, 65, 0, 64, 4, 2, 0),  /* rows not a multiple of any tile */
      layer_case_of(2, 7, 130, 96, 12, 12, 1),
      layer_case_of(1, 1, 0, 8, 1, 1, 0),
      layer_case_of(2, 130, 0, 300, 4, 4, 0), /* projections past the cache blocks */
  };
  for (size_t n = 0; n < COUNT(cases); n++) {
    layer_problem p;
    layer_problem_build(t, &cases[n], &p);
    float* ref_out = tester_alloc(p.out_size * sizeof(float));
    float* ref_w = tester_alloc(p.weights_size * sizeof(float));
    for (int i = 0; i < isas->count; i++) {
      if (!tester_set_isa(t, isas->isa[i])) continue;
      mha_layer* plan = NULL;
      layer_case_describe(t, &p.c, mha_isa_name(isas->isa[i]));
      const mha_status cst = mha_layer_create(&p.desc, &plan);
      if (!tester_check(t, cst == MHA_STATUS_SUCCESS, "mha_layer_create returned %s: %s",
                        mha_status_string(cst), mha_last_error())) {
        continue;
      }
      for (size_t k = 0; k < COUNT(kThreads); k++) {
        p.c.threads = kThreads[k];
        p.args.num_threads = kThreads[k];
        layer_case_describe(t, &p.c, mha_isa_name(isas->isa[i]));
        tester_poison(p.out, p.out_size);
        tester_poison(p.weights, p.weights_size);
        const mha_status st = mha_layer_forward(plan, &p.args);
        if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_forward returned %s: %s",
                          mha_status_string(st), mha_last_error())) {
          continue;
        }
        if (k == 0) {
          memcpy(ref_out, p.out, p.out_size * sizeof(float));
          memcpy(ref_w, p.weights, p.weights_size * sizeof(float));
          continue;
        }
        tester_check(t, memcmp(ref_out, p.out, p.out_size * sizeof(float)) == 0,
                     "layer out differs from the 1-thread run");
        tester_check(t, memcmp(ref_w, p.weights, p.weights_size * sizeof(float)) == 0,
                     "layer weights differ from the 1-thread run");
      }
      mha_layer_destroy(plan);
    }
    free(ref_w);
    free(ref_out);
    layer_problem_free(&p);
  }
}

/* Two caller threads share one plan, each with its own output. */
typedef struct shared_plan_job {
  const mha_layer* plan;
  mha_layer_args args;
  mha_status status;
} shared_plan_job;

static void* shared_plan_worker(void* arg) {
  shared_plan_job* job = arg;
  for (int rep = 0; rep < 4 && job->status == MHA_STATUS_SUCCESS; rep++) {
    job->status = mha_layer_forward(job->plan, &job->args);
  }
  return NULL;
}

static void test_shared_plan(tester* t, const isa_list* isas) {
  layer_case c = layer_case_of(2, 33, 0, 32, 4, 4, 0);
  c.weights = 0;
  c.threads = 2;
  layer_problem p;
  layer_problem_build(t, &c, &p);
  float* outs[2] = {tester_alloc(p.out_size * sizeof(float)),
                    tester_alloc(p.out_size * sizeof(float))};
  float* ref = tester_alloc(p.out_size * sizeof(float));
  for (int i = 0; i < isas->count; i++) {
    if (!tester_set_isa(t, isas->isa[i])) continue;
    layer_case_describe(t, &c, "one plan, two caller threads");
    mha_layer* plan = NULL;
    if (!tester_check(t, mha_layer_create(&p.desc, &plan) == MHA_STATUS_SUCCESS,
                      "mha_layer_create: %s", mha_last_error())) {
      continue;
    }
    tester_check(t, mha_layer_forward(plan, &p.args) == MHA_STATUS_SUCCESS,
                 "mha_layer_forward: %s", mha_last_error());
    memcpy(ref, p.out, p.out_size * sizeof(float));
    shared_plan_job jobs[2];
    pthread_t threads[2];
    for (int j = 0; j < 2; j++) {
      tester_poison(outs[j], p.out_size);
      jobs[j].plan = plan;
      jobs[j].args = p.args;
      jobs[j].args.out = outs[j];
      jobs[j].status = MHA_STATUS_SUCCESS;
      tester_check(t, pthread_create(&threads[j], NULL, shared_plan_worker, &jobs[j]) == 0,
                   "pthread_create");
    }
    for (int j = 0; j < 2; j++) {
      pthread_join(threads[j], NULL);
      tester_check(t, jobs[j].status == MHA_STATUS_SUCCESS,
                   "caller thread %d: mha_layer_forward returned %s", j,
                   mha_status_string(jobs[j].status));
      tester_check(t, memcmp(outs[j], ref, p.out_size * sizeof(float)) == 0,
                   "caller thread %d: out differs from the single-caller run", j);
    }
    mha_layer_destroy(plan);
  }
  free(ref);
  free(outs[1]);
  free(outs[0]);
  layer_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "determinism-test");
  const isa_list isas = tester_available_isas(&t);
  test_core(&t, &isas);
  test_layer(&t, &isas);
  test_shared_plan(&t, &isas);
  return tester_finish(&t);
}
