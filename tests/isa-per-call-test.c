/*
 * One kernel set per call or per plan: desc.isa (core) and mha_layer_desc.isa
 * (layer) choose the kernel set for that call or plan without touching the
 * process-wide choice, so two callers in one process can run different sets
 * at the same time.
 *
 * - Per call: for each ISA the CPU has, the output with desc.isa = that ISA
 *   equals bitwise the output with mha_set_isa(that ISA) and desc.isa =
 *   DEFAULT; two different sets give different bits (so the field is obeyed).
 * - At once: two pthreads per pair of ISAs, each running its own set 20
 *   times on the core and through its own plan, match their sequential bits
 *   every time; mha_get_isa() is unchanged afterwards.
 * - Bad values: an isa outside the enum is INVALID_ARGUMENT, an unavailable
 *   one UNSUPPORTED_ISA, for the core, the workspace query and the layer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

enum { B = 2, H = 8, HKV = 2, TQ = 9, TK = 300, D = 32, DV = 24, ROUNDS = 20 };
enum { NQ = B * H * TQ * D, NK = B * HKV * TK * D, NV = B * HKV * TK * DV, NOUT = B * H * TQ * DV };
enum { DM = 32, LH = 4, LT = 17, NX = B * LT * DM };

typedef struct inputs {
  float q[NQ], k[NK], v[NV];
  float x[NX], w[4 * DM * DM];
} inputs;

static mha_status core_call(const inputs* in, mha_isa isa, float* out) {
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, TQ, TK, D, DV);
  d.isa = isa;
  d.num_threads = 1;
  d.mask.causal = 1;
  return mha_attention_f32(&d, in->q, in->k, in->v, out, NULL);
}

static mha_status layer_make(const inputs* in, mha_isa isa, mha_layer** plan) {
  mha_layer_desc ld;
  memset(&ld, 0, sizeof ld);
  ld.d_model = DM;
  ld.H = LH;
  ld.w_q = in->w;
  ld.w_k = in->w + DM * DM;
  ld.w_v = in->w + 2 * DM * DM;
  ld.w_o = in->w + 3 * DM * DM;
  ld.isa = isa;
  return mha_layer_create(&ld, plan);
}

static mha_status layer_call(const inputs* in, const mha_layer* plan, float* out) {
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = B;
  a.Tq = LT;
  a.x_q = in->x;
  a.out = out;
  a.num_threads = 1;
  return mha_layer_forward(plan, &a);
}

typedef struct job {
  const inputs* in;
  mha_isa isa;
  const mha_layer* plan;
  const float *want_core, *want_layer;
  int mismatches, errors;
} job;

static void* worker(void* arg) {
  job* j = arg;
  float* out = malloc(NOUT * sizeof(float));
  float* lout = malloc(NX * sizeof(float));
  if (out == NULL || lout == NULL) {
    j->errors++;
  } else {
    for (int r = 0; r < ROUNDS; r++) {
      if (core_call(j->in, j->isa, out) != MHA_STATUS_SUCCESS) j->errors++;
      else if (memcmp(out, j->want_core, NOUT * sizeof(float)) != 0) j->mismatches++;
      if (layer_call(j->in, j->plan, lout) != MHA_STATUS_SUCCESS) j->errors++;
      else if (memcmp(lout, j->want_layer, NX * sizeof(float)) != 0) j->mismatches++;
    }
  }
  free(out);
  free(lout);
  return NULL;
}

int main(void) {
  tester t;
  tester_init(&t, "isa-per-call-test");
  static inputs in;
  tester_fill(&t, in.q, NQ);
  tester_fill(&t, in.k, NK);
  tester_fill(&t, in.v, NV);
  tester_fill(&t, in.x, NX);
  tester_fill(&t, in.w, 4 * DM * DM);
  const isa_list isas = tester_available_isas(&t);
  mha_isa process = MHA_ISA_DEFAULT;
  tester_check(&t, mha_get_isa(&process) == MHA_STATUS_SUCCESS, "mha_get_isa: %s", mha_last_error());

  /* the sequential bits of each ISA, per call and per plan */
  static float core_out[MHA_ISA_COUNT][NOUT], layer_out[MHA_ISA_COUNT][NX];
  mha_layer* plans[MHA_ISA_COUNT] = {NULL};
  for (int i = 0; i < isas.count; i++) {
    const mha_isa isa = isas.isa[i];
    tester_context(&t, "sequential, isa %s", mha_isa_name(isa));
    tester_poison(core_out[isa], NOUT);
    mha_status st = core_call(&in, isa, core_out[isa]);
    tester_check(&t, st == MHA_STATUS_SUCCESS, "core: %s", mha_last_error());
    st = layer_make(&in, isa, &plans[isa]);
    if (tester_check(&t, st == MHA_STATUS_SUCCESS, "create: %s", mha_last_error())) {
      tester_check(&t, mha_layer_isa(plans[isa]) == isa, "plan runs %s", mha_isa_name(mha_layer_isa(plans[isa])));
      tester_poison(layer_out[isa], NX);
      st = layer_call(&in, plans[isa], layer_out[isa]);
      tester_check(&t, st == MHA_STATUS_SUCCESS, "layer: %s", mha_last_error());
    }
    /* the field and the process-wide switch pick the same kernels */
    static float via_global[NOUT];
    if (tester_set_isa(&t, isa)) {
      tester_poison(via_global, NOUT);
      st = core_call(&in, MHA_ISA_DEFAULT, via_global);
      tester_check(&t, st == MHA_STATUS_SUCCESS && memcmp(via_global, core_out[isa], sizeof via_global) == 0,
                   "desc.isa = %s and mha_set_isa(%s) give different bits", mha_isa_name(isa), mha_isa_name(isa));
    }
    if (i > 0) {
      const mha_isa first = isas.isa[0];
      tester_check(&t, memcmp(core_out[first], core_out[isa], sizeof core_out[0]) != 0,
                   "%s and %s gave identical bits: desc.isa seems ignored", mha_isa_name(first), mha_isa_name(isa));
    }
  }
  tester_check(&t, mha_set_isa(process) == MHA_STATUS_SUCCESS, "restore %s", mha_isa_name(process));

  /* every pair of ISAs (and each ISA with itself) at once */
  for (int i = 0; i < isas.count; i++) {
    for (int j = i; j < isas.count; j++) {
      tester_context(&t, "concurrent %s and %s", mha_isa_name(isas.isa[i]), mha_isa_name(isas.isa[j]));
      job jobs[2] = {{&in, isas.isa[i], plans[isas.isa[i]], core_out[isas.isa[i]], layer_out[isas.isa[i]], 0, 0},
                     {&in, isas.isa[j], plans[isas.isa[j]], core_out[isas.isa[j]], layer_out[isas.isa[j]], 0, 0}};
      if (jobs[0].plan == NULL || jobs[1].plan == NULL) continue;
      pthread_t th[2];
      int started[2];
      for (int k = 0; k < 2; k++) started[k] = pthread_create(&th[k], NULL, worker, &jobs[k]) == 0;
      for (int k = 0; k < 2; k++) {
        if (started[k]) pthread_join(th[k], NULL);
        tester_check(&t, started[k], "pthread_create");
        tester_check(&t, jobs[k].errors == 0 && jobs[k].mismatches == 0,
                     "thread %d (%s): %d failed calls, %d of %d results differ from sequential", k,
                     mha_isa_name(jobs[k].isa), jobs[k].errors, jobs[k].mismatches, 2 * ROUNDS);
      }
      mha_isa now = MHA_ISA_DEFAULT;
      tester_check(&t, mha_get_isa(&now) == MHA_STATUS_SUCCESS && now == process,
                   "the process-wide set changed to %s", mha_isa_name(now));
    }
  }

  /* bad values */
  tester_context(&t, "bad isa values");
  static float out[NOUT];
  const int outside[] = {-1, MHA_ISA_COUNT, 77};
  for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
    tester_stale_error();
    tester_check_failure(&t, "core isa outside the enum", core_call(&in, (mha_isa)outside[i], out),
                         MHA_STATUS_INVALID_ARGUMENT, "isa");
    mha_layer* plan = (mha_layer*)&t; /* must be set to NULL */
    tester_stale_error();
    tester_check_failure(&t, "layer isa outside the enum", layer_make(&in, (mha_isa)outside[i], &plan),
                         MHA_STATUS_INVALID_ARGUMENT, "isa");
    tester_check(&t, plan == NULL, "failed create left *layer non-NULL");
  }
  for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
    if (mha_isa_available((mha_isa)i)) continue;
    tester_stale_error();
    tester_check_failure(&t, "core isa unavailable", core_call(&in, (mha_isa)i, out),
                         MHA_STATUS_UNSUPPORTED_ISA, mha_isa_name((mha_isa)i));
    mha_attention_desc d;
    mha_attention_desc_init(&d, B, H, HKV, TQ, TK, D, DV);
    d.isa = (mha_isa)i;
    size_t bytes = 0;
    tester_stale_error();
    tester_check_failure(&t, "workspace query isa unavailable", mha_attention_workspace_size(&d, 0, &bytes),
                         MHA_STATUS_UNSUPPORTED_ISA, mha_isa_name((mha_isa)i));
    mha_layer* plan = NULL;
    tester_stale_error();
    tester_check_failure(&t, "layer isa unavailable", layer_make(&in, (mha_isa)i, &plan),
                         MHA_STATUS_UNSUPPORTED_ISA, mha_isa_name((mha_isa)i));
  }
  for (int i = 0; i < MHA_ISA_COUNT; i++) mha_layer_destroy(plans[i]);
  return tester_finish(&t);
}
