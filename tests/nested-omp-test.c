/*
 * mha called from inside the caller's own OpenMP parallel region, with
 * nested parallelism enabled: with num_threads = 0 each call must run on its
 * caller's thread alone (no oversubscription), give the same bits as a call
 * from outside (results do not depend on the thread count), and leave the
 * caller's team intact; on every ISA, for the core and the layer.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "mha/internal.h" /* white box: mha_resolve_workers */
#include "tester.h"

enum { CALLERS = 3 };

static void test_core(tester* t, mha_isa isa) {
  const int64_t B = 2, H = 4, Hkv = 2, Tq = 37, Tk = 70, D = 24;
  tester_context(t, "core inside a parallel region, isa=%s", mha_isa_name(isa));
  const size_t nq = (size_t)(B * H * Tq * D), nk = (size_t)(B * Hkv * Tk * D);
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nk * sizeof(float));
  float* v = tester_alloc(nk * sizeof(float));
  float* ref = tester_alloc(nq * sizeof(float));
  float* outs = tester_alloc(CALLERS * nq * sizeof(float));
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nk);
  tester_poison(ref, nq);
  tester_poison(outs, CALLERS * nq);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, Tq, Tk, D, D);
  d.mask.causal = 1;
  mha_status st = mha_attention_f32(&d, q, k, v, ref, NULL);
  tester_check(t, st == MHA_STATUS_SUCCESS, "outside call: %s", mha_status_string(st));

  mha_status status[CALLERS];
  int team = 0;
#pragma omp parallel num_threads(CALLERS)
  {
    const int me = omp_get_thread_num();
    status[me] = mha_attention_f32(&d, q, k, v, outs + (size_t)me * nq, NULL);
#pragma omp single
    team = omp_get_num_threads();
  }
  tester_check(t, team == CALLERS, "the caller's team has %d threads, not %d", team, CALLERS);
  for (int c = 0; c < team && c < CALLERS; c++) {
    tester_check(t, status[c] == MHA_STATUS_SUCCESS, "caller %d: %s", c, mha_status_string(status[c]));
    tester_check(t, memcmp(outs + (size_t)c * nq, ref, nq * sizeof(float)) == 0,
                 "caller %d: output differs from the call outside the region", c);
  }
  free(q); free(k); free(v); free(ref); free(outs);
}

static void test_layer(tester* t, mha_isa isa) {
  const int64_t dm = 32, H = 4, B = 2, T = 19;
  tester_context(t, "layer inside a parallel region, isa=%s", mha_isa_name(isa));
  float* w = tester_alloc((size_t)(4 * dm * dm) * sizeof(float));
  tester_fill(t, w, (size_t)(4 * dm * dm));
  mha_layer_desc desc = {.d_model = dm, .H = H, .w_q = w, .w_k = w + dm * dm,
                         .w_v = w + 2 * dm * dm, .w_o = w + 3 * dm * dm};
  mha_layer* L = NULL;
  mha_status st = mha_layer_create(&desc, &L);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "create: %s", mha_status_string(st))) return;
  const size_t n = (size_t)(B * T * dm);
  float* x = tester_alloc(n * sizeof(float));
  float* ref = tester_alloc(n * sizeof(float));
  float* outs = tester_alloc(CALLERS * n * sizeof(float));
  tester_fill(t, x, n);
  tester_poison(ref, n);
  tester_poison(outs, CALLERS * n);
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = B;
  a.Tq = T;
  a.x_q = x;
  a.out = ref;
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS, "outside forward: %s", mha_status_string(st));
  mha_status status[CALLERS];
#pragma omp parallel num_threads(CALLERS)
  {
    const int me = omp_get_thread_num();
    mha_layer_args mine = a;
    mine.out = outs + (size_t)me * n;
    status[me] = mha_layer_forward(L, &mine);
  }
  for (int c = 0; c < CALLERS; c++) {
    tester_check(t, status[c] == MHA_STATUS_SUCCESS, "caller %d: %s", c, mha_status_string(status[c]));
    tester_check(t, memcmp(outs + (size_t)c * n, ref, n * sizeof(float)) == 0,
                 "caller %d: layer output differs from the forward outside the region", c);
  }
  mha_layer_destroy(L);
  free(w); free(x); free(ref); free(outs);
}

/* The rule itself: num_threads 0 is OpenMP's default outside a region and 1
 * inside one (even with nesting allowed); an explicit count is kept. */
static void test_thread_rule(tester* t) {
  tester_context(t, "mha_resolve_workers");
  const int outside = mha_resolve_workers(0, NULL);
  tester_check(t, outside == omp_get_max_threads(), "outside a region: %d threads, OpenMP's default is %d",
               outside, omp_get_max_threads());
  int inside[CALLERS], explicit5[CALLERS];
#pragma omp parallel num_threads(CALLERS)
  {
    inside[omp_get_thread_num()] = mha_resolve_workers(0, NULL);
    explicit5[omp_get_thread_num()] = mha_resolve_workers(5, NULL);
  }
  for (int c = 0; c < CALLERS; c++) {
    tester_check(t, inside[c] == 1, "inside a region, caller %d: %d threads, want 1", c, inside[c]);
    tester_check(t, explicit5[c] == 5, "an explicit count of 5 became %d", explicit5[c]);
  }
}

int main(void) {
  tester t;
  tester_init(&t, "nested-omp-test");
  omp_set_max_active_levels(2); /* nested regions allowed: mha must still not nest */
  test_thread_rule(&t);
  isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    if (!tester_set_isa(&t, isas.isa[i])) continue;
    test_core(&t, isas.isa[i]);
    test_layer(&t, isas.isa[i]);
  }
  return tester_finish(&t);
}
