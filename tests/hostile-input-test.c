/*
 * Regressions of the hostile inputs of issue #17: each case names its defect
 * and failed before the fix (the reproducers were in shared/repro/).
 *
 *   1  varlen: out or lse over cu_seqlens_q / cu_seqlens_k → INVALID_STRIDE,
 *      the offsets and the outputs untouched (was: offsets overwritten
 *      mid-call, then a write far out of bounds)
 *   2  varlen: the bound Tk near INT64_MAX → the real keys' result (was: a
 *      signed overflow in the padded schedule's plan)
 *   3  varlen: the bound Tq near INT64_MAX → the real rows' result, at once
 *      (was: time O(Tq); INT64_MAX never returned). The CTest TIMEOUT is the
 *      hang guard; no time is measured.
 *   4  varlen: the workspace follows the real rows and keys: equal for the
 *      bounds 8192 and the real lengths (was: sized for the padded batch,
 *      1 GiB for 2 MiB of data)
 *   5  out or weights over weights_heads (core, K/V cache call and layer)
 *      → INVALID_STRIDE, the head list untouched
 *   6  core / K/V / varlen: out, lse or an input inside the caller's
 *      workspace → INVALID_STRIDE (was: SUCCESS with wrong bits)
 *   7  mha_merge_f32: out == outs[1], out over lses[1], lse over outs[0],
 *      out over part of outs[0] → INVALID_STRIDE; out == outs[0] and lse ==
 *      lses[0] (in place) still merge exactly
 *  10  sinks of +inf or NaN and ALiBi slopes of ±inf or NaN → INVALID_ARGUMENT
 *      naming the entry (a sink of −inf is no sink and stays valid)
 *  11  the workspace query of a valid descriptor over a contiguous cache with
 *      B = 2^40 returns at once (was: a walk over all B entries)
 *   8  per-head weights at H = 2^20 (Hkv 2^17, one row, one key) return at
 *      once with the right weights (was: O(H²), a scan of every slot per row)
 *  12  varlen: a last sequence without keys and a K/V row stride of 2^62
 *      (one key row in all: a valid view) → its rows are zeros, the other
 *      sequence's are its one V row (was: the sequence's first key row,
 *      cu_k[b] = the total, formed a pointer that wrapped around the address
 *      space — undefined behaviour, caught by UBSan in the fuzzer, stop 27)
 *
 * Defect 9 (the Python front's cu_seqlens cast) is tested in
 * python/tests/test_varlen.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tester.h"

/* 1 if n floats at p hold the bits of n floats at ref */
static int same(const void* p, const void* ref, size_t bytes) { return memcmp(p, ref, bytes) == 0; }

/* A packed batch: 3 sequences of 10, 7 and 13 query rows and 12, 0, 20 keys,
 * H 4, Hkv 2, D 16, bthd-packed. */
enum { VL_B = 3, VL_H = 4, VL_HKV = 2, VL_D = 16, VL_TQ = 30, VL_TK = 32 };
static const int32_t vl_cu_q[VL_B + 1] = {0, 10, 17, 30}, vl_cu_k[VL_B + 1] = {0, 12, 12, 32};

static void vl_desc(mha_attention_desc* d, int64_t Tq, int64_t Tk) {
  mha_attention_desc_init(d, VL_B, VL_H, VL_HKV, Tq, Tk, VL_D, VL_D);
  d->q = d->out = (mha_strides){0, VL_D, VL_H * VL_D};
  d->k = d->v = (mha_strides){0, VL_D, VL_HKV * VL_D};
  d->num_threads = 2;
}

