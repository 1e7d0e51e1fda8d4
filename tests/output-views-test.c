/*
 * Writable views are validated: out and weights may not overlap themselves,
 * each other, or the inputs they are computed from; a zero stride on an
 * output only where its dimension has size 1. Each refusal is
 * MHA_STATUS_INVALID_STRIDE with a fresh message that names the views, and
 * leaves every output untouched. The cases are those of the report (out
 * strides {0, 0, Dv} and {1, 1, Dv} with B 4, H 8; out == v; out one row
 * after q; weights == out) and their layer counterparts; legal neighbours
 * (stride 0 on a dimension of size 1, views that touch end to end,
 * broadcast inputs) still succeed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

enum { B = 4, H = 8, T = 5, D = 8 };
enum { N = B * H * T * D }; /* elements of one contiguous [B, H, T, D] tensor */

/* One arena holds every tensor, so that views can be made to overlap. */
typedef struct arena {
  float* base;
  size_t n;
} arena;

static arena arena_make(tester* t, size_t n) {
  arena a = {tester_alloc(n * sizeof(float)), n};
  tester_fill(t, a.base, n);
  return a;
}

/* A call that must be refused: status, message naming both views, nothing written. */
static void expect_refused(tester* t, const char* what, const arena* a, mha_status st,
                           const float* snapshot, const char* names) {
  tester_check_failure(t, what, st, MHA_STATUS_INVALID_STRIDE, names);
  tester_check(t, memcmp(a->base, snapshot, a->n * sizeof(float)) == 0,
               "%s: the refused call wrote to memory", what);
}

/* A fresh contiguous descriptor, a snapshot of the arena, a stale message. */
static void reset(mha_attention_desc* d, float* snapshot, const arena* a) {
  mha_attention_desc_init(d, B, H, H, T, T, D, D);
  memcpy(snapshot, a->base, a->n * sizeof(float));
  tester_stale_error();
}

static void test_core(tester* t) {
  /* q | k | v | out | weights | spare, each N floats (weights: B·H·T·T <= N) */
  arena a = arena_make(t, 6 * N);
  float* snapshot = tester_alloc(a.n * sizeof(float));
  float *q = a.base, *k = q + N, *v = k + N, *out = v + N, *w = out + N;
  mha_attention_desc d;
  mha_status st;

  tester_context(t, "core: out strides {0, 0, Dv}");
  reset(&d, snapshot, &a);
  d.out = (mha_strides){0, 0, D};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  expect_refused(t, "out {0, 0, Dv}", &a, st, snapshot, "out");

  tester_context(t, "core: out strides {1, 1, Dv}");
  reset(&d, snapshot, &a);
  d.out = (mha_strides){1, 1, D};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  expect_refused(t, "out {1, 1, Dv}", &a, st, snapshot, "out");

  tester_context(t, "core: out head stride shorter than a head");
  reset(&d, snapshot, &a);
  d.out = (mha_strides){H * T * D, T * D - 1, D};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  expect_refused(t, "out head stride T·Dv - 1", &a, st, snapshot, "out");

  tester_context(t, "core: out == v");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, v, NULL);
  expect_refused(t, "out == v", &a, st, snapshot, "v");

  tester_context(t, "core: out one row after q");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, q + D, NULL);
  expect_refused(t, "out = q + one row", &a, st, snapshot, "q");

  tester_context(t, "core: out == k");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, k, NULL);
  expect_refused(t, "out == k", &a, st, snapshot, "k");

  tester_context(t, "core: weights == out");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, out, out);
  expect_refused(t, "weights == out", &a, st, snapshot, "weights");

  tester_context(t, "core: weights overlapping q");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, out, q + N - 1);
  expect_refused(t, "weights over q's last element", &a, st, snapshot, "q");

  tester_context(t, "core: out overlapping the additive mask");
  reset(&d, snapshot, &a);
  d.mask.additive = out + 3;
  d.mask.additive_strides = (mha_strides){0, 0, T};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  expect_refused(t, "out over mask.additive", &a, st, snapshot, "mask.additive");

  tester_context(t, "core: out overlapping mask.kv_len");
  reset(&d, snapshot, &a);
  int32_t* lens = (int32_t*)(w + N); /* in the spare tensor */
  for (int b = 0; b < B; b++) lens[b] = T;
  memcpy(snapshot, a.base, a.n * sizeof(float));
  d.mask.kv_len = lens;
  st = mha_attention_f32(&d, q, k, v, (float*)lens - 1, NULL);
  expect_refused(t, "out over mask.kv_len", &a, st, snapshot, "mask.kv_len");

  /* legal neighbours */
  tester_context(t, "core: legal views next to each other");
  reset(&d, snapshot, &a);
  st = mha_attention_f32(&d, q, k, v, out, w); /* each view ends where the next begins */
  tester_check(t, st == MHA_STATUS_SUCCESS, "adjacent views: %s: %s", mha_status_string(st), mha_last_error());
  mha_attention_desc_init(&d, 1, H, H, 1, T, D, D);
  d.out = (mha_strides){0, D, 0}; /* B = 1, Tq = 1: zero strides on size-1 dimensions */
  d.q = (mha_strides){0, D, 0};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  tester_check(t, st == MHA_STATUS_SUCCESS, "zero strides on size-1 output dimensions: %s: %s",
               mha_status_string(st), mha_last_error());
  mha_attention_desc_init(&d, B, H, H, T, T, D, D);
  d.k = (mha_strides){0, T * D, D}; /* one K and V for every batch entry: a broadcast read */
  d.v = (mha_strides){0, T * D, D};
  st = mha_attention_f32(&d, q, k, v, out, NULL);
  tester_check(t, st == MHA_STATUS_SUCCESS, "broadcast K/V: %s: %s", mha_status_string(st), mha_last_error());
  /* out interleaved with q's heads in one [B, T, 2H, D] buffer: disjoint, but
   * refused by the byte-range rule (documented) */
  mha_attention_desc_init(&d, B, H, H, T, T, D, D);
  d.q = mha_strides_bthd(2 * H, T, D);
  d.out = mha_strides_bthd(2 * H, T, D);
  d.out.head = D; /* same strides, offset by H heads */
  memcpy(snapshot, a.base, a.n * sizeof(float));
  tester_stale_error();
  st = mha_attention_f32(&d, q, k, v, q + H * D, NULL);
  expect_refused(t, "out interleaved with q", &a, st, snapshot, "q");
  free(snapshot);
  free(a.base);
}

