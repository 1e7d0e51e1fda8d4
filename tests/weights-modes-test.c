/*
 * The weights output's modes (mha_weights_mode) against the per-head weights
 * of the same call:
 *   - MHA_WEIGHTS_SELECTED: each chosen slot is bitwise the per-head row of
 *     its head (a head chosen twice, in any order);
 *   - MHA_WEIGHTS_HEAD_MEAN: the mean over heads, against the per-head
 *     weights summed in double (tolerance), and bitwise identical for any
 *     thread count and as one entry of a larger batch;
 *   - out is bitwise the same in every mode and without weights;
 *   - every output poisoned (NaN) before each run, so a slot left unwritten
 *     fails.
 * Shapes: prefill (packed Kᵀ) and decode (key ranges merged), GQA and not,
 * a causal sliding window so that rows see different keys, kv_len; every ISA
 * this CPU has; the layer passes the mode through (head mean vs per head).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tester.h"

typedef struct shape {
  int64_t B, H, Hkv, Tq, Tk, D;
  int window; /* causal sliding window of this many keys (0: none) */
} shape;

static mha_attention_desc make_desc(const shape* s, const int32_t* kv_len, mha_isa isa, int threads) {
  mha_attention_desc d;
  mha_attention_desc_init(&d, s->B, s->H, s->Hkv, s->Tq, s->Tk, s->D, s->D);
  d.isa = isa;
  d.num_threads = threads;
  d.mask.kv_len = kv_len;
  if (s->window > 0) {
    d.mask.causal = 1;
    d.mask.window = 1;
    d.mask.window_left = s->window - 1;
  }
  return d;
}

static int run(tester* t, const mha_attention_desc* d, const float* q, const float* k, const float* v,
               float* out, float* w) {
  const mha_status st = mha_attention_f32(d, q, k, v, out, w);
  return tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32: %s: %s", mha_status_string(st),
                      mha_last_error());
}

static void check_bitwise(tester* t, const char* what, const float* a, const float* b, size_t n) {
  size_t bad = n;
  for (size_t i = 0; i < n && bad == n; i++) {
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) bad = i;
  }
  tester_check(t, bad == n, "%s: element %zu differs (%.9g vs %.9g)", what, bad, bad < n ? a[bad] : 0.0,
               bad < n ? b[bad] : 0.0);
}

