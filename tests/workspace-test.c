/*
 * Caller-provided workspaces and the plan's ISA:
 *   - mha_attention_workspace_size / mha_layer_workspace_size report a size;
 *     a buffer of exactly that size (at an odd address) gives output bitwise
 *     equal to the call that allocates its own, for prefill, decode (the key
 *     split) and weights shapes, on every ISA;
 *   - a buffer one byte short fails with INVALID_ARGUMENT and writes nothing
 *     (the output keeps its poison);
 *   - mha_layer_isa() names the set the plan was packed for, and the plan
 *     keeps it after mha_set_isa() changes the process-wide set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

static void test_core(tester* t, mha_isa isa, int64_t B, int64_t H, int64_t Hkv, int64_t Tq,
                      int64_t Tk, int64_t D, int with_weights, int threads) {
  tester_context(t, "core workspace isa=%s B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld weights=%d threads=%d",
                 mha_isa_name(isa), (long long)B, (long long)H, (long long)Hkv, (long long)Tq,
                 (long long)Tk, (long long)D, with_weights, threads);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, Tq, Tk, D, D);
  d.mask.causal = 1;
  d.num_threads = threads;
  const size_t nq = (size_t)(B * H * Tq * D), nk = (size_t)(B * Hkv * Tk * D);
  const size_t nw = with_weights ? (size_t)(B * H * Tq * Tk) : 0;
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nk * sizeof(float));
  float* v = tester_alloc(nk * sizeof(float));
  float* ref = tester_alloc(nq * sizeof(float));
  float* out = tester_alloc(nq * sizeof(float));
  float* wref = tester_alloc((nw + 1) * sizeof(float));
  float* w = tester_alloc((nw + 1) * sizeof(float));
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nk);
  tester_poison(ref, nq);
  tester_poison(wref, nw + 1);
  mha_status st = mha_attention_f32(&d, q, k, v, ref, with_weights ? wref : NULL);
  tester_check(t, st == MHA_STATUS_SUCCESS, "allocating call: %s: %s", mha_status_string(st), mha_last_error());

  size_t bytes = 0;
  st = mha_attention_workspace_size(&d, with_weights, &bytes);
  tester_check(t, st == MHA_STATUS_SUCCESS && bytes > 0, "mha_attention_workspace_size: %s, %zu bytes",
               mha_status_string(st), bytes);
  char* raw = tester_alloc(bytes + 1);
  d.workspace = raw + 1; /* an odd address: the library aligns it */
  d.workspace_size = bytes;
  tester_poison(out, nq);
  tester_poison(w, nw + 1);
  st = mha_attention_f32(&d, q, k, v, out, with_weights ? w : NULL);
  tester_check(t, st == MHA_STATUS_SUCCESS, "call with workspace: %s: %s", mha_status_string(st), mha_last_error());
  tester_check(t, memcmp(out, ref, nq * sizeof(float)) == 0, "output with a workspace differs from the allocating call");
  tester_check(t, memcmp(w, wref, (nw + 1) * sizeof(float)) == 0, "weights with a workspace differ");

  d.workspace_size = bytes - 65; /* shorter than documented, after the odd start */
  tester_poison(out, nq);
  tester_stale_error();
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  tester_check_failure(t, "short workspace", st, MHA_STATUS_INVALID_ARGUMENT, "workspace");
  int untouched = 1;
  for (size_t i = 0; i < nq; i++) untouched &= tester_is_poison(out[i]);
  tester_check(t, untouched, "a failed call wrote into out");
  free(raw);
  free(q); free(k); free(v); free(ref); free(out); free(wref); free(w);
}