static void test_layer(tester* t) {
  enum { DM = 16, HL = 4, TL = 6, BL = 3 };
  float* wts = tester_alloc(4 * DM * DM * sizeof(float));
  tester_fill(t, wts, 4 * DM * DM);
  mha_layer_desc ld;
  memset(&ld, 0, sizeof ld);
  ld.d_model = DM;
  ld.H = HL;
  ld.w_q = wts;
  ld.w_k = wts + DM * DM;
  ld.w_v = wts + 2 * DM * DM;
  ld.w_o = wts + 3 * DM * DM;
  mha_layer* plan = NULL;
  tester_context(t, "layer: create");
  mha_status st = mha_layer_create(&ld, &plan);
  free(wts);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "create: %s", mha_last_error())) return;
  const size_t nx = BL * TL * DM, nw = BL * HL * TL * TL;
  arena a = arena_make(t, 3 * nx + 2 * nw);
  float* snapshot = tester_alloc(a.n * sizeof(float));
  float *xq = a.base, *xk = xq + nx, *out = xk + nx, *w = out + nx;
  mha_layer_args args;
  const struct { const char* what; float* out; float* w; const float* xk; const char* names; } cases[] = {
      {"out == x_q", xq, NULL, NULL, "x_q"},
      {"out one row after x_q", xq + DM, NULL, NULL, "x_q"},
      {"out over x_k (cross)", xk + 5, NULL, xk, "x_k"},
      {"weights == out", out, out, NULL, "weights"},
      {"weights over x_q", out, xq + 1, NULL, "x_q"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tester_context(t, "layer: %s", cases[i].what);
    mha_layer_args_init(&args);
    args.B = BL;
    args.Tq = TL;
    args.Tk = TL;
    args.x_q = xq;
    args.x_k = cases[i].xk;
    args.out = cases[i].out;
    args.weights = cases[i].w;
    args.num_threads = 2;
    memcpy(snapshot, a.base, a.n * sizeof(float));
    tester_stale_error();
    st = mha_layer_forward(plan, &args);
    expect_refused(t, cases[i].what, &a, st, snapshot, cases[i].names);
  }
  tester_context(t, "layer: out inside the caller's workspace");
  mha_layer_args_init(&args);
  args.B = BL;
  args.Tq = TL;
  args.x_q = xq;
  size_t bytes = 0;
  st = mha_layer_workspace_size(plan, &args, &bytes);
  tester_check(t, st == MHA_STATUS_SUCCESS, "workspace size: %s", mha_last_error());
  float* ws = tester_alloc(bytes + nx * sizeof(float));
  args.workspace = ws;
  args.workspace_size = bytes;
  args.out = ws + 16;
  tester_stale_error();
  st = mha_layer_forward(plan, &args);
  tester_check_failure(t, "out inside workspace", st, MHA_STATUS_INVALID_STRIDE, "workspace");
  args.out = out; /* and the legal call */
  args.weights = w;
  st = mha_layer_forward(plan, &args);
  tester_check(t, st == MHA_STATUS_SUCCESS, "legal layer call: %s: %s", mha_status_string(st), mha_last_error());
  free(ws);
  free(snapshot);
  free(a.base);
  mha_layer_destroy(plan);
}

int main(void) {
  tester t;
  tester_init(&t, "output-views-test");
  test_core(&t);
  test_layer(&t);
  return tester_finish(&t);
}