static void varlen_overlaps(tester* t, const float* q, const float* k, const float* v) {
  const size_t nout = (size_t)VL_TQ * VL_H * VL_D;
  /* out's first bytes hold cu_seqlens_q (then _k); lse likewise */
  for (int which = 0; which < 4; which++) {
    float* out = tester_alloc((nout + 64) * sizeof(float));
    float* lse = tester_alloc(((size_t)VL_TQ * VL_H + 64) * sizeof(float));
    tester_poison(out, nout + 64);
    tester_poison(lse, (size_t)VL_TQ * VL_H + 64);
    float* host = which < 2 ? out + 5 : lse + 5;
    int32_t* cu_q = (int32_t*)host;
    int32_t* cu_k = (int32_t*)(host + 8);
    int32_t keep_q[VL_B + 1], keep_k[VL_B + 1];
    memcpy(cu_q, vl_cu_q, sizeof vl_cu_q);
    memcpy(cu_k, vl_cu_k, sizeof vl_cu_k);
    const int32_t* use_q = which % 2 == 0 ? cu_q : vl_cu_q;
    const int32_t* use_k = which % 2 == 1 ? cu_k : vl_cu_k;
    memcpy(keep_q, cu_q, sizeof keep_q);
    memcpy(keep_k, cu_k, sizeof keep_k);
    float* out_copy = tester_alloc((nout + 64) * sizeof(float));
    memcpy(out_copy, out, (nout + 64) * sizeof(float));
    mha_attention_desc d;
    vl_desc(&d, 16, 32);
    d.lse = lse;
    static const char* const names[] = {"out over cu_seqlens_q", "out over cu_seqlens_k",
                                        "lse over cu_seqlens_q", "lse over cu_seqlens_k"};
    tester_context(t, "defect 1: varlen %s", names[which]);
    tester_stale_error();
    const mha_status st = mha_attention_varlen_f32(&d, use_q, use_k, q, k, v, out);
    tester_check_failure(t, names[which], st, MHA_STATUS_INVALID_STRIDE, which % 2 ? "cu_seqlens_k" : "cu_seqlens_q");
    tester_check(t, same(cu_q, keep_q, sizeof keep_q) && same(cu_k, keep_k, sizeof keep_k) &&
                        same(out, out_copy, (nout + 64) * sizeof(float)),
                 "the offsets or out were written");
    free(out);
    free(out_copy);
    free(lse);
  }
}

/* Defects 2, 3, 4: the bounds Tq, Tk change neither the bits nor the
 * workspace, however large. */
static void varlen_bounds(tester* t, const float* q, const float* k, const float* v) {
  const size_t nout = (size_t)VL_TQ * VL_H * VL_D;
  float* ref = tester_alloc(nout * sizeof(float));
  float* out = tester_alloc(nout * sizeof(float));
  mha_attention_desc d;
  vl_desc(&d, 13, 20); /* the real lengths */
  size_t ws_real = 0, ws = 0;
  tester_context(t, "defects 2-4: varlen at its real lengths");
  tester_check(t, mha_attention_varlen_f32(&d, vl_cu_q, vl_cu_k, q, k, v, ref) == MHA_STATUS_SUCCESS &&
                      mha_attention_varlen_workspace_size(&d, vl_cu_q, vl_cu_k, &ws_real) == MHA_STATUS_SUCCESS,
               "varlen: %s", mha_last_error());
  const struct { const char* name; int64_t Tq, Tk; } bounds[] = {
      {"defect 4: bounds 8192", 8192, 8192},
      {"defect 2: Tk INT64_MAX", 13, INT64_MAX},
      {"defect 2: Tk INT64_MAX - 1", 13, INT64_MAX - 1},
      {"defect 3: Tq INT64_MAX", INT64_MAX, 20},
      {"defect 3: Tq 2^62, Tk 2^62", INT64_C(1) << 62, INT64_C(1) << 62}};
  for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
    tester_context(t, "%s", bounds[i].name);
    vl_desc(&d, bounds[i].Tq, bounds[i].Tk);
    tester_poison(out, nout);
    mha_status st = mha_attention_varlen_workspace_size(&d, vl_cu_q, vl_cu_k, &ws);
    tester_check(t, st == MHA_STATUS_SUCCESS && ws == ws_real, "workspace %zu bytes, %zu at the real lengths (%s)",
                 ws, ws_real, mha_last_error());
    st = mha_attention_varlen_f32(&d, vl_cu_q, vl_cu_k, q, k, v, out);
    tester_check(t, st == MHA_STATUS_SUCCESS && same(out, ref, nout * sizeof(float)),
                 "status %s (%s), or bits differ from the call at the real lengths", mha_status_string(st),
                 mha_last_error());
  }
  /* defect 4's reproducer: 64 sequences of 4 rows, bounds 8192 */
  enum { NS = 64, L = 4, H = 8, D = 64 };
  int32_t cu[NS + 1];
  for (int i = 0; i <= NS; i++) cu[i] = i * L;
  mha_attention_desc_init(&d, NS, H, H, 8192, 8192, D, D);
  d.q = d.k = d.v = d.out = (mha_strides){0, D, H * D};
  d.num_threads = 1;
  size_t big = 0, small = 0;
  tester_context(t, "defect 4: 64 sequences of 4 rows");
  tester_check(t, mha_attention_varlen_workspace_size(&d, cu, cu, &big) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  d.Tq = d.Tk = L;
  tester_check(t, mha_attention_varlen_workspace_size(&d, cu, cu, &small) == MHA_STATUS_SUCCESS && big == small,
               "workspace %zu bytes at bounds 8192, %zu at the real 4", big, small);
  /* O(real data): q, k, v, out are 4 · 256 rows · 512 floats = 2 MiB */
  tester_check(t, big < ((size_t)8 << 20), "workspace %zu bytes for 2 MiB of data", big);
  free(ref);
  free(out);
}