static void check_shape(tester* t, const shape* s, mha_isa isa) {
  const size_t nq = (size_t)(s->B * s->H * s->Tq * s->D), nkv = (size_t)(s->B * s->Hkv * s->Tk * s->D);
  const size_t row = (size_t)(s->Tq * s->Tk), nw = (size_t)(s->B * s->H) * row;
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nkv * sizeof(float));
  float* v = tester_alloc(nkv * sizeof(float));
  float* out_ref = tester_alloc(nq * sizeof(float));
  float* out = tester_alloc(nq * sizeof(float));
  float* w_all = tester_alloc(nw * sizeof(float));
  const size_t nw3 = (size_t)s->B * 3 * row; /* the selected mode's 3 slots */
  float* w = tester_alloc((nw > nw3 ? nw : nw3) * sizeof(float));
  float* mean1 = tester_alloc((size_t)s->B * row * sizeof(float));
  double* want = tester_alloc((size_t)s->B * row * sizeof(double));
  double* tol = tester_alloc((size_t)s->B * row * sizeof(double));
  int32_t* kv_len = tester_alloc((size_t)s->B * sizeof(int32_t));
  tester_fill(t, q, nq);
  tester_fill(t, k, nkv);
  tester_fill(t, v, nkv);
  for (int64_t b = 0; b < s->B; b++) kv_len[b] = (int32_t)(s->Tk - tester_below(t, s->Tk / 3 + 1));

  /* per head, one thread: the reference of every mode */
  mha_attention_desc d = make_desc(s, kv_len, isa, 1);
  tester_poison(out_ref, nq);
  tester_poison(w_all, nw);
  if (!run(t, &d, q, k, v, out_ref, w_all)) goto done;

  /* selected heads: last, first, last again */
  const int32_t heads[3] = {(int32_t)(s->H - 1), 0, (int32_t)(s->H - 1)};
  for (int threads = 1; threads <= 3; threads++) {
    tester_context(t, "isa %s, B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld window=%d, selected, %d threads",
                   mha_isa_name(isa), (long long)s->B, (long long)s->H, (long long)s->Hkv,
                   (long long)s->Tq, (long long)s->Tk, s->window, threads);
    d = make_desc(s, kv_len, isa, threads);
    d.weights_mode = MHA_WEIGHTS_SELECTED;
    d.weights_heads = heads;
    d.weights_nheads = 3;
    tester_poison(out, nq);
    tester_poison(w, nw > nw3 ? nw : nw3);
    if (!run(t, &d, q, k, v, out, w)) continue;
    check_bitwise(t, "out (selected weights)", out, out_ref, nq);
    for (int64_t b = 0; b < s->B; b++) {
      for (int kk = 0; kk < 3; kk++) {
        check_bitwise(t, "selected slot", w + (size_t)(b * 3 + kk) * row,
                      w_all + (size_t)(b * s->H + heads[kk]) * row, row);
      }
    }
  }

  /* head mean: against the per-head weights summed in double */
  for (int64_t b = 0; b < s->B; b++) {
    for (size_t e = 0; e < row; e++) {
      double acc = 0.0;
      for (int64_t h = 0; h < s->H; h++) acc += w_all[(size_t)(b * s->H + h) * row + e];
      want[(size_t)b * row + e] = acc / (double)s->H;
      tol[(size_t)b * row + e] = 1e-6 + 1e-5 * fabs(acc / (double)s->H);
    }
  }
  for (int threads = 1; threads <= 3; threads++) {
    tester_context(t, "isa %s, B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld window=%d, head mean, %d threads",
                   mha_isa_name(isa), (long long)s->B, (long long)s->H, (long long)s->Hkv,
                   (long long)s->Tq, (long long)s->Tk, s->window, threads);
    d = make_desc(s, kv_len, isa, threads);
    d.weights_mode = MHA_WEIGHTS_HEAD_MEAN;
    tester_poison(out, nq);
    tester_poison(w, nw > nw3 ? nw : nw3);
    if (!run(t, &d, q, k, v, out, w)) continue;
    check_bitwise(t, "out (head-mean weights)", out, out_ref, nq);
    tester_check_close(t, "head mean", (size_t)s->B * row, w, want, tol);
    tester_check(t, tester_is_poison(w[(size_t)s->B * row]),
                 "head mean wrote past [B, Tq, Tk]");
    if (threads == 1) {
      memcpy(mean1, w, (size_t)s->B * row * sizeof(float));
    } else {
      check_bitwise(t, "head mean across thread counts", w, mean1, (size_t)s->B * row);
    }
  }
  /* batch invariance: the last entry alone gives the same bits */
  if (s->B > 1) {
    shape one = *s;
    one.B = 1;
    const int64_t b = s->B - 1;
    tester_context(t, "isa %s, head mean, entry %lld alone", mha_isa_name(isa), (long long)b);
    d = make_desc(&one, kv_len + b, isa, 2);
    d.weights_mode = MHA_WEIGHTS_HEAD_MEAN;
    tester_poison(w, row);
    if (run(t, &d, q + (size_t)b * (nq / (size_t)s->B), k + (size_t)b * (nkv / (size_t)s->B),
            v + (size_t)b * (nkv / (size_t)s->B), out, w)) {
      check_bitwise(t, "head mean, entry alone vs in the batch", w, mean1 + (size_t)b * row, row);
    }
  }
done:
  free(q);
  free(k);
  free(v);
  free(out_ref);
  free(out);
  free(w_all);
  free(w);
  free(mean1);
  free(want);
  free(tol);
  free(kv_len);
}