static void test_layer(tester* t, mha_isa isa, int cross, int threads) {
  const int64_t dm = 48, H = 4, Hkv = 2, B = 2, Tq = 13, Tk = cross ? 29 : 13;
  tester_context(t, "layer workspace isa=%s cross=%d threads=%d", mha_isa_name(isa), cross, threads);
  const int64_t D = dm / H;
  float* wq = tester_alloc((size_t)(dm * H * D) * sizeof(float));
  float* wk = tester_alloc((size_t)(dm * Hkv * D) * sizeof(float));
  float* wv = tester_alloc((size_t)(dm * Hkv * D) * sizeof(float));
  float* wo = tester_alloc((size_t)(H * D * dm) * sizeof(float));
  tester_fill(t, wq, (size_t)(dm * H * D));
  tester_fill(t, wk, (size_t)(dm * Hkv * D));
  tester_fill(t, wv, (size_t)(dm * Hkv * D));
  tester_fill(t, wo, (size_t)(H * D * dm));
  mha_layer_desc desc = {.d_model = dm, .H = H, .Hkv = Hkv, .w_q = wq, .w_k = wk, .w_v = wv, .w_o = wo};
  mha_layer* L = NULL;
  mha_status st = mha_layer_create(&desc, &L);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_create: %s: %s", mha_status_string(st), mha_last_error())) return;
  tester_check(t, mha_layer_isa(L) == isa, "mha_layer_isa = %s, the plan was packed for %s",
               mha_isa_name(mha_layer_isa(L)), mha_isa_name(isa));

  const size_t nx = (size_t)(B * Tq * dm), nkv = (size_t)(B * Tk * dm);
  float* xq = tester_alloc(nx * sizeof(float));
  float* xk = tester_alloc(nkv * sizeof(float));
  float* ref = tester_alloc(nx * sizeof(float));
  float* out = tester_alloc(nx * sizeof(float));
  tester_fill(t, xq, nx);
  tester_fill(t, xk, nkv);
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = B;
  a.Tq = Tq;
  a.Tk = Tk;
  a.x_q = xq;
  a.x_k = cross ? xk : NULL;
  a.out = ref;
  a.mask.causal = 1;
  a.num_threads = threads;
  tester_poison(ref, nx);
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS, "allocating forward: %s: %s", mha_status_string(st), mha_last_error());

  /* the plan keeps its kernel set when the process-wide one changes */
  mha_set_isa(isa == MHA_ISA_SCALAR && mha_isa_available(MHA_ISA_AVX2) ? MHA_ISA_AVX2 : MHA_ISA_SCALAR);
  tester_check(t, mha_layer_isa(L) == isa, "mha_layer_isa changed with mha_set_isa");
  tester_set_isa(t, isa);

  size_t bytes = 0;
  st = mha_layer_workspace_size(L, &a, &bytes);
  tester_check(t, st == MHA_STATUS_SUCCESS && bytes > 0, "mha_layer_workspace_size: %s", mha_status_string(st));
  char* raw = tester_alloc(bytes + 3);
  a.workspace = raw + 3;
  a.workspace_size = bytes;
  a.out = out;
  tester_poison(out, nx);
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS, "forward with workspace: %s: %s", mha_status_string(st), mha_last_error());
  tester_check(t, memcmp(out, ref, nx * sizeof(float)) == 0, "layer output with a workspace differs");

  a.workspace_size = bytes - 67;
  tester_poison(out, nx);
  tester_stale_error();
  st = mha_layer_forward(L, &a);
  tester_check_failure(t, "short layer workspace", st, MHA_STATUS_INVALID_ARGUMENT, "workspace");
  int untouched = 1;
  for (size_t i = 0; i < nx; i++) untouched &= tester_is_poison(out[i]);
  tester_check(t, untouched, "a failed forward wrote into out");
  free(raw);
  free(xq); free(xk); free(ref); free(out);
  mha_layer_destroy(L);
  free(wq); free(wk); free(wv); free(wo);
}

int main(void) {
  tester t;
  tester_init(&t, "workspace-test");
  isa_list isas = tester_available_isas(&t);
  static const int threads[] = {1, 2, 3};
  for (int i = 0; i < isas.count; i++) {
    if (!tester_set_isa(&t, isas.isa[i])) continue;
    for (size_t n = 0; n < sizeof threads / sizeof threads[0]; n++) {
      test_core(&t, isas.isa[i], 2, 4, 2, 70, 70, 24, 0, threads[n]);   /* prefill: packed Kᵀ */
      test_core(&t, isas.isa[i], 1, 4, 1, 1, 1500, 32, 0, threads[n]);  /* decode: key split */
      test_core(&t, isas.isa[i], 1, 2, 2, 9, 40, 16, 1, threads[n]);    /* with weights */
      test_layer(&t, isas.isa[i], 0, threads[n]);
      test_layer(&t, isas.isa[i], 1, threads[n]);
    }
  }
  return tester_finish(&t);
}