/* Defects 5 and 6 on the core, the K/V cache call and the layer. */
static void core_overlaps(tester* t) {
  enum { B = 2, H = 4, TQ = 4, TK = 40, D = 16 };
  const size_t nq = (size_t)B * H * TQ * D, nk = (size_t)B * H * TK * D, nw = (size_t)B * 2 * TQ * TK;
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nk * sizeof(float));
  float* v = tester_alloc(nk * sizeof(float));
  float* out = tester_alloc((nq + 64) * sizeof(float));
  float* w = tester_alloc((nw + 64) * sizeof(float));
  float* copy = tester_alloc((nw + 64) * sizeof(float));
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nk);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, H, TQ, TK, D, D);
  d.weights_mode = MHA_WEIGHTS_SELECTED;
  d.weights_nheads = 2;
  /* 5: the head list inside the weights output, then inside out */
  for (int in_out = 0; in_out < 2; in_out++) {
    float* host = in_out ? out : w;
    tester_poison(out, nq + 64);
    tester_poison(w, nw + 64);
    int32_t* heads = (int32_t*)(host + 1);
    heads[0] = 1;
    heads[1] = 3;
    d.weights_heads = heads;
    memcpy(copy, host, ((in_out ? nq : nw) + 64) * sizeof(float));
    tester_context(t, "defect 5: %s over weights_heads (core)", in_out ? "out" : "weights");
    tester_stale_error();
    tester_check_failure(t, "core", mha_attention_f32(&d, q, k, v, out, w), MHA_STATUS_INVALID_STRIDE, "weights_heads");
    tester_check(t, same(host, copy, ((in_out ? nq : nw) + 64) * sizeof(float)), "the head list or output was written");
    /* the same through a K/V cache */
    mha_kv_cache c;
    mha_kv_cache_init(&c, MHA_DTYPE_F32, k, v, H, TK, D, D);
    tester_context(t, "defect 5: %s over weights_heads (K/V cache call)", in_out ? "out" : "weights");
    tester_stale_error();
    tester_check_failure(t, "kv", mha_attention_kv_f32(&d, q, &c, out, w), MHA_STATUS_INVALID_STRIDE, "weights_heads");
    tester_check(t, same(host, copy, ((in_out ? nq : nw) + 64) * sizeof(float)), "the head list or output was written");
  }
  /* 6: out, lse, an input inside the caller's workspace */
  d.weights_mode = MHA_WEIGHTS_PER_HEAD;
  d.weights_heads = NULL;
  d.weights_nheads = 0;
  size_t ws = 0;
  tester_check(t, mha_attention_workspace_size(&d, 0, &ws) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  const size_t nbuf = ws / sizeof(float) + nq + 64;
  float* buf = tester_alloc(nbuf * sizeof(float));
  float* bufcopy = tester_alloc(nbuf * sizeof(float));
  tester_poison(buf, nbuf);
  memcpy(bufcopy, buf, nbuf * sizeof(float));
  d.workspace = buf;
  d.workspace_size = ws;
  tester_context(t, "defect 6: out inside the workspace (core)");
  tester_stale_error();
  tester_check_failure(t, "core", mha_attention_f32(&d, q, k, v, buf + 16, NULL), MHA_STATUS_INVALID_STRIDE, "workspace");
  tester_check(t, same(buf, bufcopy, nbuf * sizeof(float)), "the workspace or out was written");
  tester_context(t, "defect 6: lse inside the workspace (core)");
  d.lse = buf + 32;
  tester_stale_error();
  tester_check_failure(t, "core", mha_attention_f32(&d, q, k, v, out, NULL), MHA_STATUS_INVALID_STRIDE, "workspace");
  d.lse = NULL;
  tester_context(t, "defect 6: q inside the workspace (core)");
  memcpy(buf + 16, q, nq * sizeof(float));
  memcpy(bufcopy, buf, nbuf * sizeof(float));
  tester_stale_error();
  tester_check_failure(t, "core", mha_attention_f32(&d, buf + 16, k, v, out, NULL), MHA_STATUS_INVALID_STRIDE,
                       "workspace");
  tester_check(t, same(buf, bufcopy, nbuf * sizeof(float)), "the workspace was written");
  mha_kv_cache c;
  mha_kv_cache_init(&c, MHA_DTYPE_F32, k, v, H, TK, D, D);
  size_t wskv = 0;
  tester_check(t, mha_attention_kv_workspace_size(&d, &c, 0, &wskv) == MHA_STATUS_SUCCESS && wskv <= ws,
               "kv workspace %zu (%s)", wskv, mha_last_error());
  tester_context(t, "defect 6: out inside the workspace (K/V cache call)");
  tester_stale_error();
  tester_check_failure(t, "kv", mha_attention_kv_f32(&d, q, &c, buf + 16, NULL), MHA_STATUS_INVALID_STRIDE, "workspace");
  tester_context(t, "defect 6: the cache inside the workspace (K/V cache call)");
  mha_kv_cache_init(&c, MHA_DTYPE_F32, buf + 16, v, H, TK, D, D);
  tester_stale_error();
  tester_check_failure(t, "kv", mha_attention_kv_f32(&d, q, &c, out, NULL), MHA_STATUS_INVALID_STRIDE, "workspace");
  /* the layer: weights_heads inside out */
  tester_context(t, "defect 5: out over weights_heads (layer)");
  {
    enum { DM = 32, LH = 4, LT = 5 };
    float* wq = tester_alloc((size_t)DM * DM * 4 * sizeof(float));
    tester_fill(t, wq, (size_t)DM * DM * 4);
    mha_layer_desc ld = {0};
    ld.d_model = DM;
    ld.H = LH;
    ld.w_q = wq;
    ld.w_k = wq + DM * DM;
    ld.w_v = wq + 2 * DM * DM;
    ld.w_o = wq + 3 * DM * DM;
    mha_layer* L = NULL;
    tester_check(t, mha_layer_create(&ld, &L) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
    float* x = tester_alloc((size_t)LT * DM * sizeof(float));
    float* lout = tester_alloc(((size_t)LT * DM + 16) * sizeof(float));
    float* lw = tester_alloc(((size_t)LH * LT * LT + 16) * sizeof(float));
    tester_fill(t, x, (size_t)LT * DM);
    tester_poison(lout, (size_t)LT * DM + 16);
    int32_t* heads = (int32_t*)(lout + 3);
    heads[0] = 0;
    heads[1] = 2;
    float* lcopy = tester_alloc(((size_t)LT * DM + 16) * sizeof(float));
    memcpy(lcopy, lout, ((size_t)LT * DM + 16) * sizeof(float));
    mha_layer_args a;
    mha_layer_args_init(&a);
    a.B = 1;
    a.Tq = LT;
    a.x_q = x;
    a.out = lout;
    a.weights = lw;
    a.weights_mode = MHA_WEIGHTS_SELECTED;
    a.weights_heads = heads;
    a.weights_nheads = 2;
    tester_stale_error();
    tester_check_failure(t, "layer", mha_layer_forward(L, &a), MHA_STATUS_INVALID_STRIDE, "weights_heads");
    tester_check(t, same(lout, lcopy, ((size_t)LT * DM + 16) * sizeof(float)), "the head list or out was written");
    mha_layer_destroy(L);
    free(wq);
    free(x);
    free(lout);
    free(lw);
    free(lcopy);
  }
  free(buf);
  free(bufcopy);
  free(q);
  free(k);
  free(v);
  free(out);
  free(w);
  free(copy);
}

/* Defect 6 on varlen: out inside the workspace. */
static void varlen_workspace(tester* t, const float* q, const float* k, const float* v) {
  mha_attention_desc d;
  vl_desc(&d, 16, 32);
  size_t ws = 0;
  tester_check(t, mha_attention_varlen_workspace_size(&d, vl_cu_q, vl_cu_k, &ws) == MHA_STATUS_SUCCESS, "%s",
               mha_last_error());
  const size_t nbuf = ws / sizeof(float) + (size_t)VL_TQ * VL_H * VL_D + 64;
  float* buf = tester_alloc(nbuf * sizeof(float));
  tester_poison(buf, nbuf);
  d.workspace = buf;
  d.workspace_size = ws;
  tester_context(t, "defect 6: out inside the workspace (varlen)");
  tester_stale_error();
  tester_check_failure(t, "varlen", mha_attention_varlen_f32(&d, vl_cu_q, vl_cu_k, q, k, v, buf + 16),
                       MHA_STATUS_INVALID_STRIDE, "workspace");
  free(buf);
}

/* Defect 7: merge's outputs against its parts. */
static void merge_overlaps(tester* t) {
  enum { ROWS = 6, DV = 5 };
  float* o = tester_alloc(3 * ROWS * DV * sizeof(float));
  float* l = tester_alloc(3 * ROWS * sizeof(float));
  float* out = tester_alloc(ROWS * DV * sizeof(float));
  float* lse = tester_alloc(ROWS * sizeof(float));
  float* big = tester_alloc((ROWS * DV + ROWS + 8) * sizeof(float));
  tester_fill(t, o, 3 * ROWS * DV);
  tester_fill(t, l, 3 * ROWS);
  const float* outs[3] = {o, o + ROWS * DV, o + 2 * ROWS * DV};
  const float* lses[3] = {l, l + ROWS, l + 2 * ROWS};
  tester_context(t, "defect 7: merge, a clean reference");
  tester_check(t, mha_merge_f32(3, ROWS, DV, outs, lses, out, lse) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  struct { const char* name; float *out, *lse; const char* arg; } bad[] = {
      {"out == outs[1]", (float*)outs[1], NULL, "outs"},
      {"out over lses[1]", (float*)lses[1] - 2, NULL, "lses"},
      {"lse over outs[0]", big, (float*)outs[0] + 3, "outs"},
      {"lse == lses[2]", big, (float*)lses[2], "lses"},
      {"out over part of outs[0]", (float*)outs[0] + DV, NULL, "outs"},
      {"lse over out", big, big + 4, "lse"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    float* keep = tester_alloc(3 * ROWS * (DV + 1) * sizeof(float));
    memcpy(keep, o, 3 * ROWS * DV * sizeof(float));
    memcpy(keep + 3 * ROWS * DV, l, 3 * ROWS * sizeof(float));
    tester_context(t, "defect 7: merge, %s", bad[i].name);
    tester_stale_error();
    tester_check_failure(t, "merge", mha_merge_f32(3, ROWS, DV, outs, lses, bad[i].out, bad[i].lse),
                         MHA_STATUS_INVALID_STRIDE, bad[i].arg);
    tester_check(t, same(keep, o, 3 * ROWS * DV * sizeof(float)) && same(keep + 3 * ROWS * DV, l, 3 * ROWS * sizeof(float)),
                 "a part was written");
    free(keep);
  }
  /* in place on part 0: out == outs[0], lse == lses[0], the same bits */
  tester_context(t, "defect 7: merge in place on part 0");
  const mha_status st = mha_merge_f32(3, ROWS, DV, outs, lses, (float*)outs[0], (float*)lses[0]);
  tester_check(t, st == MHA_STATUS_SUCCESS && same(outs[0], out, ROWS * DV * sizeof(float)) &&
                      same(lses[0], lse, ROWS * sizeof(float)),
               "in-place merge: %s", mha_last_error());
  free(o);
  free(l);
  free(out);
  free(lse);
  free(big);
}

/* Defect 10: sinks and slopes. */
static void variant_values(tester* t) {
  enum { B = 1, H = 4, T = 9, D = 8 };
  const size_t n = (size_t)B * H * T * D;
  float* q = tester_alloc(n * sizeof(float));
  float* out = tester_alloc(n * sizeof(float));
  tester_fill(t, q, n);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, H, T, T, D, D);
  const float bad_values[] = {INFINITY, -INFINITY, NAN};
  for (int which = 0; which < 2; which++) {
    for (size_t i = 0; i < 3; i++) {
      float vals[H] = {0.5f, 0.25f, 0.125f, 0.0625f};
      vals[2] = bad_values[i];
      d.mask.sinks = which == 0 ? vals : NULL;
      d.mask.alibi_slopes = which == 1 ? vals : NULL;
      tester_context(t, "defect 10: %s[2] = %g", which ? "alibi_slopes" : "sinks", (double)bad_values[i]);
      tester_poison(out, n);
      tester_stale_error();
      const mha_status st = mha_attention_f32(&d, q, q, q, out, NULL);
      if (which == 0 && bad_values[i] == -INFINITY) { /* −inf: no sink, valid */
        tester_check(t, st == MHA_STATUS_SUCCESS, "a sink of -inf refused: %s", mha_last_error());
        continue;
      }
      tester_check_failure(t, which ? "slopes" : "sinks", st, MHA_STATUS_INVALID_ARGUMENT,
                           which ? "alibi_slopes[2]" : "sinks[2]");
      tester_check(t, tester_is_poison(out[0]) && tester_is_poison(out[n - 1]), "out was written");
    }
  }
  free(q);
  free(out);
}

/* Defect 11: a contiguous cache's checks do not walk the batch. */
static void kv_huge_batch(tester* t) {
  float k[4] = {0.5f, 0.25f, 1.0f, 2.0f};
  mha_kv_cache c;
  mha_kv_cache_init(&c, MHA_DTYPE_F32, k, k + 2, 1, 1, 1, 1);
  c.k_strides = c.v_strides = (mha_strides){0, 0, 1}; /* every entry reads the same row */
  mha_attention_desc d;
  const int64_t B = INT64_C(1) << 40;
  mha_attention_desc_init(&d, B, 1, 1, 1, 1, 1, 1);
  d.num_threads = 1;
  size_t bytes = 0;
  tester_context(t, "defect 11: the workspace query of a contiguous cache, B = 2^40");
  const mha_status st = mha_attention_kv_workspace_size(&d, &c, 0, &bytes);
  tester_check(t, st == MHA_STATUS_SUCCESS && bytes > 0, "status %s (%s)", mha_status_string(st), mha_last_error());
}

/* Defect 8: per-head weights are O(H), not O(H²). */
static void weights_many_heads(tester* t) {
  const int64_t H = INT64_C(1) << 20, Hkv = H / 8, B = 1;
  float* q = tester_alloc((size_t)(B * H) * sizeof(float));
  float* kv = tester_alloc((size_t)(B * Hkv) * sizeof(float));
  float* out = tester_alloc((size_t)(B * H) * sizeof(float));
  float* w = tester_alloc((size_t)(B * H) * sizeof(float));
  tester_fill(t, q, (size_t)(B * H));
  tester_fill(t, kv, (size_t)(B * Hkv));
  tester_poison(w, (size_t)(B * H));
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, 1, 1, 1, 1);
  d.num_threads = 2;
  tester_context(t, "defect 8: per-head weights at H = 2^20");
  const mha_status st = mha_attention_f32(&d, q, kv, kv, out, w);
  int ones = 1; /* one visible key: every weight is exactly 1 */
  for (int64_t i = 0; i < B * H; i++) ones &= w[i] == 1.0f;
  tester_check(t, st == MHA_STATUS_SUCCESS && ones, "status %s (%s), or a weight is not 1", mha_status_string(st),
               mha_last_error());
  /* the chosen form: every head twice, in reverse */
  const int64_t n = 2 * H;
  int32_t* heads = tester_alloc((size_t)n * sizeof(int32_t));
  float* w2 = tester_alloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) heads[i] = (int32_t)(H - 1 - i % H);
  tester_poison(w2, (size_t)n);
  d.weights_mode = MHA_WEIGHTS_SELECTED;
  d.weights_heads = heads;
  d.weights_nheads = n;
  tester_context(t, "defect 8: chosen heads' weights at H = 2^20, 2^21 slots");
  const mha_status st2 = mha_attention_f32(&d, q, kv, kv, out, w2);
  ones = 1;
  for (int64_t i = 0; i < n; i++) ones &= w2[i] == 1.0f;
  tester_check(t, st2 == MHA_STATUS_SUCCESS && ones, "status %s (%s), or a weight is not 1", mha_status_string(st2),
               mha_last_error());
  free(q);
  free(kv);
  free(out);
  free(w);
  free(heads);
  free(w2);
}