/* The layer passes the mode to the core: head mean == mean of per head. */
static void check_layer(tester* t, mha_isa isa) {
  const int64_t B = 2, T = 37, dm = 48, H = 6, Hkv = 2, D = dm / H;
  const size_t nx = (size_t)(B * T * dm), row = (size_t)(T * T), nw = (size_t)(B * H) * row;
  float* x = tester_alloc(nx * sizeof(float));
  float* wq = tester_alloc((size_t)(dm * H * D) * sizeof(float));
  float* wk = tester_alloc((size_t)(dm * Hkv * D) * sizeof(float));
  float* wv = tester_alloc((size_t)(dm * Hkv * D) * sizeof(float));
  float* wo = tester_alloc((size_t)(H * D * dm) * sizeof(float));
  float* out = tester_alloc(nx * sizeof(float));
  float* w_all = tester_alloc(nw * sizeof(float));
  float* w = tester_alloc(nw * sizeof(float));
  double* want = tester_alloc((size_t)B * row * sizeof(double));
  double* tol = tester_alloc((size_t)B * row * sizeof(double));
  tester_fill(t, x, nx);
  tester_fill(t, wq, (size_t)(dm * H * D));
  tester_fill(t, wk, (size_t)(dm * Hkv * D));
  tester_fill(t, wv, (size_t)(dm * Hkv * D));
  tester_fill(t, wo, (size_t)(H * D * dm));
  mha_layer_desc ld = {0};
  ld.d_model = dm;
  ld.H = H;
  ld.Hkv = Hkv;
  ld.w_q = wq;
  ld.w_k = wk;
  ld.w_v = wv;
  ld.w_o = wo;
  ld.isa = isa;
  mha_layer* L = NULL;
  mha_status st = mha_layer_create(&ld, &L);
  tester_context(t, "isa %s, layer, head mean", mha_isa_name(isa));
  if (tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_create: %s", mha_last_error())) {
    mha_layer_args a;
    mha_layer_args_init(&a);
    a.B = B;
    a.Tq = T;
    a.x_q = x;
    a.out = out;
    a.mask.causal = 1;
    a.num_threads = 2;
    a.weights = w_all;
    tester_poison(w_all, nw);
    st = mha_layer_forward(L, &a);
    tester_check(t, st == MHA_STATUS_SUCCESS, "per head: %s", mha_last_error());
    a.weights = w;
    a.weights_mode = MHA_WEIGHTS_HEAD_MEAN;
    tester_poison(w, nw);
    st = mha_layer_forward(L, &a);
    tester_check(t, st == MHA_STATUS_SUCCESS, "head mean: %s", mha_last_error());
    for (int64_t b = 0; b < B; b++) {
      for (size_t e = 0; e < row; e++) {
        double acc = 0.0;
        for (int64_t h = 0; h < H; h++) acc += w_all[(size_t)(b * H + h) * row + e];
        want[(size_t)b * row + e] = acc / (double)H;
        tol[(size_t)b * row + e] = 1e-6 + 1e-5 * fabs(acc / (double)H);
      }
    }
    tester_check_close(t, "layer head mean", (size_t)B * row, w, want, tol);
    tester_check(t, tester_is_poison(w[(size_t)B * row]), "layer head mean wrote past [B, Tq, Tk]");
  }
  mha_layer_destroy(L);
  free(x);
  free(wq);
  free(wk);
  free(wv);
  free(wo);
  free(out);
  free(w_all);
  free(w);
  free(want);
  free(tol);
}

/* Bad arguments: a mode outside the enum, no head list, a head outside [0, H). */
static void check_errors(tester* t) {
  const shape s = {1, 4, 2, 5, 9, 8, 0};
  float q[4 * 5 * 8], k[2 * 9 * 8], v[2 * 9 * 8], out[4 * 5 * 8], w[4 * 5 * 9];
  tester_fill(t, q, sizeof q / sizeof q[0]);
  tester_fill(t, k, sizeof k / sizeof k[0]);
  tester_fill(t, v, sizeof v / sizeof v[0]);
  tester_context(t, "weights mode errors");
  mha_attention_desc d = make_desc(&s, NULL, MHA_ISA_DEFAULT, 1);
  d.weights_mode = (mha_weights_mode)7;
  tester_stale_error();
  tester_check_failure(t, "mode 7", mha_attention_f32(&d, q, k, v, out, w), MHA_STATUS_INVALID_ARGUMENT,
                       "weights_mode");
  d.weights_mode = MHA_WEIGHTS_SELECTED;
  tester_stale_error();
  tester_check_failure(t, "no heads", mha_attention_f32(&d, q, k, v, out, w), MHA_STATUS_NULL_POINTER,
                       "weights_heads");
  const int32_t bad[2] = {1, 4};
  d.weights_heads = bad;
  d.weights_nheads = 0;
  tester_stale_error();
  tester_check_failure(t, "0 heads", mha_attention_f32(&d, q, k, v, out, w), MHA_STATUS_INVALID_SIZE,
                       "weights_nheads");
  d.weights_nheads = 2;
  tester_stale_error();
  tester_check_failure(t, "head 4 of 4", mha_attention_f32(&d, q, k, v, out, w),
                       MHA_STATUS_INVALID_ARGUMENT, "weights_heads[1]");
  /* without a weights output the mode is not read */
  d.weights_mode = MHA_WEIGHTS_SELECTED;
  d.weights_heads = NULL;
  tester_check(t, mha_attention_f32(&d, q, k, v, out, NULL) == MHA_STATUS_SUCCESS,
               "no weights output: the head list is not needed (%s)", mha_last_error());
}

int main(void) {
  tester t;
  tester_init(&t, "weights-modes-test");
  const shape shapes[] = {
      {2, 4, 4, 33, 70, 16, 0},   /* prefill, MHA */
      {2, 6, 2, 65, 65, 12, 21},  /* prefill, GQA, causal window */
      {3, 8, 2, 1, 600, 16, 0},   /* decode: key ranges merged */
      {1, 4, 1, 3, 300, 8, 100},  /* decode-like, MQA, window */
      {1, 1, 1, 7, 7, 5, 0},      /* one head */
  };
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) check_shape(&t, &shapes[si], isas.isa[i]);
    check_layer(&t, isas.isa[i]);
  }
  check_errors(&t);
  return tester_finish(&t);
}
