/*
 * The attention core's checks: a descriptor's sizes, fields, variants and
 * views (mha_attention_validate), and the overlap rule of every call
 * (mha_attention_check_overlap; include/mha.h, "Strided views").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

int64_t mha_weights_slots(const mha_attention_desc* d) {
  switch (d->weights_mode) {
    case MHA_WEIGHTS_HEAD_MEAN: return 1;
    case MHA_WEIGHTS_SELECTED: return d->weights_nheads;
    default: return d->H;
  }
}

mha_status mha_attention_validate(const char* fn, const mha_attention_desc* d, const void* q,
                                  const void* k, const void* v, const void* out,
                                  int with_weights) {
  if (d == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  if (q == NULL || k == NULL || v == NULL || out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     q == NULL ? "q" : k == NULL ? "k" : v == NULL ? "v" : "out");
  }
  const struct { const char* name; int64_t value; } sizes[] = {
      {"B", d->B}, {"H", d->H}, {"Hkv", d->Hkv}, {"Tq", d->Tq},
      {"Tk", d->Tk}, {"D", d->D}, {"Dv", d->Dv}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: %s = %lld, must be >= 1", fn, sizes[i].name,
                       (long long)sizes[i].value);
    }
  }
  if (d->H % d->Hkv != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: H (%lld) is not a multiple of Hkv (%lld)", fn,
                     (long long)d->H, (long long)d->Hkv);
  }
  if (!isfinite(d->scale)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: scale is not finite", fn);
  }
  if (d->mask.causal != 0 && d->mask.causal != 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.causal = %d, must be 0 or 1", fn,
                     d->mask.causal);
  }
  const mha_mask* mk = &d->mask;
  if ((int)mk->align < MHA_ALIGN_BOTTOM_RIGHT || (int)mk->align > MHA_ALIGN_KV_END) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.align = %d is not an mha_align", fn,
                     (int)mk->align);
  }
  if (mk->align == MHA_ALIGN_OFFSET && (mk->offset >= MHA_POS_LIMIT || mk->offset <= -MHA_POS_LIMIT)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.offset = %lld, must be within ±2^60", fn,
                     (long long)mk->offset);
  }
  if (mk->window != 0 && mk->window != 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.window = %d, must be 0 or 1", fn,
                     mk->window);
  }
  if (mk->window && (mk->window_left < 0 || mk->window_right < 0)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: mask.window_left = %lld, window_right = %lld: both must be >= 0", fn,
                     (long long)mk->window_left, (long long)mk->window_right);
  }
  if (!(mk->softcap >= 0.0f) || !isfinite(mk->softcap)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.softcap must be 0 (off) or finite and > 0",
                     fn);
  }
  if (d->num_threads < 0) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: num_threads = %d, must be >= 0", fn,
                     d->num_threads);
  }
  if (d->trace != NULL && (d->trace->capacity < 0 || (d->trace->capacity > 0 && d->trace->events == NULL))) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: trace capacity %lld with events %s", fn,
                     (long long)d->trace->capacity, d->trace->events == NULL ? "NULL" : "set");
  }
  if (d->threadpool != NULL && d->threadpool->parallel_for == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: threadpool->parallel_for is NULL", fn);
  }
  if (d->threadpool != NULL && d->threadpool->num_threads < 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: threadpool->num_threads = %d, must be >= 1", fn,
                     d->threadpool->num_threads);
  }
  mha_status st;
  if ((st = mha_check_view(fn, "q", d->B, d->H, d->Tq, d->D, &d->q, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view_injective(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (d->mask.additive != NULL) {
    st = mha_check_view(fn, "mask.additive", d->B, d->H, d->Tq, d->Tk, &d->mask.additive_strides, 1);
    if (st != MHA_STATUS_SUCCESS) return st;
  }
  if (d->mask.kv_len != NULL) {
    for (int64_t b = 0; b < d->B; b++) {
      if (d->mask.kv_len[b] < 0 || d->mask.kv_len[b] > d->Tk) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: mask.kv_len[%lld] = %d is outside [0, Tk = %lld]", fn, (long long)b,
                         (int)d->mask.kv_len[b], (long long)d->Tk);
      }
    }
  }
  if ((int)d->weights_mode < MHA_WEIGHTS_PER_HEAD || (int)d->weights_mode > MHA_WEIGHTS_SELECTED) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: weights_mode = %d is not an mha_weights_mode",
                     fn, (int)d->weights_mode);
  }
  if (with_weights && d->weights_mode == MHA_WEIGHTS_SELECTED) {
    if (d->weights_heads == NULL) {
      return mha_error(MHA_STATUS_NULL_POINTER, "%s: weights_heads is NULL (MHA_WEIGHTS_SELECTED)", fn);
    }
    if (d->weights_nheads < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: weights_nheads = %lld, must be >= 1", fn,
                       (long long)d->weights_nheads);
    }
    for (int64_t k = 0; k < d->weights_nheads; k++) {
      if (d->weights_heads[k] < 0 || d->weights_heads[k] >= d->H) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: weights_heads[%lld] = %d is outside [0, H = %lld)", fn, (long long)k,
                         (int)d->weights_heads[k], (long long)d->H);
      }
    }
  }
  if (with_weights) {
    int64_t n;
    if (!mha_mul_i64(d->B, mha_weights_slots(d), &n) || !mha_mul_i64(n, d->Tq, &n) || !mha_mul_i64(n, d->Tk, &n) ||
        !mha_mul_i64(n, (int64_t)sizeof(float), &n) || (uint64_t)n > (uint64_t)SIZE_MAX) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the weights output [B, H, Tq, Tk] overflows", fn);
    }
  }
  return MHA_STATUS_SUCCESS;
}

/* The overlap rule (mha.h, "Strided views"): every work item reads its
 * inputs while others write, so any overlap of what a call writes with
 * anything else it touches is a race and wrong results, or worse (an index
 * array overwritten mid-call). The test is on the byte ranges the views
 * address, so interleaved but disjoint views are refused too. */