/* argv[1], if given, runs only the part of that name (to replay one defect). */
/* Defect 12: cu_k = {0, 1, 1}: sequence 1 has no keys and starts one row
 * past the only key row, 2^62 elements (2^64 bytes) away. */
static void varlen_keyless_last(tester* t) {
  enum { D = 4 };
  const int32_t cu_q[3] = {0, 1, 2}, cu_k[3] = {0, 1, 1};
  float q[2 * D], kv[2][D], out[2 * D];
  tester_fill(t, q, 2 * D);
  tester_fill(t, kv[0], D);
  tester_fill(t, kv[1], D);
  tester_poison(out, 2 * D);
  mha_attention_desc d;
  mha_attention_desc_init(&d, 2, 1, 1, 1, 1, D, D);
  d.q = d.out = (mha_strides){0, D, D};
  d.k = d.v = (mha_strides){0, D, INT64_C(1) << 62};
  tester_context(t, "defect 12: varlen, a keyless last sequence, K/V row stride 2^62");
  const mha_status st = mha_attention_varlen_f32(&d, cu_q, cu_k, q, kv[0], kv[1], out);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "got %s: %s", mha_status_string(st), mha_last_error())) return;
  /* one visible key: its weight is exactly 1, so the row is that V row */
  tester_check(t, same(out, kv[1], D * sizeof(float)), "sequence 0's row is not its one V row");
  int zeros = 1;
  for (int c = 0; c < D; c++) zeros &= out[D + c] == 0.0f;
  tester_check(t, zeros, "the keyless sequence's row is not zeros");
}

int main(int argc, char** argv) {
  tester t;
  tester_init(&t, "hostile-input-test");
  const size_t nq = (size_t)VL_TQ * VL_H * VL_D, nk = (size_t)VL_TK * VL_HKV * VL_D;
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nk * sizeof(float));
  float* v = tester_alloc(nk * sizeof(float));
  tester_fill(&t, q, nq);
  tester_fill(&t, k, nk);
  tester_fill(&t, v, nk);
  const char* only = argc > 1 ? argv[1] : NULL;
#define PART(name, call) if (only == NULL || strcmp(only, name) == 0) call
  PART("varlen_overlaps", varlen_overlaps(&t, q, k, v));
  PART("varlen_bounds", varlen_bounds(&t, q, k, v));
  PART("varlen_workspace", varlen_workspace(&t, q, k, v));
  PART("core_overlaps", core_overlaps(&t));
  PART("merge_overlaps", merge_overlaps(&t));
  PART("variant_values", variant_values(&t));
  PART("kv_huge_batch", kv_huge_batch(&t));
  PART("weights_many_heads", weights_many_heads(&t));
  PART("varlen_keyless_last", varlen_keyless_last(&t));
#undef PART
  free(q);
  free(k);
  free(v);
  return tester_finish(&t);
}
