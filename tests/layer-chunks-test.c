/*
 * The layer runs its batch in chunks of whole entries (mha_layer_forward:
 * at least one entry, at most 16 MiB of projections). Here one entry's
 * projections take about 10 MiB, so a B = 3 forward runs three chunks; it
 * must equal, bit for bit, three B = 1 forwards on the entries' slices —
 * outputs and attention weights, with per-batch kv_len and additive masks,
 * for self- and cross-attention, on every ISA and at two thread counts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

enum { DM = 64, NH = 2, DKV = 8, NB = 3, TQ = 20000 };

static void run_case(tester* t, mha_isa isa, int cross, int threads) {
  const int64_t Tk = cross ? 5 : TQ, d_kv = cross ? DKV : DM;
  tester_context(t, "layer chunks isa=%s cross=%d threads=%d", mha_isa_name(isa), cross, threads);
  float* w = tester_alloc((size_t)(2 * DM * DM + 2 * d_kv * DM) * sizeof(float));
  tester_fill(t, w, (size_t)(2 * DM * DM + 2 * d_kv * DM));
  mha_layer_desc desc = {.d_model = DM, .d_kv = d_kv, .H = NH, .w_q = w, .w_o = w + DM * DM,
                         .w_k = w + 2 * DM * DM, .w_v = w + 2 * DM * DM + d_kv * DM};
  mha_layer* L = NULL;
  mha_status st = mha_layer_create(&desc, &L);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "create: %s", mha_last_error())) return;

  const size_t nxq = (size_t)(NB * TQ * DM), nxk = (size_t)(NB * Tk * d_kv);
  const size_t nw = cross ? (size_t)(NB * NH * TQ * Tk) : 0;
  const size_t nadd = cross ? (size_t)(NB * TQ * Tk) : 0;
  float* xq = tester_alloc(nxq * sizeof(float));
  float* xk = tester_alloc((nxk + 1) * sizeof(float));
  float* add = tester_alloc((nadd + 1) * sizeof(float));
  float* out = tester_alloc(nxq * sizeof(float));
  float* ref = tester_alloc(nxq * sizeof(float));
  float* wts = tester_alloc((nw + 1) * sizeof(float));
  float* wref = tester_alloc((nw + 1) * sizeof(float));
  tester_fill(t, xq, nxq);
  tester_fill(t, xk, nxk + 1);
  tester_fill(t, add, nadd + 1);
  /* short keys keep self-attention at Tq 20000 cheap; entry 1 differs from 0 */
  const int32_t kv_len[NB] = {cross ? (int32_t)Tk : 300, cross ? (int32_t)(Tk - 2) : 298, 1};

  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = NB;
  a.Tq = TQ;
  a.Tk = Tk;
  a.x_q = xq;
  a.x_k = cross ? xk : NULL;
  a.out = out;
  a.num_threads = threads;
  a.mask.kv_len = kv_len;
  if (cross) { /* a [B, 1, Tq, Tk] mask and the weights: both per batch entry */
    a.mask.additive = add;
    a.mask.additive_strides = (mha_strides){TQ * Tk, 0, Tk};
    a.weights = wts;
  } else {
    a.mask.causal = 1;
  }
  tester_poison(out, nxq);
  tester_poison(wts, nw + 1);
  st = mha_layer_forward(L, &a);
  tester_check(t, st == MHA_STATUS_SUCCESS, "B=3 forward: %s: %s", mha_status_string(st), mha_last_error());

  tester_poison(ref, nxq);
  tester_poison(wref, nw + 1);
  for (int64_t b = 0; b < NB; b++) {
    mha_layer_args one = a;
    one.B = 1;
    one.x_q = xq + b * TQ * DM;
    one.x_k = cross ? xk + b * Tk * d_kv : NULL;
    one.out = ref + b * TQ * DM;
    one.mask.kv_len = kv_len + b;
    if (cross) {
      one.mask.additive = add + b * TQ * Tk;
      one.weights = wref + b * NH * TQ * Tk;
    }
    st = mha_layer_forward(L, &one);
    tester_check(t, st == MHA_STATUS_SUCCESS, "B=1 forward of entry %lld: %s", (long long)b, mha_last_error());
  }
  tester_check(t, memcmp(out, ref, nxq * sizeof(float)) == 0, "chunked B=3 output differs from per-entry forwards");
  tester_check(t, memcmp(wts, wref, (nw + 1) * sizeof(float)) == 0, "chunked B=3 weights differ from per-entry forwards");
  size_t bytes = 0;
  st = mha_layer_workspace_size(L, &a, &bytes);
  tester_check(t, st == MHA_STATUS_SUCCESS && bytes < (size_t)2 * TQ * 3 * DM * sizeof(float) + ((size_t)64 << 20),
               "workspace of %zu bytes holds more than one entry's projections (chunking off?)", bytes);
  mha_layer_destroy(L);
  free(w); free(xq); free(xk); free(add); free(out); free(ref); free(wts); free(wref);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-chunks-test");
  isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    if (!tester_set_isa(&t, isas.isa[i])) continue;
    for (int threads = 1; threads <= 2; threads++) {
      run_case(&t, isas.isa[i], 1, threads);
      run_case(&t, isas.isa[i], 0, threads);
    }
  }
  return tester_finish(&t);
}