mha_status mha_attention_check_overlap(const char* fn, const mha_attention_desc* d, size_t esz, const void* q,
                                       const void* k, const void* v, const void* out,
                                       const float* weights, const mha_span* more_in, size_t n_more_in) {
  size_t nq, nk = 0, nv = 0, nout, nadd = 0, nw = 0;
  mha_status st;
  if ((st = mha_view_span(fn, "q", d->B, d->H, d->Tq, d->D, &d->q, &nq)) != MHA_STATUS_SUCCESS ||
      (k != NULL && (st = mha_view_span(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k, &nk)) != MHA_STATUS_SUCCESS) ||
      (v != NULL && (st = mha_view_span(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v, &nv)) != MHA_STATUS_SUCCESS) ||
      (st = mha_view_span(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out, &nout)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  /* the spans were counted in floats */
  nq = nq / sizeof(float) * esz;
  nk = nk / sizeof(float) * esz;
  nv = nv / sizeof(float) * esz;
  nout = nout / sizeof(float) * esz;
  if (d->mask.additive != NULL &&
      (st = mha_view_span(fn, "mask.additive", d->B, d->H, d->Tq, d->Tk, &d->mask.additive_strides,
                          &nadd)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  /* the products below were checked by mha_attention_validate */
  if (weights != NULL) nw = (size_t)(d->B * mha_weights_slots(d) * d->Tq * d->Tk) * sizeof(float);
  const size_t nheads = weights != NULL && d->weights_mode == MHA_WEIGHTS_SELECTED
                            ? (size_t)d->weights_nheads * sizeof(int32_t) : 0;
  const size_t nlen = d->mask.kv_len != NULL ? (size_t)d->B * sizeof(int32_t) : 0;
  const size_t nhead = (size_t)d->H * sizeof(float);
  const size_t nlse = d->lse != NULL ? (size_t)(d->B * d->H * d->Tq) * sizeof(float) : 0;
  enum { MAX_MORE = 12 };
  /* internal callers pass at most 10 (the varlen cache call); more would be
   * a spans list this check drops, so it refuses rather than truncates */
  if (n_more_in > MAX_MORE) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: internal: %zu extra input spans, at most %d", fn,
                     n_more_in, (int)MAX_MORE);
  }
  mha_span in[8 + MAX_MORE] = {{"q", q, nq}, {"k", k, nk}, {"v", v, nv},
                               {"mask.additive", d->mask.additive, nadd},
                               {"mask.kv_len", d->mask.kv_len, nlen},
                               {"mask.alibi_slopes", d->mask.alibi_slopes, nhead},
                               {"mask.sinks", d->mask.sinks, nhead},
                               {"weights_heads", d->weights_heads, nheads}};
  for (size_t i = 0; i < n_more_in; i++) in[8 + i] = more_in[i];
  const mha_span outs[] = {{"out", out, nout}, {"weights", weights, nw}, {"lse", d->lse, nlse},
                           {"workspace", d->workspace, d->workspace != NULL ? d->workspace_size : 0}};
  return mha_check_spans_disjoint(fn, outs, sizeof outs / sizeof outs[0], in, 8 + n_more_in);
}

/* The values of the H-long slopes and sinks: one documented rule, O(H).
 * Called by the calls last, after every check of sizes, views, overlaps and
 * the caller's workspace, so that a call refused for those never reads an
 * array whose length it could not trust; the *_workspace_size queries read
 * no array and do not call it. */
mha_status mha_attention_check_heads(const char* fn, const mha_attention_desc* d) {
  const mha_mask* mk = &d->mask;
  for (int64_t h = 0; mk->alibi_slopes != NULL && h < d->H; h++) {
    if (!isfinite(mk->alibi_slopes[h])) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.alibi_slopes[%lld] = %g, must be finite", fn,
                       (long long)h, (double)mk->alibi_slopes[h]);
    }
  }
  for (int64_t h = 0; mk->sinks != NULL && h < d->H; h++) {
    if (isnan(mk->sinks[h]) || mk->sinks[h] == INFINITY) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                       "%s: mask.sinks[%lld] = %g, must be finite or -inf (no sink)", fn, (long long)h,
                       (double)mk->sinks[h]);
    }
  }
  return MHA_STATUS_SUCCESS;
}
